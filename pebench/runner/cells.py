"""A suite expanded into cells: one unit of work and one result record each.

A cell is (eval, model, resolution, mode), (diagnostics, model, resolution, mode) or (profile, model or
encoding spec, resolution, mode). Its ``key`` hashes the cell's fully resolved configuration (the
weights' SHA-256 included) with pebench's version, so results of a changed suite, retrained weights or
another pebench are never taken for this one's. ``--shard i/n`` runs every n-th cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pebench import __version__
from pebench.encodings.plugins import spec_provenance
from pebench.errors import PebenchError
from pebench.models.checkpoint import read_sidecar
from pebench.models.preflight import TIMM_PREFIX
from pebench.models.resolve import weights_digest
from pebench.modes import TUNED
from pebench.resolution import Label
from pebench.runner.suite import Suite
from pebench.settings import crop_at
from pebench.zoo import ZOO


@dataclass(frozen=True)
class Cell:
    kind: str  # "eval" | "diagnostics" | "profile"
    model: str  # shipped name, checkpoint path, or (profile-only rows) an encoding spec
    res: Label
    mode: str
    config: dict = field(compare=False)
    key: str = field(compare=False)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.model} @ {self.res} {self.mode}"


def _finetune_cell(path: str) -> tuple[Label, str]:
    """(resolution, mode) a `pebench finetune` checkpoint was fine-tuned at, from its sidecar."""
    finetune = read_sidecar(Path(path)).get("finetune")
    if not finetune:
        raise PebenchError(f"'finetuned' lists {path}, whose sidecar has no fine-tune record; list it under "
                           "'models', or make it with `pebench finetune`")
    return finetune["res"], finetune["mode"]


def _plugins(model: str, size: str | None) -> dict:
    """``{"plugins": ...}`` for a model whose encoding comes (partly) from a plugin, else nothing (so that every
    other cell keeps its key): an encoding spec row, or a checkpoint whose sidecar names one."""
    if size is not None:
        spec = model
    elif model in ZOO or model.startswith(TIMM_PREFIX) or not Path(model).exists():
        return {}
    else:
        try:
            spec = read_sidecar(Path(model))["encoding"]
        except (PebenchError, KeyError):  # loading the model says what is wrong with it, before any work
            return {}
    found = spec_provenance(spec)
    return {"plugins": found} if found else {}


def _key(config: dict) -> str:
    text = json.dumps(config | {"pebench": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(suite: Suite) -> list[Cell]:
    """Every cell of the suite, in run order: evaluation, then diagnostics, then profiling."""
    cells = []
    digests = {m: weights_digest(m) for m in suite.models}
    plugins = {m: _plugins(m, None) for m in (*suite.models, *suite.finetuned)}
    # with a tuned mode, the first tune.n images choose S and every eval cell scores the same rest
    tuning = {"holdout": suite.tune.n} if TUNED in suite.modes else {}
    # other pixels or another attention path: other cells
    choices = suite.decoding | suite.attending

    def eval_cell(model: str, digest: str | None, res: Label, mode: str) -> Cell:
        config = {"kind": "eval", "model": model, "weights_sha256": digest, "res": res, "mode": mode,
                  "data": suite.data, "n": suite.n, "crop_pct": crop_at(suite.crop_pct, res),
                  "device": suite.device} | tuning | choices | plugins[model]
        if mode == TUNED:
            config |= {"tune_scales": suite.tune.scales, "tune_points": suite.tune.points}
        return Cell("eval", model, res, mode, config, _key(config))

    cells += [eval_cell(model, digests[model], res, mode)
              for model in suite.models for res in suite.resolutions for mode in suite.modes]
    cells += [eval_cell(path, weights_digest(path), *_finetune_cell(path)) for path in suite.finetuned]
    if suite.diagnostics.enabled:
        for model in suite.models:
            for res in suite.resolutions:
                for mode in suite.modes:
                    if mode == TUNED:
                        continue  # a tuned S is chosen by an eval pass; inspect scale=S to see one
                    config = {"kind": "diagnostics", "model": model, "weights_sha256": digests[model], "res": res,
                              "mode": mode, "data": suite.data, "n": suite.diagnostics.n,
                              "crop_pct": crop_at(suite.crop_pct, res), "maps": suite.diagnostics.maps,
                              "device": suite.device} | choices | plugins[model]
                    cells.append(Cell("diagnostics", model, res, mode, config, _key(config)))
    profile = suite.profile
    if profile.enabled:
        settings = {"device": suite.device, "mode": profile.mode, "batch_size": profile.batch_size,
                    "dtype": profile.dtype, "repeats": profile.repeats} | suite.attending
        if profile.channels_last or profile.compile:  # absent otherwise: earlier keys stay valid
            settings |= {"channels_last": profile.channels_last, "compile": profile.compile}
        for model, size in profile_rows(suite):
            for res in suite.resolutions:
                config = {"kind": "profile", "model": model, "size": size, "res": res,
                          "shipped": model in ZOO} | settings | _plugins(model, size)
                cells.append(Cell("profile", model, res, profile.mode, config, _key(config)))
    return cells


def profile_rows(suite: Suite) -> list[tuple[str, str | None]]:
    """The rows a suite profiles: (model spec, None) per model, (encoding spec, size) per encoding."""
    return [(m, None) for m in suite.models] + [(e, suite.profile.size) for e in suite.profile.encodings]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (1-based) -> (i, n)."""
    index, slash, count = text.partition("/")
    if not (slash and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise PebenchError(f"--shard '{text}' is not i/n with 1 <= i <= n; e.g. --shard 1/2 and --shard 2/2")
    return int(index), int(count)


def shard_cells(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells shard ``index`` of ``count`` runs: every ``count``-th, so each shard gets a mix of costs."""
    return cells[index - 1 :: count]
