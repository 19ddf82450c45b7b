"""Learnable 2D spatial prior of SP-ViT (Zhou et al., "SP-ViT: Learning 2D Spatial Priors for
Vision Transformers", BMVC 2022, arXiv:2206.07662).

In each chosen block, a per-head MLP (2 -> hidden -> 1, hidden 32 in the paper's best setting)
maps the relative (row, col) offset of a patch pair, divided by (G0 - 1), to a prior that
multiplies the scaled q.k score before the softmax. pebench parametrises the prior as 1 + MLP with
the last layer zero-initialised, so training starts from plain attention; class-token pairs get a
prior of 1. A multiplicative prior cannot be expressed as SDPA's additive mask, so these blocks use
explicit attention. By default the prior is used in all blocks but the last. Native mode evaluates
the MLP at the new integer offsets; interp mode at offsets scaled by G0/G.
"""

from __future__ import annotations

import torch
from torch import nn

from pebench.encodings.base import (
    BLOCKS_HELP,
    Arch,
    Component,
    Context,
    Option,
    check_blocks_text,
    pair_bias,
    resolve_blocks,
    scaled_offsets,
)


class HeadwiseMLP(nn.Module):
    """One independent 2 -> hidden -> 1 MLP per head, evaluated together."""

    def __init__(self, num_heads: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(2, num_heads * hidden)
        self.act = nn.GELU()
        self.fc2_weight = nn.Parameter(torch.zeros(num_heads, hidden))
        self.fc2_bias = nn.Parameter(torch.zeros(num_heads))
        self.num_heads = num_heads

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.fc1(coords)).unflatten(-1, (self.num_heads, -1))  # (M, heads, hidden)
        return (hidden * self.fc2_weight).sum(-1) + self.fc2_bias  # (M, heads)


class SpatialPrior(Component):
    name = "spvit"
    summary = "SP-ViT learned 2D spatial prior multiplying the attention scores"
    paper = "SP-ViT, Zhou et al. BMVC 2022 (arXiv:2206.07662)"
    options = {
        "hidden": Option(32, "hidden width of each head's MLP"),
        "blocks": Option("all-but-last", BLOCKS_HELP, validate=check_blocks_text),
    }
    native_means = "prior MLP at the new integer offsets"
    interp_means = "prior MLP at offsets scaled by G0/G"

    def __init__(self, arch: Arch, hidden: int, blocks: str):
        super().__init__(arch)
        self.blocks = resolve_blocks(blocks, arch.depth, self.name)
        self.priors = nn.ModuleDict({str(b): HeadwiseMLP(arch.num_heads, hidden) for b in self.blocks})

    def explicit_attention(self, block: int) -> bool:
        return block in self.blocks

    def score_multiplier(self, block, ctx: Context, like: torch.Tensor):
        if block not in self.blocks:
            return None
        return self.reuse_at_inference(block, ctx, like, lambda: self._prior(block, ctx, like.dtype))

    def _prior(self, block: int, ctx: Context, dtype: torch.dtype) -> torch.Tensor:
        mlp = self.priors[str(block)]
        offsets = scaled_offsets(ctx, mlp.fc1.weight.device)
        span = offsets.new_tensor([max(g - 1, 1) for g in ctx.trained_grid])
        prior = 1.0 + mlp(offsets / span)  # (M, heads)
        return pair_bias(prior.t(), ctx, dtype, fill=1.0)
