"""Image relative position encoding, iRPE (Wu, Peng et al., "Rethinking and Improving Relative
Position Encoding for Vision Transformer", ICCV 2021, arXiv:2107.14222), and Shaw-style clipped
relative positions (Shaw et al., 2018, arXiv:1803.02155), the "RPE" row of CPVT's comparison.

Every (query, key) patch pair falls into a bucket computed from its 2D offset:

* ``euclidean``: piecewise index of the rounded Euclidean distance;
* ``quant``: piecewise index of the squared Euclidean distance;
* ``cross``: horizontal and vertical offsets bucketed separately, their two terms added;
* ``product``: one bucket per (row bucket, column bucket) pair;
* ``clip``: Shaw: each axis offset clipped to [-K, K], one bucket per (row, column) pair.

The piecewise index keeps exact offsets up to alpha and compresses longer ones logarithmically up
to beta (alpha, beta, gamma = 1, 2, 8 times ``ratio``; the paper's default ratio is 1.9). The class
token has a bucket of its own. In ``bias`` mode a bucket holds a learned scalar per head; in
``contextual`` mode it holds a vector r that interacts with the queries (keys: q.r added to the
logits), with the keys (queries: k.r), or is summed into the output weighted by attention
(values). Only the value term needs the attention probabilities, so only it leaves fused SDPA.

Native mode keeps the trained buckets: offsets longer than anything seen in training fall into
the saturated outer buckets, exactly as during training. Interp mode multiplies the offsets by
G0/G before bucketing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pebench.encodings.base import (
    Arch,
    Component,
    Context,
    Gathered,
    Option,
    narrowest_index_dtype,
    pair_bias,
    scaled_offsets,
    with_dense,
)
from pebench.errors import PebenchError

METHODS = ("product", "cross", "euclidean", "quant", "clip")


def piecewise_index(x: torch.Tensor, alpha: float, beta: float, gamma: float) -> torch.Tensor:
    """iRPE's g(x): round(x) for |x| <= alpha, else sign(x) * min(beta, round(alpha + ln(|x|/alpha) /
    ln(gamma/alpha) * (beta - alpha))), truncated to an integer bucket."""
    x = x.float()
    far = torch.sign(x) * torch.clamp(
        torch.round(alpha + torch.log(x.abs().clamp(min=alpha) / alpha) / math.log(gamma / alpha) * (beta - alpha)),
        max=beta,
    )
    return torch.where(x.abs() <= alpha, torch.round(x), far).long()


def offset_buckets(offsets: torch.Tensor, method: str, ratio: float, clip: int) -> tuple[torch.Tensor, int]:
    """Bucket ids (planes, M) for float (row, col) offsets (M, 2), and the number of buckets."""
    alpha, beta, gamma = ratio, 2 * ratio, 8 * ratio
    beta_int = int(beta)
    side = 2 * beta_int + 1
    dr, dc = offsets[:, 0], offsets[:, 1]
    if method == "euclidean":
        distance = torch.sqrt(dr**2 + dc**2).round()
        return piecewise_index(distance, alpha, beta, gamma)[None], beta_int + 1
    if method == "quant":
        return piecewise_index(dr**2 + dc**2, alpha, beta, gamma)[None], beta_int + 1
    if method == "clip":
        r = torch.round(dr).clamp(-clip, clip).long() + clip
        c = torch.round(dc).clamp(-clip, clip).long() + clip
        return (r * (2 * clip + 1) + c)[None], (2 * clip + 1) ** 2
    r = piecewise_index(dr, alpha, beta, gamma) + beta_int
    c = piecewise_index(dc, alpha, beta, gamma) + beta_int
    if method == "product":
        return (r * side + c)[None], side * side
    return torch.stack([r, c + side]), 2 * side  # cross


def bucket_index(ctx: Context, method: str, ratio: float, clip: int, device: torch.device,
                 dtype: torch.dtype = torch.long) -> torch.Tensor:
    """(planes, T, T) bucket of every token pair in ``dtype``; the class token's bucket is the last one."""
    buckets, count = offset_buckets(scaled_offsets(ctx, device), method, ratio, clip)
    return pair_bias(buckets, ctx, dtype, fill=count)[0]


def num_buckets(method: str, ratio: float, clip: int) -> int:
    """Buckets of a method including the class token's."""
    return offset_buckets(torch.zeros(1, 2), method, ratio, clip)[1] + 1


class ImageRelativePosition(Component):
    name = "rpe"
    summary = "iRPE: bucketed 2D relative positions, bias or contextual (q/k/v); Shaw clip"
    paper = "iRPE, Wu et al. ICCV 2021 (arXiv:2107.14222); Shaw et al. 2018 (arXiv:1803.02155)"
    options = {
        "mode": Option("contextual", "scalar bias per bucket, or vectors interacting with q/k/v",
                       choices=("contextual", "bias")),
        "method": Option("product", "how 2D offsets map to buckets", choices=METHODS),
        "ratio": Option(1.9, "piecewise index scale: alpha, beta, gamma = 1, 2, 8 x ratio"),
        "on": Option("k", "where contextual terms apply: any of q, k, v (bias mode: k)",
                     choices=("k", "q", "v", "qk", "kv", "qv", "qkv")),
        "shared_heads": Option(True, "one table shared by all heads"),
        "clip": Option(8, "K of method=clip: offsets clipped to [-K, K] per axis"),
    }
    native_means = "trained buckets; offsets beyond the trained range saturate as in training"
    interp_means = "offsets scaled by G0/G before bucketing"

    def __init__(self, arch: Arch, mode: str, method: str, ratio: float, on: str, shared_heads: bool,
                 clip: int):
        super().__init__(arch)
        if mode == "bias" and on != "k":
            raise PebenchError("rpe: bias mode adds one scalar per bucket to the logits; use on=k "
                               "or mode=contextual")
        if ratio <= 0 or clip < 1:
            raise PebenchError("rpe: ratio must be > 0 and clip >= 1")
        self.mode, self.method, self.ratio, self.on, self.clip = mode, method, ratio, on, clip
        self.scale = arch.head_dim**-0.5
        heads = 1 if shared_heads else arch.num_heads
        buckets = num_buckets(method, ratio, clip)
        self.narrow_index_dtype = narrowest_index_dtype(buckets)
        if mode == "bias":
            shape: tuple[int, ...] = (heads, buckets)
            self.tables = nn.ModuleDict({"k": _per_block(arch.depth, shape)})
        else:
            shape = (heads, arch.head_dim, buckets)
            self.tables = nn.ModuleDict({t: _per_block(arch.depth, shape) for t in on})

    def _buckets(self, ctx: Context, like: torch.Tensor, narrow: bool = False) -> torch.Tensor:
        """(planes, T, T) buckets, shared by every block (kept between forwards at inference): int64 for the
        reference's gathers and scatters, ``narrow`` the narrowest integer dtype, which fused kernels read."""
        dtype = self.narrow_index_dtype if narrow else torch.long
        return self.reuse_at_inference(("buckets", dtype), ctx, like, lambda: bucket_index(
            ctx, self.method, self.ratio, self.clip, like.device, dtype))

    def explicit_attention(self, block: int) -> bool:
        return self.mode == "contextual" and "v" in self.on

    def attention_bias(self, block, q, k, ctx):
        if self.mode == "bias":
            return self.reuse_at_inference(block, ctx, q, lambda: self._scalar_bias(block, ctx, q.dtype))
        return with_dense(None, self.bias_by_bucket(block, q, k, ctx) or [])

    def bias_by_bucket(self, block, q, k, ctx) -> list[Gathered] | None:
        """The contextual terms as per-token tables read through the buckets: (B, heads, T, buckets) instead
        of the (B, heads, T, T) bias (the scalar bias is static and stays dense)."""
        if self.mode == "bias" or not {"k", "q"} & set(self.on):
            return None
        buckets = self._buckets(ctx, q, narrow=ctx.fused_kernels)
        terms = []
        if "k" in self.on:
            terms.append(Gathered((q * self.scale) @ self.tables["k"][block].to(q.dtype), buckets))
        if "q" in self.on:
            terms.append(Gathered((k * self.scale) @ self.tables["q"][block].to(k.dtype), buckets, transposed=True))
        return terms

    def _scalar_bias(self, block: int, ctx: Context, dtype: torch.dtype) -> torch.Tensor:
        """(1, heads, T, T) from one scalar per bucket and head, summed over the bucket planes."""
        table = self.tables["k"][block]  # (heads, buckets + 1)
        buckets, count = offset_buckets(scaled_offsets(ctx, table.device), self.method, self.ratio, self.clip)
        per_offset = table[:, buckets].sum(1)  # (heads, M)
        return pair_bias(per_offset, ctx, dtype, fill=len(buckets) * table[:, count])

    def value_term(self, block, attn, ctx, rows):
        if self.mode != "contextual" or "v" not in self.on:
            return None
        buckets = self._buckets(ctx, attn)[:, rows]
        weight = self.tables["v"][block]  # (heads, head_dim, buckets)
        per_bucket = attn.new_zeros(*attn.shape[:-1], weight.shape[-1])
        for plane in buckets:
            per_bucket.scatter_add_(-1, plane.expand_as(attn), attn)
        return per_bucket @ weight.transpose(-1, -2).to(attn.dtype)


def _per_block(depth: int, shape: tuple[int, ...]) -> nn.ParameterList:
    tables = nn.ParameterList(nn.Parameter(torch.empty(shape)) for _ in range(depth))
    for t in tables:
        nn.init.trunc_normal_(t, std=0.02)
    return tables
