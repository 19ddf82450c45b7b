"""The training recipe's settings, as plain data: the command line shows its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    size: str = "micro"
    encoding: str = "ape"
    data: str = "synthetic"
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.5
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random-resized crops, as DeiT's (pebench.data.synthetic)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    # The position encoding's parameters learn at this multiple of lr: Adam moves a parameter by about
    # lr per step, and a relative-bias entry must reach logit-sized values (several units) within the
    # schedule to steer attention (README, "How the zoo is trained").
    position_lr_scale: float = 30.0
    where_share: float | None = 0.5  # share of each epoch's samples from the *where* classes (None: as drawn, 3/10)
    seed: int = 0
    res: int = 224
    init: str | None = None  # fine-tuning: the trained model (shipped name or checkpoint) to start from
    mode: str = "native"  # the resolution mode the forward runs in (fine-tuning off the trained grid)
    val_limit: int | None = None  # validate on the first N val images (None: all)
    history: list = field(default_factory=list)
