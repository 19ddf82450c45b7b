"""A resolution pass saved as it goes, so that Ctrl-C or a kill loses at most the batches in flight.

While a pass streams, the running counts of every computed cell (:meth:`pebench.measure.evaluate.Tally.state`:
hits per class and per image, timings), the stream's counts, the first position not yet read and the
scales chosen for tuned cells are written atomically, as JSON, to ``partial/eval-RES-DIGEST.json`` beside
the results file, at most every ``PEBENCH_CHECKPOINT_S`` seconds (default 10; each batch on a CPU). The
digest covers the keys of the computed cells and the images of the pass, so only the same pass resumes
from it. A rerun restores the counts and streams from that position on: the counts, and the per-image
hits kept for paired findings, come out as an uninterrupted pass's (the timings cover both runs). The
file is removed once the pass's records are in the results file. One process only: under torchrun a
pass restarts from its first image.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pebench.atomic import atomic_path
from pebench.resolution import Label
from pebench.runner.cells import Cell

PARTIAL_DIR = "partial"
CHECKPOINT_ENV = "PEBENCH_CHECKPOINT_S"
VERSION = 1
STATS = ("images", "valid", "batches", "work_s", "wait_s", "first_batch_s", "skipped")


def checkpoint_every() -> float:
    try:
        return max(0.0, float(os.environ.get(CHECKPOINT_ENV, "10")))
    except ValueError:
        return 10.0


@dataclass
class PassCheckpoint:
    """Where one pass is saved (``path``), and how often (``every_s``)."""

    path: Path
    every_s: float = field(default_factory=checkpoint_every)
    last_save: float = field(default_factory=time.perf_counter)

    @classmethod
    def of(cls, folder: Path, res: Label, cells: list[Cell], positions: range) -> PassCheckpoint:
        digest = hashlib.sha256(json.dumps([sorted(c.key for c in cells), positions.start, positions.stop,
                                            VERSION]).encode()).hexdigest()[:12]
        return cls(folder / PARTIAL_DIR / f"eval-{res}-{digest}.json")

    def load(self) -> dict | None:
        """The saved state, or None when there is none (or it cannot be read: the pass then starts over)."""
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if state.get("version") == VERSION else None

    def save(self, tallies: dict, stream, wall: float, tuning: dict) -> None:
        """Writes the pass's state if ``every_s`` has passed since the last save (best effort: a folder that
        cannot be written to only loses the checkpoint, never the run)."""
        now = time.perf_counter()
        if stream.next_position is None or now - self.last_save < self.every_s:
            return
        state = {"version": VERSION, "next_position": stream.next_position, "wall_s": wall,
                 "stream": {name: getattr(stream.stats, name) for name in STATS},
                 "tallies": {cell.key: tally.state() for cell, tally in tallies.items()},
                 "tuning": {cell.key: chosen for cell, chosen in tuning.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(state), encoding="utf-8")
        except OSError:
            return
        self.last_save = now

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()  # only when no other pass left its state there
        except OSError:
            pass


def restore_stream(stream, saved: dict) -> None:
    """Carry the interrupted pass's stream counts into the resumed stream's."""
    for name in STATS:
        setattr(stream.stats, name, saved["stream"][name])


def partial_files(folder: Path) -> list[Path]:
    """The saved passes in a run folder (what an interrupted run left to resume)."""
    return sorted((folder / PARTIAL_DIR).glob("eval-*.json"))
