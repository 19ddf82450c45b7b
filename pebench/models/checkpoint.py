"""Checkpoints: a safetensors file of the model's state dict (timm names) plus a JSON sidecar.

The sidecar records how the weights were made (encoding spec, size, patch, training resolution,
dataset, seed, recipe, learning curve, command) and with what (pebench/torch/timm versions, git
sha), so a checkpoint can be rebuilt and a model can be built from it without guessing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load, save_file

from pebench.atomic import atomic_path
from pebench.env import environment
from pebench.errors import PebenchError
from pebench.models import build_model
from pebench.models.vit import VisionTransformer


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_checkpoint(model: VisionTransformer, path: Path, sidecar: dict, dtype: torch.dtype = torch.float32) -> None:
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {**sidecar, "dtype": str(dtype).removeprefix("torch."), "env": environment()}
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def read_sidecar(path: Path) -> dict:
    side = sidecar_path(path)
    if not side.exists():
        raise PebenchError(f"{path}: no sidecar {side.name} next to it; pebench needs it to know the encoding")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as error:
        raise PebenchError(f"{side}: not valid JSON ({error.msg} at line {error.lineno})") from None


def _plugin_hint(plugins: dict[str, dict]) -> str:
    """How to get the plugins a sidecar names: install the distribution, or pass the file."""
    hints = []
    for name, origin in plugins.items():
        if origin.get("distribution"):
            hints.append(f"'{name}': pip install {origin['distribution']}=={origin.get('version', '')}".rstrip("="))
        elif origin.get("file"):
            hints.append(f"'{name}': --plugin {origin['file']} (sha256 {origin.get('sha256', '?')[:12]})")
        else:
            hints.append(f"'{name}': --plugin {origin.get('module', '?')}")
    return "; ".join(hints)


def load_checkpoint(path: Path) -> tuple[VisionTransformer, dict]:
    """Build the model its sidecar describes and load the weights (as float32).

    The returned sidecar carries one derived field, ``checkpoint_sha256`` of the weights file.
    """
    path = Path(path)
    if not path.exists():
        raise PebenchError(f"checkpoint {path} does not exist")
    meta = read_sidecar(path)
    raw = path.read_bytes()
    try:
        tensors = load(raw)
    except Exception as error:  # safetensors raises its own error types for truncated/corrupt files
        raise PebenchError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        model = build_model(meta["size"], meta["encoding"], num_classes=meta["num_classes"],
                            img_size=meta["train_res"], patch=meta["patch"])
    except PebenchError as error:
        if not meta.get("plugins") or "unknown encoding" not in str(error):
            raise
        raise PebenchError(f"{path}: its encoding '{meta['encoding']}' comes from a plugin that is not loaded "
                           f"({_plugin_hint(meta['plugins'])})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise PebenchError(
            f"{path}: tensors do not fit the sidecar's encoding '{meta['encoding']}' "
            f"(missing {missing[:1] or 'none'}, unexpected {unexpected[:1] or 'none'}); "
            "the sidecar and weights come from different models"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise PebenchError(f"{path}: tensor {key} has shape {tuple(value.shape)}, the sidecar's model expects "
                               f"{tuple(expected[key].shape)}")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval(), {**meta, "checkpoint_sha256": hashlib.sha256(raw).hexdigest()}
