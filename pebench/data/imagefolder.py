"""An ImageNet-style folder (``PATH/<class>/<image>``) read with timm's evaluation transform.

The shorter side is resized to ``res / crop_pct`` (bicubic, antialiased), the centre ``res`` x
``res`` is cropped, and normalisation uses ImageNet statistics (done by the evaluator, as for every
dataset). ``crop_pct`` is 0.875 by default and may differ per resolution: DeiT/timm evaluate at
0.875 or 0.9 at 224 but 1.0 for native-384 models; RoPE-ViT uses 1.0 everywhere. Files that cannot
be decoded are skipped and listed in ``skipped``, never dropped silently.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from pebench.errors import PebenchError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif", ".jpe"}


@dataclass
class ImageFolderData:
    root: Path
    classes: list[str]
    files: list[tuple[Path, int]]
    crop_pct: dict[int, float] | float = 0.875
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: str, crop_pct: dict[int, float] | float = 0.875) -> ImageFolderData:
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

    def size(self, split: str) -> int:
        return len(self.files)

    def crop_for(self, res: int) -> float:
        return self.crop_pct.get(res, 0.875) if isinstance(self.crop_pct, dict) else self.crop_pct

    def fingerprint(self, split: str, res: int) -> str:
        listing = "|".join(f"{f.relative_to(self.root)}:{f.stat().st_size}" for f, _ in self.files)
        key = f"{self.spec}|{res}|{self.crop_for(res)}|{listing}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def load(self, split: str, res: int, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decodable images among the first ``limit`` files (all when None) at ``res`` (uint8) and
        their labels; undecodable ones go to ``skipped``. Files alternate between classes."""
        resize_to = math.floor(res / self.crop_for(res))
        images, labels = [], []
        self.skipped = []
        for path, label in self.files[:limit]:
            try:
                with Image.open(path) as img:
                    img = img.convert("RGB")
            except (OSError, UnidentifiedImageError, ValueError) as error:
                self.skipped.append(f"{path.relative_to(self.root)} ({type(error).__name__})")
                continue
            img = TF.resize(img, resize_to, interpolation=InterpolationMode.BICUBIC, antialias=True)
            img = TF.center_crop(img, [res, res])
            images.append(TF.pil_to_tensor(img))
            labels.append(label)
        if not images:
            raise PebenchError(f"no image in '{self.root}' could be decoded ({len(self.skipped)} skipped)")
        return torch.stack(images), torch.tensor(labels)
