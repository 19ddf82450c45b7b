"""Result records: one JSON object per line, one line per (model, resolution, mode) cell.

Schema (``schema_version`` 1)::

    schema_version  1
    kind            "eval"
    model           {name, source ("zoo" | "file"), path, size, encoding, train_res, patch,
                     checkpoint_sha256}
    res, mode       evaluation resolution (px) and "native" | "interp"
    status          "ok" | "not_applicable"
    reason          why not applicable (null when ok)
    same_as_native  true when interp runs the native computation (nothing to interpolate)
    data            {spec, split, n, fingerprint}   fingerprint: hash of spec, split, res, renderer
    metrics         {n, correct_top1, correct_top5, top1, top1_ci95 [lo, hi] (Wilson), top5}
    timing          {img_per_s (data included), wall_s, batch_size}
    device, dtype   e.g. "cpu", "fp32" | "bf16-autocast"
    env             {pebench, torch, timm, python, git_sha, git_dirty, threads, machine, time}

Records are appended with a flush and fsync per line, so an interrupted run keeps every finished
line and never leaves a partial one behind a complete one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pebench.errors import PebenchError

SCHEMA_VERSION = 1


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
