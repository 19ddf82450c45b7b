"""The ways attention runs with an encoding's terms, and which one a block takes.

- SDPA (``scaled_dot_product_attention``) with an additive position bias as ``attn_mask``: every block
  whose encoding adds at most a bias that is not a formula of the offset.
- Explicit attention, the scores materialised in query chunks: the reference path for encodings that
  multiply the scores (SP-ViT) and the only one for terms that read the attention probabilities
  (iRPE on values) or for a diagnostics probe.
- FlexAttention (``torch.nn.attention.flex_attention``; Dong et al., "Flex Attention: A Programming Model
  for Generating Optimized Attention Kernels", 2024) with a ``score_mod`` that applies the multiplier, the
  bias and biases in factored form (:class:`~pebench.encodings.base.Gathered`: iRPE's contextual terms as
  per-token tables read through the bucket index, never (B, heads, T, T);
  :class:`~pebench.encodings.base.OffsetBias`: ALiBi's and LookHere's biases computed from the patch offset,
  LookHere's wedges as a block mask that skips the tiles they mask whole) inside the fused kernel, for the
  multiplying, gathering and formula blocks, where a GPU is in use: compiled once per shape, with 64 x 64 tiles
  (issue 30 reports, on an H200, a 2D ALiBi score_mod at 4,097 tokens taking 1.64 ms per call with them
  and 10.8 ms with the default tiles; benchmarks/gpu_check.py measures pebench's own calls). The tests
  check it against the reference in every mode, on the CPU in float32.

A model's ``attention_path`` chooses: "auto" (FlexAttention on CUDA where it applies, else the reference),
"reference" or "flex" (also on the CPU, uncompiled: how the tests compare the two); the same choice fuses
other kernels (:mod:`pebench.kernels`), and a failing compiler switches them all back to the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pebench.encodings.base import Context, Gathered, OffsetBias
from pebench.encodings.composite import PositionEncoding
from pebench.kernels import compiled, fused_or_reference, on

#: bytes of attention scores materialised at once by explicit attention on a CPU (the queries are chunked to
#: fit); on a GPU chunks may take a share of the free memory instead (:func:`score_chunk_bytes`)
SCORE_CHUNK_BYTES = 64 << 20
GPU_SCORE_SHARE = 0.125
#: FlexAttention's tile sizes on CUDA (see the module docstring)
FLEX_KERNEL_OPTIONS = {"BLOCK_M": 64, "BLOCK_N": 64}


def score_chunk_bytes(device: torch.device) -> int:
    """Bytes of scores one chunk of explicit attention may hold on ``device``."""
    if device.type == "cuda":
        return max(SCORE_CHUNK_BYTES, int(torch.cuda.mem_get_info(device)[0] * GPU_SCORE_SHARE))
    return SCORE_CHUNK_BYTES


class Terms(NamedTuple):
    """An encoding's terms for one block's attention: a dense additive bias, a factor on the scores (each
    broadcastable to (B, heads, T, T), or None) and biases in factored form, gathered or offset formulas, which
    only FlexAttention reads, without materialising them."""

    bias: torch.Tensor | None
    multiplier: torch.Tensor | None
    gathered: list[Gathered] = []
    formulas: list[OffsetBias] = []


def flex_allowed(ctx: Context, pos: PositionEncoding, block: int) -> bool:
    """Whether this block may attend through FlexAttention: the forward fuses kernels (``ctx.fused_kernels``,
    :func:`pebench.kernels.wanted`) and nothing in the block reads the attention probabilities."""
    return ctx.fused_kernels and not pos.reads_probabilities(block)


def route(terms: Terms, explicit: bool, may_fuse: bool) -> str:
    """The path a block's attention takes (module docstring): "flex" where ``may_fuse`` (:func:`flex_allowed`,
    no probe) and SDPA cannot take the terms, else "explicit" or "sdpa"."""
    if may_fuse and (explicit or terms.gathered or terms.formulas):
        return "flex"
    return "explicit" if explicit else "sdpa"


def attend(q, k, v, scale: float, terms: Terms, path: str, pos: PositionEncoding, block: int, ctx: Context,
           probe: Callable | None = None) -> torch.Tensor:
    """Attention output (B, heads, T, head_dim) through ``path`` (:func:`route`); a FlexAttention that fails
    on this machine falls back to the reference (:func:`pebench.kernels.fused_or_reference`)."""
    if path == "flex":
        def reference() -> torch.Tensor:
            dense = Terms(pos.attention_bias(block, q, k, ctx), terms.multiplier)  # every bias in its dense form
            return attend(q, k, v, scale, dense, route(dense, pos.explicit_attention(block), may_fuse=False),
                          pos, block, ctx, probe)

        return fused_or_reference(lambda: flex_attention_with_terms(
            q, k, v, scale, terms.bias, terms.multiplier, terms.gathered, terms.formulas, ctx), reference)
    if path == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=terms.bias)
    return explicit_attention(q, k, v, scale, terms.bias, terms.multiplier, pos, block, ctx, probe)


def explicit_attention(q, k, v, scale, bias, multiplier, pos: PositionEncoding, block: int, ctx: Context,
                       probe: Callable | None = None) -> torch.Tensor:
    """Attention with the scores materialised, for encodings SDPA cannot express.

    softmax(scale * q.k^T * multiplier + bias) @ v + value_term; with no multiplier and no value term
    it equals SDPA (tested). Queries go in chunks whose (B, heads, rows, T) scores fit
    :func:`score_chunk_bytes`, so memory grows with the tokens, not with their square, beyond the
    (1, heads, T, T) position terms themselves.
    """
    b, heads, tokens, _ = q.shape
    rows_per_chunk = max(1, score_chunk_bytes(q.device) // (b * heads * tokens * q.element_size()))
    outputs = []
    for start in range(0, tokens, rows_per_chunk):
        rows = slice(start, min(tokens, start + rows_per_chunk))
        scores = (q[:, :, rows] * scale) @ k.transpose(-2, -1)
        if multiplier is not None:
            scores = scores * multiplier[..., rows, :].to(scores.dtype)
        if bias is not None:
            scores = scores + bias[..., rows, :]
        attn = scores.softmax(dim=-1)
        if probe is not None:
            probe(block, attn, rows, ctx)
        out = attn @ v
        value = pos.value_term(block, attn, ctx, rows)
        outputs.append(out if value is None else out + value)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


def _as_4d(term: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor | None:
    """A term broadcastable to (B, heads, T, T) as a 4-D view (no copy)."""
    if term is None:
        return None
    term = term.reshape((1,) * (4 - term.dim()) + tuple(term.shape))
    return term.expand(term.shape[0], q.shape[1], q.shape[2], q.shape[2])


def flex_attention_with_terms(q, k, v, scale: float, bias, multiplier, gathered: list[Gathered] = (),
                              formulas: list[OffsetBias] = (), ctx: Context | None = None) -> torch.Tensor:
    """softmax(scale * q.k^T * multiplier + bias + gathered biases + offset formulas) @ v in one FlexAttention
    kernel; the terms are read or computed per (batch, head, query, key) inside it, never expanded to
    (B, heads, T, T). Formulas with a visibility skip the tiles it masks whole (a block mask, built once per grid)
    and mask the rest pair by pair; they need ``ctx``, the grid that turns token indices into patches."""
    from torch.nn.attention.flex_attention import flex_attention  # 0.25 s to import: only where it runs

    score_mod = score_mod_for(q, bias, multiplier, gathered, formulas, ctx)
    visibles = tuple(formula.visible for formula in formulas if formula.visible is not None)
    block_mask = _block_mask(visibles, ctx.grid, ctx.num_prefix, q.shape[1], q.shape[2], q.device) \
        if visibles else None
    if q.device.type == "cuda":
        with torch.autocast("cuda", enabled=False):  # q, k, v are already in the compute dtype; nothing to cast
            return compiled(flex_attention)(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale,
                                            kernel_options=FLEX_KERNEL_OPTIONS)
    with warnings.catch_warnings():  # uncompiled FlexAttention warns that it is slow: here it is the CPU check
        warnings.simplefilter("ignore", UserWarning)
        return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)


def patch_pair(query: torch.Tensor, key: torch.Tensor, grid: tuple[int, int], num_prefix: int):
    """For token indices: whether both are patches, and the query's offset from the key in patches (rows,
    columns); prefix tokens are read as patch 0 (their offsets unused)."""
    width = grid[1]
    both = (query >= num_prefix) & (key >= num_prefix)
    query, key = (query - num_prefix).clamp(min=0), (key - num_prefix).clamp(min=0)
    return both, query // width - key // width, query % width - key % width


@lru_cache(maxsize=8)
def _block_mask(visibles: tuple[Callable, ...], grid: tuple[int, int], num_prefix: int, heads: int, tokens: int,
                device: torch.device):
    """FlexAttention's block mask of the pairs every formula's ``visible`` keeps (prefix pairs always): tiles
    masked whole are skipped. ``visible`` depends on the offset alone (OffsetBias), so one map serves every
    block, batch and mode of a grid."""
    from torch.nn.attention.flex_attention import create_block_mask

    # compiled on a GPU: eagerly it materialises every (head, query, key) pair and its temporaries, gigabytes at 1024 px
    return on(device, create_block_mask)(mask_mod_for(visibles, grid, num_prefix), None, heads, tokens, tokens,
                                         device=device)


def mask_mod_for(visibles: tuple[Callable, ...], grid: tuple[int, int], num_prefix: int) -> Callable:
    """FlexAttention's ``mask_mod``: True where a (head, query, key) pair is seen by every formula's ``visible``."""

    def mask_mod(batch, head, query, key):
        both, dr, dc = patch_pair(query, key, grid, num_prefix)
        inside = visibles[0](head, dr, dc)
        for visible in visibles[1:]:
            inside = inside & visible(head, dr, dc)
        return ~both | inside

    return mask_mod


def score_mod_for(q: torch.Tensor, bias, multiplier, gathered: list[Gathered] = (), formulas: list[OffsetBias] = (),
                  ctx: Context | None = None) -> Callable:
    """FlexAttention's ``score_mod`` applying the terms to one (batch, head, query, key) score."""
    multiplier, bias = _as_4d(multiplier, q), _as_4d(bias, q)
    per_batch_m = multiplier is not None and multiplier.shape[0] > 1
    per_batch_b = bias is not None and bias.shape[0] > 1
    tables = [(term.table, term.table.shape[0] > 1, term.table.shape[1] > 1, term.index, term.transposed)
              for term in gathered]

    def score_mod(score, batch, head, query, key):
        if multiplier is not None:
            score = score * multiplier[batch if per_batch_m else 0, head, query, key]
        if bias is not None:
            score = score + bias[batch if per_batch_b else 0, head, query, key]
        for table, per_batch, per_head, index, transposed in tables:
            b, h = batch if per_batch else 0, head if per_head else 0
            for plane in index:  # any integer dtype (Gathered): as an index, int32
                score = score + (table[b, h, key, plane[key, query].to(torch.int32)] if transposed
                                 else table[b, h, query, plane[query, key].to(torch.int32)])
        if formulas:
            both, dr, dc = patch_pair(query, key, ctx.grid, ctx.num_prefix)
            for formula in formulas:
                score = score + torch.where(both, formula.bias(head, dr, dc), 0.0)
        return score

    return score_mod
