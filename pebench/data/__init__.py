"""Datasets: ``synthetic`` (rendered at any resolution, no download) and ``imagefolder:PATH``.

A dataset spec is a string. ``synthetic`` takes options like encodings do:
``synthetic:seed=0,train=10000,val=1000``. ``imagefolder:PATH`` is an ImageNet-style folder (one
subfolder per class) read with timm's eval transform.

Both read *batches of positions*: ``read(split, res, positions)`` gives the uint8 images of
exactly those items, so nothing ever holds a whole split; :mod:`pebench.data.stream` feeds them
through DataLoader workers and :mod:`pebench.data.cache` can keep a decoded split on disk.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from pebench.data import synthetic
from pebench.errors import PebenchError
from pebench.resolution import as_hw

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RENDER_VERSION = 6  # bump when the renderer's output changes, so stale caches are not reused
#: pixels rendered at once: the renderer's float intermediates stay near 1 GB at any resolution
RENDER_PIXELS = 1 << 23


class Items(NamedTuple):
    """Some items of a split: uint8 images (B, 3, H, W), labels (B,), and which rows hold an image.

    A row whose file could not be decoded is zero, ``valid`` False, and named in ``problems``
    ("path (error)"), so that no item is ever dropped without a trace.
    """

    images: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    problems: list[str]


def cache_dir() -> Path:
    return Path(os.environ.get("PEBENCH_CACHE", Path.home() / ".cache" / "pebench"))


@dataclass(frozen=True)
class SyntheticData:
    seed: int = 0
    train: int = 10000
    val: int = 1000

    @property
    def spec(self) -> str:
        return f"synthetic:seed={self.seed},train={self.train},val={self.val}"

    num_classes = synthetic.NUM_CLASSES

    @property
    def class_names(self) -> list[str]:
        return list(synthetic.CLASS_NAMES)

    @property
    def class_groups(self) -> dict[str, list[int]]:
        """The "where" classes are told apart only by position, the "what" ones by shape and colour."""
        return {name: list(classes) for name, classes in synthetic.CLASS_GROUPS.items()}

    #: rendering is deterministic and costly at high resolution: cached by default (data.cache)
    cached_by_default = True

    def size(self, split: str) -> int:
        return {"train": self.train, "val": self.val}[split]

    def label(self, split: str, position: int) -> int:
        return position % synthetic.NUM_CLASSES

    def fingerprint(self, split: str, res) -> str:
        key = f"{self.spec}|{split}|{res}|render-v{RENDER_VERSION}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def read(self, split: str, res, positions: list[int]) -> Items:
        """Render exactly these items, a few at a time so that memory stays bounded at 1024 px and beyond."""
        height, width = as_hw(res)
        out = torch.empty((len(positions), 3, height, width), dtype=torch.uint8)
        chunk = max(1, RENDER_PIXELS // (height * width))
        for start in range(0, len(positions), chunk):
            part = positions[start : start + chunk]
            images = synthetic.render(synthetic.sample_scenes(self.seed, split, part), (height, width))
            out[start : start + len(part)] = images.mul_(255).add_(0.5).to(torch.uint8)
        labels = torch.tensor([self.label(split, p) for p in positions], dtype=torch.int64)
        return Items(out, labels, torch.ones(len(positions), dtype=torch.bool), [])

    def read_crops(self, split: str, res: int, positions: list[int], rng, scale: tuple[float, float],
                   ratio: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Random-resized crops of these items' scenes, rendered analytically (training augmentation):
        uint8 images, quantised as evaluation's are, and labels."""
        scenes = synthetic.sample_scenes(self.seed, split, positions)
        images = synthetic.render(scenes, res, synthetic.random_crops(scenes, rng, scale, ratio))
        return images.mul_(255).add_(0.5).to(torch.uint8), torch.as_tensor(scenes.label, dtype=torch.int64)


def parse_data(spec: str, crop_pct: dict[int, float] | float = 0.875):
    """A dataset from its spec; ``crop_pct`` (one value or per resolution) applies to image folders."""
    name, _, rest = spec.partition(":")
    if name == "imagefolder":
        from pebench.data.imagefolder import ImageFolderData

        return ImageFolderData.open(rest, crop_pct)
    if name != "synthetic":
        raise PebenchError(f"unknown dataset '{spec}'; use 'synthetic[:seed=0,train=N,val=N]' or 'imagefolder:PATH'")
    values = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in ("seed", "train", "val") or not value.isdigit():
            raise PebenchError(f"bad dataset option '{item}' in '{spec}'; options: seed=INT, train=INT, val=INT")
        values[key] = int(value)
    return SyntheticData(**values)


def read_split(data, split: str, res, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` items (all when None) as uint8 images and labels, through the disk cache.

    For the few callers that index a whole split at random (training): the images are a read-only
    memory map of the cache file, paged in by the OS as they are used, not a copy in memory.
    """
    from pebench.data.stream import open_or_fill

    count = min(limit or data.size(split), data.size(split))
    split_cache = open_or_fill(data, split, res, count, cache_dir())
    return split_cache.images(count), split_cache.labels[:count]


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalize(batch_uint8: torch.Tensor, mean: torch.Tensor = _MEAN, std: torch.Tensor = _STD) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, normalised exactly as timm's eval transform does (ToTensor's
    division by 255, then Normalize's subtraction and division), so inputs match timm's bit for bit."""
    mean, std = mean.to(batch_uint8.device), std.to(batch_uint8.device)
    return batch_uint8.float().div_(255).sub_(mean).div_(std)

