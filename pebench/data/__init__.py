"""Datasets: ``synthetic`` (rendered at any resolution, no download) and ``imagefolder:PATH``.

A dataset spec is a string. ``synthetic`` takes options like encodings do:
``synthetic:seed=0,train=10000,val=1000``. Rendered splits are cached on disk per (spec, split,
resolution) as uint8, so a split is rendered once per resolution and reused by every model and mode.
``imagefolder:PATH`` is an ImageNet-style folder (one subfolder per class) read with timm's eval
transform. Both give ``load(split, res) -> (uint8 images (N, 3, res, res), labels (N,))``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pebench.atomic import atomic_path
from pebench.data import synthetic
from pebench.errors import PebenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RENDER_VERSION = 6  # bump when the renderer's output changes, so stale caches are not reused


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

    def size(self, split: str) -> int:
        return {"train": self.train, "val": self.val}[split]

    def labels(self, split: str) -> torch.Tensor:
        return torch.arange(self.size(split)) % synthetic.NUM_CLASSES

    def fingerprint(self, split: str, res: int) -> str:
        key = f"{self.spec}|{split}|{res}|render-v{RENDER_VERSION}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def load(self, split: str, res: int, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``limit`` images (all when None); the whole split is rendered and cached once."""
        return self.images_uint8(split, res)[:limit], self.labels(split)[:limit]

    def images_uint8(self, split: str, res: int, chunk: int = 128) -> torch.Tensor:
        """The whole split at ``res`` as uint8 (N, 3, res, res), rendered once and cached on disk."""
        path = cache_dir() / f"synthetic-{self.fingerprint(split, res)}.npy"
        if path.exists():
            return torch.from_numpy(np.load(path))
        n = self.size(split)
        out = np.empty((n, 3, res, res), dtype=np.uint8)
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n))
            images = synthetic.render(synthetic.sample_scenes(self.seed, split, idx), res)
            out[start : start + len(idx)] = (images * 255 + 0.5).to(torch.uint8).numpy()
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, out)
        return torch.from_numpy(out)


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


_SCALE = (1 / (255 * torch.tensor(IMAGENET_STD))).view(1, 3, 1, 1)
_SHIFT = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1)


def normalize(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalised with ImageNet statistics, in one allocation."""
    return batch_uint8.float().mul_(_SCALE).add_(_SHIFT)
