"""`pebench run`: execute a suite's cells, resumably, optionally sharded or under torchrun.

Each finished cell is appended to the results file as one JSON line carrying the cell's key. A
rerun of the same command reads the file, skips every finished key and does the rest; a file that
holds keys this suite does not produce (its config or pebench changed) is refused rather than mixed.
Under ``torchrun --nproc-per-node N`` every process evaluates a strided slice of the images and the
correct counts are all-reduced (gloo on CPU, nccl on CUDA), so the accuracy equals one process's;
only rank 0 writes. ``--shard i/n`` runs every n-th cell, for several machines; `pebench report`
merges the shard files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from pebench.atomic import atomic_path
from pebench.errors import PebenchError
from pebench.results import append_record, read_records, repair_torn_tail
from pebench.suite import Cell, Suite

RESULTS_NAME = "results.jsonl"


def results_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None:
        return out_dir / RESULTS_NAME
    return out_dir / f"results.shard-{shard[0]}-of-{shard[1]}.jsonl"


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def finished_keys(path: Path, suite_keys: set[str]) -> set[str]:
    """Keys already in ``path``; refuses a file written for another suite config or pebench version."""
    if not path.exists():
        return set()
    records = read_records(path)
    keys = {r.get("key") for r in records}
    foreign = keys - suite_keys
    if foreign:
        example = next(r for r in records if r.get("key") in foreign)
        name = example.get("model", {}).get("name")
        raise PebenchError(
            f"{path} holds {sum(r.get('key') in foreign for r in records)} records from another suite config or "
            f"pebench version (e.g. {example.get('kind')} {name} @ {example.get('res')}); use another --out or "
            "move that file away")
    return keys


def write_suite_file(suite: Suite, out_dir: Path) -> None:
    with atomic_path(out_dir / "suite.json") as tmp:
        tmp.write_text(json.dumps(suite.resolved(), indent=2) + "\n", encoding="utf-8")


def run_cells(
    suite: Suite,
    cells: list[Cell],
    suite_keys: set[str],
    path: Path,
    device: torch.device,
    on_start: Callable[[list[Cell]], None],
    on_cell_start: Callable[[Cell], None],
    on_record: Callable[[Cell, dict], None],
) -> None:
    """Run every cell whose key is not yet in ``path``: evaluation cells by resolution (each split
    rendered or read once), then profile cells by resolution. Each record is appended to ``path``
    (by rank 0) before the next cell starts; ``on_start`` gets the cells left to do."""
    from pebench.data import parse_data
    from pebench.env import environment
    from pebench.evaluate import evaluate_cell
    from pebench.profile import SpeedSettings, load_profile_entry, profile_models
    from pebench.zoo import resolve_model

    rank, world = init_distributed(device)
    if rank == 0 and path.exists():
        repair_torn_tail(path)  # a kill mid-write leaves a partial line; the next append must start clean
    _barrier(world)
    done = finished_keys(path, suite_keys)
    todo = [c for c in cells if c.key not in done]
    # native results of earlier runs, for interp cells that run the same computation
    natives = {(r["model"]["name"], r["res"]): r for r in (read_records(path) if path.exists() else [])
               if r["kind"] == "eval" and r["mode"] == "native"}
    _barrier(world)  # every rank has read the results file before rank 0 appends to it
    on_start(todo)

    def finish(cell: Cell, record: dict) -> None:
        record |= {"key": cell.key, "suite": suite.name}
        if rank == 0:
            append_record(path, record)
        on_record(cell, record)

    eval_cells = [c for c in todo if c.kind == "eval"]
    if eval_cells:
        data = parse_data(suite.data, suite.crop_pct)
        env = environment()
        loaded: dict[str, tuple] = {}
        for res in dict.fromkeys(c.res for c in eval_cells):
            images, labels = data.load("val", res, limit=suite.n)
            for cell in (c for c in eval_cells if c.res == res):
                on_cell_start(cell)
                if cell.model not in loaded:
                    loaded[cell.model] = resolve_model(cell.model)
                net, meta, source, model_path = loaded[cell.model]
                record = evaluate_cell((cell.model, net, meta, source, model_path), data, images, labels, res,
                                       cell.mode, suite.batch_size, device, env,
                                       native=natives.get((cell.model, res)))
                if cell.mode == "native":
                    natives[(cell.model, res)] = record
                finish(cell, record)

    profile_cells = [c for c in todo if c.kind == "profile"]
    if profile_cells and rank == 0:
        settings = SpeedSettings(batch_size=suite.profile_batch_size, device=device, dtype=suite.profile_dtype,
                                 repeats=suite.profile_repeats)
        for res in dict.fromkeys(c.res for c in profile_cells):
            at_res = [c for c in profile_cells if c.res == res]
            entries = [load_profile_entry(c.model, c.config["size"]) for c in at_res]
            on_cell_start(at_res[0])
            # profile_models reports in entry order and measures the `none` reference once per resolution
            pending = iter(at_res)
            profile_models(entries, [res], suite.profile_mode, settings,
                           lambda record, pending=pending: finish(next(pending), record))
    _barrier(world)


def check_models(suite: Suite) -> None:
    """Fail before any work when a model cannot be loaded or a resolution does not fit its patch."""
    from pebench.models.vit import check_resolution
    from pebench.zoo import resolve_model

    for name in suite.models:
        _, meta, _, _ = resolve_model(name)
        for res in suite.resolutions:
            check_resolution(res, res, meta["patch"], what=f"resolution {res} for model {name}")
