"""The cell runner behind `pebench run`, `pebench eval` and `pebench profile`: cells -> records, resumably.

`pebench run SUITE` runs a YAML suite; `pebench eval` and `pebench profile` build a one-row suite
from their options and run it here too, so streaming, resume and progress exist once.

Each finished cell is appended to the results file as one JSON line carrying the cell's key. A
rerun of the same command reads the file, skips every finished key and does the rest; for `run`, a
file that holds keys this suite does not produce (its config or pebench changed) is refused rather
than mixed (`eval --out` appends to a log and only skips what it finds finished).

Evaluation cells run by resolution: one streamed pass over the data per resolution feeds every
model and mode of it (:mod:`pebench.measure.evaluate`). Under ``torchrun --nproc-per-node N`` each process
streams a disjoint share of the file list and the counts are all-reduced (gloo on CPU, nccl on
CUDA), so the accuracy equals one process's; only rank 0 writes. ``--shard i/n`` runs every n-th
cell, for several machines; `pebench report` merges the shard files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from pebench.atomic import atomic_path
from pebench.errors import PebenchError
from pebench.modes import FIXED, TUNED, scale_mode, scale_of
from pebench.resolution import Label, as_hw
from pebench.results import SCHEMA_VERSION, append_record, read_records, repair_torn_tail
from pebench.runner.suite import Cell, Suite

RESULTS_NAME = "results.jsonl"
#: records name their dataset's classes (data.class_names) up to this many; ImageNet's 1000 would bloat every line
MAX_NAMED_CLASSES = 100


class Observer:
    """What a runner tells its user interface; every method may be left as this no-op."""

    def started(self, todo: list[Cell], passes: list[tuple[Label, int, float]]) -> None:
        """``passes``: (resolution, images, cells' worth of work) of every resolution still to run."""

    def pass_started(self, res: Label, images: int, tallies: dict, stage: str = "eval") -> None:
        """``tallies``: Cell -> the running :class:`pebench.measure.evaluate.Tally` of each computed cell; ``stage``:
        "eval", "tuning" for the pass over the tune part that chooses tuned cells' scales, or
        "diagnostics" (tallies of :class:`pebench.measure.diagnostics.AttentionTally`)."""

    def batch_done(self, res: Label, images: int) -> None:
        pass

    def pass_finished(self, res: Label, stats, wall: float, stage: str = "eval") -> None:
        """``stats``: the pass's :class:`pebench.data.stream.PassStats`; ``wall``: its seconds."""

    def cell_started(self, cell: Cell) -> None:
        pass

    def record(self, cell: Cell, record: dict) -> None:
        pass


def results_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None:
        return out_dir / RESULTS_NAME
    return out_dir / f"results.shard-{shard[0]}-of-{shard[1]}.jsonl"


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun (even alone, so that a
    one-GPU torchrun exercises the same nccl path as eight)."""
    if "MASTER_ADDR" not in os.environ or "RANK" not in os.environ:
        return 0, 1
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        local_rank, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= visible:
            raise PebenchError(f"torchrun started process {local_rank} on a machine with {visible} visible GPU(s); "
                               f"each process needs its own GPU: use --nproc-per-node {visible} (or fewer)")
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def leave_distributed() -> None:
    """Leave the process group at the end of a command, as torch.distributed asks."""
    if "MASTER_ADDR" in os.environ and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


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


def _cache_folder(suite: Suite, data) -> tuple[Path | None, bool]:
    """(folder, required): an explicit suite/--cache folder must work; the default one is best effort."""
    from pebench.data import cache_dir

    if suite.cache is False:
        return None, False
    if suite.cache:
        return Path(suite.cache).expanduser(), True
    return (cache_dir(), False) if data.cached_by_default else (None, False)


def base_record(model, res: Label, mode: str, device: torch.device, env: dict, kind: str = "eval") -> dict:
    net, meta = model.net, model.meta
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "model": {"name": model.name, "source": model.source, "path": str(model.path), "size": meta["size"],
                  "encoding": meta["encoding"], "train_res": meta["train_res"], "patch": meta["patch"],
                  "checkpoint_sha256": meta["checkpoint_sha256"]} | (
                      {"finetune": meta["finetune"]} if meta.get("finetune") else {}),
        "res": res,
        "mode": mode,
        "same_as_native": mode in FIXED and bool(net.interp_is_native
                                                 or as_hw(res) == (meta["train_res"], meta["train_res"])),
        "resize_api": net.resize_api(res, mode) if mode != TUNED else None,
        "device": device.type,
        "env": env,
    }


def _grid(model, res: Label) -> tuple[int, int]:
    height, width = as_hw(res)
    return (height // model.meta["patch"], width // model.meta["patch"])


def _position_scale(model, res: Label, mode: str) -> list[float]:
    """The factor on (row, col) positions that a cell's mode stands for: 1 native, G0/G interp, S scale=S."""
    scale = scale_of(mode)
    if scale is not None:
        return [scale, scale]
    if mode == "native":
        return [1.0, 1.0]
    trained, grid = model.net.trained_grid, _grid(model, res)
    return [trained[0] / grid[0], trained[1] / grid[1]]


def _runs_as(mode: str) -> str:
    """The mode whose applicability decides a cell's: a tuned cell runs some scale=S, so scale=1's."""
    return scale_mode(1.0) if mode == TUNED else mode


def split_stream(data, res: Label, positions: range, suite: Suite, device: torch.device, score_from: int = 0,
                 fill_cache: bool = True):
    from pebench.data.stream import SplitStream, default_workers

    cache, required = _cache_folder(suite, data)
    return SplitStream(data, "val", res, list(positions), suite.batch_size,
                       default_workers() if suite.workers is None else suite.workers, device, cache, required,
                       score_from=score_from, fill_cache=fill_cache)


def _tune(res: Label, cells: list[Cell], models: dict, data, suite: Suite, device: torch.device, holdout: int,
          world_rank: tuple[int, int], observer: Observer) -> dict[Cell, dict]:
    """Per tuned cell, the position scale chosen on the first ``holdout`` images and how (:mod:`pebench.measure.tune`)."""
    from pebench.measure.evaluate import Tally, run_pass
    from pebench.measure.tune import candidate_scales, choose_scale, interp_scale

    rank, world = world_rank
    tallies: dict[tuple[Cell, float], Tally] = {}
    for cell in cells:
        model = models[cell.model]
        for scale in candidate_scales(model.net.trained_grid, _grid(model, res), suite.tune_points,
                                      suite.tune_scales):
            tallies[cell, scale] = Tally(model, scale_mode(scale), suite.batch_size, data.num_classes)
    # reads a complete cache entry when there is one; the main pass writes it (a tune-part entry would be waste)
    stream = split_stream(data, res, range(rank, holdout, world), suite, device, fill_cache=False)
    shown = {Cell("tune", cell.model, res, scale_mode(scale), {}, ""): t for (cell, scale), t in tallies.items()}
    observer.pass_started(res, len(stream.positions), shown, stage="tuning")
    wall = run_pass(list(tallies.values()), stream, device, lambda k: observer.batch_done(res, k))
    observer.pass_finished(res, stream.stats, wall, stage="tuning")
    chosen = {}
    for cell in cells:
        model = models[cell.model]
        ratio = interp_scale(model.net.trained_grid, _grid(model, res))
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


def _evaluate_resolution(res: Label, cells: list[Cell], models: dict, data, suite: Suite, device: torch.device,
                         env: dict, natives: dict, world_rank: tuple[int, int], observer: Observer) -> list[dict]:
    """Records of the eval ``cells`` at ``res`` (in cell order), from at most one streamed pass (two with a
    tuned cell: the tune part first)."""
    from pebench.measure.evaluate import Tally, metrics_of, run_pass, timing_of

    rank, world = world_rank
    requested = min(suite.n or data.size("val"), data.size("val"))
    holdout = cells[0].config.get("holdout", 0)
    if holdout >= requested:
        raise PebenchError(f"tune_n {holdout} leaves no image to score: the evaluation has {requested}; "
                           "lower tune_n or raise n")
    data_base = {"spec": data.spec, "split": "val", "requested": requested, "fingerprint": data.fingerprint("val", res),
                 "class_groups": data.class_groups}
    if len(data.class_names) <= MAX_NAMED_CLASSES:
        data_base["class_names"] = data.class_names
    if holdout:
        data_base |= {"holdout": holdout, "positions": [holdout, requested]}
    base = {c: base_record(models[c.model], res, c.mode, device, env) for c in cells}
    settled: dict[Cell, dict] = {}
    tallies: dict[Cell, Tally] = {}
    to_tune: list[Cell] = []
    for cell in cells:
        reason = models[cell.model].net.applicability(res, _runs_as(cell.mode))
        if reason:
            settled[cell] = {"status": "not_applicable", "reason": reason, "metrics": None, "timing": None,
                             "dtype": None, "data": data_base | {"n": requested - holdout}, "position_scale": None}
        elif cell.mode == TUNED:
            to_tune.append(cell)
        elif not _takes_native(cell, cells, models[cell.model], natives):
            tallies[cell] = Tally(models[cell.model], cell.mode, suite.batch_size, data.num_classes)
    tuning = _tune(res, to_tune, models, data, suite, device, holdout, world_rank, observer) if to_tune else {}
    for cell, chosen in tuning.items():
        tallies[cell] = Tally(models[cell.model], scale_mode(chosen["scale"]), suite.batch_size, data.num_classes)
    if tallies:
        stream = split_stream(data, res, range(holdout + rank, requested, world), suite, device)
        if holdout and world == 1 and not stream.cached and stream.cache:  # read the tune part too: the cache fills
            stream = split_stream(data, res, range(requested), suite, device, score_from=holdout)
        observer.pass_started(res, requested - holdout if stream.score_from else len(stream.positions), tallies)
        wall = run_pass(list(tallies.values()), stream, device, lambda k: observer.batch_done(res, k))
        stats = stream.stats
        observer.pass_finished(res, stats, wall)
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
                             "position_scale": _position_scale(models[cell.model], res, tally.mode)}
            if cell in tuning:
                settled[cell]["tuning"] = tuning[cell]
            if cell.mode == "native":
                natives[(cell.model, res)] = base[cell] | settled[cell]
    records = []
    for cell in cells:
        if cell not in settled:
            native = natives[(cell.model, res)]
            settled[cell] = {k: native[k] for k in ("status", "reason", "metrics", "timing", "dtype", "data")} | {
                "measured_as": "native", "position_scale": _position_scale(models[cell.model], res, cell.mode)}
        records.append(base[cell] | settled[cell])
    return records


def _takes_native(cell: Cell, at_res: list[Cell], model, natives: dict) -> bool:
    """An interp cell that runs exactly the native computation takes the native cell's figures, when
    that cell has a result already or is computed in the same pass."""
    same = model.net.interp_is_native or cell.res == model.meta["train_res"]
    return cell.mode == "interp" and same and (
        (cell.model, cell.res) in natives or any(c.model == cell.model and c.mode == "native" for c in at_res))


def _pass_plan(eval_cells: list[Cell], models: dict, natives: dict, images: int, holdout: int, suite: Suite
               ) -> list[tuple[Label, int, float]]:
    """(res, images scored, cells' worth of work) per resolution: what the progress display estimates
    time from; a tuned cell's tune pass counts as its candidates x the tune part's share of images."""
    from pebench.measure.tune import candidate_scales

    plan = []
    for res in dict.fromkeys(c.res for c in eval_cells):
        at_res = [c for c in eval_cells if c.res == res]
        work = 0.0
        for c in at_res:
            model = models[c.model]
            if model.net.applicability(res, _runs_as(c.mode)) or _takes_native(c, at_res, model, natives):
                continue
            work += 1
            if c.mode == TUNED:
                candidates = candidate_scales(model.net.trained_grid, _grid(model, res), suite.tune_points,
                                              suite.tune_scales)
                work += len(candidates) * holdout / max(images - holdout, 1)
        plan.append((res, images - holdout, work))
    return plan


def load_models(names, device: torch.device) -> dict:
    """name -> :class:`pebench.measure.evaluate.LoadedModel` on ``device``; a bad name or file is a one-line error."""
    from pebench.measure.evaluate import LoadedModel
    from pebench.zoo import resolve_model

    models = {}
    for name in dict.fromkeys(names):
        net, meta, source, model_path = resolve_model(name)
        models[name] = LoadedModel(name, net.eval().to(device), meta, source, model_path)
    return models


def run_cells(suite: Suite, cells: list[Cell], suite_keys: set[str], path: Path | None, device: torch.device,
              observer: Observer | None = None, strict: bool = True, models: dict | None = None,
              data=None, profile_rows: dict | None = None) -> list[dict]:
    """Run every cell whose key is not yet in ``path`` and return the new records (each also appended
    to ``path`` by rank 0 as soon as its pass ends; ``path`` None keeps them in memory only).
    Already built things may be handed in: ``models`` from :func:`load_models`, ``data`` the suite's
    dataset, ``profile_rows`` (model or spec, size) -> ``load_profile_entry``'s row."""
    from pebench.data import parse_data
    from pebench.env import environment
    from pebench.measure.profile import SpeedSettings, load_profile_entry, profile_models

    observer = observer or Observer()
    rank, world = init_distributed(device)
    if rank == 0 and path is not None and path.exists():
        repair_torn_tail(path)  # a kill mid-write leaves a partial line; the next append must start clean
    _barrier(world)
    previous = read_records(path) if path is not None and path.exists() else []
    done = finished_keys(path, suite_keys, strict, previous) if path is not None else set()
    todo = [c for c in cells if c.key not in done]
    # native results of earlier runs, for interp cells that run the same computation
    natives = {(r["model"]["name"], r["res"]): r for r in previous if r.get("key") in suite_keys
               and r["kind"] == "eval" and r["mode"] == "native" and r["status"] == "ok"}
    _barrier(world)  # every rank has read the results file before rank 0 appends to it
    records: list[dict] = []

    def finish(cell: Cell, record: dict) -> None:
        record |= {"key": cell.key, "suite": suite.name}
        if rank == 0 and path is not None:
            append_record(path, record)
        records.append(record)
        observer.record(cell, record)

    eval_cells = [c for c in todo if c.kind == "eval"]
    models = dict(models or {})
    models |= load_models([c.model for c in eval_cells if c.model not in models], device)
    if eval_cells and data is None:
        data = parse_data(suite.data, suite.crop_pct)
    images = len(range(rank, min(suite.n or data.size("val"), data.size("val")), world)) if eval_cells else 0
    holdout = eval_cells[0].config.get("holdout", 0) if eval_cells else 0
    observer.started(todo, _pass_plan(eval_cells, models, natives, images, holdout, suite))
    if eval_cells:
        env = environment()
        for res in dict.fromkeys(c.res for c in eval_cells):
            at_res = [c for c in eval_cells if c.res == res]
            for cell, record in zip(at_res, _evaluate_resolution(res, at_res, models, data, suite, device, env,
                                                                 natives, (rank, world), observer), strict=True):
                finish(cell, record)

    diagnostics_cells = [c for c in todo if c.kind == "diagnostics"]
    if diagnostics_cells and rank == 0:
        from pebench.measure.diagnostics import diagnose_resolution

        models |= load_models([c.model for c in diagnostics_cells if c.model not in models], device)
        data = data or parse_data(suite.data, suite.crop_pct)
        env = environment()
        for res in dict.fromkeys(c.res for c in diagnostics_cells):
            at_res = [c for c in diagnostics_cells if c.res == res]
            for cell, record in zip(at_res, diagnose_resolution(res, at_res, models, data, suite, device, env,
                                                                observer), strict=True):
                finish(cell, record)

    profile_cells = [c for c in todo if c.kind == "profile"]
    if profile_cells and rank == 0:
        settings = SpeedSettings(batch_size=suite.profile_batch_size, device=device, dtype=suite.profile_dtype,
                                 channels_last=suite.profile_channels_last, compile=suite.profile_compile,
                                 repeats=suite.profile_repeats)
        rows = dict(profile_rows or {})
        for cell in profile_cells:
            row = (cell.model, cell.config["size"])
            if row not in rows:
                rows[row] = load_profile_entry(*row)
        for res in dict.fromkeys(c.res for c in profile_cells):
            at_res = [c for c in profile_cells if c.res == res]
            entries = [rows[c.model, c.config["size"]] for c in at_res]
            observer.cell_started(at_res[0])
            # profile_models reports in entry order and measures the `none` reference once per resolution
            pending = iter(at_res)
            profile_models(entries, [res], suite.profile_mode, settings,
                           lambda record, pending=pending: finish(next(pending), record))
    _barrier(world)
    leave_distributed()
    return records


def check_models(suite: Suite, device: torch.device, option: str | None = None) -> dict:
    """Load the suite's models before any work (a bad name or file fails first) and check that every
    resolution fits their patch (errors name the command-line ``option`` when given); returns the
    models for :func:`run_cells`."""
    from pebench.models.sizes import check_resolution

    models = load_models(suite.models, device)
    for name, model in models.items():
        for res in suite.resolutions:
            what = f"{option} {res}" if option else f"resolution {res} for model {name}"
            check_resolution(*as_hw(res), model.meta["patch"], what=what)
    return models
