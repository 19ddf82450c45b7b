"""Diagnostics cells of one resolution: one streamed pass over the first ``diagnostics.n`` images feeds
every model and mode's attention tally (:mod:`pebench.measure.diagnostics`); one process does it all."""

from __future__ import annotations

from collections.abc import Iterator

from pebench.data.stream import val_stream
from pebench.errors import PebenchError
from pebench.measure.diagnostics import AttentionTally, position_pictures
from pebench.measure.evaluate import run_pass
from pebench.models.vit import VisionTransformer
from pebench.resolution import Label
from pebench.results import header
from pebench.runner.cells import Cell
from pebench.runner.job import Job


def diagnose_resolution(res: Label, cells: list[Cell], job: Job) -> list[dict]:
    """Records of the diagnostics ``cells`` at ``res``, in cell order."""
    data, suite, observer, models = job.dataset(), job.suite, job.observer, job.models
    requested = min(suite.diagnostics.n, data.size("val"))
    data_base = {"spec": data.spec, "split": "val", "requested": requested,
                 "fingerprint": data.fingerprint("val", res)} | suite.decoding
    settled: dict = {}
    tallies = {}
    for cell in cells:
        net = models[cell.model].net
        reason = (None if isinstance(net, VisionTransformer) else
                  "diagnostics read pebench's own ViT blocks; this model's (timm or outside) attention is not "
                  "instrumented")
        reason = reason or net.applicability(res, cell.mode)
        if reason:
            settled[cell] = {"status": "not_applicable", "reason": reason, "diagnostics": None,
                             "data": data_base | {"n": 0}}
        else:
            tallies[cell] = AttentionTally(models[cell.model], cell.mode, suite.diagnostics.maps)
    if tallies:
        stream = val_stream(data, res, range(requested), suite.batch_size, suite.workers, job.device, suite.cache)
        observer.pass_started(res, requested, tallies, stage="diagnostics")
        wall = run_pass(list(tallies.values()), stream, job.device, lambda k: observer.batch_done(res, k),
                        sharded=False, on_step=lambda k: observer.step_done(res, k))
        observer.pass_finished(res, stream.stats, wall, stage="diagnostics")
        if stream.stats.valid == 0:
            raise PebenchError(f"no image of {data.spec} could be decoded at {res} px; check the files")
        for cell, tally in tallies.items():
            net = tally.model.net
            grid = net.grid_at(res)
            settled[cell] = {"status": "ok", "reason": None, "data": data_base | {"n": tally.n},
                             "diagnostics": {"grid": list(grid), "layers": tally.layers(),
                                             "class_token_maps": tally.maps, **position_pictures(net, grid, cell.mode)}}
    return [header("diagnostics", models[c.model], res, c.mode, job.device.type, job.env) | settled[c] for c in cells]


def run_diagnostics(cells: list[Cell], job: Job) -> Iterator[tuple[Cell, dict]]:
    job.load(c.model for c in cells)
    for res in dict.fromkeys(c.res for c in cells):
        at_res = [c for c in cells if c.res == res]
        yield from zip(at_res, diagnose_resolution(res, at_res, job), strict=True)
