"""One encoding made of one or more components (``ape+peg``), as the backbone sees it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pebench.encodings.base import Arch, Component, Context, Gathered, OffsetBias, grid_offsets
from pebench.encodings.plugins import ORIGIN
from pebench.encodings.registry import REGISTRY
from pebench.encodings.spec import EncodingSpec, parse_spec
from pebench.errors import PebenchError


class PositionEncoding(nn.ModuleDict):
    """The components of an encoding spec, keyed by family name, applied in spec order. What a plugin's
    component returns is checked (shapes, exceptions) and a failure names the plugin."""

    def __init__(self, spec: EncodingSpec, arch: Arch):
        super().__init__({c.name: REGISTRY[c.name](arch, **c.kwargs) for c in spec.components})
        self.spec = spec
        self.head_dim, self.num_heads = arch.head_dim, arch.num_heads
        self.plugins = {name: ORIGIN[name].target for name in spec.names if name in ORIGIN}
        self._formulas_tried: set[tuple] = set()

    def parts(self) -> list[Component]:
        return list(self.values())

    def _call(self, name: str, hook: str, expected: Callable[[object], str | None], *args):
        """Component ``name``'s ``hook(*args)``; a plugin's failure or wrong result becomes a one-line error."""
        method = getattr(self[name], hook)
        if name not in self.plugins:
            return method(*args)
        try:
            result = method(*args)
        except PebenchError:
            raise
        except Exception as error:  # noqa: BLE001 - someone else's code, named in the error
            raise PebenchError(f"plugin encoding '{name}' ({self.plugins[name]}): {hook} raised "
                               f"{type(error).__name__}: {error}; fix the plugin") from None
        problem = expected(result)
        if problem:
            raise PebenchError(f"plugin encoding '{name}' ({self.plugins[name]}): {hook} returned {problem}; "
                               "fix the plugin (docs/plugins.md gives each hook's shapes)")
        return result

    @property
    def interp_is_native(self) -> bool:
        return all(c.interp_is_native for c in self.parts())

    def unsupported(self, ctx: Context) -> str | None:
        """Why the encoding cannot run in ``ctx``'s mode on its grid, or None when it can."""
        if ctx.scale is not None:
            reason = next((c.scale_unsupported for c in self.parts() if c.scale_unsupported), None)
            if reason is None and self.interp_is_native:
                reason = f"nothing to scale: {self.spec} does not depend on a position scale"
            return reason
        if ctx.mode != "native" or ctx.at_trained_grid:
            return None
        return next((reason for c in self.parts() if (reason := c.native_unsupported(ctx))), None)

    def position_values_at(self, ctx: Context) -> int:
        return sum(c.position_values_at(ctx) for c in self.parts())

    def explicit_attention(self, block: int) -> bool:
        return any(c.explicit_attention(block) for c in self.parts())

    def reads_probabilities(self, block: int) -> bool:
        """True where a component has a value term, which reads the attention probabilities themselves: only
        explicit attention gives them (a fused kernel never materialises them)."""
        return any(c.explicit_attention(block) and type(c).value_term is not Component.value_term
                   for c in self.parts())

    def add_to_tokens(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        for name in self:
            x = self._call(name, "add_to_tokens", _shaped(x.shape), x, ctx)
        return x

    def after_block(self, block: int, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        for name in self:
            x = self._call(name, "after_block", _shaped(x.shape), block, x, ctx)
        return x

    def rotate(self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context):
        for name in self:
            q, k = self._call(name, "rotate", _pair_shaped(q.shape, k.shape), block, q, k, ctx)
        return q, k

    def attention_bias(self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context):
        scores = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        return _combine([self._call(name, "attention_bias", _broadcasts_to(scores), block, q, k, ctx)
                         for name in self], torch.add)

    def split_bias(self, block: int, q: torch.Tensor, k: torch.Tensor, ctx: Context):
        """The attention bias as (the dense sum of the components without a factored form, or None; the
        gathered terms; the offset formulas): what a fused kernel reads (:meth:`Component.bias_by_offset`,
        :meth:`Component.bias_by_bucket`)."""
        scores = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        dense, gathered, formulas = [], [], []
        for name in self:
            if (formula := self._call(name, "bias_by_offset", _offset_bias, block, ctx)) is not None:
                if name in self.plugins:
                    self._try_formula(name, block, formula, ctx, q.device)
                formulas.append(formula)
            elif (terms := self._call(name, "bias_by_bucket", _gathered, block, q, k, ctx)) is not None:
                gathered += terms
            else:
                dense.append(self._call(name, "attention_bias", _broadcasts_to(scores), block, q, k, ctx))
        return _combine(dense, torch.add), gathered, formulas

    def _try_formula(self, name: str, block: int, formula: OffsetBias, ctx: Context, device: torch.device) -> None:
        """A plugin's formula run once per block, grid and mode on every head and offset of the grid, where its
        errors can name the plugin: inside the fused kernel one would only switch fusion off for the process."""
        if (key := (name, block, ctx.grid, ctx.mode)) in self._formulas_tried:
            return
        offsets = grid_offsets(ctx.grid, device)
        head, dr, dc = torch.arange(self.num_heads, device=device)[:, None], offsets[None, :, 0], offsets[None, :, 1]
        where = f"plugin encoding '{name}' ({self.plugins[name]}): bias_by_offset's"
        try:
            values = formula.bias(head, dr, dc)
            seen = None if formula.visible is None else formula.visible(head, dr, dc)
        except Exception as error:  # noqa: BLE001 - someone else's code, named in the error
            raise PebenchError(f"{where} formula raised {type(error).__name__}: {error}; fix the plugin") from None
        if problem := _formula_problem(values, seen, (self.num_heads, len(offsets))):
            raise PebenchError(f"{where} formula gave {problem} on the (heads, offsets) of a grid; fix the plugin "
                               "(docs/plugins.md: OffsetBias)")
        self._formulas_tried.add(key)

    def score_multiplier(self, block: int, ctx: Context, like: torch.Tensor):
        scores = (like.shape[0], like.shape[1], like.shape[2], like.shape[2])
        return _combine([self._call(name, "score_multiplier", _broadcasts_to(scores), block, ctx, like)
                         for name in self], torch.mul)

    def value_term(self, block: int, attn: torch.Tensor, ctx: Context, rows: slice):
        out = (attn.shape[0], attn.shape[1], attn.shape[2], self.head_dim)
        return _combine([self._call(name, "value_term", _optional(_shaped(out)), block, attn, ctx, rows)
                         for name in self], torch.add)


def _shaped(shape) -> Callable[[object], str | None]:
    def check(result) -> str | None:
        if not isinstance(result, torch.Tensor) or result.shape != shape:
            return f"{_shape_of(result)} where {tuple(shape)} is needed"
        return None
    return check


def _optional(check: Callable[[object], str | None]) -> Callable[[object], str | None]:
    return lambda result: None if result is None else check(result)


def _pair_shaped(q_shape, k_shape) -> Callable[[object], str | None]:
    def check(result) -> str | None:
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"{type(result).__name__} where a pair (q, k) is needed"
        return _shaped(q_shape)(result[0]) or _shaped(k_shape)(result[1])
    return check


def _broadcasts_to(shape: tuple[int, ...]) -> Callable[[object], str | None]:
    def check(result) -> str | None:
        if result is None:
            return None
        try:
            fits = isinstance(result, torch.Tensor) and torch.broadcast_shapes(result.shape, shape) == shape
        except RuntimeError:
            fits = False
        return None if fits else f"{_shape_of(result)} where a tensor broadcastable to {shape} is needed"
    return check


def _gathered(result) -> str | None:
    if result is None or (isinstance(result, list) and all(isinstance(term, Gathered) for term in result)):
        return None
    return f"{type(result).__name__} where a list of pebench.encodings.base.Gathered (or None) is needed"


def _offset_bias(result) -> str | None:
    if result is None or isinstance(result, OffsetBias):
        return None
    return f"{type(result).__name__} where a pebench.encodings.base.OffsetBias (or None) is needed"


def _formula_problem(values, seen, shape: tuple[int, int]) -> str | None:
    """What is wrong with a formula's bias and visibility evaluated on (heads, offsets), or None."""
    if not (isinstance(values, torch.Tensor) and values.is_floating_point()):
        return f"{_shape_of(values)} where float values are needed"
    if problem := _broadcasts_to(shape)(values):
        return problem
    if seen is not None and not (isinstance(seen, torch.Tensor) and seen.dtype == torch.bool
                                 and _broadcasts_to(shape)(seen) is None):
        return f"a visibility of {_shape_of(seen)} where booleans broadcastable to {shape} are needed"
    return None


def _shape_of(result) -> str:
    return f"shape {tuple(result.shape)}" if isinstance(result, torch.Tensor) else type(result).__name__


def _combine(terms, op):
    present = [t for t in terms if t is not None]
    if not present:
        return None
    out = present[0]
    for t in present[1:]:
        out = op(out, t)
    return out


def build_encoding(spec, arch: Arch) -> PositionEncoding:
    return PositionEncoding(parse_spec(spec), arch)
