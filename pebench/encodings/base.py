"""What every position encoding plugs into, and the geometry they share.

An encoding is one or more *components* (``ape+peg`` has two). A component is an ``nn.Module``
that may act at four places of the ViT forward pass, each a no-op by default:

* ``add_to_tokens``: after patch embedding (absolute embeddings: APE, sin-cos);
* ``after_block``: after a transformer block (CPVT's PEG);
* ``rotate``: on queries and keys before the scores (RoPE);
* ``attention_bias``: an additive term on the attention logits, passed to SDPA as ``attn_mask``
  (relative biases, ALiBi, iRPE on keys/queries);
* ``score_multiplier`` and ``value_term``: the two hooks that need explicit attention math
  (SP-ViT's multiplicative prior, iRPE contextual on values).

Every hook receives a :class:`Context` that says on which grid the model runs, on which grid it
was trained, and in which resolution mode (:mod:`pebench.modes`: native, interp or scale=S).
Components derive what they need for that grid in the forward pass and never write it back into
their parameters, so switching resolution or mode cannot change the trained weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import torch
from torch import nn

from pebench.errors import PebenchError
from pebench.modes import FIXED, position_scale, scale_of

Mode = str  # "native", "interp" or "scale=S" (pebench.modes)
MODES: tuple[Mode, ...] = FIXED
#: what a component keeps on a CPU: every block's bias of a micro or tiny model up to 512 px (151 MB for
#: tiny's 12 blocks at 512), none at 1024, where one block's bias alone is 201 MB
DEFAULT_CACHE_BUDGET = 192 << 20
#: on a GPU a component keeps terms while they take at most this share of the memory free at the time (what
#: is kept is no longer free, so all components together stay near a fifth of it)
GPU_CACHE_SHARE = 0.25


def cache_budget_on(device: torch.device) -> int:
    """Bytes of static terms a component may keep on ``device``: :data:`DEFAULT_CACHE_BUDGET` on a CPU, a
    share of the free memory on a GPU (so a big GPU keeps every block's terms at 1024 px)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_CACHE_SHARE)
    return DEFAULT_CACHE_BUDGET


@dataclass(frozen=True)
class Arch:
    """The backbone facts a component needs to build its parameters."""

    dim: int
    depth: int
    num_heads: int
    trained_grid: tuple[int, int]
    num_prefix: int  # class token present (1) or global-average-pool head (0)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class Context:
    """Where a forward pass runs: the current patch grid, the trained grid and the mode; and whether the model
    runs fused kernels (:mod:`pebench.kernels`), in which case a component may compute a term through a fused
    version of its own that equals the reference within float tolerance (RoPE's rotation does)."""

    grid: tuple[int, int]
    trained_grid: tuple[int, int]
    mode: Mode
    num_prefix: int
    fused_kernels: bool = False

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def at_trained_grid(self) -> bool:
        return self.grid == self.trained_grid

    @property
    def scale(self) -> float | None:
        """S of a ``scale=S`` mode; None in native and interp mode."""
        return scale_of(self.mode)

    @property
    def position_scale(self) -> tuple[float, float]:
        """Factor on (row, col) patch coordinates: 1 in native mode, G0/G per axis in interp mode
        (position interpolation), S on both axes in scale=S mode (:func:`pebench.modes.position_scale`)."""
        return position_scale(self.mode, self.trained_grid, self.grid)


class NotApplicable(PebenchError):
    """A resolution mode that an encoding cannot run in (learned APE, native, on a new grid)."""


@dataclass(frozen=True)
class Option:
    """One typed option of a component; the type is the default's type."""

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    validate: Callable[[Any], str | None] | None = None  # returns an error text or None

    def parse(self, component: str, key: str, raw: Any) -> Any:
        kind = type(self.default)
        value = _coerce(kind, raw)
        if value is None:
            raise PebenchError(
                f"encoding '{component}': option {key}={raw!r} is not a {kind.__name__}; "
                f"write e.g. {component}:{key}={self.default}"
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise PebenchError(f"encoding '{component}': {key}={raw!r} is not one of: {allowed}")
        problem = self.validate(value) if self.validate else None
        if problem:
            raise PebenchError(f"encoding '{component}': {key}={raw!r}: {problem}")
        return value


def _coerce(kind: type, raw: Any) -> Any:
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    text = str(raw).strip().lower()
    if kind is bool:
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text)
    if kind is int:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            return None
    return str(raw).strip()


BLOCKS_HELP = "blocks it applies to: 'all', 'all-but-last', an index '0', a range '0-4' or a list '0,2,4'"
_BLOCKS_PATTERN = re.compile(r"all|all-but-last|\d+(-\d+)?(,\d+(-\d+)?)*")


def check_blocks_text(text: str) -> str | None:
    return None if _BLOCKS_PATTERN.fullmatch(text) else f"expected {BLOCKS_HELP}"


def resolve_blocks(text: str, depth: int, component: str) -> tuple[int, ...]:
    """Turn a blocks option into sorted block indices, checked against the model depth."""
    if text == "all":
        return tuple(range(depth))
    if text == "all-but-last":
        return tuple(range(depth - 1))
    indices: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        indices.update(range(int(lo), int(hi or lo) + 1))
    out_of_range = sorted(i for i in indices if i >= depth)
    if out_of_range:
        raise PebenchError(
            f"encoding '{component}': blocks={text} names block {out_of_range[0]} but the model has "
            f"{depth} blocks (0-{depth - 1})"
        )
    return tuple(sorted(indices))


class Component(nn.Module):
    """Base class of one position-encoding component; subclasses override the hooks they use."""

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    #: nothing depends on the mode (PEG, no encoding): interp runs the native computation
    interp_is_native: ClassVar[bool] = False
    #: what native and interp mean for this component, shown by `pebench list`
    native_means: ClassVar[str]
    interp_means: ClassVar[str]
    #: what scale=S means, or None when positions cannot be scaled (then ``scale_unsupported`` says why)
    scale_means: ClassVar[str | None] = "positions multiplied by S (native: S=1, interp: S=G0/G)"
    scale_unsupported: ClassVar[str | None] = None

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self._inference_cache: dict[tuple, tuple[tuple, torch.Tensor]] = {}
        #: bytes of static terms kept between forwards, past which they are recomputed (bounded memory at 1024);
        #: None follows the device the terms are on (:func:`cache_budget_on`)
        self.cache_budget: int | None = None

    def reuse_at_inference(self, slot: Any, ctx: Context, like: torch.Tensor,
                           compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()`` for a tensor that depends only on the grid, the mode and this component's
        parameters (a static attention bias). With autograd off (evaluation, profiling) the result
        is kept per ``slot`` and reused until the grid, mode, device, dtype or any parameter changes
        (parameters are watched through their version counters), so repeated forwards skip it, as long
        as everything kept fits the budget (``cache_budget`` bytes, or what :func:`cache_budget_on` allows on
        the device of ``like``, asked at each miss). Entries are kept per grid and mode, so a pass that
        runs native and interp batch by batch reuses both; entries of other grids make room for new
        ones; what still does not fit is computed afresh at every forward rather than evicting a term
        that the next forward needs again (cycling through the blocks would then never hit). At 1024
        px one block's (1, heads, T, T) bias is 0.2 GB for 3 heads, 0.8 GB for 12: not kept by default."""
        if torch.is_grad_enabled():
            return compute()
        key = (slot, ctx.grid, ctx.trained_grid, ctx.mode, ctx.num_prefix, like.device, like.dtype)
        versions = tuple((id(p), p._version) for p in self.parameters())
        cached = self._inference_cache.get(key)
        if cached is not None and cached[0] == versions:
            return cached[1]
        value = compute()
        budget = self.cache_budget if self.cache_budget is not None else cache_budget_on(like.device)
        if self._kept_bytes() + value.nbytes > budget:  # make room: drop other grids' terms
            self._inference_cache = {k: v for k, v in self._inference_cache.items() if k[1] == ctx.grid}
        if self._kept_bytes() + value.nbytes <= budget:
            self._inference_cache[key] = (versions, value)
        return value

    def _kept_bytes(self) -> int:
        return sum(value.nbytes for _, value in self._inference_cache.values())

    @classmethod
    def keeps_class_token(cls, opts: dict[str, Any]) -> bool:
        """False when these options replace the class token by average pooling (CPVT-GAP)."""
        return True

    def native_unsupported(self, ctx: Context) -> str | None:
        """Why native mode cannot run on ``ctx.grid``, or None when it can."""
        return None

    def position_values_at(self, ctx: Context) -> int:
        """How many position parameters are in use on ``ctx.grid``: the stored ones, unless the
        mode resamples them to the grid (an interpolated APE grid grows with the resolution)."""
        return sum(p.numel() for p in self.parameters())

    def explicit_attention(self, block: int) -> bool:
        """True where this component needs the scores materialised (not SDPA) in ``block``."""
        return False

    def add_to_tokens(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return x

    def after_block(self, block: int, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return x

    def rotate(
        self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attention_bias(
        self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context
    ) -> torch.Tensor | None:
        """Additive logit term broadcastable to (B, heads, T, T), or None."""
        return None

    def score_multiplier(self, block: int, ctx: Context, like: torch.Tensor) -> torch.Tensor | None:
        """Factor on the scaled q.k scores, broadcastable to (B, heads, T, T), or None; ``like``: the
        queries (device and dtype)."""
        return None

    def bias_by_bucket(self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context) -> list[Gathered] | None:
        """This component's ``attention_bias`` in factored form, for a fused kernel that reads it pair by pair
        instead of materialising (B, heads, T, T); None (the default): it has none, and ``attention_bias`` is
        used. Optional: fused attention (pebench.models.attention) asks for it on a GPU."""
        return None

    def bias_by_offset(self, block: int, ctx: Context) -> OffsetBias | None:
        """This component's ``attention_bias`` as a formula of the offset between a query and a key patch, which a
        fused kernel computes pair by pair, reading nothing; None (the default): it has none. Optional: fused
        attention (pebench.models.attention) asks for it on a GPU before ``bias_by_bucket``."""
        return None

    def value_term(self, block: int, attn: torch.Tensor, ctx: Context, rows: slice) -> torch.Tensor | None:
        """Extra attention output (B, heads, rows, head_dim) from the attention probabilities of the
        query ``rows`` (B, heads, rows, T), or None."""
        return None


@dataclass(frozen=True)
class Gathered:
    """A bias read from a per-token table through a bucket index: bias[b, h, i, j] = the sum over planes p of
    ``table[b, h, i, index[p, i, j]]`` (``transposed``: ``table[b, h, j, index[p, j, i]]``). ``table`` is
    (B or 1, heads or 1, T, buckets), ``index`` (planes, T, T) of any integer dtype: a fused kernel reads it
    for every pair, so the narrowest that holds the buckets (:func:`narrowest_index_dtype`) costs it the least
    memory traffic (at 1024 px one plane is 17 MB in uint8, 134 MB in int64)."""

    table: torch.Tensor
    index: torch.Tensor
    transposed: bool = False

    def dense(self) -> torch.Tensor:
        """The (B, heads, T, T) bias it stands for (the reference the tests compare with)."""
        out = None
        for plane in self.index.long():
            term = self.table.gather(-1, plane.expand(*self.table.shape[:-1], plane.shape[-1]))
            term = term.transpose(-1, -2) if self.transposed else term
            out = term if out is None else out + term
        return out


@dataclass(frozen=True)
class OffsetBias:
    """An additive bias that is a formula of where the key patch lies from the query patch, for fused kernels.

    ``bias(head, dr, dc)`` gives the logit term from integer tensors that broadcast against each other: the head
    and the offset in patches, query minus key, by row and column (the mode's position scale is the formula's
    own to apply). ``visible(head, dr, dc)``, or None, is False where the key is masked, which the component's
    ``attention_bias`` marks with a very negative logit; it must depend on the head and offset alone, the same
    callable for every block, grid and mode (a bound method), because a fused kernel builds from it, once per
    grid, the map of tiles to skip. Pairs with a prefix token (the class token) get 0 and are visible. Only
    elementwise torch operations and indexing of small tensors may appear: the formulas are traced into the
    kernel, where a Python number is a constant compiled per value; read numbers that vary between blocks or
    modes from tensors (:func:`position_scale_on`)."""

    bias: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    visible: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def with_dense(bias: torch.Tensor | None, terms: list[Gathered]) -> torch.Tensor | None:
    """``bias`` (or None) plus the dense form of every gathered term: what a path without FlexAttention reads."""
    for term in terms:
        bias = term.dense() if bias is None else bias + term.dense()
    return bias


def narrowest_index_dtype(count: int) -> torch.dtype:
    """The narrowest integer dtype that holds 0..``count``."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if count <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


#: query rows whose pair terms are gathered at once: bounds the temporaries of a (T, T) bias at any grid
PAIR_ROWS = 256


@lru_cache(maxsize=32)
@torch.inference_mode(False)  # cached for later training too: must not be an inference tensor
def _offsets_cpu(grid: tuple[int, int]) -> torch.Tensor:
    gh, gw = grid
    dr, dc = torch.meshgrid(torch.arange(-gh + 1, gh), torch.arange(-gw + 1, gw), indexing="ij")
    return torch.stack([dr.flatten(), dc.flatten()], dim=1)  # ((2gh-1)(2gw-1), 2)


def grid_offsets(grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Every integer (row, col) offset between two patches of ``grid``, ((2gh-1)(2gw-1), 2), row-major."""
    return _offsets_cpu(grid).to(device)


def offset_index_rows(grid: tuple[int, int], rows: range, device: torch.device) -> torch.Tensor:
    """(len(rows), N): for query patches ``rows`` and every key patch, the entry of their offset (query
    minus key) among :func:`relative_offsets`' offsets. Computed, not stored: a whole (N, N) index is
    134 MB at 1024 px."""
    gh, gw = grid
    query = torch.arange(rows.start, rows.stop, device=device)
    key = torch.arange(gh * gw, device=device)
    dr = (query // gw)[:, None] - (key // gw)[None, :] + gh - 1
    dc = (query % gw)[:, None] - (key % gw)[None, :] + gw - 1
    return dr * (2 * gw - 1) + dc


def relative_offsets(grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """All relative patch offsets of a grid and, for each (query, key) pair, the index of its offset.

    Returns ``offsets`` of shape ((2gh-1)(2gw-1), 2) holding integer (row, col) offsets and ``index``
    of shape (N, N). Encodings evaluate their function once per distinct offset and gather: (2G-1)^2
    evaluations instead of N^2; :func:`pair_bias` gathers without building ``index``.
    """
    return grid_offsets(grid, device), offset_index_rows(grid, range(grid[0] * grid[1]), device)


def pair_bias(per_offset: torch.Tensor, ctx: Context, dtype: torch.dtype,
              fill: float | torch.Tensor = 0.0) -> torch.Tensor:
    """(1, heads, T, T) in ``dtype`` from per-offset values (heads, M) (M offsets as in
    :func:`relative_offsets`), ``fill`` (a number or one per head) in the prefix rows and columns.

    Written into one output, :data:`PAIR_ROWS` query rows at a time: besides the result, memory
    holds only a few rows' indices, never an (N, N) index or a second (T, T) copy."""
    heads, n, p = per_offset.shape[0], ctx.num_patches, ctx.num_prefix
    out = torch.empty((1, heads, p + n, p + n), dtype=dtype, device=per_offset.device)
    if p:
        fill = torch.as_tensor(fill, dtype=dtype, device=out.device).reshape(-1, 1, 1)
        out[0, :, :p, :] = fill
        out[0, :, p:, :p] = fill
    values = per_offset.to(dtype)
    for start in range(0, n, PAIR_ROWS):
        rows = range(start, min(n, start + PAIR_ROWS))
        out[0, :, p + rows.start : p + rows.stop, p:] = values[:, offset_index_rows(ctx.grid, rows, out.device)]
    return out


def clamped_offset_entries(offsets: torch.Tensor, trained_grid: tuple[int, int]) -> torch.Tensor:
    """For integer (row, col) offsets (M, 2), the entry of each in a table trained on ``trained_grid``
    ((2th-1)(2tw-1) entries, row-major), offsets beyond the trained range clamped to its edge."""
    th, tw = trained_grid
    dr = offsets[:, 0].clamp(-th + 1, th - 1) + th - 1
    dc = offsets[:, 1].clamp(-tw + 1, tw - 1) + tw - 1
    return dr * (2 * tw - 1) + dc


def clamped_offset_index(grid: tuple[int, int], trained_grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Per (query, key) patch pair of ``grid``, the entry of its offset in a table trained on
    ``trained_grid``, offsets beyond the trained range clamped to its edge."""
    offsets, index = relative_offsets(grid, device)
    return clamped_offset_entries(offsets, trained_grid)[index]


def scaled_offsets(ctx: Context, device: torch.device) -> torch.Tensor:
    """The (M, 2) offsets of :func:`relative_offsets` for ``ctx.grid`` as floats, multiplied by the
    mode's position scale; :func:`pair_bias` spreads per-offset values over the token pairs."""
    return grid_offsets(ctx.grid, device).float() * torch.tensor(ctx.position_scale, device=device)


def position_scale_on(ctx: Context, device: torch.device) -> torch.Tensor:
    """``ctx.position_scale`` as a (2,) float tensor on ``device``: how an :class:`OffsetBias` formula reads it (a
    Python number in a formula is compiled into the kernel as a constant, one compilation per value)."""
    return _scale_tensor(ctx.position_scale, device)


@lru_cache(maxsize=64)
@torch.inference_mode(False)
def _scale_tensor(scale: tuple[float, float], device: torch.device) -> torch.Tensor:
    return torch.tensor(scale, dtype=torch.float32, device=device)


def patch_coordinates(ctx: Context, device: torch.device) -> torch.Tensor:
    """(N, 2) float (row, col) coordinates of the patches, multiplied by the mode's position scale."""
    rows, cols = torch.meshgrid(
        torch.arange(ctx.grid[0], device=device, dtype=torch.float32),
        torch.arange(ctx.grid[1], device=device, dtype=torch.float32),
        indexing="ij",
    )
    sr, sc = ctx.position_scale
    return torch.stack([rows.flatten() * sr, cols.flatten() * sc], dim=1)

