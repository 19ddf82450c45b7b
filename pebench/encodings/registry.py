"""Every encoding family by name. A new encoding is one module plus one line here."""

from __future__ import annotations

from typing import Any

from pebench.encodings.alibi import ALiBi2D
from pebench.encodings.ape import LearnedAbsolute
from pebench.encodings.base import Component
from pebench.encodings.cpb import ContinuousPositionBias
from pebench.encodings.fire import FIRE2D
from pebench.encodings.irpe import ImageRelativePosition
from pebench.encodings.lookhere import LookHere
from pebench.encodings.none import NoPosition
from pebench.encodings.peg import PositionEncodingGenerator
from pebench.encodings.relpos_table import RelativePositionTable
from pebench.encodings.rope import Rotary2D
from pebench.encodings.sincos import SinCos2D
from pebench.encodings.spvit import SpatialPrior

REGISTRY: dict[str, type[Component]] = {
    "none": NoPosition,
    "ape": LearnedAbsolute,
    "sincos": SinCos2D,
    "rpe": ImageRelativePosition,
    "relpos_table": RelativePositionTable,
    "cpb": ContinuousPositionBias,
    "spvit": SpatialPrior,
    "peg": PositionEncodingGenerator,
    "rope": Rotary2D,
    "alibi": ALiBi2D,
    "lookhere": LookHere,
    "fire": FIRE2D,
}

#: short names for option sets the papers use, e.g. `rope_mixed+ape`
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "rope_axial": ("rope", {"variant": "axial"}),
    "rope_mixed": ("rope", {"variant": "mixed"}),
    "rpe_clip": ("rpe", {"method": "clip"}),
}
