"""What every kind of cell is run with: the suite, the device, the torchrun position, what is loaded
already, and the :class:`Observer` that a user interface (the live terminal) implements."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pebench.data import parse_data
from pebench.env import environment
from pebench.models.interface import LoadedModel
from pebench.models.resolve import load_models
from pebench.resolution import Label
from pebench.runner.cells import Cell
from pebench.runner.suite import Suite


class Observer:
    """What a runner tells its user interface; every method may be left as this no-op."""

    def started(self, todo: list[Cell], passes: list[tuple[Label, int, float]]) -> None:
        """``passes``: (resolution, images, cells' worth of work) of every resolution still to run."""

    def pass_started(self, res: Label, images: int, tallies: dict, stage: str = "eval") -> None:
        """``tallies``: Cell -> the running :class:`pebench.measure.evaluate.Tally` of each computed cell;
        ``stage``: "eval", "tuning" for the pass over the tune part that chooses tuned cells' scales, or
        "diagnostics" (tallies of :class:`pebench.measure.diagnostics.AttentionTally`)."""

    def batch_done(self, res: Label, images: int) -> None:
        pass

    def pass_finished(self, res: Label, stats, wall: float, stage: str = "eval") -> None:
        """``stats``: the pass's :class:`pebench.data.stream.PassStats`; ``wall``: its seconds."""

    def cell_started(self, cell: Cell) -> None:
        pass

    def record(self, cell: Cell, record: dict) -> None:
        pass


@dataclass
class Job:
    """One run of cells. ``models`` and ``data`` fill as cells need them; ``natives`` holds the native
    eval records of each (model, resolution), earlier runs' included, for interp cells that run the same
    computation; ``profile_rows``: (model or spec, size) -> the row `pebench profile` measures."""

    suite: Suite
    device: torch.device
    rank: int = 0
    world: int = 1
    observer: Observer = field(default_factory=Observer)
    models: dict[str, LoadedModel] = field(default_factory=dict)
    data: object = None
    natives: dict = field(default_factory=dict)
    profile_rows: dict = field(default_factory=dict)
    env: dict = field(default_factory=environment)

    def load(self, names) -> dict[str, LoadedModel]:
        """The models of ``names``, loading those not loaded yet."""
        self.models |= load_models([n for n in names if n not in self.models], self.device)
        return self.models

    def dataset(self):
        if self.data is None:
            self.data = parse_data(self.suite.data, self.suite.crop_pct)
        return self.data
