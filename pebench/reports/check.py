"""`pebench check`: compare results with a baseline and give CI an exit code it can trust.

A cell *regresses* when its metric fell by more than ``max_drop`` points **and** by more than its
sample size can explain: a one-sided two-proportion z-test (pooled) at 5% must reject "same
accuracy". With a few hundred images a one-image flip is never a regression; a real drop is.
Cells in the baseline that the results lack are *missing* and fail the check too (a gate that
passes because a cell vanished is no gate). New cells are listed and do not fail.

Baseline file (JSON)::

    {"pebench_baseline": 1, "metric": "top1", "suite": ..., "env": {device, torch, pebench, git_sha},
     "cells": [{"model", "res", "mode", "data", "n", "status", "correct", "value"}]}

``correct`` is the count behind ``value`` (e.g. correct_top1), so the test uses exact counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pebench.atomic import atomic_path
from pebench.errors import PebenchError

BASELINE_VERSION = 1
METRICS = {"top1": "correct_top1", "top5": "correct_top5"}
_Z_ONE_SIDED_5PCT = 1.6449


@dataclass
class Comparison:
    label: str
    status: str  # regressed | improved | unchanged | missing | new
    baseline: float | None
    current: float | None
    detail: str = ""


def _label(cell: dict) -> str:
    return f"{cell['model']} @ {cell['res']} {cell['mode']}"


def baseline_cells(records: list[dict], metric: str) -> list[dict]:
    """The baseline's view of evaluation records: identity, sample size and the metric's count."""
    cells = []
    for r in records:
        if r["kind"] != "eval":
            continue
        ok = r["status"] == "ok"
        cells.append({"model": r["model"]["name"], "res": r["res"], "mode": r["mode"], "data": r["data"]["spec"],
                      "n": r["data"]["n"], "status": r["status"],
                      "correct": r["metrics"][METRICS[metric]] if ok else None,
                      "value": r["metrics"][metric] if ok else None})
    return cells


def write_baseline(records: list[dict], path: Path, metric: str) -> int:
    cells = baseline_cells(records, metric)
    if not cells:
        raise PebenchError("the results hold no evaluation cells to make a baseline from")
    first = next(r for r in records if r["kind"] == "eval")
    baseline = {"pebench_baseline": BASELINE_VERSION, "metric": metric, "suite": first.get("suite"),
                "env": _env_of(first), "cells": cells}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(baseline, indent=1) + "\n", encoding="utf-8")
    return len(cells)


def _env_of(record: dict) -> dict:
    return {"device": record["device"], "torch": record["env"]["torch"], "pebench": record["env"]["pebench"],
            "git_sha": record["env"]["git_sha"]}


def read_baseline(path: Path, metric: str) -> dict:
    try:
        baseline = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PebenchError(f"baseline {path} does not exist; create it with --update-baseline") from None
    except (OSError, json.JSONDecodeError) as error:
        raise PebenchError(f"baseline {path} is not readable JSON ({error}); restore it or recreate it "
                           "with --update-baseline") from None
    if not isinstance(baseline, dict) or baseline.get("pebench_baseline") != BASELINE_VERSION:
        raise PebenchError(f"{path} is not a pebench baseline (version {BASELINE_VERSION}); recreate it with "
                           "--update-baseline")
    cells = baseline.get("cells")
    fields = ("model", "res", "mode", "data", "n", "status", "correct", "value")
    if not isinstance(cells, list) or not cells or not all(isinstance(c, dict) and all(f in c for f in fields)
                                                           for c in cells):
        raise PebenchError(f"{path}: the baseline has no cells or a cell lacks one of {', '.join(fields)}; "
                           "recreate it with --update-baseline")
    if baseline.get("metric") != metric:
        raise PebenchError(f"{path} holds metric '{baseline.get('metric')}', not '{metric}'; pass --metric "
                           f"{baseline.get('metric')} or recreate the baseline")
    return baseline


def significant_drop(correct_base: int, n_base: int, correct_now: int, n_now: int) -> bool:
    """One-sided pooled two-proportion z-test: is the current rate lower than chance allows?"""
    pooled = (correct_base + correct_now) / (n_base + n_now)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_base + 1 / n_now))
    drop = correct_base / n_base - correct_now / n_now
    if se == 0:
        return drop > 0
    return drop / se > _Z_ONE_SIDED_5PCT


def compare(records: list[dict], baseline: dict, max_drop: float, path: Path) -> list[Comparison]:
    """One Comparison per cell of the baseline or the results."""
    metric = baseline["metric"]
    current = {(_label(c), c["data"]): c for c in baseline_cells(records, metric)}
    results = []
    for cell in baseline["cells"]:
        now = current.pop((_label(cell), cell["data"]), None)
        label = _label(cell)
        if now is None:
            results.append(Comparison(label, "missing", cell["value"], None, "in the baseline, not in the results"))
            continue
        if now["n"] != cell["n"]:
            raise PebenchError(f"{path}: {label} was measured on n={cell['n']} images, the results on n={now['n']}: "
                               "results from another suite version; rerun the suite or --update-baseline")
        if cell["status"] != "ok" or now["status"] != "ok":
            status = "unchanged" if cell["status"] == now["status"] else (
                "regressed" if cell["status"] == "ok" else "improved")
            results.append(Comparison(label, status, cell["value"], now["value"],
                                      f"status {cell['status']} -> {now['status']}" if status != "unchanged" else ""))
            continue
        drop = 100 * (cell["value"] - now["value"])
        if drop > max_drop and significant_drop(cell["correct"], cell["n"], now["correct"], now["n"]):
            status, detail = "regressed", f"-{drop:.2f} points (> {max_drop}, significant at 5%)"
        elif drop < -max_drop and significant_drop(now["correct"], now["n"], cell["correct"], cell["n"]):
            status, detail = "improved", f"+{-drop:.2f} points"
        else:
            status, detail = "unchanged", f"{-drop:+.2f} points" if drop else ""
        results.append(Comparison(label, status, cell["value"], now["value"], detail))
    results += [Comparison(_label(c), "new", None, c["value"], "not in the baseline") for c in current.values()]
    return results


def environment_warnings(records: list[dict], baseline: dict) -> list[str]:
    """Differences of device or torch version: results may legitimately move, so warn, do not fail."""
    env = baseline.get("env") or {}
    warnings = []
    for key in ("device", "torch"):
        seen = sorted({_env_of(r)[key] for r in records if r["kind"] == "eval"} - {env.get(key)})
        if env.get(key) and seen:
            warnings.append(f"{key} differs: baseline {env[key]}, results {', '.join(seen)}")
    return warnings
