"""The shipped models: a ``micro`` ViT per encoding family, trained by pebench itself on
``synthetic`` at 224 (``pebench train --all`` rebuilds them; each sidecar records its command,
recipe and learning curve).

Enters: a shipped name. Leaves: its encoding spec and the path of its checkpoint in this folder
(loaded by :mod:`pebench.models.resolve`), and the accuracy bars the zoo is held to.

Two kinds of learned APE are shipped. ``ape`` and ``ape+peg`` start from the 2D sin-cos grid
(``ape:init=sincos``): in early exploratory runs, position use did not emerge from DeiT's random 0.02
init within this zoo's training budget (docs/zoo.md, "Measured so far"). ``ape_random`` and
``ape_random+peg`` start as DeiT's and CPVT's do, from the truncated normal (``ape``, ``ape+peg``), and
are trained with the zoo's default recipe: the ones to set beside DeiT's and CPVT's published APE.
"""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).parent
#: what every shipped model is built as: training size, classes (the synthetic task's) and resolution;
#: the recipe's settings beyond these are in :mod:`pebench.training.recipe` (ZOO_RECIPES)
ZOO_BUILD = {"size": "micro", "num_classes": 10, "train_res": 224}

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
    "ape_random": "ape",
    "ape_random+peg": "ape+peg",
    "none": "none",
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

