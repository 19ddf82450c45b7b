"""2D ALiBi: attention with linear biases (Press et al., ICLR 2022, arXiv:2108.12409) extended to
images with the Euclidean patch distance, as evaluated by LookHere (Fuller et al., NeurIPS 2024,
arXiv:2405.13985).

Each head h subtracts slope_h * distance(query patch, key patch) from its logits, with ALiBi's
geometric slopes 2^(-8 (h+1) / heads). Nothing is learned. The class token gets no bias. Native mode
uses distances between the new integer positions; interp mode scales them by G0/G. (LookHere tuned
a distance scale per test resolution; pebench reports both modes untuned.)
"""

from __future__ import annotations

import torch

from pebench.encodings.base import Component, Context, pad_prefix, scaled_relative_offsets


def alibi_slopes(num_heads: int, device: torch.device | None = None) -> torch.Tensor:
    return 2.0 ** (-8.0 * torch.arange(1, num_heads + 1, device=device, dtype=torch.float32) / num_heads)


class ALiBi2D(Component):
    name = "alibi"
    summary = "2D ALiBi: per-head slope times Euclidean patch distance, subtracted from logits"
    paper = "ALiBi, Press et al. ICLR 2022 (arXiv:2108.12409); 2D as in LookHere, Fuller et al. 2024"
    native_means = "distances between the new integer positions"
    interp_means = "distances scaled by G0/G"

    def attention_bias(self, block, q, k, ctx: Context):
        return self.reuse_at_inference("every block", ctx, q, lambda: self._bias(ctx, q))

    def _bias(self, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        offsets, index = scaled_relative_offsets(ctx, q.device)
        distance = offsets.norm(dim=1)[index]  # (N, N)
        bias = -alibi_slopes(self.arch.num_heads, q.device)[:, None, None] * distance
        return pad_prefix(bias, ctx.num_prefix).unsqueeze(0).to(q.dtype)
