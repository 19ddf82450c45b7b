"""Accuracy of a model at a resolution in a mode: one result record per (model, resolution, mode).

Result records are JSON objects, one per line (see :mod:`pebench.results` for the schema).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from pebench.data import normalize
from pebench.encodings.base import Mode


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error, or a device/CPU allocator failure surfacing as a RuntimeError."""
    text = str(error).lower()
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


@torch.inference_mode()
def run_accuracy(
    model: torch.nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    mode: Mode,
    batch_size: int,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """Top-1/top-5 counts of ``model`` on uint8 images, with throughput (data included).

    On CUDA it runs under bf16 autocast. When a batch runs out of memory the batch size halves and
    the same batch is retried, so a too-large ``--batch-size`` costs time, not the result. In a
    torch.distributed process group each process takes every world-th image and the counts are
    summed over processes, so the result equals a single process's.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        images_u8, labels = images_u8[rank::world], labels[rank::world]
    model.eval().to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    correct1 = correct5 = 0
    start_time = time.perf_counter()
    start = 0
    while start < len(labels):
        chunk = slice(start, start + batch_size)
        x = normalize(images_u8[chunk]).to(device, non_blocking=True)
        y = labels[chunk].to(device)
        try:
            with autocast:
                logits = model(x, mode)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            batch_size //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top5[:, 0] == y).sum().item()
        correct5 += (top5 == y[:, None]).any(dim=1).sum().item()
        start += len(y)
        if on_batch:
            on_batch(len(y))
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start_time
    n = len(labels)
    if distributed:
        counts = torch.tensor([correct1, correct5, n], dtype=torch.int64, device=device)
        torch.distributed.all_reduce(counts)
        correct1, correct5, n = counts.tolist()
        slowest = torch.tensor([wall], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
        wall = slowest.item()
    return {
        "n": n,
        "correct_top1": correct1,
        "correct_top5": correct5,
        "top1": correct1 / n,
        "top1_ci95": list(wilson_interval(correct1, n)),
        "top5": correct5 / n,
        "img_per_s": n / wall,
        "wall_s": wall,
        "batch_size": batch_size,
        "dtype": "bf16-autocast" if device.type == "cuda" else "fp32",
    }


def evaluate_cell(
    entry: tuple[str, torch.nn.Module, dict, str, Path],
    data,
    images: torch.Tensor,
    labels: torch.Tensor,
    res: int,
    mode: Mode,
    batch_size: int,
    device: torch.device,
    env: dict,
    on_batch: Callable[[int], None] | None = None,
    native: dict | None = None,
) -> dict:
    """The record of one (model, resolution, mode) cell on already loaded uint8 images.

    ``entry`` is (name, model, sidecar, source, checkpoint path) as ``resolve_model`` gives them.
    ``native`` is this model's native record at the same resolution, when there is one: an interp
    cell that runs the very same computation (``same_as_native``) takes its results instead of
    running it twice, and says so (``measured_as: "native"``).
    """
    from pebench.results import SCHEMA_VERSION

    name, model, meta, source, path = entry
    record = {
        "schema_version": SCHEMA_VERSION,
        "kind": "eval",
        "model": {"name": name, "source": source, "path": str(path), "size": meta["size"],
                  "encoding": meta["encoding"], "train_res": meta["train_res"], "patch": meta["patch"],
                  "checkpoint_sha256": meta["checkpoint_sha256"]},
        "res": res,
        "mode": mode,
        "same_as_native": bool(model.interp_is_native or res == meta["train_res"]),
        "resize_api": model.resize_api(res, mode),
        "data": {"spec": data.spec, "split": "val", "n": len(labels), "fingerprint": data.fingerprint("val", res)},
        "device": device.type,
        "env": env,
    }
    reason = model.applicability(res, mode)
    if reason:
        if on_batch:
            on_batch(len(labels))
        return record | {"status": "not_applicable", "reason": reason, "metrics": None, "timing": None, "dtype": None}
    if mode == "interp" and record["same_as_native"] and native is not None and native["status"] == "ok":
        if on_batch:
            on_batch(len(labels))
        return record | {k: native[k] for k in ("status", "reason", "metrics", "timing", "dtype")} | {
            "measured_as": "native"}
    result = run_accuracy(model, images, labels, mode, batch_size, device, on_batch)
    return record | {
        "status": "ok",
        "reason": None,
        "metrics": {k: result[k] for k in ("n", "correct_top1", "correct_top5", "top1", "top1_ci95", "top5")},
        "timing": {k: result[k] for k in ("img_per_s", "wall_s", "batch_size")},
        "dtype": result["dtype"],
    }


def evaluate_models(
    models: list[tuple[str, torch.nn.Module, dict, str, Path]],
    data,
    resolutions: list[int],
    modes: list[Mode],
    n: int | None,
    batch_size: int,
    device: torch.device,
    on_record: Callable[[dict], None],
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Evaluate every (model, resolution, mode) cell; each finished cell goes to ``on_record``.

    A split is rendered (or read from the cache) once per resolution and shared by every model and mode.
    """
    from pebench.env import environment

    env = environment()
    for res in resolutions:
        images, labels = data.load("val", res, limit=n)
        for entry in models:
            native = None
            for mode in modes:
                record = evaluate_cell(entry, data, images, labels, res, mode, batch_size, device, env, on_batch,
                                       native)
                native = record if mode == "native" else native
                on_record(record)
