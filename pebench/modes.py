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

import difflib
import math
import re

from pebench.errors import PebenchError

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
    close = difflib.get_close_matches(text, [*FIXED, TUNED, "scale=S"], n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise PebenchError(f"unknown {what} '{raw}'{hint}; use native, interp, tuned or scale=S (e.g. scale=0.5)")


def scale_of(mode: str) -> float | None:
    """S of a ``scale=S`` mode, None for the others."""
    match = _SCALE.fullmatch(mode)
    return float(match.group(1)) if match else None


def mode_order(mode: str) -> tuple[int, float]:
    """Table order: native, interp, the scale=S modes by S, tuned."""
    scale = scale_of(mode)
    if scale is not None:
        return (2, scale)
    return ({"native": 0, "interp": 1, TUNED: 3}.get(mode, 4), 0.0)
