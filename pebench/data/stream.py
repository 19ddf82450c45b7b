"""One pass over a split at one resolution, streamed: memory grows with the batch, never with the split.

A ``torch.utils.data.DataLoader`` whose worker processes decode (image folders) or render
(synthetic) whole batches of positions hands them to the main process in order, with pinned memory
and non-blocking copies on CUDA. The positions are this process's share of the split (under
torchrun, rank r of w takes positions r, r + w, ...: disjoint shards of the *file list*, nothing
decoded twice, no padding duplicates). When a cache folder is given, a complete cache entry is read
instead of decoding, and a pass over a whole prefix of the split writes one (see ``data.cache``).

The pass measures where its time went: seconds the workers spent producing batches (``work_s``)
and seconds the main process waited for them (``wait_s``), so a caller can tell a data-bound run
from a model-bound one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from pebench.data.cache import CacheWriter, SplitCache, cache_dir, cache_folder, check_space, lookup
from pebench.data.gpu_decode import Encoded
from pebench.data.items import Items
from pebench.env import cpu_cores
from pebench.errors import PebenchError, RunFailed
from pebench.resolution import Label


def default_workers() -> int:
    """min(8, the CPU cores this process may use)."""
    return min(8, cpu_cores())


class Batch(NamedTuple):
    positions: list[int]
    items: Items
    work_s: float  # seconds the producing process spent on it


class _Batches(Dataset):
    """Maps a list of positions to a :class:`Batch`: the DataLoader's sampler yields whole batches."""

    def __init__(self, source, split: str, res: Label):
        self.source, self.split, self.res = source, split, res

    def __getitem__(self, positions: list[int]) -> Batch:
        started = time.perf_counter()
        if isinstance(self.source, SplitCache):
            items = self.source.read(positions)
        else:
            items = self.source.read(self.split, self.res, positions)
        return Batch(positions, items, time.perf_counter() - started)


@dataclass
class PassStats:
    workers: int
    source: str  # "decoded" | "cache" | "decoded on cuda" (--decode gpu)
    images: int = 0  # items delivered, undecodable ones included
    valid: int = 0
    batches: int = 0
    work_s: float = 0.0
    wait_s: float = 0.0  # waiting for batches after the first
    first_batch_s: float = 0.0  # start-up: workers starting and producing the first batch
    device_decode_s: float = 0.0  # --decode gpu: the main process decoding batches on the device
    skipped: list[str] = field(default_factory=list)

    @property
    def data_img_per_s(self) -> float | None:
        """What the data side can deliver: per-process production rate x processes producing, or the main
        process's device decoding where that is slower."""
        rates = [self.images / self.work_s * max(1, self.workers)] if self.work_s else []
        rates += [self.images / self.device_decode_s] if self.device_decode_s else []
        return min(rates) if rates else None


class SplitStream:
    """Iterate ``(uint8 images, labels)`` batches of the decodable items, on ``device``; see the module doc."""

    def __init__(self, data, split: str, res: Label, positions: list[int], batch_size: int, workers: int,
                 device: torch.device, cache: Path | None = None, cache_required: bool = False, score_from: int = 0,
                 fill_cache: bool = True):
        self.data, self.split, self.res, self.positions = data, split, res, positions
        self.score_from = score_from  # positions below it are read (and cached) but neither yielded nor counted
        self.batch_size, self.device = batch_size, device
        # --decode gpu: neither read nor written through the cache, whose images are the PIL path's, on the host
        on_device = getattr(data, "decodes_on_device", False)
        cache = None if on_device else cache
        self.cache, self.cache_required = cache, cache_required
        self.cached = lookup(cache, data, split, res, max(positions) + 1) if cache and positions else None
        # a memory-mapped read is a copy: worker processes would only add start-up and a second copy
        self.workers = 0 if self.cached else workers
        source = "cache" if self.cached else f"decoded on {device.type}" if on_device else "decoded"
        self.stats = PassStats(self.workers, source)
        self.consumed = 0  # positions read so far (in order), the batch being yielded included
        self.writing = bool(fill_cache and cache and not self.cached and positions == list(range(len(positions))))
        if self.writing:
            self._check_space()

    def _check_space(self) -> None:
        """Fails (an explicit --cache) or gives up caching (the default one) before any work is done."""
        try:
            check_space(self.cache, len(self.positions), self.res)
        except PebenchError:
            if self.cache_required:
                raise
            self.writing = False

    def _loader(self) -> DataLoader:
        source = self.cached or self.data
        chunks = [self.positions[i : i + self.batch_size] for i in range(0, len(self.positions), self.batch_size)]
        return DataLoader(_Batches(source, self.split, self.res), batch_size=None, sampler=chunks,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda",
                          prefetch_factor=2 if self.workers else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        writer = CacheWriter(self.cache, self.data, self.split, self.res, len(self.positions)) if self.writing else None
        complete = False
        try:
            batches = iter(self._loader())
            started = time.perf_counter()
            while True:
                waited = time.perf_counter()
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except RuntimeError as error:
                    if "DataLoader worker" not in str(error):
                        raise
                    raise RunFailed(f"a data worker process died ({str(error).splitlines()[0]}); rerun with "
                                    "--workers 0 to see its error in this process, or lower --batch-size or "
                                    "--workers if memory ran out (finished cells are kept)") from None
                if isinstance(batch.items, Encoded):  # --decode gpu: the models wait for it as for a worker's batch
                    decoding = time.perf_counter()
                    batch = batch._replace(items=self.data.finish(batch.items, self.res, self.device))
                    self.stats.device_decode_s += time.perf_counter() - decoding
                now = time.perf_counter()
                if self.stats.batches == 0:
                    self.stats.first_batch_s = now - started
                else:
                    self.stats.wait_s += now - waited
                if writer:
                    writer.write(batch.positions, batch.items)
                self.consumed += len(batch.positions)
                batch = _scored_part(batch, self.score_from)
                self._count(batch)
                if batch.positions:
                    yield self._on_device(batch.items)
            complete = True
        finally:
            if writer:
                writer.commit() if complete else writer.abort()

    @property
    def next_position(self) -> int | None:
        """The first position not read yet; None once every position is."""
        return self.positions[self.consumed] if self.consumed < len(self.positions) else None

    def _count(self, batch: Batch) -> None:
        self.stats.batches += 1
        self.stats.images += len(batch.positions)
        self.stats.valid += int(batch.items.valid.sum())
        self.stats.work_s += batch.work_s
        self.stats.skipped += batch.items.problems

    def _on_device(self, items: Items) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = items.images, items.labels
        if not bool(items.valid.all()):
            images, labels = images[items.valid], labels[items.valid]
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def _scored_part(batch: Batch, score_from: int) -> Batch:
    """The rows of ``batch`` at positions >= ``score_from``."""
    if not score_from or batch.positions[0] >= score_from:
        return batch
    keep = [i for i, p in enumerate(batch.positions) if p >= score_from]
    items = batch.items
    problems = [text for text, ok, p in zip(_problems_by_row(items), items.valid.tolist(), batch.positions,
                                             strict=True) if not ok and p >= score_from]
    rows = torch.tensor(keep, dtype=torch.long)
    return Batch([batch.positions[i] for i in keep],
                 Items(items.images[rows], items.labels[rows], items.valid[rows], problems), batch.work_s)


def _problems_by_row(items: Items) -> list[str | None]:
    """``items.problems`` aligned with the rows (None for a valid row)."""
    problems = iter(items.problems)
    return [None if ok else next(problems) for ok in items.valid.tolist()]


def open_or_fill(data, split: str, res: Label, count: int, directory: Path) -> SplitCache:
    """The cache entry of the first ``count`` items, decoded or rendered into ``directory`` first if needed."""
    entry = lookup(directory, data, split, res, count)
    if entry is None:
        for _ in SplitStream(data, split, res, list(range(count)), 64, default_workers(), torch.device("cpu"),
                             directory, cache_required=True):
            pass
        entry = lookup(directory, data, split, res, count)
    return entry


def val_stream(data, res: Label, positions: range | list[int], batch_size: int, workers: int | None,
               device: torch.device, cache: str | bool | None, score_from: int = 0,
               fill_cache: bool = True) -> SplitStream:
    """A pass over ``positions`` of the val split, with a suite's ``workers`` (None: :func:`default_workers`)
    and ``cache`` setting (:func:`pebench.data.cache.cache_folder`)."""
    folder, required = cache_folder(cache, data)
    return SplitStream(data, "val", res, list(positions), batch_size,
                       default_workers() if workers is None else workers, device, folder, required,
                       score_from=score_from, fill_cache=fill_cache)


def read_split(data, split: str, res, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` items (all when None) as uint8 images and labels, through the disk cache.

    For the few callers that index a whole split at random (training): the images are a read-only
    memory map of the cache file, paged in by the OS as they are used, not a copy in memory.
    """
    count = min(limit or data.size(split), data.size(split))
    split_cache = open_or_fill(data, split, res, count, cache_dir())
    return split_cache.images(count), split_cache.labels[:count]
