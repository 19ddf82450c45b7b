"""The training recipe's settings, as plain data: the command line shows its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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


#: per-model departures from the training recipe's defaults (:class:`TrainConfig`), applied by
#: ``pebench train --all``. LookHere and ALiBi have no position parameters, so the position learning
#: rate cannot speed them up; LookHere's *where* accuracy was still rising at 50k samples (84%, README).
#: Shaw's contextual relative keys reached 87.3% *where* after the default 5 epochs, still rising by
#: 4-9 points an epoch (README, zoo v2). CPB keeps the base learning rate for its MLP: at 30x it
#: drove the 16 * sigmoid(MLP) bias into saturation (pre-sigmoid magnitudes of 85 to 250), a constant
#: per head, and *where* stayed at chance (README, zoo v2). PEG x5's convolutions fell from chance too
#: at 30x (34.3 / 33.3 / 30.0% *where* after epochs 1-3) and learned at 1x. One PEG reaches the bar at
#: neither rate (52.3% after 5 epochs at 30x; 31.7% after 3 at 1x), so it keeps the default.
#: FIRE neither: at 30x its *where* plateaued at 61% (64.0 / 60.7 / 61.0% after epochs 3-5), with
#: biases from -138 to +57 that fix each head's attention by position; at 1x it stayed at chance
#: (31.3% after epoch 3).
#: Learned APE (alone and with PEG) and both RoPEs train for 2 epochs: in their 5-epoch runs they were
#: at 95-100% *where* and 97.6-99.7% top-1 after epoch 2, and the 3 epochs saved per model bring the
#: whole zoo under 4 hours on two cores (README, zoo v2).
ZOO_RECIPES: dict[str, dict] = {
    "ape": {"epochs": 2},
    "rope_axial": {"epochs": 2},
    "rope_mixed": {"epochs": 2},
    "ape+peg": {"epochs": 2},
    "cpb": {"position_lr_scale": 1.0},
    "peg_x5": {"position_lr_scale": 1.0},
    "shaw": {"epochs": 8},
    "lookhere": {"epochs": 8},
    "alibi": {"epochs": 8},
}


def resume_state_path(checkpoint: Path) -> Path:
    """Where training into ``checkpoint`` keeps its state after each finished epoch, until it is written."""
    return checkpoint.with_name(checkpoint.name + ".state.pt")
