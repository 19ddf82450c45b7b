"""Accuracy of models at one resolution: one streamed pass feeds every (model, mode) cell, batch by batch.

For each resolution the split is decoded (or rendered) once, and every batch goes through every
model and mode of that resolution before the next batch is read, so a suite of many models costs
one decode per resolution and memory stays O(batch x workers). Cells that need no computation are
settled without the pass: not applicable ones (native APE off its grid) with their reason, and
interp cells that run exactly the native computation (``same_as_native``) take the native cell's
figures (``measured_as: "native"``). Records are emitted only when the pass has finished, so an
interrupted pass leaves no partial record behind. Result records are described in :mod:`pebench.results`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from pebench.data import IMAGENET_MEAN, IMAGENET_STD, normalize
from pebench.data.stream import PassStats, SplitStream
from pebench.models.interface import LoadedModel
from pebench.results import pack_hits, unpack_hits

#: a pass counts as data-bound when the models waited this share of its time (after start-up) for batches
DATA_BOUND_WAIT = 0.2


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error, or a device/CPU allocator failure surfacing as a RuntimeError."""
    text = str(error).lower()
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def input_norm(model: LoadedModel) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a model expects its inputs normalised with: ImageNet's unless its meta says
    otherwise (timm: its pretrained config)."""
    return tuple(model.meta.get("mean", IMAGENET_MEAN)), tuple(model.meta.get("std", IMAGENET_STD))


@dataclass
class Tally:
    """Running counts of one (model, mode) cell during a pass, overall and per class."""

    model: LoadedModel
    mode: str
    batch_size: int  # halves when a forward runs out of memory, for the rest of the pass
    num_classes: int = 0  # length of the per-class counts (grown if a label is larger; give it under torchrun)
    correct1: int = 0
    correct5: int = 0
    n: int = 0
    timed_n: int = 0  # images after the first batch, which pays one-off start-up (CUDA kernels, caches)
    model_s: float = 0.0
    class_n: torch.Tensor = None  # int64 (num_classes,) on the CPU: images per class
    class_correct1: torch.Tensor = None  # int64 (num_classes,) on the CPU: top-1 hits per class
    #: per image, in stream order, whether top-1 was right (bool, CPU; one byte an image, so that
    #: comparisons of cells on the same images can be paired: pebench.reports.findings)
    image_hits: list = None

    def __post_init__(self) -> None:
        if self.class_n is None:
            self.class_n = torch.zeros(self.num_classes, dtype=torch.int64)
        if self.class_correct1 is None:
            self.class_correct1 = torch.zeros(self.num_classes, dtype=torch.int64)
        if self.image_hits is None:
            self.image_hits = []

    def step(self, x: torch.Tensor, y: torch.Tensor, autocast) -> None:
        started = time.perf_counter()
        start = 0
        hits = []
        while start < len(y):
            chunk = slice(start, start + self.batch_size)
            out_of_memory = False
            try:
                with autocast:
                    logits = self.model.net(x[chunk], self.mode)
            except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error) or self.batch_size == 1:
                    raise
                out_of_memory = True
            if out_of_memory:  # outside the except block, whose traceback would pin the failed activations
                self.batch_size //= 2
                if x.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits.append(top5[:, 0] == y[chunk])
            self.correct1 += int(hits[-1].sum())
            self.correct5 += int((top5 == y[chunk, None]).any(dim=1).sum())
            start += len(top5)
        labels = y.cpu()
        batch_hits = torch.cat(hits).cpu() if hits else torch.zeros(0, dtype=torch.bool)
        self.image_hits.append(batch_hits)
        self.class_n = _add_counts(self.class_n, labels)
        self.class_correct1 = _add_counts(self.class_correct1, labels[batch_hits])
        if self.n:
            self.model_s += time.perf_counter() - started  # the counts above synchronised the device
            self.timed_n += len(y)
        self.n += len(y)

    def state(self) -> dict:
        """The counts so far as JSON, for a pass's checkpoint (:mod:`pebench.runner.partial`)."""
        hits = torch.cat(self.image_hits).tolist() if self.image_hits else []
        return {"mode": self.mode, "batch_size": self.batch_size, "correct1": self.correct1,
                "correct5": self.correct5, "n": self.n, "timed_n": self.timed_n, "model_s": self.model_s,
                "class_n": self.class_n.tolist(), "class_correct1": self.class_correct1.tolist(),
                "image_hits": pack_hits(hits), "hits_n": len(hits)}

    def restore(self, state: dict) -> None:
        """Continue from counts :meth:`state` saved."""
        self.batch_size, self.correct1, self.correct5 = state["batch_size"], state["correct1"], state["correct5"]
        self.n, self.timed_n, self.model_s = state["n"], state["timed_n"], state["model_s"]
        self.class_n = torch.tensor(state["class_n"], dtype=torch.int64)
        self.class_correct1 = torch.tensor(state["class_correct1"], dtype=torch.int64)
        self.image_hits = [torch.tensor(unpack_hits(state["image_hits"], state["hits_n"]), dtype=torch.bool)]

    @property
    def running_top1(self) -> float | None:
        return self.correct1 / self.n if self.n else None


def _add_counts(total: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``total`` plus the count of each class in ``labels`` (longer when a label is past its end)."""
    counts = torch.bincount(labels, minlength=len(total))
    counts[: len(total)] += total
    return counts


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _reduce(tallies: list[Tally], stats: PassStats, wall: float, device: torch.device) -> float:
    """Sum counts over torchrun processes (max of times, gathered skipped files); returns the slowest wall."""
    import torch.distributed as dist

    # per-class counts ride in the same rows, all of one length on every process
    classes = torch.tensor([max(len(t.class_n) for t in tallies)], dtype=torch.int64, device=device)
    dist.all_reduce(classes, op=dist.ReduceOp.MAX)
    classes = int(classes.item())
    per_class = [torch.cat([torch.nn.functional.pad(c, (0, classes - len(c))) for c in (t.class_n, t.class_correct1)])
                 for t in tallies]
    counts = torch.cat([torch.tensor([[t.correct1, t.correct5, t.n, t.timed_n] for t in tallies]
                                     + [[stats.images, stats.valid, 0, 0]], dtype=torch.int64),
                        torch.stack([*per_class, torch.zeros(2 * classes, dtype=torch.int64)])], dim=1).to(device)
    dist.all_reduce(counts)
    times = torch.tensor([t.model_s for t in tallies] + [wall, stats.wait_s, stats.work_s, stats.first_batch_s],
                         dtype=torch.float64, device=device)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    counts = counts.cpu()
    for tally, row, seconds in zip(tallies, counts, times.tolist(), strict=False):
        tally.correct1, tally.correct5, tally.n, tally.timed_n = row[:4].tolist()
        tally.class_n, tally.class_correct1 = row[4 : 4 + classes].clone(), row[4 + classes :].clone()
        tally.model_s = seconds
    stats.images, stats.valid = counts[-1, 0].item(), counts[-1, 1].item()
    wall, stats.wait_s, stats.work_s, stats.first_batch_s = times[-4:].tolist()
    skipped: list = [None] * dist.get_world_size()
    dist.all_gather_object(skipped, stats.skipped)
    stats.skipped = sorted(name for part in skipped for name in part)
    # rank r streamed positions r, r + w, ...: its j-th image is the (j * w + r)-th of the whole pass
    shares: list = [None] * dist.get_world_size()
    dist.all_gather_object(shares, [torch.cat(t.image_hits) if t.image_hits else torch.zeros(0, dtype=torch.bool)
                                    for t in tallies])
    for i, tally in enumerate(tallies):
        parts = [share[i] for share in shares]
        merged = torch.zeros(sum(len(p) for p in parts), dtype=torch.bool)
        for rank, part in enumerate(parts):
            merged[rank :: len(parts)][: len(part)] = part
        tally.image_hits = [merged]
    return wall


@torch.inference_mode()
def run_pass(tallies: list, stream: SplitStream, device: torch.device,
             on_batch: Callable[[int], None] | None = None, sharded: bool = True,
             on_step: Callable[[int], None] | None = None) -> float:
    """Feed every batch of ``stream`` to every tally (anything with ``model`` and ``step(x, y,
    autocast)``); returns the pass's wall time (seconds). ``on_step(images)`` is told after each tally
    has run a batch, ``on_batch(images)`` after all of them have.

    On CUDA the models run under bf16 autocast. Under torch.distributed each process streams its
    own shard and the counts are summed at the end, so the result equals one process's (``sharded``
    False: one process streams everything, nothing is summed).
    """
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    norms = {input_norm(t.model): tuple(torch.tensor(v).view(1, 3, 1, 1).to(device) for v in input_norm(t.model))
             for t in tallies}
    started = time.perf_counter()
    for images, labels in stream:
        inputs = {key: normalize(images, mean, std) for key, (mean, std) in norms.items()}
        for tally in tallies:
            tally.step(inputs[input_norm(tally.model)], labels, autocast)
            if on_step:
                on_step(len(labels))
        if on_batch:
            on_batch(len(labels))
    wall = time.perf_counter() - started
    if sharded and _distributed():
        wall = _reduce(tallies, stream.stats, wall, device)
    return wall


def _top1(correct: int, n: int) -> dict:
    return {"n": n, "correct_top1": correct, "top1": correct / n if n else None,
            "top1_ci95": list(wilson_interval(correct, n))}


def metrics_of(tally: Tally, groups: dict[str, list[int]] | None = None) -> dict:
    """A cell's metrics (:mod:`pebench.results`): overall, per class, and per group of classes of the
    dataset (``groups``: name -> class indices, e.g. the synthetic data's "where" and "what")."""
    n = tally.n
    per_n, per_correct = tally.class_n.tolist(), tally.class_correct1.tolist()

    def total(counts: list[int], classes: list[int]) -> int:
        return sum(counts[k] for k in classes if k < len(counts))

    metrics = {"n": n, "correct_top1": tally.correct1, "correct_top5": tally.correct5,
               "top1": tally.correct1 / n if n else None, "top1_ci95": list(wilson_interval(tally.correct1, n)),
               "top5": tally.correct5 / n if n else None,
               "groups": {name: _top1(total(per_correct, classes), total(per_n, classes))
                          for name, classes in (groups or {}).items()},
               "per_class": {"n": per_n, "correct_top1": per_correct}}
    hits = torch.cat(tally.image_hits) if tally.image_hits else torch.zeros(0, dtype=torch.bool)
    if len(hits) == n and n:
        metrics["image_hits"] = pack_hits(hits.tolist())
    return metrics


def timing_of(tally: Tally, stats: PassStats, wall: float, cells: int) -> dict:
    """Where the pass's time went, as seen by one cell (see :mod:`pebench.results`)."""
    busy = max(wall - stats.first_batch_s, 1e-9)
    wait_fraction = stats.wait_s / busy
    return {
        "model_img_per_s": tally.timed_n / tally.model_s if tally.model_s else None,
        "pass_img_per_s": stats.images / wall if wall else None,
        "data_img_per_s": stats.data_img_per_s,
        "pass_wall_s": wall,
        "startup_s": stats.first_batch_s,
        "wait_fraction": wait_fraction,
        "data_bound": wait_fraction >= DATA_BOUND_WAIT,
        "workers": stats.workers,
        "data_source": stats.source,
        "cells_in_pass": cells,
        "batch_size": tally.batch_size,
    }
