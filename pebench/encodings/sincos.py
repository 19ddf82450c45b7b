"""Fixed 2D sine-cosine absolute embedding (the 2D extension of Vaswani et al., 2017, used by
MoCo v3, Chen et al. 2021, arXiv:2104.02057, and MAE); the "2D sin-cos" row of CPVT's Table 2.

A quarter of the channels encode the row with sines, a quarter with cosines, and likewise for the
column, at frequencies 1 / temperature^(i / (dim/4)). The class token gets no embedding. Because it
is a formula of the coordinates, native mode evaluates it at the new integer positions; interp mode
evaluates it at positions scaled by G0/G, so the new grid spans the trained coordinate range.
"""

from __future__ import annotations

import torch

from pebench.encodings.base import Arch, Component, Context, Option, patch_coordinates
from pebench.errors import PebenchError


def sincos_2d(coords: torch.Tensor, dim: int, temperature: float) -> torch.Tensor:
    """(N, dim) embedding of float (row, col) coordinates (N, 2)."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, device=coords.device, dtype=torch.float32) / quarter)
    rows = coords[:, 0:1] * omega
    cols = coords[:, 1:2] * omega
    return torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], dim=1)


class SinCos2D(Component):
    name = "sincos"
    summary = "fixed 2D sine-cosine absolute embedding"
    paper = "2D sin-cos as in MoCo v3 (Chen et al. 2021, arXiv:2104.02057); CPVT Table 2"
    options = {"temperature": Option(10000.0, "base of the frequency ladder")}
    native_means = "formula at the new integer positions"
    interp_means = "formula at positions scaled by G0/G"

    def __init__(self, arch: Arch, temperature: float):
        super().__init__(arch)
        if arch.dim % 4:
            raise PebenchError(f"sincos needs an embedding dim divisible by 4, got {arch.dim}")
        self.temperature = temperature

    def add_to_tokens(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        emb = sincos_2d(patch_coordinates(ctx, x.device), self.arch.dim, self.temperature).to(x.dtype)
        prefix, patches = x[:, : ctx.num_prefix], x[:, ctx.num_prefix :]
        return torch.cat([prefix, patches + emb], dim=1)
