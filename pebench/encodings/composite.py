"""One encoding made of one or more components (``ape+peg``), as the backbone sees it."""

from __future__ import annotations

import torch
from torch import nn

from pebench.encodings.base import Arch, Component, Context
from pebench.encodings.registry import REGISTRY
from pebench.encodings.spec import EncodingSpec, parse_spec


class PositionEncoding(nn.ModuleDict):
    """The components of an encoding spec, keyed by family name, applied in spec order."""

    def __init__(self, spec: EncodingSpec, arch: Arch):
        super().__init__({c.name: REGISTRY[c.name](arch, **c.kwargs) for c in spec.components})
        self.spec = spec

    def parts(self) -> list[Component]:
        return list(self.values())

    @property
    def interp_is_native(self) -> bool:
        return all(c.interp_is_native for c in self.parts())

    def unsupported(self, ctx: Context) -> str | None:
        """Why the encoding cannot run in ``ctx``'s mode on its grid, or None when it can."""
        if ctx.scale is not None:
            reason = next((c.scale_unsupported for c in self.parts() if c.scale_unsupported), None)
            if reason is None and self.interp_is_native:
                reason = f"nothing to scale: {self.spec} does not depend on a position scale"
            return reason
        if ctx.mode != "native" or ctx.at_trained_grid:
            return None
        return next((reason for c in self.parts() if (reason := c.native_unsupported(ctx))), None)

    def position_values_at(self, ctx: Context) -> int:
        return sum(c.position_values_at(ctx) for c in self.parts())

    def explicit_attention(self, block: int) -> bool:
        return any(c.explicit_attention(block) for c in self.parts())

    def add_to_tokens(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        for part in self.parts():
            x = part.add_to_tokens(x, ctx)
        return x

    def after_block(self, block: int, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        for part in self.parts():
            x = part.after_block(block, x, ctx)
        return x

    def rotate(self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context):
        for part in self.parts():
            q, k = part.rotate(block, q, k, ctx)
        return q, k

    def attention_bias(self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context):
        return _combine([c.attention_bias(block, q, k, ctx) for c in self.parts()], torch.add)

    def score_multiplier(self, block: int, ctx: Context, like: torch.Tensor):
        return _combine([c.score_multiplier(block, ctx, like) for c in self.parts()], torch.mul)

    def value_term(self, block: int, attn: torch.Tensor, ctx: Context, rows: slice):
        return _combine([c.value_term(block, attn, ctx, rows) for c in self.parts()], torch.add)


def _combine(terms, op):
    present = [t for t in terms if t is not None]
    if not present:
        return None
    out = present[0]
    for t in present[1:]:
        out = op(out, t)
    return out


def build_encoding(spec, arch: Arch) -> PositionEncoding:
    return PositionEncoding(parse_spec(spec), arch)
