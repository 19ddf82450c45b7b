"""Models from outside pebench: ``py:package.module:factory`` (or ``py:path/to/file.py:factory``), optionally
``@CHECKPOINT``, names a function that returns a model implementing
:class:`~pebench.models.interface.ResolutionModel` (called with the checkpoint's path when one is given).
That protocol is the adapter: the model says its patch size, training resolution and grid, runs
``model(images, mode)`` in native / interp / scale=S, and says why a mode does not apply where it cannot
run (:meth:`applicability`). Eval, tune where it applies, profile (params, FLOPs with attention, speed,
memory), reports and the gate then work on it; diagnostics, which read pebench's own blocks, say they do
not apply.

The factory is someone else's code: an import or a call that fails, or a result that lacks members of the
protocol, is a one-line error naming the spec and what is missing.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path

from torch import nn

from pebench.errors import PebenchError
from pebench.importing import import_module_or_file
from pebench.models.interface import ResolutionModel

PREFIX = "py:"
#: what a model from outside must have: ResolutionModel's members
MEMBERS = ("patch", "img_size", "trained_grid", "size", "spec", "num_classes", "interp_is_native", "grid_at",
           "applicability", "resize_api", "position_param_count", "position_values_at", "position_free_twin")


def split(spec: str) -> tuple[str, str, Path | None]:
    """``py:TARGET:FUNCTION[@CHECKPOINT]`` -> (target, function, checkpoint)."""
    body, _, checkpoint = spec.removeprefix(PREFIX).partition("@")
    target, _, function = body.rpartition(":")
    if not target or not function.isidentifier():
        raise PebenchError(f"model '{spec}': write py:package.module:factory or py:file.py:factory "
                           "(optionally @CHECKPOINT)")
    return target, function, Path(checkpoint) if checkpoint else None


def _module(target: str, spec: str):
    if target.endswith(".py") and not Path(target).expanduser().is_file():
        raise PebenchError(f"model '{spec}': no file {target}; check the path")
    try:
        return import_module_or_file(target, "pebench_model")
    except Exception as error:  # noqa: BLE001 - someone else's code: any failure is reported, named
        raise PebenchError(f"model '{spec}': importing {target} failed: {type(error).__name__}: {error}") from None


def source_file(spec: str) -> Path | None:
    """The file that defines the factory (its bytes are part of the cells' keys)."""
    target, _, _ = split(spec)
    if target.endswith(".py"):
        return Path(target)
    found = importlib.util.find_spec(target.split(".")[0]) and importlib.util.find_spec(target)
    return Path(found.origin) if found and found.origin else None


def digest(spec: str) -> str:
    """SHA-256 over the factory's source file and the checkpoint: other code or weights, other cells."""
    _, _, checkpoint = split(spec)
    hasher = hashlib.sha256()
    for path in (source_file(spec), checkpoint):
        if path is not None and path.is_file():
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


def build_outside(spec: str) -> tuple[nn.Module, dict]:
    """The model a ``py:`` spec names and its meta (what records say about it)."""
    target, function, checkpoint = split(spec)
    if checkpoint is not None and not checkpoint.is_file():
        raise PebenchError(f"model '{spec}': checkpoint {checkpoint} does not exist")
    factory = getattr(_module(target, spec), function, None)
    if not callable(factory):
        raise PebenchError(f"model '{spec}': {target} has no function '{function}'")
    try:
        net = factory(checkpoint) if checkpoint is not None else factory()
    except PebenchError:
        raise
    except Exception as error:  # noqa: BLE001 - someone else's code
        raise PebenchError(f"model '{spec}': {function}() failed: {type(error).__name__}: {error}") from None
    missing = [member for member in MEMBERS if not hasattr(net, member)]
    if not isinstance(net, nn.Module) or missing or not isinstance(net, ResolutionModel):
        what = f"lacks {', '.join(missing)}" if missing else "is not a torch.nn.Module"
        raise PebenchError(f"model '{spec}': {function}() returned a {type(net).__name__} that {what}; implement "
                           "pebench.models.interface.ResolutionModel (docs/plugins.md, 'Your own model')")
    meta = {"size": str(net.size), "encoding": str(net.spec), "train_res": net.img_size, "patch": net.patch,
            "num_classes": net.num_classes, "weights": "from the factory" if checkpoint is None else "checkpoint",
            "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest() if checkpoint else None,
            "factory": spec, "factory_sha256": digest(spec)}
    return net, meta
