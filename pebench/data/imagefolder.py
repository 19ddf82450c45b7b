"""An ImageNet-style folder (``PATH/<class>/<image>``) read with timm's evaluation transform.

The shorter side is resized to ``floor(res / crop_pct)`` (bicubic, antialiased), the centre
``res`` x ``res`` is cropped (a non-square H x W: see :func:`decode`), and normalisation uses the
model's mean and std (done on the batch, as for every dataset): timm's
``create_transform(input_size=res, crop_pct=..., interpolation='bicubic')`` step for step.
``crop_pct`` is 0.875 by default and may differ per resolution: DeiT/timm evaluate at
0.875 or 0.9 at 224 but 1.0 for native-384 models; RoPE-ViT uses 1.0 everywhere. A file that cannot
be decoded (unreadable, truncated, not an image) becomes an invalid row named in ``Items.problems``:
counted and listed, never dropped silently.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from pebench.data.items import Items
from pebench.errors import PebenchError
from pebench.resolution import as_hw
from pebench.settings import DEFAULT_CROP_PCT, CropPct, crop_at

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif", ".jpe"}


def decode(path: Path | BinaryIO, res, crop_pct: float) -> torch.Tensor:
    """One file (a path, or its bytes as a file object) through timm's eval transform, as uint8 (3, H, W);
    raises OSError/ValueError if unreadable.

    Square: the shorter side to floor(res / crop_pct), then the centre crop. Non-square (H, W):
    timm resizes the whole image to (floor(H / crop_pct), floor(W / crop_pct)), changing its aspect,
    then crops the centre; so does this."""
    height, width = as_hw(res)
    with Image.open(path) as img:
        img = img.convert("RGB")
    size = math.floor(height / crop_pct) if height == width else [math.floor(height / crop_pct),
                                                                   math.floor(width / crop_pct)]
    img = TF.resize(img, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.pil_to_tensor(TF.center_crop(img, [height, width]))


@dataclass
class ImageFolderData:
    root: Path
    classes: list[str]
    files: list[tuple[Path, int]]
    crop_pct: CropPct = DEFAULT_CROP_PCT

    cached_by_default = False  # decoding is what --cache DIR is for; a folder's cache is the user's call

    @classmethod
    def open(cls, path: str, crop_pct: CropPct = DEFAULT_CROP_PCT) -> ImageFolderData:
        root = Path(path).expanduser()
        if not path or not root.is_dir():
            raise PebenchError(f"image folder '{path}' does not exist; give imagefolder:PATH with one subfolder "
                               "per class")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not classes:
            raise PebenchError(f"image folder '{root}' has no class subfolders; expected {root}/<class>/<image>")
        per_class = [[(f, label) for f in sorted((root / name).rglob("*")) if f.suffix.lower() in EXTENSIONS]
                     for label, name in enumerate(classes)]
        # round-robin over classes, so that the first N files (--n N) cover every class evenly
        files = [item for group in zip_longest(*per_class) for item in group if item is not None]
        if not files:
            raise PebenchError(f"image folder '{root}' has {len(classes)} class folders but no images "
                               f"({', '.join(sorted(EXTENSIONS))})")
        return cls(root, classes, files, crop_pct)

    @property
    def spec(self) -> str:
        return f"imagefolder:{self.root}"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    @property
    def class_groups(self) -> dict[str, list[int]]:
        """A folder's classes form no groups."""
        return {}

    def size(self, split: str) -> int:
        return len(self.files)

    def label(self, split: str, position: int) -> int:
        return self.files[position][1]

    def crop_for(self, res) -> float:
        return crop_at(self.crop_pct, res)

    @cached_property
    def _listing_digest(self) -> str:
        """Every file's name, size and modification time: an edited folder never passes for the old one."""
        digest = hashlib.sha256()
        for f, _ in self.files:
            stat = f.stat()
            digest.update(f"{f.relative_to(self.root)}:{stat.st_size}:{stat.st_mtime_ns}|".encode())
        return digest.hexdigest()

    def fingerprint(self, split: str, res) -> str:
        key = f"{self.spec}|{res}|{self.crop_for(res)}|{self._listing_digest}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def read(self, split: str, res, positions: list[int]) -> Items:
        """Decode exactly these files; an undecodable one leaves a zero row, marked invalid and named."""
        images = torch.zeros((len(positions), 3, *as_hw(res)), dtype=torch.uint8)
        valid = torch.ones(len(positions), dtype=torch.bool)
        problems = []
        crop = self.crop_for(res)
        for row, position in enumerate(positions):
            path = self.files[position][0]
            try:
                images[row] = decode(path, res, crop)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
                valid[row] = False
                problems.append(f"{path.relative_to(self.root)} ({type(error).__name__}: {error})")
        labels = torch.tensor([self.files[p][1] for p in positions], dtype=torch.int64)
        return Items(images, labels, valid, problems)
