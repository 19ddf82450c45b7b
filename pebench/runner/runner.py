"""The cell runner behind `pebench run`, `eval`, `tune`, `inspect` and `profile`: cells -> records, resumably.

`pebench run SUITE` runs a YAML suite; the other commands build a one-row suite from their options and
run it here too, so streaming, resume and progress exist once.

Each finished cell is appended to the results file as one JSON line carrying the cell's key. A
rerun of the same command reads the file, skips every finished key and does the rest; for `run`, a
file that holds keys this suite does not produce (its config or pebench changed) is refused rather
than mixed (`eval --out` appends to a log and only skips what it finds finished).

Each kind of cell has its handler (:data:`KINDS`): evaluation runs by resolution, one streamed pass per
resolution feeding every model and mode of it (:mod:`pebench.runner.evaluation`), on every torchrun
process (:mod:`pebench.runner.distributed`); diagnostics and profiling run on rank 0. ``--shard i/n``
runs every n-th cell, for several machines; `pebench report` merges the shard files.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from pebench.atomic import atomic_path
from pebench.errors import PebenchError, RunFailed
from pebench.models.sizes import check_resolution
from pebench.resolution import as_hw
from pebench.results import RESULTS_NAME, append_record, read_records, repair_torn_tail
from pebench.runner.cells import Cell, profile_rows
from pebench.runner.diagnostics import run_diagnostics
from pebench.runner.distributed import barrier, init_distributed, leave_distributed
from pebench.runner.evaluation import pass_plan, run_eval
from pebench.runner.job import Job, Observer
from pebench.runner.profiling import run_profile
from pebench.runner.suite import Suite


@dataclass(frozen=True)
class CellKind:
    """How one kind of cell runs: ``run(cells, job)`` yields (cell, record) as cells finish."""

    run: Callable[[list[Cell], Job], Iterator[tuple[Cell, dict]]]
    every_process: bool  # under torchrun: each process does its share (else rank 0 does it all)


#: the kinds of cell, in the order a run does them
KINDS: dict[str, CellKind] = {
    "eval": CellKind(run_eval, every_process=True),
    "diagnostics": CellKind(run_diagnostics, every_process=False),
    "profile": CellKind(run_profile, every_process=False),
}


def results_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None:
        return out_dir / RESULTS_NAME
    return out_dir / f"results.shard-{shard[0]}-of-{shard[1]}.jsonl"


def finished_keys(path: Path, suite_keys: set[str], strict: bool = True, records: list[dict] | None = None
                  ) -> set[str]:
    """Keys already in ``path`` (or in its ``records``, when already read); with ``strict``, refuses a
    file written for another suite config or pebench."""
    if records is None:
        records = read_records(path) if path.exists() else []
    keys = {r.get("key") for r in records}
    foreign = keys - suite_keys
    if foreign and strict:
        example = next(r for r in records if r.get("key") in foreign)
        name = example.get("model", {}).get("name")
        raise PebenchError(
            f"{path} holds {sum(r.get('key') in foreign for r in records)} records from another suite config or "
            f"pebench version (e.g. {example.get('kind')} {name} @ {example.get('res')}); use another --out or "
            "move that file away")
    return keys & suite_keys


def write_suite_file(suite: Suite, out_dir: Path) -> None:
    with atomic_path(out_dir / "suite.json") as tmp:
        tmp.write_text(json.dumps(suite.resolved(), indent=2) + "\n", encoding="utf-8")


def prepare(suite: Suite, device: torch.device, kinds: set[str], option: str | None = None) -> Job:
    """A job with every model the suite's cells of ``kinds`` need loaded (profile rows built), before
    any work: a bad name or file fails first, and so does a resolution that does not fit a model's patch
    (errors name the command-line ``option`` when given)."""
    job = Job(suite, device)
    if kinds & {"eval", "diagnostics"}:
        job.load(suite.models)
    if "profile" in kinds and suite.profile.enabled:
        # a model already loaded is profiled with its trained weights; cost does not depend on them
        job.profile_rows = {(name, size): job.models[name] if size is None and name in job.models
                            else job.profile_row(name, size) for name, size in profile_rows(suite)}
    patches = {name: m.meta["patch"] for name, m in job.models.items()}
    patches |= {name: m.meta["patch"] for (name, _), m in job.profile_rows.items()}
    for name, patch in patches.items():
        for res in suite.resolutions:
            check_resolution(*as_hw(res), patch, what=f"{option} {res}" if option else
                             f"resolution {res} for model {name}")
    return job


def run_cells(job: Job, cells: list[Cell], suite_keys: set[str], path: Path | None, observer: Observer | None = None,
              strict: bool = True) -> list[dict]:
    """Run every cell whose key is not yet in ``path`` and return the new records (each also appended
    to ``path`` by rank 0 as soon as it is finished; ``path`` None keeps them in memory only)."""
    job.observer = observer or job.observer
    job.rank, job.world = init_distributed(job.device)
    if job.rank == 0 and path is not None and path.exists():
        repair_torn_tail(path)  # a kill mid-write leaves a partial line; the next append must start clean
    barrier(job.world)
    previous = read_records(path) if path is not None and path.exists() else []
    done = finished_keys(path, suite_keys, strict, previous) if path is not None else set()
    todo = [c for c in cells if c.key not in done]
    # native results of earlier runs, for interp cells that run the same computation
    job.natives |= {(r["model"]["name"], r["res"]): r for r in previous if r.get("key") in suite_keys
                    and r["kind"] == "eval" and r["mode"] == "native" and r["status"] == "ok"}
    barrier(job.world)  # every rank has read the results file before rank 0 appends to it
    records: list[dict] = []
    eval_cells = [c for c in todo if c.kind == "eval"]
    job.load(c.model for c in eval_cells)
    job.run_folder = path.parent if path is not None and job.rank == 0 else None
    if len(todo) < len(cells):
        job.observer.resuming(len(cells) - len(todo), len(cells), path)
    job.observer.started(todo, pass_plan(eval_cells, job))
    sink = RecordSink(path if job.rank == 0 else None)
    for name, kind in KINDS.items():
        of_kind = [c for c in todo if c.kind == name]
        if not of_kind or not (kind.every_process or job.rank == 0):
            continue
        for cell, record in kind.run(of_kind, job):
            record |= {"key": cell.key, "suite": job.suite.name}
            sink.append(record)
            records.append(record)
            job.observer.record(cell, record)
    barrier(job.world)
    leave_distributed()
    sink.close()
    return records


class RecordSink:
    """Appends each finished record to the results file as soon as it exists. If a write fails (the disk
    filled up, the folder turned read-only), the run goes on and this and every later record go to a
    rescue file in the temporary folder instead; :meth:`close` then fails naming both, so that nothing
    computed is lost."""

    def __init__(self, path: Path | None):
        self.path, self.rescue, self.error, self.rescued = path, None, None, 0

    def append(self, record: dict) -> None:
        if self.path is None:
            return
        if self.rescue is None:
            try:
                append_record(self.path, record)
                return
            except OSError as error:
                self.error = error.strerror or str(error)
                self.rescue = Path(tempfile.gettempdir()) / f"pebench-rescued-{os.getpid()}-{int(time.time())}.jsonl"
        append_record(self.rescue, record)
        self.rescued += 1

    def close(self) -> None:
        if self.rescue is not None:
            raise RunFailed(f"could not write {self.path} ({self.error}); the {self.rescued} records computed "
                            f"since are kept in {self.rescue}: once {self.path} is writable, append them to it "
                            f"(cat {self.rescue} >> {self.path}) and rerun the same command to resume")
