"""The shipped models: a ``micro`` ViT per encoding family, trained by pebench itself on
``synthetic`` at 224 (``pebench train --all`` rebuilds them; each sidecar records its command,
recipe and learning curve).

The learned APE models start from the 2D sin-cos grid (``ape:init=sincos``): from DeiT's random
0.02 init, position use did not emerge within this zoo's training budget (README, "Measured so far").
"""

from __future__ import annotations

from pathlib import Path

from pebench.models.checkpoint import load_checkpoint
from pebench.encodings.spec import did_you_mean
from pebench.errors import PebenchError

ZOO_DIR = Path(__file__).parent

#: shipped name -> encoding spec, in build order: the quick suite's models (the CI gate) come first,
#: the position-blind baseline last
ZOO: dict[str, str] = {
    "ape": "ape:init=sincos",
    "sincos": "sincos",
    "irpe": "rpe",
    "peg": "peg",
    "rope_axial": "rope",
    "shaw": "rpe:method=clip",
    "relpos_table": "relpos_table",
    "cpb": "cpb",
    "spvit": "spvit",
    "peg_x5": "peg:blocks=0-4",
    "rope_mixed": "rope:variant=mixed",
    "alibi": "alibi",
    "ape+peg": "ape:init=sincos+peg",
    "lookhere": "lookhere",
    "fire": "fire",
    "none": "none",
}

#: per-model departures from the training recipe's defaults (pebench.training.recipe.TrainConfig), applied by
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

#: what every shipped model reaches on the full synthetic val split at 224 (tests/test_zoo.py): the
#: *where* classes (chance 1/3), so that its resolution curves speak about position, and top-1
WHERE_BAR, TOP1_BAR = 0.90, 0.90
#: shipped models whose *where* accuracy stays below the bar under the zoo recipe, and why (README, zoo
#: v2); their resolution curves say little about position
BELOW_WHERE_BAR: dict[str, str] = {
    "none": "no position encoding: chance by construction",
    "alibi": "2D ALiBi's bias depends on the distance only, not the direction (30.3% after 8 epochs)",
    "peg": "one 3x3 PEG reached 52% after 5 epochs at 30x, still rising slowly; at 1x it stayed at chance",
    "fire": "its MLP plateaued at 61% with 30x the learning rate and stayed at chance at 1x",
}


def zoo_path(name: str) -> Path:
    return ZOO_DIR / f"{name.replace('+', '_')}.safetensors"


def resolve_model(name_or_path: str):
    """(model, sidecar, source, path) for a shipped name, a checkpoint path, or ``timm:NAME[@FILE]``."""
    from pebench.models.timm_adapter import PREFIX, build_timm_model

    if name_or_path.startswith(PREFIX):
        spec, _, file = name_or_path.partition("@")
        model, meta = build_timm_model(spec, Path(file) if file else None)
        return model, meta, "timm", meta["checkpoint"]
    if name_or_path in ZOO:
        path = zoo_path(name_or_path)
        if not path.exists():
            raise PebenchError(f"shipped model '{name_or_path}' is not built in this install ({path}); "
                               "rebuild the zoo with `pebench train --all`")
        model, meta = load_checkpoint(path)
        return model, meta, "zoo", path
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        model, meta = load_checkpoint(path)
        return model, meta, "file", path
    raise PebenchError(f"unknown model '{name_or_path}'{did_you_mean(name_or_path, list(ZOO))}: not a shipped "
                       f"model ({', '.join(ZOO)}), a .safetensors checkpoint, nor timm:NAME")
