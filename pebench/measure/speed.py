"""Timing and memory of forward passes, measured so that comparisons between models are fair.

Throughput of several models (an encoding and its position-free twin, or every model of one
resolution) is measured in *interleaved rounds*: after each model has warmed up to a steady state
(two consecutive timed blocks within 5% of each other), every round times one block of each model,
in an order that rotates from round to round. A model's img/s is the median over rounds with its
inter-quartile range, and a ratio between two models is the median of the per-round ratios, so a
machine that gets busier or quieter during the run moves both sides of each ratio alike and no
model pays for being measured first. The reference's drift from the first rounds to the last is
reported, and a drift beyond 10% is flagged: the machine was busy.

Memory is the peak of bytes allocated by one forward pass: on CUDA the caching allocator's
``max_memory_allocated``; on the CPU the allocation events of ``torch.profiler`` (``profile_memory``),
replayed in time order. The process's resident set is no use here: after a warm-up the allocator
reuses freed memory, and one forward adds nothing to it.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

NOISY_SPREAD = 0.10  # an IQR above this share of the median is flagged
DRIFT_LIMIT = 0.10  # the reference moving more than this between the first and last rounds is flagged
STEADY = 0.05  # warm-up ends when two consecutive blocks agree within this


@dataclass
class Spread:
    """Median, mean and inter-quartile range of repeated measurements."""

    median: float
    q1: float
    q3: float
    mean: float
    repeats: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if len(values) < 2:
            return cls(values[0], values[0], values[0], values[0], len(values))
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q1, q3, statistics.fmean(values), len(values))

    @property
    def relative_iqr(self) -> float:
        return (self.q3 - self.q1) / self.median if self.median else 0.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timed:
    """One thing to time: ``call()`` runs a forward pass of ``batch`` images."""

    name: str
    call: Callable[[], object]
    batch: int
    calls_per_block: int = 1
    seconds_per_call: list[float] = field(default_factory=list)  # one value per round

    def block(self, device: torch.device) -> float:
        synchronize(device)
        started = time.perf_counter()
        for _ in range(self.calls_per_block):
            self.call()
        synchronize(device)
        return (time.perf_counter() - started) / self.calls_per_block

    def warm_up(self, device: torch.device, min_block_s: float, max_warmup_s: float) -> None:
        """Run until two consecutive blocks of >= ``min_block_s`` agree (or ``max_warmup_s`` is spent)."""
        started = time.perf_counter()
        for _ in range(2):  # first calls: lazy initialisation, compilation, caches
            self.block(device)
        per_call = self.block(device)
        self.calls_per_block = max(1, round(min_block_s / per_call)) if per_call > 0 else 1
        previous = self.block(device)
        while time.perf_counter() - started < max_warmup_s:
            current = self.block(device)
            if abs(current - previous) <= STEADY * previous:
                return
            previous = current

    @property
    def img_per_s(self) -> Spread:
        return Spread.of([self.batch / s for s in self.seconds_per_call])


def interleaved_rounds(items: list[Timed], device: torch.device, rounds: int, min_block_s: float,
                       max_warmup_s: float, on_round: Callable[[], None] | None = None) -> None:
    """Warm every item up, then time one block of each per round, rotating the order each round
    (``on_round`` is told after each round)."""
    for item in items:
        item.warm_up(device, min_block_s, max_warmup_s)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection landing inside one block would only add noise
    try:
        for r in range(rounds):
            shift = r % len(items)
            for item in items[shift:] + items[:shift]:
                item.seconds_per_call.append(item.block(device))
            if on_round:
                on_round()
    finally:
        if gc_was_enabled:
            gc.enable()


def time_ratio(item: Timed, reference: Timed) -> Spread:
    """Per-image time of ``item`` over ``reference``, round by round (> 1: slower than the reference)."""
    return Spread.of([(s / item.batch) / (r / reference.batch)
                      for s, r in zip(item.seconds_per_call, reference.seconds_per_call, strict=True)])


def drift(reference: Timed) -> float:
    """Relative change of the reference's time from its first third of rounds to its last third."""
    times = reference.seconds_per_call
    third = max(1, len(times) // 3)
    first, last = statistics.median(times[:third]), statistics.median(times[-third:])
    return (last - first) / first


def peak_forward_bytes(forward: Callable[[], object], device: torch.device) -> tuple[int, str]:
    """(peak bytes allocated during one call beyond what was allocated before it, how it was measured)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        forward()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, "cuda_max_allocated"
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward()
    return _replayed_peak(prof), "cpu_allocated_peak"


@contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ logging (kineto's "profiler_start" lines and, without a GPU, an
    "ERROR ... gpuGetDeviceCount" line) on file descriptor 2, which no Python setting reaches."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _replayed_peak(prof) -> int:
    """The highest running total of the allocations (positive) and frees (negative) the profiler saw.
    Allocation events are reachable only through the profiler's event tree (a private API, tested)."""
    from torch._C._profiler import _EventType

    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    total = peak = 0
    for _, size in sorted(events):
        total += size
        peak = max(peak, total)
    return peak
