"""Every model spec pebench accepts, resolved in one place into a :class:`~pebench.models.interface.LoadedModel`.

A spec is a shipped name (:mod:`pebench.zoo`), a ``.safetensors`` checkpoint with its sidecar,
``timm:NAME[@FILE]`` (weights from FILE or the local Hugging Face cache), or ``py:MODULE:FACTORY[@FILE]``
(a model from outside, :mod:`pebench.models.outside`). `pebench profile` also builds
encoding specs at a backbone size with random weights, and, since cost does not depend on the weights,
profiles a shipped model that is not built here or a timm model without weights with random ones
(the record says so in ``model.weights``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pebench.encodings.plugins import provenance
from pebench.models.checkpoint import load_checkpoint
from pebench.models.interface import LoadedModel
from pebench.models.outside import PREFIX as OUTSIDE
from pebench.models.outside import build_outside
from pebench.models.outside import digest as outside_digest
from pebench.models.preflight import not_built, unknown_model
from pebench.models.timm_adapter import PREFIX, build_timm_model
from pebench.models.vit import build_model
from pebench.zoo import ZOO, ZOO_BUILD, zoo_path


def built(name: str, net, weights: str = "random") -> LoadedModel:
    """A model built in this process (no checkpoint), named ``name``."""
    meta = {"size": net.size, "encoding": str(net.spec), "train_res": net.img_size, "patch": net.patch,
            "num_classes": net.num_classes, "checkpoint_sha256": None, "weights": weights,
            "plugins": provenance(net.spec.names)}
    return LoadedModel(name, net, meta, "built", None)


def built_model(spec: str, size: str, num_classes: int = 1000) -> LoadedModel:
    """An encoding spec on a backbone ``size`` with random weights (profile's --encoding rows)."""
    return built(spec, build_model(size, spec, num_classes=num_classes))


def resolve_model(name: str, need_weights: bool = True) -> LoadedModel:
    """The model a spec names; a bad name or file is a one-line error. Without ``need_weights``
    (profiling), a shipped model not built here and a timm model without weights get random ones."""
    if name.startswith(OUTSIDE):
        net, meta = build_outside(name)
        return LoadedModel(name, net, meta, "py", None)
    if name.startswith(PREFIX):
        spec, _, file = name.partition("@")
        net, meta = build_timm_model(spec, Path(file) if file else None, random_if_missing=not need_weights)
        return LoadedModel(name, net, meta, "timm", meta["checkpoint"])
    if name in ZOO:
        path = zoo_path(name)
        if not path.exists():
            if not need_weights:
                return built(name, build_model(ZOO_BUILD["size"], ZOO[name], num_classes=ZOO_BUILD["num_classes"],
                                               img_size=ZOO_BUILD["train_res"]))
            raise not_built(name)
        net, meta = load_checkpoint(path)
        return LoadedModel(name, net, meta, "zoo", path)
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists():
        net, meta = load_checkpoint(path)
        return LoadedModel(name, net, meta | {"plugins": provenance(net.spec.names)}, "file", path)
    raise unknown_model(name)


def profile_row(name: str, size: str | None) -> LoadedModel:
    """A row of `pebench profile`: a model spec (``size`` None) or an encoding spec built at ``size``."""
    return built_model(name, size) if size is not None else resolve_model(name, need_weights=False)


def load_models(names, device: torch.device) -> dict[str, LoadedModel]:
    """name -> the model on ``device`` in eval mode, each name once."""
    return {name: resolve_model(name).to(device) for name in dict.fromkeys(names)}


def weights_digest(name: str) -> str | None:
    """SHA-256 of the weights file a spec reads (None: weights from the Hugging Face cache, keyed by the
    name alone, or no file), so that retrained weights never pass for the old results."""
    if name.startswith(OUTSIDE):
        return outside_digest(name)
    if name.startswith(PREFIX):
        path = Path(name.partition("@")[2]) if "@" in name else None
        if path is None:
            return None
    else:
        path = zoo_path(name) if name in ZOO else Path(name)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()
