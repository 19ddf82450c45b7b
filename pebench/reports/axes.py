"""What every report figure shares: one colour and marker per model, the resolution axis, the legend."""

from __future__ import annotations

import re

from pebench.resolution import side

#: twenty hues told apart at a glance: matplotlib's tab10, then ten darker or brighter ones
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#000000", "#000075", "#800000", "#469990", "#f032e6", "#7fe000", "#e6b800", "#6a3d9a",
           "#fa8072", "#4d4d00")


def line_styles(names: list[str]) -> dict[str, dict]:
    """One colour and marker per model, the same in every figure: twenty distinct colours, the second
    ten with another marker and a dashed line; past twenty, colours repeat with yet another marker."""
    markers = "osD^vP"
    return {name: {"color": COLOURS[i % len(COLOURS)], "marker": markers[(i // 10) % len(markers)],
                   "linestyle": "-" if i % 20 < 10 else "--"}
            for i, name in enumerate(names)}


def file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name) or "group"


def resolution_axis(ax, resolutions: list) -> None:
    """Resolutions on the x axis at the side of their pixel count, labelled as given (384, 384x512)."""
    ax.set_xticks([side(r) for r in resolutions], [str(r) for r in resolutions])
    ax.set_xlabel("resolution (px; non-square at the side of the same pixel count)")


def legend_below(fig, handles: list, labels: list) -> None:
    """One legend for all of a figure's panels, under them."""
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=max(1, min(len(labels), 8)),
               fontsize=8, frameon=False)
