"""Fused kernels and the reference computations they stand in for.

Where a GPU runs, some terms are computed by one compiled kernel (``torch.compile`` with Triton, or
FlexAttention) instead of a chain of eager operations: FlexAttention for attention with multiplied or
gathered terms (:mod:`pebench.models.attention`), RoPE's rotation of queries and keys
(:mod:`pebench.encodings.rope`). Each fused computation equals its reference within float tolerance (the
tests compare them on the CPU, where the fused functions run uncompiled and once through the CPU's inductor).
A compiler or kernel that fails on this machine switches fusion off for the rest of the process, with one
warning, and the reference runs: exact, slower. Out of memory is not a failure of the kernel: it reaches the
caller, which halves the batch.

A model's attention path asks for fusion (:func:`wanted`): "auto" on CUDA, "flex" anywhere, "reference" never;
a component sees the answer as :attr:`pebench.encodings.base.Context.fused_kernels`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cache
from typing import TypeVar

import torch

T = TypeVar("T")

#: why a fused kernel failed in this process, after which everything takes the reference; None while they work
failure: str | None = None
#: specialisations (input shapes, score_mod structures) a compiled function may collect: past torch's limit (8)
#: dynamo stops compiling it and runs FlexAttention unfused, materialising every score, so a suite's resolutions,
#: batch sizes and encodings would silently fall off the fused path after the eighth
RECOMPILE_LIMIT = 512


def wanted(path: str, device: torch.device) -> bool:
    """Whether an attention path ("auto", "reference" or "flex") fuses on ``device`` in this process."""
    return failure is None and (path == "flex" or (path == "auto" and device.type == "cuda"))


def on(device: torch.device, function: Callable) -> Callable:
    """``function`` compiled once per input shape on CUDA; as it is elsewhere (the CPU checks of its logic)."""
    return compiled(function) if device.type == "cuda" else function


@cache
def compiled(function: Callable) -> Callable:
    """``function`` compiled with static shapes: one kernel per input shape, as many as :data:`RECOMPILE_LIMIT`
    (raised for the process when a function is first compiled: setting it costs 70 us, too much per call).
    Tensors a score_mod reads are inputs of the kernel; Python numbers in it are constants, compiled anew for
    each value, so formulas take theirs as tensors."""
    config = torch._dynamo.config
    for names in (("recompile_limit", "cache_size_limit"),  # torch >= 2.6 names, then the older ones
                  ("accumulated_recompile_limit", "accumulated_cache_size_limit")):
        name = next(name for name in names if hasattr(config, name))
        setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    return torch.compile(function, dynamic=False)


def fused_or_reference(fused: Callable[[], T], reference: Callable[[], T]) -> T:
    """``fused()``, or ``reference()`` once fusion has failed on this machine (now or earlier)."""
    if failure is None:
        try:
            return fused()
        except Exception as error:  # noqa: BLE001 - any compiler or kernel failure: the reference is exact
            if "out of memory" in str(error):
                raise
            _give_up(error)
    return reference()


def _give_up(error: Exception) -> None:
    global failure
    failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    warnings.warn(f"a fused kernel failed on this machine ({failure}); pebench runs the reference paths in this "
                  "process (exact, slower)", RuntimeWarning, stacklevel=3)
