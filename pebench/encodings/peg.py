"""Conditional position encoding by a Positional Encoding Generator, PEG (Chu et al., "Conditional
Positional Encodings for Vision Transformers", ICLR 2023, arXiv:2102.10882, CPVT).

After the chosen blocks, the patch tokens are laid back on their 2D grid and a depthwise k x k
convolution with zero padding (k-1)/2 is added to them (a residual); the class token is left
untouched. The zero padding at the borders is what lets the convolution infer absolute position.
CPVT's default is one PEG after block 0; its best variant uses blocks 0-4. ``separable`` appends a
pointwise 1x1 convolution (depthwise-separable); ``gap`` drops the class token and classifies the
average of the patch tokens (CPVT-GAP). A convolution runs on any grid, so native and interp are the
same computation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pebench.encodings.base import (
    BLOCKS_HELP,
    Arch,
    Component,
    Context,
    Option,
    check_blocks_text,
    resolve_blocks,
)


def _odd(kernel: int) -> str | None:
    return None if kernel >= 1 and kernel % 2 else "kernel must be odd (3, 5, 7) to pad symmetrically"


class PositionEncodingGenerator(Component):
    name = "peg"
    summary = "CPVT's PEG: zero-padded depthwise conv on the patch grid after chosen blocks"
    paper = "CPVT, Chu et al. ICLR 2023 (arXiv:2102.10882)"
    options = {
        "kernel": Option(3, "conv kernel size k (padding (k-1)/2)", validate=_odd),
        "blocks": Option("0", BLOCKS_HELP, validate=check_blocks_text),
        "separable": Option(False, "depthwise k x k followed by a pointwise 1x1 conv"),
        "gap": Option(False, "global-average-pool head instead of the class token (CPVT-GAP)"),
    }
    interp_is_native = True
    native_means = "the convolution runs over the bigger grid"
    interp_means = "same as native: nothing to interpolate"
    scale_means = None

    @classmethod
    def keeps_class_token(cls, opts: dict[str, Any]) -> bool:
        return not opts["gap"]

    def __init__(self, arch: Arch, kernel: int, blocks: str, separable: bool, gap: bool):
        super().__init__(arch)
        self.blocks = resolve_blocks(blocks, arch.depth, self.name)
        dim = arch.dim

        def generator() -> nn.Module:
            depthwise = nn.Conv2d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim)
            return nn.Sequential(depthwise, nn.Conv2d(dim, dim, 1)) if separable else nn.Sequential(depthwise)

        self.generators = nn.ModuleDict({str(b): generator() for b in self.blocks})

    def after_block(self, block: int, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        if block not in self.blocks:
            return x
        p = ctx.num_prefix
        prefix, patches = x[:, :p], x[:, p:]
        grid = patches.transpose(1, 2).unflatten(2, ctx.grid)  # (B, dim, gh, gw)
        grid = self.generators[str(block)](grid) + grid
        return torch.cat([prefix, grid.flatten(2).transpose(1, 2)], dim=1)
