"""Encodings from outside the package: plugins register into the same registry as the shipped families.

Three ways in, all ending in :func:`register_encoding` (usable as a class decorator) and
:func:`register_preset`:

- the entry-point group ``pebench.encodings`` of an installed distribution (``name =
  "package.module:ClassName"``): found the first time a spec names an encoding pebench does not know,
  and by `pebench list`, with no flag;
- ``--plugin MODULE_OR_FILE`` on any command and the ``PEBENCH_PLUGINS`` environment variable (a
  ``:``-separated list), imported before the command runs;
- a suite's ``plugins:`` key (paths relative to the suite file).

A plugin is someone else's code, so it is loaded defensively: an import that fails, a class that is not
a :class:`~pebench.encodings.base.Component`, a name that clashes with a shipped encoding or another
plugin's, is a one-line error naming the plugin and the fix. A broken entry point is only recorded:
commands that do not use it run, and a spec that names an unknown encoding says which plugin failed.
Each plugin encoding keeps its provenance (distribution and version, or the file's SHA-256), which
checkpoints' sidecars and records carry, so that a checkpoint names the plugin it needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points, packages_distributions, version
from pathlib import Path
from typing import Any

from pebench.encodings.base import Component
from pebench.encodings.registry import PRESETS, REGISTRY
from pebench.errors import PebenchError
from pebench.importing import import_module_or_file
from pebench.settings import PLUGIN_ENTRY_POINTS as ENTRY_POINT_GROUP
from pebench.settings import PLUGINS_ENV

#: the class attributes `pebench list` and the modes need from every component
REQUIRED = ("summary", "paper", "native_means", "interp_means")


@dataclass
class Plugin:
    """One plugin: what was asked for, from where, its provenance, and what it registered (or its error)."""

    target: str  # a module, a .py file, or an entry point "name = package.module:Class"
    source: str  # "entry point", "--plugin", "PEBENCH_PLUGINS" or "suite FILE"
    provenance: dict[str, str]
    encodings: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    error: str | None = None


#: every plugin loaded or tried, by target
PLUGINS: dict[str, Plugin] = {}
#: encoding or preset name -> the plugin that registered it
ORIGIN: dict[str, Plugin] = {}
_loading: list[Plugin] = []  # the plugin being imported, credited with what it registers
_entry_points_read = False


def _current(component: Any = None) -> Plugin:
    if _loading:
        return _loading[-1]
    module = getattr(component, "__module__", "__main__")
    return PLUGINS.setdefault(module, Plugin(module, "code", _module_provenance(module)))


def _module_provenance(module: str) -> dict[str, str]:
    top = module.split(".")[0]
    distributions = packages_distributions().get(top) or []
    if distributions:
        return {"module": module, "distribution": distributions[0], "version": version(distributions[0])}
    return {"module": module}


def _file_provenance(path: Path) -> dict[str, str]:
    return {"file": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _claim(name: str, plugin: Plugin, what: str) -> None:
    """Fails when ``name`` is taken by a shipped encoding or preset, or by another plugin."""
    owner = ORIGIN.get(name)
    if owner is plugin:
        return
    taken = "another plugin's (" + owner.target + ")" if owner else "a shipped"
    if name in REGISTRY or name in PRESETS:
        raise PebenchError(f"plugin {plugin.target}: {what} '{name}' clashes with {taken} encoding or preset "
                           f"'{name}'; rename it")


def register_encoding(component: type[Component] | None = None, *, name: str | None = None):
    """Register a :class:`Component` subclass under ``name`` (default: its ``name`` attribute), as
    ``register_encoding(MyEncoding)`` or as the decorator ``@register_encoding`` /
    ``@register_encoding(name="mine")``. Returns the class."""

    def register(cls: Any) -> type[Component]:
        plugin = _current(cls)
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            raise PebenchError(f"plugin {plugin.target}: {cls!r} is not a subclass of pebench's Component; "
                               "subclass pebench.encodings.base.Component")
        key = name or cls.__dict__.get("name") or getattr(cls, "name", None)
        if not isinstance(key, str) or not key.isidentifier():
            raise PebenchError(f"plugin {plugin.target}: {cls.__name__} needs a name (letters, digits, _); set the "
                               "class attribute `name` or use register_encoding(name=...)")
        missing = [attr for attr in REQUIRED if not isinstance(getattr(cls, attr, None), str)]
        if missing:
            raise PebenchError(f"plugin {plugin.target}: encoding '{key}' ({cls.__name__}) does not say "
                               f"{', '.join(missing)}; set them as class attributes (docs/plugins.md)")
        if REGISTRY.get(key) is cls:
            return cls
        _claim(key, plugin, "encoding")
        cls.name = key
        REGISTRY[key] = cls
        ORIGIN[key] = plugin
        plugin.encodings.append(key)
        return cls

    return register(component) if component is not None else register


def register_preset(name: str, family: str, **options: Any) -> None:
    """A short name for ``family`` with ``options`` (as ``rope_mixed`` is ``rope:variant=mixed``)."""
    plugin = _current()
    if family not in REGISTRY:
        raise PebenchError(f"plugin {plugin.target}: preset '{name}' names unknown encoding '{family}'; register "
                           "the encoding first")
    if PRESETS.get(name) == (family, options):
        return
    _claim(name, plugin, "preset")
    PRESETS[name] = (family, options)
    ORIGIN[name] = plugin
    plugin.presets.append(name)


def _import(target: str, plugin: Plugin) -> None:
    _loading.append(plugin)
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise PebenchError(f"plugin {target} ({plugin.source}): no such file; check the path")
            plugin.provenance = _file_provenance(path)
        import_module_or_file(target, "pebench_plugin")
    except PebenchError as error:
        text = str(error)
        raise PebenchError(text if text.startswith("plugin ") else f"plugin {target} ({plugin.source}): {text}") \
            from None
    except Exception as error:  # noqa: BLE001 - someone else's code: any failure is reported, named
        raise PebenchError(f"plugin {target} ({plugin.source}) failed to import: {type(error).__name__}: {error}; "
                           f"fix it, or stop loading it ({plugin.source})") from None
    finally:
        _loading.pop()


def load_plugin(target: str, source: str) -> Plugin:
    """Import a plugin module or ``.py`` file once; it must register at least one encoding or preset."""
    target = target.strip()
    if target in PLUGINS and PLUGINS[target].error is None:
        return PLUGINS[target]
    provenance = {} if target.endswith(".py") else _module_provenance(target)
    plugin = PLUGINS[target] = Plugin(target, source, provenance)
    try:
        _import(target, plugin)
    except PebenchError as error:
        plugin.error = str(error)
        raise
    if not plugin.encodings and not plugin.presets:
        plugin.error = (f"plugin {target} ({source}) registered no encoding; decorate its Component subclass with "
                        "@pebench.register_encoding")
        raise PebenchError(plugin.error)
    return plugin


def load_requested(targets: list[str], source: str = "--plugin") -> None:
    """The plugins of ``PEBENCH_PLUGINS`` and then ``targets`` (``--plugin``), each a one-line error if broken."""
    for target in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        load_plugin(target, PLUGINS_ENV)
    for target in targets:
        load_plugin(target, source)


def load_entry_points() -> None:
    """The installed distributions' ``pebench.encodings`` entry points, loaded once. Never raises: a broken
    one keeps its error (:func:`failures`), so commands that do not use it still run."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist
        plugin = PLUGINS.setdefault(f"{point.name} = {point.value}", Plugin(
            f"{point.name} = {point.value}", "entry point",
            {"entry_point": point.name, "distribution": dist.name if dist else "?",
             "version": dist.version if dist else "?"}))
        _loading.append(plugin)
        try:
            register_encoding(point.load(), name=point.name)
        except PebenchError as error:
            plugin.error = str(error)
        except Exception as error:  # noqa: BLE001 - someone else's code
            plugin.error = (f"plugin {plugin.target} (entry point of {plugin.provenance['distribution']}) failed to "
                            f"import: {type(error).__name__}: {error}; fix or uninstall it")
        finally:
            _loading.pop()


def failures() -> list[Plugin]:
    return [p for p in PLUGINS.values() if p.error]


def provenance(names: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """name -> its plugin's provenance, for the components of a spec that come from plugins."""
    return {name: ORIGIN[name].provenance for name in names if name in ORIGIN}


def spec_provenance(spec: str) -> dict[str, dict[str, str]]:
    """:func:`provenance` of an encoding spec's text, read without validating it (presets resolved, installed
    plugins looked up): what a cell's key and a record carry, so that another plugin version is another cell."""
    names = [part.split(":")[0].strip() for part in spec.split("+")]
    if any(name not in REGISTRY and name not in PRESETS for name in names):
        load_entry_points()
    return provenance([PRESETS[name][0] if name in PRESETS else name for name in names])
