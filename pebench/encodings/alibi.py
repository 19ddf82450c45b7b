"""2D ALiBi: attention with linear biases (Press et al., ICLR 2022, arXiv:2108.12409) extended to
images with the Euclidean patch distance, as evaluated by LookHere (Fuller et al., NeurIPS 2024,
arXiv:2405.13985).

Each head h subtracts slope_h * distance(query patch, key patch) from its logits. Nothing is
learned. The class token gets no bias. The slopes follow ALiBi's own schedule for any head count:
for H a power of two, the geometric sequence 2^(-8/H), 2^(-16/H), ..., 2^(-8); otherwise the
sequence of the power of two P just below H, followed by every other slope of the sequence for 2P
(3 heads: 1/16, 1/256, 1/4). ``slopes=power2`` keeps 2^(-8(h+1)/H) for every H, which equals
ALiBi's schedule only when H is a power of two; pebench used it before this option existed, and
it is kept so that checkpoints trained with it load and run as they were trained.

Native mode uses distances between the new integer positions; interp mode scales them by G0/G;
scale=S multiplies them by S, which is the same as multiplying every slope by S, the knob LookHere
tuned per test resolution.
"""

from __future__ import annotations

import math

import torch

from pebench.encodings.base import Component, Context, OffsetBias, Option, pair_bias, position_scale_on, scaled_offsets


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's slopes (the authors' ``get_slopes``) for any head count."""
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    below = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(below) + alibi_slopes(2 * below)[0::2][: num_heads - below]


def power2_slopes(num_heads: int) -> list[float]:
    """2^(-8(h+1)/H) for every head count H (ALiBi's schedule only when H is a power of two)."""
    return [2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)]


SLOPES = {"alibi": alibi_slopes, "power2": power2_slopes}


class ALiBi2D(Component):
    name = "alibi"
    summary = "2D ALiBi: per-head slope times Euclidean patch distance, subtracted from logits"
    paper = "ALiBi, Press et al. ICLR 2022 (arXiv:2108.12409); 2D as in LookHere, Fuller et al. 2024"
    options = {"slopes": Option("alibi", "ALiBi's schedule for any head count, or 2^(-8(h+1)/H) (older checkpoints)",
                                choices=tuple(SLOPES))}
    native_means = "distances between the new integer positions"
    interp_means = "distances scaled by G0/G"
    scale_means = "distances multiplied by S (= every slope times S)"

    def __init__(self, arch, slopes: str):
        super().__init__(arch)
        self.register_buffer("slopes", torch.tensor(SLOPES[slopes](arch.num_heads)), persistent=False)

    def attention_bias(self, block, q, k, ctx: Context):
        return self.reuse_at_inference("every block", ctx, q, lambda: self._bias(ctx, q))

    def _bias(self, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        distance = scaled_offsets(ctx, q.device).norm(dim=1)  # (M,)
        return pair_bias(-self.slopes[:, None] * distance, ctx, q.dtype)

    def bias_by_offset(self, block, ctx: Context) -> OffsetBias:
        """The same bias computed in a fused kernel: issue 30 measured a 2D ALiBi score_mod on an H200 at 1.64 ms
        per call against 1.76 ms for SDPA reading the bias (4,097 tokens, batch 8, 6 heads)."""
        axis, slopes = position_scale_on(ctx, self.slopes.device), self.slopes
        return OffsetBias(lambda head, dr, dc: -slopes[head] * torch.hypot(dr * axis[0], dc * axis[1]))
