"""Profile cells of one resolution: every row and a `none` twin per architecture timed together in
interleaved rounds (:mod:`pebench.measure.profile`); one process does it all."""

from __future__ import annotations

from collections.abc import Iterator

from pebench.measure.profile import SpeedSettings, profile_models
from pebench.runner.cells import Cell
from pebench.runner.job import Job


def run_profile(cells: list[Cell], job: Job) -> Iterator[tuple[Cell, dict]]:
    profile = job.suite.profile
    settings = SpeedSettings(batch_size=profile.batch_size, device=job.device, dtype=profile.dtype,
                             channels_last=profile.channels_last, compile=profile.compile, repeats=profile.repeats)
    for cell in cells:
        row = (cell.model, cell.config["size"])
        if row not in job.profile_rows:
            job.profile_rows[row] = job.profile_row(*row)
    for res in dict.fromkeys(c.res for c in cells):
        at_res = [c for c in cells if c.res == res]
        job.observer.cell_started(at_res[0])
        records: list[dict] = []  # in row order; the `none` reference is measured once per resolution
        profile_models([job.profile_rows[c.model, c.config["size"]] for c in at_res], [res], profile.mode, settings,
                       records.append, job.observer.profile_progress)
        yield from zip(at_res, records, strict=True)
