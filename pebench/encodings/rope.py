"""2D rotary position embedding for ViT, RoPE-ViT (Heo et al., "Rotary Position Embedding for Vision
Transformer", ECCV 2024, arXiv:2403.13298).

Queries and keys of the patch tokens are rotated pairwise by angles t_x * f_x + t_y * f_y, so their
dot product depends only on the relative offset. ``axial``: fixed frequencies 1/theta^(4i/head_dim),
half of the pairs turning with the column and half with the row (theta 100). ``mixed``: learned
frequencies per head and per block, initialised with a random direction per head (theta 10). The
class token is not rotated. Native mode rotates by the new integer positions; interp mode by
positions scaled by G0/G. Mixed frequencies start from timm's RoPE-ViT ``init_random_2d_freqs``;
axial is mixed with fixed, axis-aligned frequencies. Each pair of channels is rotated as one complex
multiplication by the unit phasors of its angles (the class token's phasor is 1), which is timm's
``apply_rot_embed_cat`` in one pass over q and k instead of several (tested equal). With fused kernels
(:mod:`pebench.kernels`) the same products, written out in real arithmetic, run as one compiled kernel for q
and k together, reading the phasors' cosines and sines in place, where the eager rotation launches three
kernels for each (a float32 copy, the product, the cast back); issue 30 measured RoPE at 1.36x ``none``'s
time at 224 px on an H200, which benchmarks/gpu_check.py measures again with and without fusion.
"""

from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import init_random_2d_freqs
from torch import nn

from pebench import kernels
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

    def _phasors(self, index: int, ctx: Context, device: torch.device) -> torch.Tensor:
        """(heads or 1, prefix + N, head_dim/2) complex unit phasors; 1 for the prefix tokens."""
        coords = patch_coordinates(ctx, device)
        freqs = self.freqs[:, index].float()  # (2, heads or 1, head_dim/2)
        angles = coords[:, 1, None] * freqs[0][:, None, :] + coords[:, 0, None] * freqs[1][:, None, :]
        phasors = torch.polar(torch.ones_like(angles), angles)
        prefix = torch.ones((*angles.shape[:-2], ctx.num_prefix, angles.shape[-1]), dtype=phasors.dtype,
                            device=device)
        return torch.cat([prefix, phasors], dim=-2)

    def rotate(self, block, q, k, ctx: Context):
        index = block if self.freqs.shape[1] > 1 else 0  # mixed: per block; axial: shared by all blocks
        phasors = self.reuse_at_inference(index, ctx, q, lambda: self._phasors(index, ctx, q.device))
        if ctx.fused_kernels:
            return kernels.fused_or_reference(
                lambda: kernels.on(q.device, rotate_both)(q, k, torch.view_as_real(phasors)),
                lambda: (rotate_pairs(q, phasors), rotate_pairs(k, phasors)))
        return rotate_pairs(q, phasors), rotate_pairs(k, phasors)


def rotate_pairs(x: torch.Tensor, phasors: torch.Tensor) -> torch.Tensor:
    """Channels (2i, 2i+1) of ``x`` rotated by the phasors' angles, in float32, returned in x's dtype."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * phasors).flatten(-2).to(x.dtype)


def rotate_both(q: torch.Tensor, k: torch.Tensor, cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rotate_pairs` of q and k in real arithmetic, ``cos_sin`` being the phasors as real (..., 2)
    pairs: the form a compiler fuses into one kernel (complex tensors it would not)."""
    cos, sin = cos_sin.unbind(-1)

    def rotated(x: torch.Tensor) -> torch.Tensor:
        even, odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).to(x.dtype)

    return rotated(q), rotated(k)
