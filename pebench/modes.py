"""Resolution modes, torch-free (suites and the CLI parse them).

How an encoding trained on grid G0 meets a grid G:

* ``native``: its positions as they are (integer patch coordinates, offsets, distances);
* ``interp``: positions multiplied by G0/G per axis (position interpolation), or a learned grid
  or table resampled to G;
* ``scale=S``: positions multiplied by S on both axes, so native is S=1 and interp is S=G0/G
  for the encodings whose positions are a formula (for learned grids and tables interp is a
  resampling, see ``pebench list encodings``);
* ``tuned``: ``scale=S`` with S chosen per model and resolution on held-out images
  (:mod:`pebench.measure.tune`); never passed to a model.
"""

from __future__ import annotations

import math
import re

from pebench.errors import PebenchError, did_you_mean

FIXED = ("native", "interp")
TUNED = "tuned"
_SCALE = re.compile(r"scale=(.+)")


def scale_mode(scale: float) -> str:
    """The canonical mode string of a position scale, e.g. ``scale=0.4375``."""
    return f"scale={scale:.6g}"


def parse_mode(raw: object, what: str = "mode") -> str:
    """Canonical mode string of ``native``, ``interp``, ``tuned`` or ``scale=S`` (S > 0)."""
    text = str(raw).strip().lower()
    if text in (*FIXED, TUNED):
        return text
    match = _SCALE.fullmatch(text)
    if match:
        try:
            scale = float(match.group(1))
        except ValueError:
            scale = float("nan")
        if math.isfinite(scale) and scale > 0:
            return scale_mode(scale)
        raise PebenchError(f"{what} '{raw}': S must be a positive number, e.g. scale=0.5")
    hint = did_you_mean(text, [*FIXED, TUNED, "scale=S"])
    raise PebenchError(f"unknown {what} '{raw}'{hint}; use native, interp, tuned or scale=S (e.g. scale=0.5)")


def scale_of(mode: str) -> float | None:
    """S of a ``scale=S`` mode, None for the others."""
    match = _SCALE.fullmatch(mode)
    return float(match.group(1)) if match else None


def position_scale(mode: str, trained_grid: tuple[int, int], grid: tuple[int, int]) -> tuple[float, float]:
    """The factor on (row, col) patch positions that ``mode`` stands for on ``grid``: 1 native, G0/G per
    axis interp (position interpolation), S on both axes scale=S. Not defined for tuned, which runs the
    scale=S it chose."""
    if mode == "native":
        return (1.0, 1.0)
    if mode == "interp":
        return (trained_grid[0] / grid[0], trained_grid[1] / grid[1])
    scale = scale_of(mode)
    if scale is None:
        raise ValueError(f"mode '{mode}' has no position scale of its own")
    return (scale, scale)


def fixed_mode(raw: object, what: str, tuned_hint: str) -> str:
    """A mode that one forward pass can run (native, interp or scale=S); ``tuned`` is refused with
    ``tuned_hint`` saying what to do instead."""
    mode = parse_mode(raw, what=what)
    if mode == TUNED:
        raise PebenchError(f"{what} must be native, interp or scale=S, not tuned: {tuned_hint}")
    return mode


def mode_order(mode: str) -> tuple[int, float]:
    """Table order: native, interp, the scale=S modes by S, tuned."""
    scale = scale_of(mode)
    if scale is not None:
        return (2, scale)
    return ({"native": 0, "interp": 1, TUNED: 3}.get(mode, 4), 0.0)
