"""Position encodings, one module per family, registered by name in :mod:`.registry`."""

from pebench.encodings.base import MODES, Arch, Component, Context, Mode, NotApplicable
from pebench.encodings.composite import PositionEncoding, build_encoding
from pebench.encodings.registry import PRESETS, REGISTRY
from pebench.encodings.spec import EncodingSpec, parse_spec

__all__ = [
    "MODES", "PRESETS", "REGISTRY", "Arch", "Component", "Context", "EncodingSpec", "Mode", "NotApplicable",
    "PositionEncoding", "build_encoding", "parse_spec",
]
