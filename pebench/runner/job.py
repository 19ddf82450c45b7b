"""What every kind of cell is run with: the suite, the device, the torchrun position, what is loaded
already, and the :class:`Observer` that a user interface (the live terminal) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pebench.data import parse_data
from pebench.env import environment
from pebench.models.interface import LoadedModel
from pebench.models.resolve import load_models, profile_row
from pebench.resolution import Label
from pebench.runner.cells import Cell
from pebench.runner.partial import PassCheckpoint
from pebench.runner.suite import Suite


class Observer:
    """What a runner tells its user interface; every method may be left as this no-op."""

    def started(self, todo: list[Cell], passes: list[tuple[Label, int, float]]) -> None:
        """``passes``: (resolution, images, cells' worth of work) of every resolution still to run."""

    def resuming(self, done: int, total: int, path) -> None:
        """``done`` of this run's ``total`` cells are finished in the results file ``path`` already and kept."""

    def pass_resumed(self, res: Label, done: int, images: int) -> None:
        """An interrupted pass at ``res`` resumes: ``done`` of its ``images`` were counted before."""

    def pass_started(self, res: Label, images: int, tallies: dict, stage: str = "eval", done: int = 0) -> None:
        """``tallies``: Cell -> the running :class:`pebench.measure.evaluate.Tally` of each computed cell;
        ``stage``: "eval", "tuning" for the pass over the tune part that chooses tuned cells' scales, or
        "diagnostics" (tallies of :class:`pebench.measure.diagnostics.AttentionTally`); ``done``: images of
        ``images`` an interrupted run counted already."""

    def batch_done(self, res: Label, images: int) -> None:
        pass

    def pass_finished(self, res: Label, stats, wall: float, stage: str = "eval") -> None:
        """``stats``: the pass's :class:`pebench.data.stream.PassStats`; ``wall``: its seconds."""

    def step_done(self, res: Label, images: int) -> None:
        """One cell of the pass at ``res`` has run a batch of ``images``."""

    def cell_started(self, cell: Cell) -> None:
        pass

    def profile_progress(self, res: Label, done: int, total: int) -> None:
        """Profiling at ``res`` has done ``done`` of its ``total`` steps (rows measured, timing rounds)."""

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
    #: the results file's folder, where passes are saved as they go (its partial/); None: not saved
    run_folder: Path | None = None
    checkpoints: dict[Label, list[PassCheckpoint]] = field(default_factory=dict)

    def load(self, names) -> dict[str, LoadedModel]:
        """The models of ``names``, loading those not loaded yet."""
        loaded = load_models([n for n in names if n not in self.models], self.device)
        self.models |= {name: self._attending(model) for name, model in loaded.items()}
        return self.models

    def profile_row(self, name: str, size: str | None) -> LoadedModel:
        """The row `pebench profile` measures for (model or spec, size)."""
        return self._attending(profile_row(name, size))

    def _attending(self, loaded: LoadedModel) -> LoadedModel:
        """``loaded`` attending as the suite says (pebench's own models; others have no such choice)."""
        if hasattr(loaded.net, "attention_path"):
            loaded.net.attention_path = self.suite.attention
        return loaded

    def checkpoint(self, res: Label, cells: list[Cell], positions: range) -> PassCheckpoint | None:
        """Where the pass of ``cells`` over ``positions`` at ``res`` is saved (one process only)."""
        if self.run_folder is None or self.world > 1 or not cells:
            return None
        checkpoint = PassCheckpoint.of(self.run_folder, res, cells, positions)
        self.checkpoints.setdefault(res, []).append(checkpoint)
        return checkpoint

    def dataset(self):
        if self.data is None:
            self.data = parse_data(self.suite.data, self.suite.crop_pct, self.suite.decode)
        return self.data
