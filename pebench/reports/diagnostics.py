"""Diagnostics records (:mod:`pebench.measure.diagnostics`) as the terminal table, report tables and figures."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pebench.modes import mode_order
from pebench.reports.axes import file_part, legend_below, resolution_axis
from pebench.resolution import side, sort_key


def _diagnosed(records: list[dict]) -> list[dict]:
    return sorted((r for r in records if r["kind"] == "diagnostics" and r["status"] == "ok"),
                  key=lambda r: (sort_key(r["res"]), mode_order(r["mode"])))


def _per_block(record: dict, statistic: str, digits: int = 2) -> str:
    return " ".join(f"{layer[statistic]['mean']:.{digits}f}" for layer in record["diagnostics"]["layers"]
                    if statistic in layer) or "-"


def _mean_over_blocks(record: dict, statistic: str) -> float | None:
    values = [layer[statistic]["mean"] for layer in record["diagnostics"]["layers"] if statistic in layer]
    return sum(values) / len(values) if values else None


def diagnostics_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per model, resolution and mode, each statistic per block (first to last)."""
    header = ["model", "res", "mode", "n", "distance, patches", "distance / longer side", "entropy, nats (max)",
              "class-token share"]
    rows = []
    ordered = [r for r in records if r["kind"] == "diagnostics"]
    for name in dict.fromkeys(r["model"]["name"] for r in ordered):
        for r in _diagnosed([r for r in ordered if r["model"]["name"] == name]):
            layers = r["diagnostics"]["layers"]
            rows.append([name, str(r["res"]), r["mode"], str(r["data"]["n"]), _per_block(r, "attention_distance", 1),
                         _per_block(r, "attention_distance_fraction"),
                         f"{_per_block(r, 'entropy')} ({layers[0]['max_entropy']:.2f})",
                         _per_block(r, "class_token_attention")])
        rows += [[name, str(r["res"]), r["mode"], "", f"n/a: {r['reason']}", "", "", ""]
                 for r in ordered if r["model"]["name"] == name and r["status"] != "ok"]
    return header, rows


DIAGNOSTICS_NOTE = ("Per block, first to last, averaged over heads and over the patch queries of the first n "
                    "images: mean attention distance to the patch keys (in patches, and as a share of the grid's "
                    "longer side), attention entropy over all keys (the maximum, log of the key count, in "
                    "brackets), and the share of attention on the class token.")


def diagnostics_table(records: list[dict], title: str) -> Table:
    header, rows = diagnostics_rows(records)
    table = Table(title=f"attention diagnostics: {title}", title_justify="left")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def diagnostics_figures(records: list[dict], plot_dir: Path, style: dict) -> list[tuple[str, Path]]:
    """Statistics vs resolution per mode, and per model the position pictures and class-token maps."""
    import matplotlib.pyplot as plt

    diagnosed = _diagnosed(records)
    if not diagnosed:
        return []
    figures = []
    modes = sorted({r["mode"] for r in diagnosed}, key=mode_order)
    statistics = [("attention_distance_fraction", "attention distance / longer side"),
                  ("entropy", "attention entropy (nats)"), ("class_token_attention", "share on the class token")]
    resolutions = sorted({r["res"] for r in diagnosed}, key=sort_key)
    fig, axes = plt.subplots(len(modes), 3, figsize=(16, 3.8 * len(modes)), squeeze=False)
    for row, mode in enumerate(modes):
        for col, (statistic, label) in enumerate(statistics):
            ax = axes[row][col]
            for name in dict.fromkeys(r["model"]["name"] for r in diagnosed):
                points = [(side(r["res"]), _mean_over_blocks(r, statistic)) for r in diagnosed
                          if r["model"]["name"] == name and r["mode"] == mode]
                points = [p for p in points if p[1] is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), label=name, **style[name])
            resolution_axis(ax, resolutions)
            ax.set(title=f"{label}, {mode} (mean over blocks)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    fig.tight_layout()
    figures.append(("Attention diagnostics vs resolution (measured)", plot_dir / "diagnostics.png"))
    fig.savefig(figures[-1][1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    for name in dict.fromkeys(r["model"]["name"] for r in diagnosed):
        own = [r for r in diagnosed if r["model"]["name"] == name]
        path = plot_dir / f"maps-{file_part(name)}.png"
        if _maps_figure(own, path):
            figures.append((f"{name}: position pictures and class-token attention (measured)", path))
    return figures


def _maps_figure(records: list[dict], path: Path) -> bool:
    """Columns: one per (resolution, mode). Rows: the embedding similarity to the centre patch, the
    bias from the centre patch per head (second block), the class-token attention of the first image."""
    import matplotlib.pyplot as plt

    def rows_of(record: dict) -> list[tuple[str, list]]:
        d = record["diagnostics"]
        out = []
        if d.get("embedding_similarity"):
            out.append(("embedding cos-sim to centre", d["embedding_similarity"]["maps"][0]))
        bias = d.get("bias_by_offset")
        if bias and "maps" in bias:
            block = 1 if len(bias["blocks"]) > 1 else 0
            heads = bias["maps"][block] or []
            out += [(f"bias from centre, block {bias['blocks'][block] + 1}, head {h + 1}", m)
                    for h, m in enumerate(heads)]
        if d.get("class_token_maps"):
            first = d["class_token_maps"][0]
            out.append((f"class-token attention, last block (image of class {first['label']})", first["map"]))
        return out

    columns = [(r, rows_of(r)) for r in records]
    depth = max((len(rows) for _, rows in columns), default=0)
    if not depth:
        return False
    fig, axes = plt.subplots(depth, len(columns), figsize=(2.4 * len(columns), 2.4 * depth), squeeze=False)
    for col, (record, rows) in enumerate(columns):
        for row in range(depth):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row >= len(rows):
                ax.axis("off")
                continue
            label, grid = rows[row]
            values = [[float("nan") if v is None else v for v in line] for line in grid]
            ax.imshow(values, cmap="viridis")
            ax.set_title(f"{record['res']} {record['mode']}" if row == 0 else "", fontsize=8)
            if col == 0:
                ax.set_ylabel(label, fontsize=6)
    fig.suptitle(f"{records[0]['model']['name']} ({records[0]['model']['encoding']}): each map on its own colour "
                 "scale; blank = masked", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True
