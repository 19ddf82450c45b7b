"""Learned absolute position embedding of ViT (Dosovitskiy et al., 2021, arXiv:2010.11929) and
DeiT (Touvron et al., 2021, arXiv:2012.12877).

One learned vector per grid cell of the training resolution (plus one for the class token),
added to the tokens after patch embedding. It has no values for cells outside the trained grid,
so native mode is not applicable at a new resolution; interp mode resamples the patch grid
bicubically with antialiasing exactly as timm does for ``dynamic_img_size=True``.

``init=random`` is ViT/DeiT's truncated normal (std 0.02). ``init=sincos`` starts the grid from the
2D sine-cosine values (MAE's fixed grid, He et al. 2022, arXiv:2111.06377) and learns from there: on
small budgets a random grid has to discover that neighbouring cells are alike before any position
can be read from it, which the shipped zoo's training budget does not allow (README).
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from pebench.encodings.base import Arch, Component, Context, Option, patch_coordinates
from pebench.encodings.sincos import SinCos2D, sincos_2d

#: the parameter's name in timm's VisionTransformer, used for state dicts
TIMM_NAME = "pos_embed"


class LearnedAbsolute(Component):
    name = "ape"
    summary = "learned absolute embedding, one vector per trained grid cell"
    paper = "ViT, Dosovitskiy et al. 2021 (arXiv:2010.11929); DeiT, Touvron et al. 2021"
    native_means = "not applicable off the trained grid: a learned grid has no values there"
    interp_means = "patch grid resampled bicubically (antialiased) to the new grid, as timm/DeiT"
    scale_means = None
    scale_unsupported = "a learned APE grid can only be resampled to the new grid (interp), not scaled"
    options = {"init": Option("random", "starting grid: truncated normal (DeiT) or 2D sin-cos values",
                              choices=("random", "sincos"))}

    def __init__(self, arch: Arch, init: str):
        super().__init__(arch)
        gh, gw = arch.trained_grid
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.num_prefix + gh * gw, arch.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if init == "sincos":
            trained = Context(grid=arch.trained_grid, trained_grid=arch.trained_grid, mode="native",
                              num_prefix=arch.num_prefix)
            coords = patch_coordinates(trained, self.pos_embed.device)
            with torch.no_grad():
                self.pos_embed[0, arch.num_prefix :] = sincos_2d(coords, arch.dim,
                                                                 SinCos2D.options["temperature"].default)

    def native_unsupported(self, ctx: Context) -> str | None:
        gh, gw = ctx.trained_grid
        return f"learned APE exists only on its trained {gh}x{gw} grid; use interp mode"

    def position_values_at(self, ctx: Context) -> int:
        if ctx.mode == "native":
            return self.pos_embed.numel()
        return (ctx.num_prefix + ctx.grid[0] * ctx.grid[1]) * self.arch.dim

    def grid_embedding(self, ctx: Context) -> torch.Tensor:
        """The embedding for ``ctx.grid``, derived from (never written into) the trained parameter."""
        return resample_abs_pos_embed(
            self.pos_embed,
            new_size=list(ctx.grid),
            old_size=list(ctx.trained_grid),
            num_prefix_tokens=ctx.num_prefix,
        )

    def add_to_tokens(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return x + self.grid_embedding(ctx)
