"""Suites: a YAML file that declares a grid of cells, read, merged and validated from one schema.

A suite names models (shipped names, checkpoint paths, ``timm:NAME``), resolutions, modes, the data
and how to run; ``include: other.yaml`` inherits another suite (paths relative to the including file)
and overrides its keys. Every key is checked before anything runs, with errors that name the file, the
key and the allowed values. :mod:`pebench.runner.cells` expands a suite into cells.

Settings of one feature form a section, written either nested or flat (the older form):

    tune: {n: 200, points: 9}          or  tune_n: 200, tune_points: 9
    profile: {mode: interp, size: tiny} or  profile: true, profile_mode: interp, profile_size: tiny
    diagnostics: {n: 64, maps: 4}      or  diagnostics: true, diagnostics_n: 64, diagnostics_maps: 4

A ``profile:`` or ``diagnostics:`` mapping turns the feature on (unless it says ``enabled: false``).
Wherever a list is expected (models, resolutions, modes, published, finetuned, plugins, profile encodings,
tune scales) one value stands for a one-item list. ``plugins`` (modules, or .py files relative to the
suite file) are loaded before the suite's encodings are read (:mod:`pebench.encodings.plugins`). Every
problem in a file is reported at once.
:data:`SCHEMA` lists every key with its meaning (`docs/suites.md` shows it as a table).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pebench.errors import PebenchError, did_you_mean
from pebench.models.sizes import SIZES
from pebench.modes import FIXED, fixed_mode, parse_mode
from pebench.resolution import Label, parse_res
from pebench.settings import (
    ATTENTION_PATHS,
    DECODES,
    DEFAULT_CROP_PCT,
    DEFAULT_RESOLUTIONS,
    DEVICES,
    DTYPES,
    CropPct,
)


@dataclass(frozen=True)
class Tune:
    """Mode tuned (:mod:`pebench.measure.tune`): the first ``n`` images choose S; every eval cell scores the rest."""

    n: int = 200
    scales: tuple[float, ...] | None = None  # the S tried; None = ``points`` log-spaced around interp's G0/G
    points: int = 9


@dataclass(frozen=True)
class Profile:
    """Cost cells (`pebench profile`): params, FLOPs, timing and memory per model and resolution."""

    enabled: bool = False
    encodings: tuple[str, ...] = ()  # encoding specs built with random weights at ``size``, beside the models
    size: str = "micro"
    mode: str = "interp"
    batch_size: int = 8
    dtype: str = "fp32"
    repeats: int = 15  # interleaved rounds
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class Diagnostics:
    """Attention statistics and position pictures per cell (`pebench inspect`, :mod:`pebench.measure.diagnostics`)."""

    enabled: bool = False
    n: int = 64  # images they are computed on (the first of the val split)
    maps: int = 4  # images whose class-token attention map is kept


@dataclass(frozen=True)
class Suite:
    name: str
    description: str = ""
    models: tuple[str, ...] = ()
    resolutions: tuple[Label, ...] = DEFAULT_RESOLUTIONS
    modes: tuple[str, ...] = FIXED  # the default modes; any of pebench.modes is allowed
    data: str = "synthetic"
    n: int | None = None
    crop_pct: CropPct = DEFAULT_CROP_PCT
    batch_size: int = 64
    device: str = "auto"  # resolved to the device that runs before cells are made (pebench.settings.DEVICES)
    decode: str = "cpu"  # where an image folder's JPEGs are decoded (pebench.settings.DECODES)
    attention: str = "auto"  # how pebench's own models attend (pebench.settings.ATTENTION_PATHS)
    workers: int | None = None  # data worker processes; None = min(8, CPU cores), 0 = in-process
    cache: str | bool | None = None  # folder for decoded splits; None = synthetic only, in the default folder
    published: tuple[str, ...] = ()  # published tables the report shows beside the measured ones
    findings: bool = False  # the report's table of published claims vs these results (pebench.reports.findings)
    finetuned: tuple[str, ...] = ()  # `pebench finetune` checkpoints, each evaluated at its own resolution and mode
    plugins: tuple[str, ...] = ()  # modules or .py files (absolute once read) that register encodings
    tune: Tune = field(default_factory=Tune)
    profile: Profile = field(default_factory=Profile)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    @property
    def decoding(self) -> dict:
        """What cell keys and records say of the decode: nothing for the CPU path (earlier keys stay valid)."""
        return {"decode": self.decode} if self.decode != "cpu" else {}

    @property
    def attending(self) -> dict:
        """What cell keys say of the attention path: nothing for "auto" (earlier keys stay valid)."""
        return {"attention": self.attention} if self.attention != "auto" else {}

    def resolved(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


class _Invalid(Exception):
    """A value's problem, said after the key: "'n' must be a positive number of images"."""


# --- parsers: raw YAML value -> setting, or _Invalid / PebenchError ------------------------------------------

def _names(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(i, str) and i for i in items):
        raise _Invalid("must be a name or a list of names")
    return tuple(items)


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    return raw


def _resolutions(raw: Any) -> tuple[Label, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _Invalid("must be a list of sizes in px, e.g. [224, 384, 384x512]")
    return tuple(dict.fromkeys(parse_res(r) for r in items))


def _modes(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _Invalid("must list modes: native, interp, tuned, scale=S")
    return tuple(dict.fromkeys(parse_mode(m) for m in items))


def _scales(raw: Any) -> tuple[float, ...] | None:
    raw = [raw] if _is_number(raw) else raw
    if raw is not None and not (isinstance(raw, list) and raw and all(_is_number(x) and x > 0 for x in raw)):
        raise _Invalid("must be a list of positive position scales, e.g. [0.25, 0.5, 1.0], or null (automatic), "
                       f"not {raw!r}")
    return None if raw is None else tuple(sorted({float(x) for x in raw}))


def _profile_mode(raw: Any) -> str:
    return fixed_mode(raw, what="'profile_mode'", tuned_hint="a tuned S costs what that scale=S costs")


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if raw not in allowed:
            raise _Invalid(f"is '{raw}'{did_you_mean(str(raw), list(allowed))}; allowed: {', '.join(allowed)}")
        return raw
    return parse


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(raw: Any) -> int:
    if not (_is_int(raw) and raw > 0):
        raise _Invalid(f"must be a positive integer, not {raw!r}")
    return raw


def _images_or_all(raw: Any) -> int | None:
    if not (raw is None or (_is_int(raw) and raw > 0)):
        raise _Invalid(f"must be a positive number of images or null (all), not {raw!r}")
    return raw


def _map_count(raw: Any) -> int:
    if not (_is_int(raw) and raw >= 0):
        raise _Invalid(f"must be a number of images (0 = none), not {raw!r}")
    return raw


def _flag(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _Invalid("must be true or false")
    return raw


def _workers(raw: Any) -> int | None:
    if not (raw is None or (_is_int(raw) and raw >= 0)):
        raise _Invalid(f"must be a number of data worker processes (0 = in-process) or null, not {raw!r}")
    return raw


def _cache(raw: Any) -> str | bool | None:
    if not (raw is None or raw is False or (isinstance(raw, str) and raw)):
        raise _Invalid(f"must be a folder path, false (no cache) or null (the default), not {raw!r}")
    return raw


def _data(raw: Any) -> str:
    if not (isinstance(raw, str) and raw):
        raise _Invalid("must be a dataset spec: synthetic[:options] or imagefolder:PATH")
    return raw


def _is_res(value: Any) -> bool:
    try:
        parse_res(value)
    except PebenchError:
        return False
    return True


def _crop_pct(raw: Any) -> CropPct:
    fractions = raw.values() if isinstance(raw, dict) else [raw]
    if not (all(_is_number(f) and 0 < f <= 1 for f in fractions)
            and (not isinstance(raw, dict) or all(_is_res(r) for r in raw))):
        raise _Invalid("must be a fraction in (0, 1] or a mapping resolution -> fraction, e.g. {224: 0.875, 384: 1.0}")
    return {parse_res(r): f for r, f in raw.items()} if isinstance(raw, dict) else raw


def _name(raw: Any) -> str:
    if not (isinstance(raw, str) and raw):
        raise _Invalid("must be a non-empty string")
    return raw


@dataclass(frozen=True)
class Key:
    """One suite key: its flat YAML name, where it lands (a section of :class:`Suite`, or the suite itself)
    and its parser."""

    name: str
    section: str | None
    field: str
    parse: Callable[[Any], Any]


#: every key of a suite file, in the order `pebench validate` and the docs list them
SCHEMA: tuple[Key, ...] = (
    Key("name", None, "name", _name),
    Key("description", None, "description", _text),
    Key("models", None, "models", _names),
    Key("resolutions", None, "resolutions", _resolutions),
    Key("modes", None, "modes", _modes),
    Key("data", None, "data", _data),
    Key("n", None, "n", _images_or_all),
    Key("crop_pct", None, "crop_pct", _crop_pct),
    Key("batch_size", None, "batch_size", _positive_int),
    Key("device", None, "device", _choice(DEVICES)),
    Key("decode", None, "decode", _choice(DECODES)),
    Key("attention", None, "attention", _choice(ATTENTION_PATHS)),
    Key("workers", None, "workers", _workers),
    Key("cache", None, "cache", _cache),
    Key("published", None, "published", _names),
    Key("findings", None, "findings", _flag),
    Key("finetuned", None, "finetuned", _names),
    Key("plugins", None, "plugins", _names),
    Key("tune_n", "tune", "n", _positive_int),
    Key("tune_scales", "tune", "scales", _scales),
    Key("tune_points", "tune", "points", _positive_int),
    Key("profile", "profile", "enabled", _flag),
    Key("profile_encodings", "profile", "encodings", _names),
    Key("profile_size", "profile", "size", _choice(tuple(SIZES))),
    Key("profile_mode", "profile", "mode", _profile_mode),
    Key("profile_batch_size", "profile", "batch_size", _positive_int),
    Key("profile_dtype", "profile", "dtype", _choice(DTYPES)),
    Key("profile_repeats", "profile", "repeats", _positive_int),
    Key("profile_channels_last", "profile", "channels_last", _flag),
    Key("profile_compile", "profile", "compile", _flag),
    Key("diagnostics", "diagnostics", "enabled", _flag),
    Key("diagnostics_n", "diagnostics", "n", _positive_int),
    Key("diagnostics_maps", "diagnostics", "maps", _map_count),
)
_BY_NAME = {key.name: key for key in SCHEMA}
_SECTIONS = {"tune": Tune, "profile": Profile, "diagnostics": Diagnostics}
#: nested form: (section, field) -> the flat key it stands for
_NESTED = {(key.section, key.field): key.name for key in SCHEMA if key.section}


def _flatten(raw: dict, file: Path, problems: list[str]) -> dict:
    """One file's mapping with nested sections (``profile: {mode: native}``) written as flat keys; an
    unknown nested key is added to ``problems``."""
    flat = {}
    for key, value in raw.items():
        if key in _SECTIONS and isinstance(value, dict):
            fields = [f for s, f in _NESTED if s == key]
            for sub, sub_value in value.items():
                if (key, sub) not in _NESTED:
                    problems.append(f"{file}: unknown key '{key}.{sub}'{did_you_mean(str(sub), fields)}; "
                                    f"allowed in '{key}': {', '.join(fields)}")
                    continue
                flat[_NESTED[key, sub]] = sub_value
            if (key, "enabled") in _NESTED:  # a profile: or diagnostics: mapping turns the feature on
                flat.setdefault(_NESTED[key, "enabled"], True)
        else:
            flat[key] = value
    return flat


def _raise_all(problems: list[str]) -> None:
    """Every problem found in a suite at once: one line when there is one, else a count and one line each."""
    if len(problems) == 1:
        raise PebenchError(problems[0])
    if problems:
        raise PebenchError(f"{len(problems)} problems in the suite:\n" + "\n".join(f"  {p}" for p in problems))


def _validate(raw: dict, file: Path, problems: list[str]) -> Suite:
    """Check every key and value of a merged, flattened suite mapping; ``file`` is named in every error, and
    every problem (with those already in ``problems``) is reported at once."""
    known = list(_BY_NAME) + list(_SECTIONS)
    for key in raw:
        if key not in _BY_NAME:
            problems.append(f"{file}: unknown key '{key}'{did_you_mean(str(key), known)}; "
                            f"allowed: {', '.join(sorted(set(known), key=known.index))}")
    top: dict[str, Any] = {"name": file.stem}
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key in SCHEMA:
        if key.name not in raw:
            continue
        try:
            value = key.parse(raw[key.name])
        except _Invalid as problem:
            problems.append(f"{file}: '{key.name}' {problem}")
            continue
        except PebenchError as error:  # a parser's own message; it may start with the key already
            text = str(error)
            problems.append(f"{file}: {text}" if text.startswith(f"'{key.name}'") else f"{file}: '{key.name}': {text}")
            continue
        (sections[key.section] if key.section else top)[key.field] = value
    _raise_all(problems)
    suite = Suite(**top, **{name: _SECTIONS[name](**values) for name, values in sections.items()})
    if not suite.models and not suite.finetuned and not (suite.profile.enabled and suite.profile.encodings):
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


def _merged(file: Path, problems: list[str], chain: tuple[Path, ...] = ()) -> dict:
    file = file.resolve()
    if file in chain:
        cycle = " -> ".join(p.name for p in (*chain, file))
        raise PebenchError(f"{chain[-1]}: include cycle {cycle}; remove one of the includes")
    raw = _read_yaml(file)
    parent = raw.pop("include", None)
    raw = _flatten(raw, file, problems)
    if isinstance(raw.get("plugins"), (str, list)):  # a plugin file is named relative to the suite that lists it
        items = raw["plugins"] if isinstance(raw["plugins"], list) else [raw["plugins"]]
        raw["plugins"] = [str(file.parent / item) if isinstance(item, str) and item.endswith(".py") else item
                          for item in items]
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise PebenchError(f"{file}: 'include' must be the path of one suite file")
    parent_path = (file.parent / parent)
    if not parent_path.exists():
        raise PebenchError(f"{file}: 'include' names {parent_path}, which does not exist; fix the path")
    base = _merged(parent_path, problems, (*chain, file))
    base.pop("name", None)  # a suite is named by its own file unless it says otherwise
    return base | raw


def read_suite(path: Path | str) -> Suite:
    """Read, merge (``include``) and validate a suite file; the names of published tables are the report's
    to check (:func:`pebench.cli.suites.load_suite`)."""
    path = Path(path)
    problems: list[str] = []
    return _validate(_merged(path, problems), path, problems)
