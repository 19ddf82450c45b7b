"""The report's figures (matplotlib, rendered off-screen): accuracy vs resolution per mode (overall and
per class group), cost vs resolution, and accuracy vs throughput at the highest resolution."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pebench.modes import mode_order
from pebench.reports.axes import file_part, legend_below, line_styles, resolution_axis
from pebench.reports.class_groups import describe, group_metrics, group_names, position_blind_cap
from pebench.reports.diagnostics import diagnostics_figures
from pebench.resolution import side, sort_key


def plots(records: list[dict], plot_dir: Path, highlight: frozenset[str] = frozenset()) -> list[tuple[str, Path]]:
    """Render the report's figures with matplotlib; returns (caption, png path). With ``highlight``, those models'
    lines are drawn bold and the others faded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    evals = [r for r in records if r["kind"] == "eval"]
    measured = [r for r in evals if r["status"] == "ok"]
    style = line_styles(list(dict.fromkeys(r["model"]["name"] for r in records)))
    if highlight:
        style = {name: s | ({"linewidth": 2.6, "zorder": 3} if name in highlight else {"alpha": 0.35})
                 for name, s in style.items()}
    if measured:
        figures.append(("Accuracy vs resolution (measured)", plot_dir / "accuracy.png"))
        _accuracy_figure(evals, style, lambda r: r["metrics"], "top-1", figures[-1][1], cap=position_blind_cap)
    for group in group_names(measured):
        figures.append((f"Accuracy by class group: {describe(group, measured)} vs resolution (measured)",
                        plot_dir / f"accuracy-{file_part(group)}.png"))
        _accuracy_figure(evals, style, group_metrics(group), f"top-1 on {group} classes", figures[-1][1],
                         f"class group {describe(group, measured)}", cap=lambda r, g=group: position_blind_cap(r, g))
    figures += diagnostics_figures(records, plot_dir, style)
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
            resolution_axis(ax, sorted({r["res"] for r in profiles}, key=sort_key))
            ax.grid(alpha=0.3)
        handles, labels = speed_ax.get_legend_handles_labels()
        legend_below(fig, handles, labels)
        fig.tight_layout()
        figures.append(("GMACs and throughput vs resolution (measured)", plot_dir / "cost.png"))
        fig.savefig(figures[-1][1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    top = max((r["res"] for r in measured), key=sort_key, default=None)
    speed_at_top = {r["model"]["name"]: r["timing"]["img_per_s"] for r in profiles if r["res"] == top}
    accuracy_at_top = {}
    for r in measured:
        if r["res"] == top and r["model"]["name"] in speed_at_top:
            accuracy_at_top[r["model"]["name"]] = max(accuracy_at_top.get(r["model"]["name"], 0), r["metrics"]["top1"])
    if accuracy_at_top:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for name, accuracy in accuracy_at_top.items():  # a legend, not labels: labels of close points overlap
            ax.scatter(speed_at_top[name], 100 * accuracy, color=style[name]["color"], marker=style[name]["marker"],
                       label=name, s=36)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.set(title=f"top-1 at {top} px (better mode) vs throughput", xlabel="img/s (median)", ylabel="top-1 %")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        figures.append((f"Accuracy at {top} px vs throughput (measured)", plot_dir / "tradeoff.png"))
        fig.savefig(figures[-1][1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return figures


def _accuracy_figure(evals: list[dict], style: dict, metric: Callable[[dict], dict | None], what: str,
                     path: Path, title: str | None = None, cap: Callable[[dict], float | None] | None = None) -> None:
    """Accuracy vs resolution, one panel per mode: per model a line with its 95% intervals as error
    bars (side by side, so overlapping intervals stay readable), n/a cells as crosses on the panel's
    floor, the position-blind cap (``cap``: record -> fraction or None) as a dotted line, and one
    legend under all panels. ``metric``: record -> the metrics drawn ({top1, top1_ci95}: all classes',
    or one class group's; None leaves the point out)."""
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in evals}, key=mode_order)
    resolutions = sorted({r["res"] for r in evals}, key=sort_key)
    names = list(dict.fromkeys(r["model"]["name"] for r in evals))
    sides = [side(r) for r in resolutions]
    dodge = 0.06 * (max(sides) - min(sides) or 100) / len(names)  # all of a resolution's points within 6% of the axis
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.4), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        any_na = False
        for i, name in enumerate(names):
            shift = (i - (len(names) - 1) / 2) * dodge
            cells = [r for r in evals if r["model"]["name"] == name and r["mode"] == mode]
            points = sorted(((side(r["res"]), metric(r)) for r in cells if r["status"] == "ok"), key=lambda p: p[0])
            points = [p for p in points if p[1] and p[1]["top1"] is not None]
            if points:
                top1 = [100 * p[1]["top1"] for p in points]
                ax.errorbar([p[0] + shift for p in points], top1,
                            yerr=[[max(0, t - 100 * p[1]["top1_ci95"][0]) for t, p in zip(top1, points, strict=True)],
                                  [max(0, 100 * p[1]["top1_ci95"][1] - t) for t, p in zip(top1, points, strict=True)]],
                            label=name, capsize=2, elinewidth=0.9, markersize=5, **style[name])
            missing = [side(r["res"]) + shift for r in cells if r["status"] != "ok"]
            if missing:
                any_na = True
                ax.scatter(missing, [0.03] * len(missing), marker="x", color=style[name]["color"], s=22,
                           transform=ax.get_xaxis_transform(), clip_on=False)
        if any_na:
            ax.text(0.01, 0.07, "x = n/a (reason in the report's table)", transform=ax.transAxes, fontsize=7,
                    color="0.35")
        limits = {cap(r) for r in evals if r["mode"] == mode and r["status"] == "ok"} - {None} if cap else set()
        if len(limits) == 1:
            level = 100 * limits.pop()
            ax.axhline(level, color="0.35", linestyle=":", linewidth=1.2, zorder=0)
            ax.text(0.99, level, f"position-blind cap {level:.0f}%", transform=ax.get_yaxis_transform(),
                    ha="right", va="bottom", fontsize=7, color="0.35")
        resolution_axis(ax, resolutions)
        ax.set(title=f"{what} vs resolution, {mode}", ylabel=f"{what} % (bars: 95% CI)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    legend_below(fig, handles, labels)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
