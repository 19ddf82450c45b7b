"""Position encodings, one module per family, registered by name in :mod:`.registry`.

Enters: an encoding spec (``ape``, ``peg:blocks=0-4``, ``rope_mixed+ape``), the backbone's :class:`Arch`, and
at every forward a :class:`Context` (the grid, the trained grid, the mode).
Leaves: a :class:`PositionEncoding` whose hooks the backbone calls (``add_to_tokens``, ``rotate``,
``attention_bias``, ``score_multiplier``, ``value_term``, ``after_block``; :mod:`.base`).
"""

from pebench.encodings.base import MODES, Arch, Component, Context, Mode, NotApplicable
from pebench.encodings.composite import PositionEncoding, build_encoding
from pebench.encodings.registry import PRESETS, REGISTRY
from pebench.encodings.spec import EncodingSpec, parse_spec

__all__ = [
    "MODES", "PRESETS", "REGISTRY", "Arch", "Component", "Context", "EncodingSpec", "Mode", "NotApplicable",
    "PositionEncoding", "build_encoding", "parse_spec",
]
