"""Where a forward's time goes: position terms, attention, and the rest (the ``breakdown`` block of profile
records), so that a user sees where an encoding's cost comes from.

pebench's own ViT marks two kinds of sections (:mod:`pebench.models.vit`): *position*, building and
applying an encoding's terms outside attention (rotations, biases, score multipliers, tokens added,
PEG after a block), and *attention* itself (SDPA, FlexAttention or the explicit chunks, value terms
included). A :class:`SectionClock` times them: CUDA events on a GPU, so nothing synchronises inside the
forward, and the wall clock on a CPU, which runs each operation before returning. *Rest* is the whole
forward minus both: patch embedding, the qkv and output projections, MLPs, norms and the head.

The breakdown is measured in forwards of its own after the timed rounds (uncompiled: a clock's sections
would break a compiled graph), as the median of a few calls, so the clock's cost never enters img/s or
the ratio to ``none``; ``attention_paths`` counts the blocks of one forward by the path they took (sdpa,
flex, explicit: :mod:`pebench.models.attention`). Models pebench did not build (timm, ``py:``) have no
sections: their block is null.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from pebench.models.vit import VisionTransformer

SECTIONS = ("position", "attention")
#: forwards the breakdown takes the median of (after one untimed call)
CALLS = 5


class SectionClock:
    """Times named sections of a forward; ``totals_ms()`` sums each section since the last ``reset()``."""

    def __init__(self, device: torch.device):
        self.on_gpu = device.type == "cuda"
        self.spans: dict[str, list] = defaultdict(list)

    @property
    def method(self) -> str:
        return "cuda events" if self.on_gpu else "wall clock"

    @contextmanager
    def __call__(self, section: str) -> Iterator[None]:
        if self.on_gpu:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.spans[section].append((start, end))
        else:
            start = time.perf_counter()
            yield
            self.spans[section].append(1000 * (time.perf_counter() - start))

    def reset(self) -> None:
        self.spans.clear()

    def totals_ms(self) -> dict[str, float]:
        if self.on_gpu:
            torch.cuda.synchronize()
            return {name: sum(start.elapsed_time(end) for start, end in spans) for name, spans in self.spans.items()}
        return {name: sum(spans) for name, spans in self.spans.items()}


def breakdown(net, x: torch.Tensor, mode: str, autocast: Callable[[], AbstractContextManager],
              calls: int = CALLS) -> dict | None:
    """Milliseconds per forward of ``x`` (median over ``calls``) in position terms, attention and the rest,
    and their shares of the whole; None for a model without sections."""
    if not isinstance(net, VisionTransformer):
        return None
    clock = SectionClock(x.device)
    net.clock = clock
    per_call = []
    try:
        with torch.inference_mode(), autocast():
            net(x, mode)
            for _ in range(calls):
                clock.reset()
                with clock("total"):
                    net(x, mode)
                per_call.append(clock.totals_ms())
    finally:
        net.clock = None
    for call in per_call:  # "attention:sdpa", "attention:flex", ...: one section, its paths counted apart
        call["attention"] = sum(ms for name, ms in call.items() if name.startswith("attention:"))
    total = statistics.median(c["total"] for c in per_call)
    parts = {name: statistics.median(c.get(name, 0.0) for c in per_call) for name in SECTIONS}
    paths = {name.partition(":")[2]: len(spans) for name, spans in clock.spans.items()  # blocks, in the last call
             if name.startswith("attention:")}
    rest = max(0.0, total - sum(parts.values()))
    return {"position_ms": parts["position"], "attention_ms": parts["attention"], "rest_ms": rest,
            "total_ms": total, "position_share": parts["position"] / total,
            "attention_share": parts["attention"] / total, "rest_share": rest / total, "batch_size": x.shape[0],
            "calls": calls, "clock": clock.method, "attention_paths": paths}
