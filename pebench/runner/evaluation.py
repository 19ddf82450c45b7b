"""Eval cells of one resolution: settled without a pass where nothing needs computing, the rest from one
streamed pass (two with a tuned cell: the tune part first).

Not applicable cells (native APE off its grid) carry their reason; interp cells that run exactly the
native computation (``same_as_native``) take the native cell's figures (``measured_as: "native"``).
Records are emitted only when the pass has finished; until then the pass is saved as it goes
(:mod:`pebench.runner.partial`), so an interrupted pass resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch

from pebench.data.stream import PassStats, val_stream
from pebench.errors import PebenchError
from pebench.measure.evaluate import Tally, metrics_of, run_pass, timing_of
from pebench.measure.tune import candidate_scales, choose_scale, interp_scale
from pebench.modes import TUNED, scale_mode
from pebench.resolution import Label, as_hw, side
from pebench.results import header
from pebench.runner.cells import Cell
from pebench.runner.job import Job
from pebench.runner.partial import PassCheckpoint, restore_stream

#: records name their dataset's classes (data.class_names) up to this many; ImageNet's 1000 would bloat every line
MAX_NAMED_CLASSES = 100


def runs_as(mode: str) -> str:
    """The mode whose applicability decides a cell's: a tuned cell runs some scale=S, so scale=1's."""
    return scale_mode(1.0) if mode == TUNED else mode


def takes_native(cell: Cell, at_res: list[Cell], job: Job) -> bool:
    """An interp cell that runs exactly the native computation takes the native cell's figures, when
    that cell has a result already or is computed in the same pass."""
    model = job.models[cell.model]
    same = model.net.interp_is_native or cell.res == model.meta["train_res"]
    return cell.mode == "interp" and same and (
        (cell.model, cell.res) in job.natives or any(c.model == cell.model and c.mode == "native" for c in at_res))


def _candidates(cell: Cell, job: Job) -> list[float]:
    net, tune = job.models[cell.model].net, job.suite.tune
    return candidate_scales(net.trained_grid, net.grid_at(cell.res), tune.points, tune.scales)


def _stream(job: Job, res: Label, positions: range, score_from: int = 0, fill_cache: bool = True):
    suite = job.suite
    return val_stream(job.dataset(), res, positions, suite.batch_size, suite.workers, job.device, suite.cache,
                      score_from=score_from, fill_cache=fill_cache)


def _tune(res: Label, cells: list[Cell], job: Job, holdout: int) -> dict[Cell, dict]:
    """Per tuned cell, the position scale chosen on the first ``holdout`` images, and how
    (:mod:`pebench.measure.tune`)."""
    data, observer = job.dataset(), job.observer
    tallies: dict[tuple[Cell, float], Tally] = {}
    for cell in cells:
        for scale in _candidates(cell, job):
            tallies[cell, scale] = Tally(job.models[cell.model], scale_mode(scale), job.suite.batch_size,
                                         data.num_classes)
    # reads a complete cache entry when there is one; the main pass writes it (a tune-part entry would be waste)
    stream = _stream(job, res, range(job.rank, holdout, job.world), fill_cache=False)
    shown = {Cell("tune", cell.model, res, scale_mode(scale), {}, ""): t for (cell, scale), t in tallies.items()}
    observer.pass_started(res, len(stream.positions), shown, stage="tuning")
    wall = run_pass(list(tallies.values()), stream, job.device, lambda k: observer.batch_done(res, k),
                    on_step=lambda k: observer.step_done(res, k))
    observer.pass_finished(res, stream.stats, wall, stage="tuning")
    chosen = {}
    for cell in cells:
        net = job.models[cell.model].net
        ratio = interp_scale(net.trained_grid, net.grid_at(res))
        tried = {scale: tally for (c, scale), tally in tallies.items() if c == cell}
        n = next(iter(tried.values())).n
        if n == 0:
            raise PebenchError(f"no image of the first {holdout} (tune_n) could be read at {res} px to tune on; "
                               "check the files or raise tune_n")
        best = choose_scale({s: (t.correct1, t.correct5) for s, t in tried.items()}, ratio)
        chosen[cell] = {"scale": best, "interp_scale": ratio, "tune_n": n, "tune_positions": [0, holdout],
                        "scales": list(tried), "tune_top1": [t.correct1 / n for t in tried.values()],
                        "tune_wall_s": wall}
    return chosen


def _stream_pass(res: Label, tallies: dict[Cell, Tally], tuning: dict, holdout: int, requested: int, job: Job,
                 checkpoint: PassCheckpoint | None, saved: dict | None) -> tuple[float, PassStats]:
    """Streams the scored images through every tally, saving the pass as it goes and resuming a saved one;
    returns the pass's wall time (both runs' when resumed) and its stream's counts."""
    observer, total = job.observer, requested - holdout
    if saved:
        for cell, tally in tallies.items():
            tally.restore(saved["tallies"][cell.key])
        stream = _stream(job, res, range(saved["next_position"], requested))
        restore_stream(stream, saved)
        observer.pass_resumed(res, saved["next_position"] - holdout, total)
    else:
        stream = _stream(job, res, range(holdout + job.rank, requested, job.world))
        if holdout and job.world == 1 and not stream.cached and stream.cache:  # read the tune part too: the cache fills
            stream = _stream(job, res, range(requested), score_from=holdout)
    before = saved["wall_s"] if saved else 0.0
    started = time.perf_counter()
    observer.pass_started(res, total if stream.score_from or saved else len(stream.positions), tallies,
                          done=saved["next_position"] - holdout if saved else 0)

    def batch_done(images: int) -> None:
        observer.batch_done(res, images)
        if checkpoint:
            checkpoint.save(tallies, stream, before + time.perf_counter() - started, tuning)

    wall = before + run_pass(list(tallies.values()), stream, job.device, batch_done,
                             on_step=lambda k: observer.step_done(res, k))
    observer.pass_finished(res, stream.stats, wall)
    return wall, stream.stats


def _requested(job: Job) -> int:
    data = job.dataset()
    return min(job.suite.n or data.size("val"), data.size("val"))


def evaluate_resolution(res: Label, cells: list[Cell], job: Job) -> list[dict]:
    """Records of the eval ``cells`` at ``res``, in cell order."""
    data, suite, device, models = job.dataset(), job.suite, job.device, job.models
    requested = _requested(job)
    holdout = cells[0].config.get("holdout", 0)
    if holdout >= requested:
        raise PebenchError(f"tune_n {holdout} leaves no image to score: the evaluation has {requested}; "
                           "lower tune_n or raise n")
    data_base = {"spec": data.spec, "split": "val", "requested": requested, "fingerprint": data.fingerprint("val", res),
                 **suite.decoding,
                 "class_groups": data.class_groups}
    if len(data.class_names) <= MAX_NAMED_CLASSES:
        data_base["class_names"] = data.class_names
    if holdout:
        data_base |= {"holdout": holdout, "positions": [holdout, requested]}
    base = {c: header("eval", models[c.model], res, c.mode, device.type, job.env) for c in cells}
    settled: dict[Cell, dict] = {}
    tallies: dict[Cell, Tally] = {}
    to_tune: list[Cell] = []
    for cell in cells:
        reason = models[cell.model].net.applicability(res, runs_as(cell.mode))
        if reason:
            settled[cell] = {"status": "not_applicable", "reason": reason, "metrics": None, "timing": None,
                             "dtype": None, "data": data_base | {"n": requested - holdout}, "position_scale": None}
        elif cell.mode == TUNED:
            to_tune.append(cell)
        elif not takes_native(cell, cells, job):
            tallies[cell] = Tally(models[cell.model], cell.mode, suite.batch_size, data.num_classes)
    checkpoint = job.checkpoint(res, [*tallies, *to_tune], range(holdout, requested))
    saved = checkpoint.load() if checkpoint else None
    if saved:
        tuning = {cell: saved["tuning"][cell.key] for cell in to_tune}
    else:
        tuning = _tune(res, to_tune, job, holdout) if to_tune else {}
    for cell, chosen in tuning.items():
        tallies[cell] = Tally(models[cell.model], scale_mode(chosen["scale"]), suite.batch_size, data.num_classes)
    if tallies:
        wall, stats = _stream_pass(res, tallies, tuning, holdout, requested, job, checkpoint, saved)
        if stats.valid == 0:
            raise PebenchError(f"no image of {data.spec} could be decoded at {res} px ({len(stats.skipped)} "
                               f"skipped, e.g. {stats.skipped[0] if stats.skipped else '-'}); check the files")
        data_done = data_base | {"n": stats.valid, "skipped": len(stats.skipped), "skipped_files": stats.skipped[:100]}
        for cell, tally in tallies.items():
            metrics = metrics_of(tally, data.class_groups)
            if stats.skipped:  # the hits no longer line up with the positions
                metrics.pop("image_hits", None)
            settled[cell] = {"status": "ok", "reason": None, "metrics": metrics,
                             "timing": timing_of(tally, stats, wall, len(tallies)),
                             "dtype": "bf16-autocast" if device.type == "cuda" else "fp32", "data": data_done,
                             "position_scale": models[cell.model].position_scale(res, tally.mode)}
            if cell in tuning:
                settled[cell]["tuning"] = tuning[cell]
            if cell.mode == "native":
                job.natives[(cell.model, res)] = base[cell] | settled[cell]
    records = []
    for cell in cells:
        if cell not in settled:
            native = job.natives[(cell.model, res)]
            settled[cell] = {k: native[k] for k in ("status", "reason", "metrics", "timing", "dtype", "data")} | {
                "measured_as": "native", "position_scale": models[cell.model].position_scale(res, cell.mode)}
        records.append(base[cell] | settled[cell])
    return records


def pass_plan(cells: list[Cell], job: Job) -> list[tuple[Label, int, float]]:
    """(res, images scored, cells' worth of work) per resolution: what the progress display estimates
    time from; a tuned cell's tune pass counts as its candidates x the tune part's share of images."""
    if not cells:
        return []
    images = len(range(job.rank, _requested(job), job.world))
    holdout = cells[0].config.get("holdout", 0)
    plan = []
    for res in dict.fromkeys(c.res for c in cells):
        at_res = [c for c in cells if c.res == res]
        work = 0.0
        for c in at_res:
            if job.models[c.model].net.applicability(res, runs_as(c.mode)) or takes_native(c, at_res, job):
                continue
            work += 1
            if c.mode == TUNED:
                work += len(_candidates(c, job)) * holdout / max(images - holdout, 1)
        plan.append((res, images - holdout, work))
    return plan


def _seconds_per_image(cells: list[Cell], res: Label, job: Job, images: int) -> float:
    """Mean forward time per image and computed cell at ``res``: ``images`` timed through each model once."""
    first: dict[str, str] = {}
    for cell in cells:
        if not job.models[cell.model].net.applicability(res, runs_as(cell.mode)):
            first.setdefault(cell.model, cell.mode)
    batch = torch.zeros(images, 3, *as_hw(res), device=job.device)
    seconds = 0.0
    with torch.inference_mode():
        for name, mode in first.items():
            job.models[name].net(batch[:1], mode)  # a first call pays one-off set-up
            started = time.perf_counter()
            job.models[name].net(batch, mode)
            seconds += time.perf_counter() - started
    return seconds / images / max(1, len(first))


def estimate_seconds(cells: list[Cell], job: Job) -> float | None:
    """What the eval ``cells`` will take here, roughly: each model timed on a few images at the smallest and
    the largest resolution, every pass scaled by images x cells x side^k with k fitted to those two (as the
    live estimate does once passes are measured). None when nothing is computed."""
    plan = [p for p in pass_plan(cells, job) if p[2]]
    if not plan:
        return None
    small, large = min((p[0] for p in plan), key=side), max((p[0] for p in plan), key=side)
    at_small = _seconds_per_image(cells, small, job, 4)
    k = 2.0
    if side(large) > side(small):
        at_large = _seconds_per_image(cells, large, job, 2)
        k = min(4.0, max(1.0, math.log(at_large / at_small) / math.log(side(large) / side(small))))
    return sum(count * work * at_small * (side(r) / side(small)) ** k for r, count, work in plan)


def run_eval(cells: list[Cell], job: Job) -> Iterator[tuple[Cell, dict]]:
    """Every eval cell's record, one resolution at a time."""
    job.load(c.model for c in cells)
    for res in dict.fromkeys(c.res for c in cells):
        at_res = [c for c in cells if c.res == res]
        yield from zip(at_res, evaluate_resolution(res, at_res, job), strict=True)
        for checkpoint in job.checkpoints.pop(res, []):  # its records are in the results file now
            checkpoint.discard()
