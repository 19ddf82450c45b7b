"""LieRE for pebench: Lie group relative position encodings (Ostmeier et al., "LieRE: Generalizing Rotary
Position Encodings", ICML 2025, arXiv:2406.10322; code github.com/StanfordMIMI/LieRE).

RoPE rotates pairs of channels by angles linear in the position; LieRE rotates the whole head by
R(p) = exp(p_row * A_row + p_col * A_col), where A_row and A_col are learned skew-symmetric generators
(head_dim x head_dim), so R(p) is a dense rotation. As in the authors' code, each generator is the strictly
upper triangle of a raw parameter drawn uniformly from [0, 2 pi) minus its transpose, and the rotation is
``torch.matrix_exp`` of the position-weighted sum, computed in float32. Here each block has its own pair of
generators, shared by its heads; the class token is not rotated.

Positions are patch coordinates divided by the trained grid's side (the trained image spans [0, 1) on each
axis; the authors' normalisation is left to their code). pebench's modes then mean what they mean for
RoPE: native rotates by the new integer positions (a 384-px grid reaches 24/14 of the trained range),
interp by positions scaled by G0/G (back within the trained range), scale=S by positions times S.
Because the generators need not commute, exp(A p) exp(A q)^T depends on p and q, not only on p - q:
LieRE is relative only approximately, which is what this plugin lets pebench measure beside RoPE.

``block=B`` (default 0: the whole head) restricts each generator to B x B blocks on its diagonal, so the
rotation is block-diagonal (B = 2 is RoPE with learned angles per pair of channels and axis).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pebench import register_encoding
from pebench.encodings.base import Component, Context, Option, patch_coordinates

__version__ = "0.1.0"


def _check_block(value: int) -> str | None:
    return None if value >= 0 and (value == 0 or value % 2 == 0) else "must be 0 (the whole head) or an even size"


class LieRE(Component):
    name = "liere"
    summary = "LieRE: queries and keys rotated by exp of learned skew-symmetric generators times the position"
    paper = "LieRE, Ostmeier et al. ICML 2025 (arXiv:2406.10322)"
    options = {"block": Option(0, "size of the diagonal blocks the generators act on; 0 = the whole head",
                               validate=_check_block)}
    native_means = "rotations at the new integer positions (beyond the trained range)"
    interp_means = "positions scaled by G0/G (within the trained range)"

    def __init__(self, arch, block: int):
        super().__init__(arch)
        head_dim = arch.head_dim
        self.block = block or head_dim
        if head_dim % self.block:
            raise ValueError(f"block {block} does not divide the head size {head_dim}")
        raw = torch.rand(arch.depth, 2, head_dim // self.block, self.block, self.block) * 2 * math.pi
        self.generators = nn.Parameter(raw)

    def rotations(self, block: int, ctx: Context, device: torch.device) -> torch.Tensor:
        """(N, head_dim, head_dim) float32 rotation of every patch position of ``ctx.grid``."""
        positions = patch_coordinates(ctx, device) / torch.tensor(ctx.trained_grid, device=device)  # (N, 2)
        return lie_rotations(self.generators[block], positions)

    def rotate(self, block, q, k, ctx: Context):
        rotations = self.reuse_at_inference(block, ctx, q, lambda: self.rotations(block, ctx, q.device))
        return rotate_patches(q, rotations, ctx.num_prefix), rotate_patches(k, rotations, ctx.num_prefix)


def lie_rotations(raw: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """exp(p_row * A_row + p_col * A_col) for each position (N, 2), where A are the skew-symmetric generators
    made of ``raw`` (2, blocks, b, b): (N, head_dim, head_dim), float32."""
    upper = torch.triu(raw, diagonal=1)
    skew = upper - upper.transpose(-1, -2)
    weighted = torch.einsum("na,akij->nkij", positions.float(), skew.float())
    blocks = torch.matrix_exp(weighted)  # (N, blocks, b, b)
    return blocks[:, 0] if blocks.shape[1] == 1 else _block_diagonal(blocks)


def _block_diagonal(blocks: torch.Tensor) -> torch.Tensor:
    """(N, blocks, b, b) -> (N, blocks * b, blocks * b) with the blocks on the diagonal."""
    n, count, b, _ = blocks.shape
    out = blocks.new_zeros(n, count * b, count * b)
    for i in range(count):
        out[:, i * b : (i + 1) * b, i * b : (i + 1) * b] = blocks[:, i]
    return out


def rotate_patches(x: torch.Tensor, rotations: torch.Tensor, prefix: int) -> torch.Tensor:
    """The patch tokens of ``x`` (B, heads, T, head_dim) rotated, the prefix tokens as they are."""
    patches = torch.einsum("nij,bhnj->bhni", rotations, x[:, :, prefix:].float()).to(x.dtype)
    return torch.cat([x[:, :, :prefix], patches], dim=2)


# `--plugin pebench_liere` imports this module; the entry point (pyproject.toml) finds the same class
register_encoding(LieRE)
