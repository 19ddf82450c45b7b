"""Continuous position bias of Swin Transformer V2 (Liu et al., CVPR 2022, arXiv:2111.09883).

A small MLP per block maps log-spaced 2D relative coordinates to one bias per head, bounded by
16 * sigmoid. Coordinates are offsets divided by (G0 - 1) and scaled by 8, then
sign(x) * log2(1 + |x|) / log2(8), so the trained range spans [-1, 1]. The MLP is evaluated once
per distinct offset and gathered to all token pairs; the class token gets no bias. Native mode
feeds the new (longer) integer offsets, reaching past the trained range; interp mode scales the
offsets by G0/G first, so the new grid stays inside it. Swin V2's cosine attention is not part of
the position encoding and is not used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pebench.encodings.base import Arch, Component, Context, Option, pair_bias, scaled_offsets


def log_spaced(offsets: torch.Tensor, trained_grid: tuple[int, int]) -> torch.Tensor:
    """Swin V2's log-spaced coordinates of float (row, col) offsets (M, 2)."""
    span = offsets.new_tensor([max(g - 1, 1) for g in trained_grid])
    x = offsets / span * 8
    return torch.sign(x) * torch.log2(x.abs() + 1.0) / math.log2(8)


class ContinuousPositionBias(Component):
    name = "cpb"
    summary = "Swin-v2 continuous position bias: MLP over log-spaced relative coordinates"
    paper = "Swin V2, Liu et al. CVPR 2022 (arXiv:2111.09883)"
    options = {"hidden": Option(512, "hidden width of the per-block MLP")}
    native_means = "MLP at the new integer offsets (beyond the trained range)"
    interp_means = "MLP at offsets scaled by G0/G (inside the trained range)"

    def __init__(self, arch: Arch, hidden: int):
        super().__init__(arch)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, arch.num_heads, bias=False))
            for _ in range(arch.depth)
        )

    def attention_bias(self, block, q, k, ctx: Context):
        return self.reuse_at_inference(block, ctx, q, lambda: self._bias(block, ctx, q))

    def _bias(self, block: int, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        offsets = scaled_offsets(ctx, q.device)
        per_offset = 16 * torch.sigmoid(self.mlps[block](log_spaced(offsets, ctx.trained_grid)))  # (M, heads)
        return pair_bias(per_offset.t(), ctx, q.dtype)
