"""Learned relative-position bias table of Swin (Liu et al., ICCV 2021, arXiv:2103.14030) and BEiT
(Bao et al., ICLR 2022, arXiv:2106.08254).

Each block learns one scalar per head for every 2D offset of the trained grid, (2G0-1)^2 entries,
plus BEiT's three entries for class-to-patch, patch-to-class and class-to-class. The bias is added
to the logits through SDPA's ``attn_mask``. Native mode clamps offsets longer than the trained range
to the table's edge; interp mode resizes the table to (2G-1)^2 with BEiT's geometric interpolation
(timm's ``resize_rel_pos_bias_table``, the method LookHere used for its "RPE learned" row).
"""

from __future__ import annotations

import warnings

import torch
from timm.layers import resize_rel_pos_bias_table
from torch import nn

from pebench.encodings.base import Arch, Component, Context, clamped_offset_index, relative_offsets

_CLASS_ENTRIES = 3  # class->patch, patch->class, class->class


class RelativePositionTable(Component):
    name = "relpos_table"
    summary = "learned bias per head for each 2D offset (Swin/BEiT table)"
    paper = "Swin, Liu et al. ICCV 2021 (arXiv:2103.14030); BEiT, Bao et al. ICLR 2022"
    native_means = "offsets outside the trained range clamped to the table edge"
    interp_means = "table resized to (2G-1)^2 with BEiT's geometric interpolation"

    def __init__(self, arch: Arch):
        super().__init__(arch)
        gh, gw = arch.trained_grid
        entries = (2 * gh - 1) * (2 * gw - 1) + _CLASS_ENTRIES
        self.tables = nn.ParameterList(
            nn.Parameter(torch.empty(entries, arch.num_heads)) for _ in range(arch.depth)
        )
        for t in self.tables:
            nn.init.trunc_normal_(t, std=0.02)

    def position_values_at(self, ctx: Context) -> int:
        if ctx.mode == "native" or ctx.at_trained_grid:
            return super().position_values_at(ctx)
        gh, gw = ctx.grid
        return self.arch.depth * self.arch.num_heads * ((2 * gh - 1) * (2 * gw - 1) + _CLASS_ENTRIES)

    def _table_and_index(self, table: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """The table to read and, per patch pair, the entry of its offset."""
        if ctx.mode == "interp" and not ctx.at_trained_grid:
            gh, gw = ctx.grid
            new_shape = ((2 * gh - 1) * (2 * gw - 1) + _CLASS_ENTRIES, table.shape[1])
            with warnings.catch_warnings():  # timm's scipy-free interpolator warns about its own indexing
                warnings.simplefilter("ignore", UserWarning)
                # on the CPU: timm 1.0.29's scipy-free interpolator mixes devices with a CUDA table, and this
                # runs once per grid. The trained grid is square, which timm infers from the table.
                table = resize_rel_pos_bias_table(table.cpu(), ctx.grid, new_shape).to(table.device)
            return table, relative_offsets(ctx.grid, table.device)[1]
        return table, clamped_offset_index(ctx.grid, ctx.trained_grid, table.device)

    def attention_bias(self, block, q, k, ctx):
        return self.reuse_at_inference(block, ctx, q, lambda: self._bias(block, ctx, q))

    def _bias(self, block: int, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        table, index = self._table_and_index(self.tables[block], ctx)
        patch_entries = table.shape[0] - _CLASS_ENTRIES
        bias = table[index].permute(2, 0, 1)  # (heads, N, N)
        p = ctx.num_prefix
        if p:
            heads, n = bias.shape[0], bias.shape[1]
            cls_to_patch, patch_to_cls, cls_to_cls = (e[:, None, None] for e in table[patch_entries:])
            top = torch.cat([cls_to_cls.expand(heads, p, p), cls_to_patch.expand(heads, p, n)], dim=2)
            bottom = torch.cat([patch_to_cls.expand(heads, n, p), bias], dim=2)
            bias = torch.cat([top, bottom], dim=1)
        return bias.unsqueeze(0).to(q.dtype)
