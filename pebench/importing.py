"""Importing someone else's code by name: a dotted module, or a ``.py`` file (plugins, outside models)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_module_or_file(target: str, prefix: str) -> ModuleType:
    """``target`` imported: a dotted module as Python imports it, or a ``.py`` file (which must exist) under a
    name made of ``prefix``, its stem and its content's hash, so that two versions of a file never share one."""
    if not target.endswith(".py"):
        return importlib.import_module(target)
    path = Path(target).expanduser()
    name = f"{prefix}_{path.stem}_{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
