"""The training recipe's settings, as plain data: the command line shows its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    size: str = "micro"
    encoding: str = "ape"
    data: str = "synthetic"
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.5
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random-resized crops, as DeiT's (pebench.data.synthetic)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    position_lr_scale: float = 1.0  # the position encoding's parameters learn at this multiple of lr
    where_share: float | None = None  # share of each epoch's samples from the *where* classes (None: as drawn, 3/10)
    seed: int = 0
    res: int = 224
    history: list = field(default_factory=list)
