"""2D rotary position embedding for ViT, RoPE-ViT (Heo et al., "Rotary Position Embedding for Vision
Transformer", ECCV 2024, arXiv:2403.13298).

Queries and keys of the patch tokens are rotated pairwise by angles t_x * f_x + t_y * f_y, so their
dot product depends only on the relative offset. ``axial``: fixed frequencies 1/theta^(4i/head_dim),
half of the pairs turning with the column and half with the row (theta 100). ``mixed``: learned
frequencies per head and per block, initialised with a random direction per head (theta 10). The
class token is not rotated. Native mode rotates by the new integer positions; interp mode by
positions scaled by G0/G. timm's RoPE-ViT helpers (``init_random_2d_freqs``, ``get_mixed_freqs``,
``apply_rot_embed_cat``) do the arithmetic; axial is mixed with fixed, axis-aligned frequencies.
"""

from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import apply_rot_embed_cat, get_mixed_freqs, init_random_2d_freqs
from torch import nn

from pebench.encodings.base import Arch, Component, Context, Option, patch_coordinates
from pebench.errors import PebenchError

PAPER_THETA = {"axial": 100.0, "mixed": 10.0}


def axial_freqs(head_dim: int, theta: float) -> torch.Tensor:
    """(2, 1, 1, head_dim/2) axis-aligned frequencies: x turns the first half of the pairs, y the second."""
    mag = 1.0 / theta ** (torch.arange(0, head_dim, 4, dtype=torch.float32) / head_dim)
    zeros = torch.zeros_like(mag)
    return torch.stack([torch.cat([mag, zeros]), torch.cat([zeros, mag])])[:, None, None, :]


class Rotary2D(Component):
    name = "rope"
    summary = "2D rotary embedding of queries and keys (axial fixed or mixed learned frequencies)"
    paper = "RoPE-ViT, Heo et al. ECCV 2024 (arXiv:2403.13298)"
    options = {
        "variant": Option("axial", "fixed axis-aligned or learned mixed frequencies", choices=("axial", "mixed")),
        "theta": Option(0.0, "frequency base; 0 = the paper's (axial 100, mixed 10)"),
    }
    native_means = "rotation angles at the new integer positions"
    interp_means = "rotation angles at positions scaled by G0/G"

    def __init__(self, arch: Arch, variant: str, theta: float):
        super().__init__(arch)
        if arch.head_dim % 4:
            raise PebenchError(f"rope needs a head dim divisible by 4, got {arch.head_dim}")
        theta = theta or PAPER_THETA[variant]
        if variant == "mixed":
            self.freqs = nn.Parameter(init_random_2d_freqs(arch.head_dim, arch.depth, arch.num_heads, theta))
        else:
            self.register_buffer("freqs", axial_freqs(arch.head_dim, theta), persistent=False)

    def _angles(self, index: int, ctx: Context, device: torch.device) -> torch.Tensor:
        coords = patch_coordinates(ctx, device)
        freqs = self.freqs[:, index]  # (2, heads or 1, head_dim/2)
        return get_mixed_freqs(freqs, t_x=coords[:, 1], t_y=coords[:, 0])  # (heads or 1, N, 2 * head_dim)

    def rotate(self, block, q, k, ctx: Context):
        index = block if self.freqs.shape[1] > 1 else 0  # mixed: per block; axial: shared by all blocks
        emb = self.reuse_at_inference(index, ctx, q, lambda: self._angles(index, ctx, q.device))
        p = ctx.num_prefix
        q = torch.cat([q[:, :, :p], apply_rot_embed_cat(q[:, :, p:], emb)], dim=2)
        k = torch.cat([k[:, :, :p], apply_rot_embed_cat(k[:, :, p:], emb)], dim=2)
        return q, k
