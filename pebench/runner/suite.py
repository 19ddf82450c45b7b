"""Suites: a YAML file that declares a grid of cells, validated up front and expanded into cells.

A suite names models (shipped names or checkpoint paths), resolutions, modes, the data and how
to run; ``include: other.yaml`` inherits another suite (paths relative to the including file) and
overrides its keys. Every key is checked before anything runs, with errors that name the file,
the key and the allowed values.

A *cell* is one unit of work and one result record: (eval, model, resolution, mode),
(diagnostics, model, resolution, mode) or (profile, model or encoding spec, resolution, mode). Its
``key`` hashes the cell's fully resolved configuration with pebench's version, so results of a
changed suite or another pebench are never taken for this one's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pebench import __version__
from pebench.encodings.spec import did_you_mean
from pebench.errors import PebenchError
from pebench.modes import TUNED, parse_mode
from pebench.resolution import Label, parse_res

MODES = ("native", "interp")  # the default modes; any of pebench.modes is allowed
DEVICES = ("cpu", "cuda")
DTYPES = ("fp32", "bf16", "fp16")
SIZES = ("micro", "tiny", "small", "base")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str = ""
    models: tuple[str, ...] = ()
    profile_encodings: tuple[str, ...] = ()
    profile_size: str = "micro"
    resolutions: tuple[Label, ...] = (224, 384, 448, 512)
    modes: tuple[str, ...] = MODES
    tune_n: int = 200  # mode tuned: the first tune_n images choose S; every eval cell scores the rest
    tune_scales: tuple[float, ...] | None = None  # mode tuned: the S tried; None = tune_points around interp
    tune_points: int = 9
    data: str = "synthetic"
    n: int | None = None
    crop_pct: float | dict[int, float] = 0.875
    batch_size: int = 64
    device: str = "cpu"
    workers: int | None = None  # data worker processes; None = min(8, CPU cores), 0 = in-process
    cache: str | bool | None = None  # folder for decoded splits; None = synthetic only, in the default folder
    profile: bool = False
    profile_mode: str = "interp"
    profile_batch_size: int = 8
    profile_dtype: str = "fp32"
    profile_repeats: int = 15  # interleaved rounds
    profile_channels_last: bool = False
    profile_compile: bool = False
    published: tuple[str, ...] = ()
    findings: bool = False  # the report's table of published claims vs these results (pebench.reports.findings)
    finetuned: tuple[str, ...] = ()  # `pebench finetune` checkpoints, each evaluated at its own resolution and mode
    diagnostics: bool = False  # attention statistics and position pictures per cell (pebench.measure.diagnostics)
    diagnostics_n: int = 64  # images they are computed on (the first of the val split)
    diagnostics_maps: int = 4  # images whose class-token attention map is kept

    def resolved(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


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


def _require(condition: bool, file: Path, key: str, message: str) -> None:
    if not condition:
        raise PebenchError(f"{file}: '{key}' {message}")


def _checked(parse, raw: Any, file: Path, key: str):
    """``parse(raw)`` with its one-line error naming the suite file and key."""
    try:
        return parse(raw)
    except PebenchError as error:
        raise PebenchError(f"{file}: '{key}': {error}") from None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_res(value: Any) -> bool:
    try:
        parse_res(value)
    except PebenchError:
        return False
    return True


def _str_list(raw: Any, file: Path, key: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    _require(all(isinstance(i, str) and i for i in items), file, key, "must be a name or a list of names")
    return tuple(items)


def _validate(raw: dict, file: Path) -> Suite:
    """Check every key and value of a merged suite mapping; ``file`` is named in every error."""
    from pebench.reports.published import PUBLISHED

    known = [f for f in Suite.__dataclass_fields__ if f != "name"] + ["name"]
    for key in raw:
        if key not in known:
            raise PebenchError(f"{file}: unknown key '{key}'{did_you_mean(str(key), known)}; "
                               f"allowed: {', '.join(known)}")
    values: dict[str, Any] = {"name": raw.get("name", file.stem)}
    _require(isinstance(values["name"], str) and values["name"], file, "name", "must be a non-empty string")
    if "description" in raw:
        _require(isinstance(raw["description"], str), file, "description", "must be a string")
        values["description"] = raw["description"]
    for key in ("models", "profile_encodings", "published", "finetuned"):
        if key in raw:
            values[key] = _str_list(raw[key], file, key)
    for name in values.get("published", ()):
        _require(name in PUBLISHED, file, "published",
                 f"has unknown table '{name}'{did_you_mean(name, list(PUBLISHED))}; allowed: {', '.join(PUBLISHED)}")
    if "resolutions" in raw:
        res = raw["resolutions"] if isinstance(raw["resolutions"], list) else [raw["resolutions"]]
        _require(bool(res), file, "resolutions", "must be a list of sizes in px, e.g. [224, 384, 384x512]")
        values["resolutions"] = tuple(dict.fromkeys(_checked(parse_res, r, file, "resolutions") for r in res))
    if "modes" in raw:
        modes = raw["modes"] if isinstance(raw["modes"], list) else [raw["modes"]]
        _require(bool(modes), file, "modes", "must list modes: native, interp, tuned, scale=S")
        values["modes"] = tuple(dict.fromkeys(_checked(parse_mode, m, file, "modes") for m in modes))
    if "tune_scales" in raw:
        scales = raw["tune_scales"]
        _require(scales is None or (isinstance(scales, list) and scales and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in scales)), file, "tune_scales",
            f"must be a list of positive position scales, e.g. [0.25, 0.5, 1.0], or null (automatic), not {scales!r}")
        values["tune_scales"] = None if scales is None else tuple(sorted({float(x) for x in scales}))
    choices = {"profile_size": SIZES, "device": DEVICES, "profile_dtype": DTYPES}
    if "profile_mode" in raw:
        values["profile_mode"] = _checked(parse_mode, raw["profile_mode"], file, "profile_mode")
        _require(values["profile_mode"] != TUNED, file, "profile_mode", "must be native, interp or scale=S")
    for key, allowed in choices.items():
        if key in raw:
            _require(raw[key] in allowed, file, key, f"is '{raw[key]}'{did_you_mean(str(raw[key]), list(allowed))}; "
                     f"allowed: {', '.join(allowed)}")
            values[key] = raw[key]
    for key in ("batch_size", "profile_batch_size", "profile_repeats", "tune_n", "tune_points", "diagnostics_n"):
        if key in raw:
            _require(_positive_int(raw[key]), file, key, f"must be a positive integer, not {raw[key]!r}")
            values[key] = raw[key]
    if "n" in raw:
        _require(raw["n"] is None or _positive_int(raw["n"]), file, "n",
                 f"must be a positive number of images or null (all), not {raw['n']!r}")
        values["n"] = raw["n"]
    if "diagnostics_maps" in raw:
        maps = raw["diagnostics_maps"]
        _require(isinstance(maps, int) and not isinstance(maps, bool) and maps >= 0, file, "diagnostics_maps",
                 f"must be a number of images (0 = none), not {maps!r}")
        values["diagnostics_maps"] = maps
    for key in ("profile", "profile_channels_last", "profile_compile", "findings", "diagnostics"):
        if key in raw:
            _require(isinstance(raw[key], bool), file, key, "must be true or false")
            values[key] = raw[key]
    if "workers" in raw:
        _require(raw["workers"] is None or (isinstance(raw["workers"], int) and not isinstance(raw["workers"], bool)
                                            and raw["workers"] >= 0), file, "workers",
                 f"must be a number of data worker processes (0 = in-process) or null, not {raw['workers']!r}")
        values["workers"] = raw["workers"]
    if "cache" in raw:
        _require(raw["cache"] is None or raw["cache"] is False or (isinstance(raw["cache"], str) and raw["cache"]),
                 file, "cache", f"must be a folder path, false (no cache) or null (the default), not {raw['cache']!r}")
        values["cache"] = raw["cache"]
    if "data" in raw:
        _require(isinstance(raw["data"], str) and raw["data"], file, "data",
                 "must be a dataset spec: synthetic[:options] or imagefolder:PATH")
        values["data"] = raw["data"]
    if "crop_pct" in raw:
        crop = raw["crop_pct"]
        fractions = crop.values() if isinstance(crop, dict) else [crop]
        _require(all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in fractions)
                 and (not isinstance(crop, dict) or all(_is_res(r) for r in crop)), file, "crop_pct",
                 "must be a fraction in (0, 1] or a mapping resolution -> fraction, e.g. {224: 0.875, 384: 1.0}")
        values["crop_pct"] = {parse_res(r): f for r, f in crop.items()} if isinstance(crop, dict) else crop
    suite = Suite(**values)
    if not suite.models and not suite.finetuned and not (suite.profile and suite.profile_encodings):
        raise PebenchError(f"{file}: the suite has nothing to run; list 'models', or 'profile_encodings' "
                           "with 'profile: true'")
    return suite


def _read_yaml(file: Path) -> dict:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise PebenchError(f"cannot read suite {file}: {error.strerror or error}; check the path") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise PebenchError(f"{file}: malformed YAML{where}: {problem}; fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PebenchError(f"{file}: a suite must be a mapping of keys (models:, resolutions:, ...)")
    return raw


def _merged(file: Path, chain: tuple[Path, ...] = ()) -> dict:
    file = file.resolve()
    if file in chain:
        cycle = " -> ".join(p.name for p in (*chain, file))
        raise PebenchError(f"{chain[-1]}: include cycle {cycle}; remove one of the includes")
    raw = _read_yaml(file)
    parent = raw.pop("include", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise PebenchError(f"{file}: 'include' must be the path of one suite file")
    parent_path = (file.parent / parent)
    if not parent_path.exists():
        raise PebenchError(f"{file}: 'include' names {parent_path}, which does not exist; fix the path")
    base = _merged(parent_path, (*chain, file))
    base.pop("name", None)  # a suite is named by its own file unless it says otherwise
    return base | raw


def load_suite(path: Path | str) -> Suite:
    """Read, merge (``include``) and validate a suite file."""
    path = Path(path)
    return _validate(_merged(path), path)


def _checkpoint_digest(model: str) -> str | None:
    """SHA-256 of the weights a cell reads, so retrained weights never pass for the old results."""
    from pebench.zoo import ZOO, zoo_path

    if model.startswith("timm:"):
        path = Path(model.partition("@")[2]) if "@" in model else None
        if path is None:
            return None  # weights from the Hugging Face cache, keyed by the name alone
    else:
        path = zoo_path(model) if model in ZOO else Path(model)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _finetune_cell(path: str) -> tuple[Label, str]:
    """(resolution, mode) a `pebench finetune` checkpoint was fine-tuned at, from its sidecar."""
    from pebench.models.checkpoint import read_sidecar

    finetune = read_sidecar(Path(path)).get("finetune")
    if not finetune:
        raise PebenchError(f"'finetuned' lists {path}, whose sidecar has no fine-tune record; list it under "
                           "'models', or make it with `pebench finetune`")
    return finetune["res"], finetune["mode"]


def _key(config: dict) -> str:
    text = json.dumps(config | {"pebench": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(suite: Suite) -> list[Cell]:
    """Every cell of the suite, in run order: evaluation, then diagnostics, then profiling."""
    from pebench.zoo import ZOO

    cells = []
    digests = {m: _checkpoint_digest(m) for m in suite.models}
    # with a tuned mode, the first tune_n images choose S and every eval cell scores the same rest
    tuning = {"holdout": suite.tune_n} if TUNED in suite.modes else {}
    for model in suite.models:
        for res in suite.resolutions:
            crop = suite.crop_pct.get(res, 0.875) if isinstance(suite.crop_pct, dict) else suite.crop_pct
            for mode in suite.modes:
                config = {"kind": "eval", "model": model, "weights_sha256": digests[model], "res": res, "mode": mode,
                          "data": suite.data, "n": suite.n, "crop_pct": crop, "device": suite.device} | tuning
                if mode == TUNED:
                    config |= {"tune_scales": suite.tune_scales, "tune_points": suite.tune_points}
                cells.append(Cell("eval", model, res, mode, config, _key(config)))
    for path in suite.finetuned:
        res, mode = _finetune_cell(path)
        crop = suite.crop_pct.get(res, 0.875) if isinstance(suite.crop_pct, dict) else suite.crop_pct
        config = {"kind": "eval", "model": path, "weights_sha256": _checkpoint_digest(path), "res": res, "mode": mode,
                  "data": suite.data, "n": suite.n, "crop_pct": crop, "device": suite.device} | tuning
        cells.append(Cell("eval", path, res, mode, config, _key(config)))
    if suite.diagnostics:
        for model in suite.models:
            for res in suite.resolutions:
                crop = suite.crop_pct.get(res, 0.875) if isinstance(suite.crop_pct, dict) else suite.crop_pct
                for mode in suite.modes:
                    if mode == TUNED:
                        continue  # a tuned S is chosen by an eval pass; inspect scale=S to see one
                    config = {"kind": "diagnostics", "model": model, "weights_sha256": digests[model], "res": res,
                              "mode": mode, "data": suite.data, "n": suite.diagnostics_n, "crop_pct": crop,
                              "maps": suite.diagnostics_maps, "device": suite.device}
                    cells.append(Cell("diagnostics", model, res, mode, config, _key(config)))
    if suite.profile:
        profile_settings = {"device": suite.device, "mode": suite.profile_mode, "batch_size": suite.profile_batch_size,
                            "dtype": suite.profile_dtype, "repeats": suite.profile_repeats}
        if suite.profile_channels_last or suite.profile_compile:  # absent otherwise: earlier keys stay valid
            profile_settings |= {"channels_last": suite.profile_channels_last, "compile": suite.profile_compile}
        rows = [(m, None) for m in suite.models] + [(e, suite.profile_size) for e in suite.profile_encodings]
        for model, size in rows:
            for res in suite.resolutions:
                config = {"kind": "profile", "model": model, "size": size, "res": res,
                          "shipped": model in ZOO} | profile_settings
                cells.append(Cell("profile", model, res, suite.profile_mode, config, _key(config)))
    return cells


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (1-based) -> (i, n)."""
    index, slash, count = text.partition("/")
    if not (slash and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise PebenchError(f"--shard '{text}' is not i/n with 1 <= i <= n; e.g. --shard 1/2 and --shard 2/2")
    return int(index), int(count)


def shard_cells(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells shard ``index`` of ``count`` runs: every ``count``-th, so each shard gets a mix of costs."""
    return cells[index - 1 :: count]
