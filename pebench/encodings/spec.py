"""Encoding specs: the short strings and YAML mappings that name an encoding and its options.

Grammar of the string form::

    spec      := component ("+" component)*
    component := name [":" key "=" value ("," key "=" value)*]

A bare item after a comma continues the previous value, so list values need no quoting:
``peg:blocks=0,2,4,kernel=5``. The mapping form (YAML) is ``{peg: {kernel: 3, blocks: 0-4}}`` or a
list of such mappings and strings. Both parse to an :class:`EncodingSpec` whose ``str`` is the
canonical string (components in the order given, non-default options sorted by key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pebench.encodings.plugins import failures, load_entry_points
from pebench.encodings.registry import PRESETS, REGISTRY
from pebench.errors import PebenchError, did_you_mean


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    options: tuple[tuple[str, Any], ...]  # every option of the component, defaults filled in

    def __str__(self) -> str:
        defaults = REGISTRY[self.name].options
        changed = [f"{k}={_format(v)}" for k, v in self.options if v != defaults[k].default]
        return self.name + (":" + ",".join(changed) if changed else "")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class EncodingSpec:
    components: tuple[ComponentSpec, ...]

    def __str__(self) -> str:
        return "+".join(str(c) for c in self.components)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)


def _format(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _component(name: str, raw_options: Mapping[str, Any]) -> ComponentSpec:
    name = name.strip()
    if name not in REGISTRY and name not in PRESETS:
        load_entry_points()  # an installed plugin's encoding needs no flag
    preset: dict[str, Any] = {}
    if name in PRESETS:
        name, preset = PRESETS[name]
    if name not in REGISTRY:
        known = sorted([*REGISTRY, *PRESETS])
        broken = "".join(f"; {plugin.error}" for plugin in failures())
        raise PebenchError(
            f"unknown encoding '{name}'{did_you_mean(name, list(known))}; known: {', '.join(known)} (a plugin's "
            f"encoding needs --plugin MODULE_OR_FILE or its package installed){broken}"
        )
    declared = REGISTRY[name].options
    values = {key: option.default for key, option in declared.items()}
    for key, raw in {**preset, **raw_options}.items():
        if key not in declared:
            allowed = ", ".join(declared) or "none"
            raise PebenchError(
                f"encoding '{name}' has no option '{key}'{did_you_mean(key, list(declared))}; "
                f"its options: {allowed}"
            )
        values[key] = declared[key].parse(name, key, raw)
    return ComponentSpec(name, tuple(sorted(values.items())))


def _parse_options(name: str, text: str) -> dict[str, Any]:
    options: dict[str, str] = {}
    last_key = None
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if eq:
            last_key = key.strip()
            options[last_key] = value.strip()
        elif last_key is not None and item.strip():
            options[last_key] += "," + item.strip()
        else:
            raise PebenchError(f"encoding '{name}': cannot read option '{item}'; write key=value")
    return options


def _from_string(text: str) -> list[ComponentSpec]:
    if not text.strip():
        raise PebenchError("empty encoding spec; write e.g. 'ape', 'peg:blocks=0-4' or 'ape+peg'")
    components = []
    for part in text.split("+"):
        name, colon, rest = part.partition(":")
        components.append(_component(name, _parse_options(name.strip(), rest) if colon else {}))
    return components


def _from_item(item: Any) -> list[ComponentSpec]:
    if isinstance(item, str):
        return _from_string(item)
    if isinstance(item, Mapping):
        out = []
        for name, options in item.items():
            if options is not None and not isinstance(options, Mapping):
                raise PebenchError(f"encoding '{name}': options must be a mapping, got {options!r}")
            out.append(_component(str(name), options or {}))
        return out
    if isinstance(item, list):
        return [c for sub in item for c in _from_item(sub)]
    raise PebenchError(f"cannot read encoding spec {item!r}; write a string like 'ape+peg' or a mapping")


def parse_spec(spec: str | Mapping[str, Any] | list[Any] | EncodingSpec) -> EncodingSpec:
    """Parse and validate an encoding spec; raises :class:`PebenchError` with a one-line reason."""
    if isinstance(spec, EncodingSpec):
        return spec
    components = _from_item(spec)
    seen: set[str] = set()
    for c in components:
        if c.name in seen:
            raise PebenchError(f"encoding '{c.name}' appears twice in '{spec}'; give it once with all options")
        seen.add(c.name)
    if "none" in seen and len(components) > 1:
        raise PebenchError(f"'none' cannot be combined with other encodings in '{spec}'")
    return EncodingSpec(tuple(components))
