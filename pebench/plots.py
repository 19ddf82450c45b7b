"""The report's figures (matplotlib, rendered off-screen): accuracy vs resolution per mode (overall and
per class group), cost vs resolution, and accuracy vs throughput at the highest resolution."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pebench.class_groups import describe, group_metrics, group_names
from pebench.modes import mode_order
from pebench.resolution import side, sort_key


def _line_styles(names: list[str]) -> dict[str, dict]:
    """One colour and marker per model, the same in every figure; colours repeat only past 20
    models, and then with another marker and a dashed line, so no two lines look alike."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    colours = colours[0::2] + colours[1::2]  # the ten strong hues first, then their light partners
    markers = "osD^vP"
    return {name: {"color": colours[i % 20], "marker": markers[(i // 10) % len(markers)],
                   "linestyle": "-" if i < 10 else "--"}
            for i, name in enumerate(names)}


def plots(records: list[dict], plot_dir: Path) -> list[tuple[str, Path]]:
    """Render the report's figures with matplotlib; returns (caption, png path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    evals = [r for r in records if r["kind"] == "eval" and r["status"] == "ok"]
    style = _line_styles(list(dict.fromkeys(r["model"]["name"] for r in records)))
    if evals:
        figures.append(("Accuracy vs resolution (measured)", plot_dir / "accuracy.png"))
        _accuracy_figure(evals, style, lambda r: r["metrics"], "top-1", figures[-1][1])
    for group in group_names(evals):
        figures.append((f"Accuracy by class group: {describe(group, evals)} vs resolution (measured)",
                        plot_dir / f"accuracy-{_file_part(group)}.png"))
        _accuracy_figure(evals, style, group_metrics(group), f"top-1 on {group} classes", figures[-1][1],
                         f"class group {describe(group, evals)}")
    profiles = [r for r in records if r["kind"] == "profile" and r["status"] == "ok"]
    if profiles:
        fig, (gmacs_ax, speed_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
        for name in dict.fromkeys(r["model"]["name"] for r in profiles):
            points = sorted(((side(r["res"]), r) for r in profiles if r["model"]["name"] == name), key=lambda p: p[0])
            res = [p[0] for p in points]
            gmacs_ax.plot(res, [p[1]["flops"]["gmacs"] for p in points], label=name, **style[name])
            speed_ax.plot(res, [p[1]["timing"]["img_per_s"] for p in points], label=name, **style[name])
        gmacs_ax.set(title="GMACs per image", ylabel="GMACs")
        speed_ax.set(title="throughput", ylabel="img/s (median)", yscale="log")
        for ax in (gmacs_ax, speed_ax):
            _resolution_axis(ax, sorted({r["res"] for r in profiles}, key=sort_key))
            ax.grid(alpha=0.3)
        speed_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.tight_layout()
        figures.append(("GMACs and throughput vs resolution (measured)", plot_dir / "cost.png"))
        fig.savefig(figures[-1][1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    top = max((r["res"] for r in evals), key=sort_key, default=None)
    speed_at_top = {r["model"]["name"]: r["timing"]["img_per_s"] for r in profiles if r["res"] == top}
    accuracy_at_top = {}
    for r in evals:
        if r["res"] == top and r["model"]["name"] in speed_at_top:
            accuracy_at_top[r["model"]["name"]] = max(accuracy_at_top.get(r["model"]["name"], 0), r["metrics"]["top1"])
    if accuracy_at_top:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for name, accuracy in accuracy_at_top.items():
            ax.scatter(speed_at_top[name], 100 * accuracy, color=style[name]["color"], marker=style[name]["marker"])
            ax.annotate(name, (speed_at_top[name], 100 * accuracy), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set(title=f"top-1 at {top} px (better mode) vs throughput", xlabel="img/s (median)", ylabel="top-1 %")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        figures.append((f"Accuracy at {top} px vs throughput (measured)", plot_dir / "tradeoff.png"))
        fig.savefig(figures[-1][1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return figures


def _accuracy_figure(evals: list[dict], style: dict, metric: Callable[[dict], dict | None], what: str,
                     path: Path, title: str | None = None) -> None:
    """Accuracy vs resolution, one panel per mode, a line and its 95% band per model; ``metric``: record ->
    the metrics drawn ({top1, top1_ci95}: all classes', or one class group's; None leaves the point out)."""
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in evals}, key=mode_order)
    resolutions = sorted({r["res"] for r in evals}, key=sort_key)
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.2), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for name in dict.fromkeys(r["model"]["name"] for r in evals):
            points = sorted(((side(r["res"]), metric(r)) for r in evals if r["model"]["name"] == name
                             and r["mode"] == mode), key=lambda p: p[0])
            points = [p for p in points if p[1] and p[1]["top1"] is not None]
            if not points:
                continue
            res = [p[0] for p in points]
            ax.plot(res, [100 * p[1]["top1"] for p in points], label=name, **style[name])
            ax.fill_between(res, [100 * p[1]["top1_ci95"][0] for p in points],
                            [100 * p[1]["top1_ci95"][1] for p in points], color=style[name]["color"], alpha=0.12)
        _resolution_axis(ax, resolutions)
        ax.set(title=f"{what} vs resolution, {mode}", ylabel=f"{what} % (95% CI band)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name) or "group"


def _resolution_axis(ax, resolutions: list) -> None:
    """Resolutions on the x axis at the side of their pixel count, labelled as given (384, 384x512)."""
    ax.set_xticks([side(r) for r in resolutions], [str(r) for r in resolutions])
    ax.set_xlabel("resolution (px; non-square at the side of the same pixel count)")
