"""What every dataset hands the stream: a batch of items as uint8 images with labels and validity, and
the normalisation every model input goes through."""

from __future__ import annotations

from typing import NamedTuple

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Items(NamedTuple):
    """Some items of a split: uint8 images (B, 3, H, W), labels (B,), and which rows hold an image.

    A row whose file could not be decoded is zero, ``valid`` False, and named in ``problems``
    ("path (error)"), so that no item is ever dropped without a trace.
    """

    images: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    problems: list[str]


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalize(batch_uint8: torch.Tensor, mean: torch.Tensor = _MEAN, std: torch.Tensor = _STD) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, normalised exactly as timm's eval transform does (ToTensor's
    division by 255, then Normalize's subtraction and division), so inputs match timm's bit for bit."""
    mean, std = mean.to(batch_uint8.device), std.to(batch_uint8.device)
    return batch_uint8.float().div_(255).sub_(mean).div_(std)

