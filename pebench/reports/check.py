"""`pebench check`: compare results with a baseline and give CI an exit code it can trust.

Each cell is compared on its metric (top-1 or top-5) and, for top-1, on every class group the
baseline records (synthetic: *where*, the classes told apart only by position, whose loss a top-1
gate sees diluted by the other seven classes). A value *regresses* when it fell by more than its
tolerance (``max_drop`` points for the metric, ``max_group_drop`` for a group) **and** by more than
its sample size can explain: a one-sided two-proportion z-test (pooled) at 5% must reject "same
accuracy". It *improved* when it rose by as much, the other way. With ``both_ways`` an improvement
fails too: a change that made native behave like interp reads as "better" and must not pass until
the baseline is regenerated on purpose. Cells in the baseline that the results lack are *missing*
and fail (a gate that passes because a cell vanished is no gate). New cells are listed and do not fail.

Baseline file (JSON; version 1 files, without groups, are still read)::

    {"pebench_baseline": 2, "metric": "top1", "suite": ..., "env": {device, torch, pebench, git_sha},
     "cells": [{"model", "res", "mode", "data", "n", "status", "correct", "value",
                "groups": {name: {"n", "correct", "value"}}}]}

``correct`` is the count behind ``value`` (e.g. correct_top1), so the test uses exact counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pebench.atomic import atomic_path
from pebench.errors import PebenchError

BASELINE_VERSION = 2
READABLE_BASELINES = (1, 2)
METRICS = {"top1": "correct_top1", "top5": "correct_top5"}
_Z_ONE_SIDED_5PCT = 1.6449
#: statuses that fail the check (``improved`` too, when it is run both ways)
FAILING = ("regressed", "missing")


@dataclass
class Comparison:
    label: str
    status: str  # regressed | improved | unchanged | missing | new
    baseline: float | None
    current: float | None
    detail: str = ""


def _label(cell: dict, group: str | None = None) -> str:
    return f"{cell['model']} @ {cell['res']} {cell['mode']}" + (f" [{group}]" if group else "")


def baseline_cells(records: list[dict], metric: str) -> list[dict]:
    """The baseline's view of evaluation records: identity, sample size, the metric's count, and for
    top-1 each class group's count."""
    cells = []
    for r in records:
        if r["kind"] != "eval":
            continue
        ok = r["status"] == "ok"
        groups = ((r["metrics"] or {}).get("groups") or {}) if ok and metric == "top1" else {}
        cells.append({"model": r["model"]["name"], "res": r["res"], "mode": r["mode"], "data": r["data"]["spec"],
                      "n": r["data"]["n"], "status": r["status"],
                      "correct": r["metrics"][METRICS[metric]] if ok else None,
                      "value": r["metrics"][metric] if ok else None,
                      "groups": {name: {"n": g["n"], "correct": g["correct_top1"], "value": g["top1"]}
                                 for name, g in groups.items() if g["n"]}})
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
    if not isinstance(baseline, dict) or baseline.get("pebench_baseline") not in READABLE_BASELINES:
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


def _judge(label: str, before: dict, now: dict, tolerance: float) -> Comparison:
    """``before`` and ``now``: {n, correct, value} of the same measurement."""
    drop = 100 * (before["value"] - now["value"])
    if drop > tolerance and significant_drop(before["correct"], before["n"], now["correct"], now["n"]):
        return Comparison(label, "regressed", before["value"], now["value"],
                          f"-{drop:.2f} points (> {tolerance}, significant at 5%)")
    if drop < -tolerance and significant_drop(now["correct"], now["n"], before["correct"], before["n"]):
        return Comparison(label, "improved", before["value"], now["value"],
                          f"+{-drop:.2f} points (> {tolerance}, significant at 5%)")
    return Comparison(label, "unchanged", before["value"], now["value"], f"{-drop:+.2f} points" if drop else "")


def compare(records: list[dict], baseline: dict, max_drop: float, path: Path,
            max_group_drop: float | None = None) -> list[Comparison]:
    """One Comparison per cell of the baseline or the results, and one per class group of each cell
    the baseline records groups for (tolerance ``max_group_drop``, default ``max_drop``)."""
    metric = baseline["metric"]
    group_drop = max_drop if max_group_drop is None else max_group_drop
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
        results.append(_judge(label, cell, now, max_drop))
        for name, group in (cell.get("groups") or {}).items():
            if name not in now["groups"]:
                results.append(Comparison(_label(cell, name), "missing", group["value"], None,
                                          "class group in the baseline, not in the results"))
            else:
                results.append(_judge(_label(cell, name), group, now["groups"][name], group_drop))
    results += [Comparison(_label(c), "new", None, c["value"], "not in the baseline") for c in current.values()]
    return results


def failed(comparisons: list[Comparison], both_ways: bool) -> list[Comparison]:
    """The comparisons that fail the check."""
    failing = FAILING + (("improved",) if both_ways else ())
    return [c for c in comparisons if c.status in failing]


def environment_warnings(records: list[dict], baseline: dict) -> list[str]:
    """Differences of device or torch version: results may legitimately move, so warn, do not fail."""
    env = baseline.get("env") or {}
    warnings = []
    for key in ("device", "torch"):
        seen = sorted({_env_of(r)[key] for r in records if r["kind"] == "eval"} - {env.get(key)})
        if env.get(key) and seen:
            warnings.append(f"{key} differs: baseline {env[key]}, results {', '.join(seen)}")
    return warnings
