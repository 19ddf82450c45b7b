"""A decoded split on disk: the uint8 images of the first N items of (dataset, split, resolution), memory-mapped.

Two files per entry in the cache folder, named by the dataset's fingerprint (spec, split, resolution,
crop, renderer version or the folder's listing): ``NAME.u8`` holds N x 3 x H x W bytes, row after
row; ``NAME.json`` says what it holds (count, labels, the rows whose file could not be decoded).
Reading maps the file, so a rerun skips decoding without loading the split into memory.

Writing is all or nothing: rows are appended to a temporary file whose full size is reserved first
(a full disk fails before anything is written, with an error that says how much is needed), and
the data file and then its header are renamed into place only once every row is there. An entry
is only ever replaced by a longer one with the same fingerprint, whose first rows are the same
bytes, so a header never describes rows that differ from the data beside it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pebench.atomic import atomic_path
from pebench.data.items import Items
from pebench.errors import PebenchError
from pebench.resolution import as_hw

FORMAT = 1


def cache_dir() -> Path:
    """The default cache folder: $PEBENCH_CACHE, else ~/.cache/pebench."""
    return Path(os.environ.get("PEBENCH_CACHE", Path.home() / ".cache" / "pebench"))


def cache_folder(setting: str | bool | None, data) -> tuple[Path | None, bool]:
    """(folder, required) for a suite's or --cache's ``setting``: a folder given explicitly must work;
    None means the default folder for datasets cached by default (synthetic renders), best effort;
    False means no cache."""
    if setting is False:
        return None, False
    if setting:
        return Path(setting).expanduser(), True
    return (cache_dir(), False) if data.cached_by_default else (None, False)


def entry_name(data, split: str, res) -> str:
    kind = data.spec.partition(":")[0]
    return f"{kind}-{split}-{res}px-{data.fingerprint(split, res)}"


@dataclass
class SplitCache:
    """A complete cache entry, opened lazily in every process that reads it (DataLoader workers too)."""

    path: Path  # the .u8 file
    count: int
    shape: tuple[int, int, int]
    labels: torch.Tensor
    invalid: dict[int, str]
    _map: np.ndarray | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_map": None}  # a worker maps the file itself

    def _rows(self) -> np.ndarray:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.count, *self.shape))
        return self._map

    def images(self, count: int) -> torch.Tensor:
        """A read-only view of the first ``count`` rows, paged in by the OS as they are used."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns that the memory map is read-only
            return torch.from_numpy(self._rows()[:count])

    def read(self, positions: list[int]) -> Items:
        first, count = positions[0], len(positions)
        if positions == list(range(first, first + count)):
            rows = self._rows()[first : first + count].copy()  # a slice is a view of the read-only map
        else:
            rows = self._rows()[positions]  # fancy indexing copies
        images = torch.from_numpy(rows)
        valid = torch.tensor([p not in self.invalid for p in positions], dtype=torch.bool)
        return Items(images, self.labels[positions], valid, [self.invalid[p] for p in positions if p in self.invalid])


def lookup(directory: Path, data, split: str, res, count: int) -> SplitCache | None:
    """The cache entry holding at least the first ``count`` items, or None."""
    base = directory / entry_name(data, split, res)
    header_path, rows_path = base.with_suffix(".json"), base.with_suffix(".u8")
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
        size = rows_path.stat().st_size
    except (OSError, ValueError):
        return None
    shape = tuple(header.get("shape", ()))
    if header.get("format") != FORMAT or header["count"] < count or len(shape) != 3:
        return None
    if size < header["count"] * int(np.prod(shape)):
        return None  # not ours, or cut short by something else: decode again
    return SplitCache(rows_path, header["count"], shape, torch.tensor(header["labels"], dtype=torch.int64),
                      {int(k): v for k, v in header["invalid"].items()})


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def _bytes(count: int, res) -> int:
    height, width = as_hw(res)
    return count * 3 * height * width


def _no_space(directory: Path, count: int, res, free: int) -> PebenchError:
    return PebenchError(f"cache folder {directory} has {_gb(free)} free but {count:,} images at {res} px need "
                        f"{_gb(_bytes(count, res))}; free space, choose another --cache folder, or run without "
                        "--cache (nothing was written)")


def check_space(directory: Path, count: int, res) -> None:
    """A one-line error, before any work, when ``count`` images at ``res`` would not fit in ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(directory).free
    except OSError as error:
        raise PebenchError(f"cache folder {directory} is not usable ({error.strerror}); choose another "
                           "--cache folder or run without --cache") from None
    if _bytes(count, res) > free:
        raise _no_space(directory, count, res, free)


class CacheWriter:
    """Appends the rows of one pass, in order, and publishes the entry when every row is there."""

    def __init__(self, directory: Path, data, split: str, res, count: int):
        check_space(directory, count, res)
        self.base = directory / entry_name(data, split, res)
        self.count, self.res = count, res
        self.labels: list[int] = []
        self.invalid: dict[int, str] = {}
        self.header = {"format": FORMAT, "spec": data.spec, "split": split, "res": res,
                       "fingerprint": data.fingerprint(split, res), "count": count, "shape": [3, *as_hw(res)]}
        self.tmp = self.base.with_name(f".{self.base.name}.u8.tmp{os.getpid()}")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit() or abort()
        try:
            os.posix_fallocate(self.file.fileno(), 0, _bytes(count, res))
        except OSError as error:
            self.abort()
            if error.errno == errno.ENOSPC:
                raise _no_space(directory, count, res, shutil.disk_usage(directory).free) from None
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem that cannot reserve
                raise

    def write(self, positions: list[int], items: Items) -> None:
        first = len(self.labels)
        if positions != list(range(first, first + len(positions))):
            raise RuntimeError("cache rows must arrive in order")  # a pebench bug, not bad input
        try:
            self.file.write(items.images.numpy().tobytes())
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            self.abort()
            directory = self.base.parent
            raise _no_space(directory, self.count, self.res, shutil.disk_usage(directory).free) from None
        self.labels += items.labels.tolist()
        problems = iter(items.problems)
        self.invalid |= {p: next(problems) for p, ok in zip(positions, items.valid.tolist(), strict=True) if not ok}

    def commit(self) -> None:
        if len(self.labels) != self.count:
            raise RuntimeError(f"cache holds {len(self.labels)} rows, expected {self.count}")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.base.with_suffix(".u8"))
        with atomic_path(self.base.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(self.header | {"labels": self.labels, "invalid": self.invalid}), encoding="utf-8")

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)
