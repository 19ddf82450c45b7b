"""Learned relative-position bias table of Swin (Liu et al., ICCV 2021, arXiv:2103.14030) and BEiT
(Bao et al., ICLR 2022, arXiv:2106.08254).

Each block learns one scalar per head for every 2D offset of the trained grid, (2G0-1)^2 entries,
plus BEiT's three entries for class-to-patch, patch-to-class and class-to-class. The bias is added
to the logits through SDPA's ``attn_mask``. Native mode clamps offsets longer than the trained range
to the table's edge; interp mode resizes the table to (2G-1)^2 with BEiT's geometric interpolation
(timm's ``resize_rel_pos_bias_table``, the method LookHere used for its "RPE learned" row).
scale=S reads the table bilinearly at the offsets multiplied by S, clamped to its edge: S=1 is
native exactly, but S=G0/G is not interp (bilinear reading of the trained table, not BEiT's
geometric resize), so a tuned S is searched around both.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from timm.layers import resize_rel_pos_bias_table
from torch import nn

from pebench.encodings.base import (
    Arch,
    Component,
    Context,
    clamped_offset_entries,
    grid_offsets,
    pair_bias,
    scaled_offsets,
)

_CLASS_ENTRIES = 3  # class->patch, patch->class, class->class


class RelativePositionTable(Component):
    name = "relpos_table"
    summary = "learned bias per head for each 2D offset (Swin/BEiT table)"
    paper = "Swin, Liu et al. ICCV 2021 (arXiv:2103.14030); BEiT, Bao et al. ICLR 2022"
    native_means = "offsets outside the trained range clamped to the table edge"
    interp_means = "table resized to (2G-1)^2 with BEiT's geometric interpolation"
    scale_means = "table read bilinearly at offsets multiplied by S, clamped to its edge (S=1: native)"

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
        if ctx.mode != "interp" or ctx.at_trained_grid:
            return super().position_values_at(ctx)
        gh, gw = ctx.grid
        return self.arch.depth * self.arch.num_heads * ((2 * gh - 1) * (2 * gw - 1) + _CLASS_ENTRIES)

    def _per_offset(self, table: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(heads, M): the bias of every offset of ``ctx.grid`` (as :func:`grid_offsets` orders them)."""
        patch_rows = table[:-_CLASS_ENTRIES]
        if ctx.scale is not None:
            return _read_bilinear(patch_rows, ctx)
        if ctx.mode == "interp" and not ctx.at_trained_grid:
            gh, gw = ctx.grid
            new_shape = ((2 * gh - 1) * (2 * gw - 1) + _CLASS_ENTRIES, table.shape[1])
            with warnings.catch_warnings():  # timm's scipy-free interpolator warns about its own indexing
                warnings.simplefilter("ignore", UserWarning)
                # on the CPU: timm 1.0.29's scipy-free interpolator mixes devices with a CUDA table, and this
                # runs once per grid. The trained grid is square, which timm infers from the table.
                resized = resize_rel_pos_bias_table(table.cpu(), ctx.grid, new_shape).to(table.device)
            return resized[:-_CLASS_ENTRIES].t()  # rows are the new grid's offsets, row-major
        return patch_rows[clamped_offset_entries(grid_offsets(ctx.grid, table.device), ctx.trained_grid)].t()

    def attention_bias(self, block, q, k, ctx):
        return self.reuse_at_inference(block, ctx, q, lambda: self._bias(block, ctx, q))

    def _bias(self, block: int, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        table = self.tables[block]
        bias = pair_bias(self._per_offset(table, ctx), ctx, q.dtype)  # (1, heads, T, T)
        p = ctx.num_prefix
        if p:
            cls_to_patch, patch_to_cls, cls_to_cls = (e.to(q.dtype)[:, None, None] for e in table[-_CLASS_ENTRIES:])
            bias[0, :, :p, p:] = cls_to_patch
            bias[0, :, p:, :p] = patch_to_cls
            bias[0, :, :p, :p] = cls_to_cls
        return bias


def _read_bilinear(patch_rows: torch.Tensor, ctx: Context) -> torch.Tensor:
    """(heads, M): the trained table, seen as a (2G0-1) x (2G0-1) image per head, read bilinearly at
    every scaled offset; offsets past the trained range read the edge."""
    th, tw = ctx.trained_grid
    heads = patch_rows.shape[1]
    image = patch_rows.t().reshape(1, heads, 2 * th - 1, 2 * tw - 1)
    offsets = scaled_offsets(ctx, patch_rows.device)
    # align_corners: offset -(G0-1) is the first entry's centre, +(G0-1) the last one's
    where = torch.stack([offsets[:, 1] / max(tw - 1, 1), offsets[:, 0] / max(th - 1, 1)], dim=1)
    values = F.grid_sample(image, where[None, None].to(image.dtype), mode="bilinear", padding_mode="border",
                           align_corners=True)  # (1, heads, 1, M)
    return values[0, :, 0]
