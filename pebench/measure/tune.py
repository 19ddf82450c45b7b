"""Mode ``tuned``: a position scale S chosen per model and resolution on held-out images.

LookHere (Fuller et al., NeurIPS 2024) tunes ALiBi's slope scale and RoPE's base per test
resolution on held-out data before reporting. pebench does the same for every encoding whose
positions can be scaled (``scale=S``): the first ``tune_n`` images of the split (the *tune* part)
are run through every candidate S, the S with the best top-1 there is chosen (ties: better
top-5, then the S nearest to interp's G0/G on a log scale), and the tuned cell is scored on the
remaining images only. In a suite with a tuned mode every eval cell is scored on those same
remaining images, so native, interp and tuned compare on one set and no score is ever reported
on images that chose it.

Candidates: the suite's ``tune_scales``, or ``tune_points`` values spaced evenly in log S from
half of min(1, G0/G) to max(1, G0/G), plus 1 (native) and G0/G (interp) themselves; G0/G is the
geometric mean of the two axes' ratios for a non-square grid.
"""

from __future__ import annotations

import math

from pebench.modes import position_scale, scale_mode


def interp_scale(trained_grid: tuple[int, int], grid: tuple[int, int]) -> float:
    """G0/G, one number for both axes (their geometric mean when the grid is not square)."""
    rows, cols = position_scale("interp", trained_grid, grid)
    return math.sqrt(rows * cols)


def candidate_scales(trained_grid: tuple[int, int], grid: tuple[int, int], points: int,
                     explicit: tuple[float, ...] | None = None) -> list[float]:
    """The S values a tuned cell tries, ascending, each rounded as its mode string is."""
    if explicit:
        values = list(explicit)
    else:
        ratio = interp_scale(trained_grid, grid)
        lo, hi = math.log(min(1.0, ratio) / 2), math.log(max(1.0, ratio))
        steps = max(points - 1, 1)
        values = [math.exp(lo + (hi - lo) * i / steps) for i in range(points)] + [1.0, ratio]
    return sorted({float(scale_mode(v).partition("=")[2]) for v in values})


def choose_scale(results: dict[float, tuple[int, int]], ratio: float) -> float:
    """The S with the most top-1 hits on the tune part; ties: more top-5 hits, then nearest to ``ratio``."""
    return max(results, key=lambda s: (results[s][0], results[s][1], -abs(math.log(s / ratio))))
