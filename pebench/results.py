"""Result records: one JSON object per line, one line per cell.

Schema (``schema_version`` 2; version 1 records, written before streaming evaluation, lack the
``data`` counts and have ``timing`` {img_per_s, wall_s, batch_size}; reports still read them)::

    schema_version  2
    key, suite      the cell's hash (its resolved config, weights and pebench version) and the suite's
                    name ("eval" / "profile" for the one-row suites of `pebench eval` / `pebench profile`)
    kind            "eval"
    model           {name, source ("zoo" | "file" | "timm" | "py"), path, size (timm: the timm name), encoding,
                     train_res, patch, checkpoint_sha256, finetune (a `pebench finetune` checkpoint: its
                     sidecar's fine-tune record), plugins (only when a component of the encoding comes
                     from a plugin: {name: {distribution, version} or {file, sha256} of the plugin that
                     ran}), weights_source (timm:NAME --pretrained: "hf-hub:REPO/FILE@REVISION")}; built
                     once, by :func:`model_entry`
    res, mode       evaluation resolution: its label, the int 384 (square) or "384x512" (height x width);
                    mode "native" | "interp" | "scale=S" | "tuned" (pebench.modes)
    position_scale  [rows, cols] factor on positions the mode stands for: native [1, 1], interp
                    [G0/Gh, G0/Gw] (for learned grids and tables interp is a resampling), scale=S and
                    tuned [S, S]; null when not applicable (absent from records made before 2026-11-23)
    tuning          tuned cells: {scale (the S chosen), interp_scale (G0/G; geometric mean of the axes),
                     scales [S tried], tune_top1 [top-1 on the tune part per S], tune_n (images that
                     chose it), tune_positions [0, tune_n], tune_wall_s}
    status          "ok" | "not_applicable"
    reason          why not applicable (null when ok)
    same_as_native  true when interp runs the native computation (nothing to interpolate); false for
                    scale=S and tuned cells
    measured_as     "native" on an interp cell that is same_as_native and took the native cell's
                    results (metrics and timing) instead of running the same computation again
    resize_api      timm models: the timm API that adapted position parameters (null at the trained
                    resolution and for pebench's own encodings)
    attention       pebench's own models: the attention path asked for (auto | reference | flex,
                    pebench.models.attention; null for timm and py: models, and in records made before
                    2026-12-04)
    data            {spec, split, requested (items asked for), n (images evaluated), skipped (files that
                     could not be decoded; not in n), skipped_files (their names, up to 100),
                     fingerprint (hash of spec, split, res, crop, renderer or folder listing);
                     decode "gpu" when an image folder's JPEGs were decoded on the device (absent: the
                     PIL path in the workers);
                     in a run with a tuned mode also holdout (tune_n) and positions [holdout, requested]:
                     every cell of such a run is scored on those positions only;
                     class_groups {name: [class index, ...]} (the dataset's groups of classes; synthetic:
                     "where" [0, 1, 2], told apart only by position, and "what" [3..9], by shape and colour;
                     {} for an image folder); class_names [name per class index], only for datasets of at
                     most 100 classes (pebench.runner.evaluation.MAX_NAMED_CLASSES: ImageNet's 1000 would
                     bloat every line)}
    metrics         {n, correct_top1, correct_top5, top1, top1_ci95 [lo, hi] (Wilson), top5,
                     groups {name: {n, correct_top1, top1, top1_ci95}} per class group of data.class_groups
                     ({} when the dataset has none; top1 null when none of the group's images was scored),
                     per_class {n [images per class index], correct_top1 [top-1 hits per class index]}
                     (lists of num_classes ints; they sum to n and correct_top1),
                     image_hits (top-1 right or wrong per scored image, in position order, as hex: 4
                     images a digit, the first in the highest bit; absent when an image was skipped;
                     :func:`unpack_hits`)}
                    Records written before per-group metrics (2026-11-23) lack data.class_groups,
                    data.class_names, metrics.groups and metrics.per_class; readers show no groups for them.
    timing          one streamed pass per resolution feeds every computed cell of it:
                    {model_img_per_s (this model and mode alone: images / its forward time, after the first
                     batch, which pays one-off start-up; null with a single batch),
                     pass_img_per_s (images / the pass's wall time, every cell and the data included),
                     data_img_per_s (what decoding/rendering delivers: per-process rate x processes),
                     pass_wall_s, startup_s (until the first batch), wait_fraction (share of the pass
                     after start-up the models waited for data), data_bound (wait_fraction >= 0.2),
                     workers, data_source ("decoded" | "cache"), cells_in_pass, batch_size (after any
                     out-of-memory halving)}
    device, dtype   e.g. "cpu", "fp32" | "bf16-autocast"
    env             {pebench, torch, timm, python, git_sha, git_dirty, threads, machine, time}

Profile records (``kind`` "profile") share ``schema_version``, ``key``, ``suite``, ``model``
(``source`` "built" for random-weight models built from a spec; ``weights`` "trained", "random", or
"random (no checkpoint: ...)" for a timm model profiled without weights; ``encoding`` as in eval records,
for a timm model its family's encoding: profile records made before 2026-12-04 held "timm:NAME" there),
``res``, ``mode``,
``status``, ``reason``, ``same_as_native``, ``resize_api``, ``device``, ``dtype``, ``env`` (plus
``env.device_name``) and add::

    settings          {mode, batch_size, dtype, threads, device, device_name, channels_last, compiled,
                       rounds}: how every figure of the record was measured
    params            {total, encoding (stored position params), encoding_at_res (position values in
                       use at res: an interpolated APE grid or BEiT table grows, a PEG does not)}
    flops             {gmacs, gflops (one image; GMACs = FLOPs / 2), encoding_gmacs (vs `none` of the
                       same size), not_counted [...]}
    timing            interleaved rounds with the `none` twin and the other models of the resolution:
                      {img_per_s (median over rounds), img_per_s_iqr [q1, q3], img_per_s_mean, repeats
                       (rounds), batch_size (after any out-of-memory halving), calls_per_block,
                       latency_ms (batch 1, median), latency_ms_iqr, reference_drift (the `none`
                       twin's time, last third of the rounds vs first third; > 0: slower at the end),
                       warnings [...]}
    breakdown         where one forward's time goes (pebench.measure.breakdown; null for timm and py:
                      models, and in records made before 2026-12-04): {position_ms (building and applying
                      position terms outside attention), attention_ms (SDPA / FlexAttention / explicit,
                      value terms included), rest_ms, total_ms, position_share, attention_share,
                      rest_share, batch_size, calls (median over), clock ("cuda events" | "wall clock"),
                      attention_paths {sdpa | flex | explicit: blocks of one forward that took it}}
    memory            {peak_mib (peak bytes allocated by one forward), kind ("cuda_max_allocated" |
                       "cpu_allocated_peak"; records made before 2026-11-23: "rss_growth")}
    overhead_vs_none  {time (median per-round time ratio to the `none` twin), time_iqr [q1, q3],
                       memory (peak ratio, null when none's is 0)}; null, with flops.encoding_gmacs and
                       timing.reference_drift, for a model with no position-free twin (a timm class no
                       family lists; a model from outside whose position_free_twin() gives None)
    channels_last, compiled

Diagnostics records (``kind`` "diagnostics", :mod:`pebench.measure.diagnostics`) share ``schema_version``,
``key``, ``suite``, ``model``, ``res``, ``mode``, ``status``, ``reason``, ``same_as_native``,
``resize_api``, ``device``, ``env`` and add::

    data            {spec, split, requested, n, fingerprint}: the first n images of the split
    diagnostics     {grid [rows, cols],
                     layers [{block, attention_distance {mean, per_head} (patches, attention-weighted over
                              the patch keys, for patch queries), attention_distance_fraction (the same /
                              the grid's longer side), entropy {mean, per_head} (nats, over all keys),
                              max_entropy (log of the key count), class_token_attention {mean, per_head}
                              (absent without a class token)}, ...],
                     class_token_maps [{label, map [[...]]}] (last block, mean over heads, first images),
                     embedding_similarity {grid, references [[r, c], ...], maps [[[...]]]} | null
                       (cosine similarity of each reference patch's added position embedding to every
                       patch's, at this grid and mode), embedding_similarity_trained (the same at the
                       trained grid),
                     bias_by_offset {grid, centre [r, c], blocks [...], maps [per block: null | per head
                       [[...]]]} | {reason} | null (the additive bias from the centre patch; null
                       entries in a map are masked offsets)}

Records are appended with a flush and fsync per line, so an interrupted run keeps every finished
line and never leaves a partial one behind a complete one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pebench.errors import PebenchError
from pebench.modes import TUNED
from pebench.resolution import Label

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
KINDS = ("eval", "diagnostics", "profile")
#: the records file of a run folder
RESULTS_NAME = "results.jsonl"


def model_entry(model, kind: str) -> dict:
    """The ``model`` field of a record, for a :class:`pebench.models.interface.LoadedModel`: profile
    records also say which ``weights`` were timed ("trained", "random", "random (no checkpoint: ...)")."""
    meta = model.meta
    entry = {"name": model.name, "source": model.source, "path": None if model.path is None else str(model.path),
             "size": meta["size"], "encoding": meta["encoding"], "train_res": meta["train_res"],
             "patch": meta["patch"], "checkpoint_sha256": meta["checkpoint_sha256"]}
    if meta.get("finetune"):
        entry["finetune"] = meta["finetune"]
    if meta.get("plugins"):
        entry["plugins"] = meta["plugins"]
    if meta.get("weights_source"):
        entry["weights_source"] = meta["weights_source"]
    if kind == "profile":
        entry["weights"] = meta.get("weights", "trained")
    return entry


def header(kind: str, model, res: Label, mode: str, device: str, env: dict) -> dict:
    """The fields every record starts with, whatever its kind (the schema above)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "model": model_entry(model, kind),
        "res": res,
        "mode": mode,
        "same_as_native": model.same_as_native(res, mode),
        "resize_api": model.net.resize_api(res, mode) if mode != TUNED else None,
        "attention": getattr(model.net, "attention_path", None),
        "device": device,
        "env": env,
    }


def append_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path) -> list[dict]:
    """Every record of a results file. A torn last line (a crash mid-write) is ignored; a bad line
    anywhere else means the file was edited or corrupted, and is an error naming the line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise PebenchError(f"{path}: line {number} is not a JSON record; fix or remove that line") from None
    return records


def repair_torn_tail(path: Path) -> None:
    """Cut a partial last line (a kill mid-write) so that the next append starts on a fresh line."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def load_results(paths: list[Path | str]) -> list[dict]:
    """Records of results files (a directory means every ``*.jsonl`` in it, e.g. the shards of a run).

    A cell present in several files (overlapping shards, a rerun) is kept once: the last one read.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.glob("*.jsonl"))
        elif path.exists():
            files.append(path)
        else:
            raise PebenchError(f"results file {path} does not exist; pass a results .jsonl file or a run folder")
    if not files:
        raise PebenchError(f"no results (*.jsonl) in {', '.join(map(str, paths))}; run `pebench run SUITE` first")
    cells: dict = {}
    for file in files:
        for record in read_records(file):
            if (record.get("schema_version") not in READABLE_VERSIONS
                    or record.get("kind") not in KINDS):
                raise PebenchError(f"{file}: not a pebench result record (schema_version "
                                   f"{' or '.join(map(str, READABLE_VERSIONS))} expected)")
            cells[cell_identity(record)] = record
    return list(cells.values())


def cell_identity(record: dict) -> tuple:
    """What a record measured, independent of when and with which pebench: used to merge and compare."""
    data = record.get("data") or {}
    return record["kind"], record["model"]["name"], record["res"], record["mode"], data.get("spec"), data.get("n")


def pack_hits(hits: list[bool]) -> str:
    """Per-image top-1 hits as hex, 4 images a digit, first image in the highest bit (see unpack_hits)."""
    padded = hits + [False] * (-len(hits) % 4)
    return "".join(f"{8 * a + 4 * b + 2 * c + d:x}" for a, b, c, d in zip(*[iter(padded)] * 4, strict=True))


def unpack_hits(text: str, n: int) -> list[bool]:
    """The first ``n`` per-image hits of a record's ``metrics.image_hits``."""
    return [bool(int(digit, 16) >> shift & 1) for digit in text for shift in (3, 2, 1, 0)][:n]
