"""Checks of model specs that need no torch, run before any work: the shipped model is built, the
checkpoint file and its sidecar exist, and every resolution tiles into the model's patches (read from
the sidecar JSON). :mod:`pebench.models.resolve` raises the same errors when it loads; a timm model's or
an outside (``py:``) model's patch size is known only once it is built, so its resolutions are checked then."""

from __future__ import annotations

import json
from pathlib import Path

from pebench.errors import PebenchError, did_you_mean
from pebench.models.sizes import DEFAULT_PATCH, check_resolution
from pebench.resolution import Label, as_hw
from pebench.zoo import ZOO, zoo_path

TIMM_PREFIX = "timm:"


def unknown_model(name: str) -> PebenchError:
    return PebenchError(f"unknown model '{name}'{did_you_mean(name, list(ZOO))}: not a shipped "
                        f"model ({', '.join(ZOO)}), a .safetensors checkpoint, nor timm:NAME")


def not_built(name: str) -> PebenchError:
    return PebenchError(f"shipped model '{name}' is not built in this install ({zoo_path(name)}); "
                        "rebuild the zoo with `pebench train --all`")


def sidecar_patch(name: str, need_weights: bool = True) -> int | None:
    """The patch size a spec's sidecar records; None for timm models and (``need_weights`` False) for a
    shipped model that is not built. A bad spec is a one-line error."""
    if name.startswith((TIMM_PREFIX, "py:")):  # known once built
        return None
    if name in ZOO:
        path = zoo_path(name)
        if not path.exists():
            if need_weights:
                raise not_built(name)
            return None
    else:
        path = Path(name)
        if path.suffix != ".safetensors" and not path.exists():
            raise unknown_model(name)
        if not path.exists():
            raise PebenchError(f"checkpoint {path} does not exist; check the path")
    side = path.with_suffix(".json")
    if not side.exists():
        raise PebenchError(f"{path}: no sidecar {side.name} next to it; pebench needs it to know the encoding")
    try:
        return int(json.loads(side.read_text())["patch"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise PebenchError(f"{side}: not a pebench sidecar (no 'patch' in valid JSON); re-save the checkpoint "
                           "with pebench") from None


def preflight(names: list[str], resolutions: tuple[Label, ...], option: str | None = None,
              need_weights: bool = True, built_specs: bool = False) -> None:
    """Every model spec of ``names`` resolvable and every resolution a multiple of its patch size (and of
    :data:`DEFAULT_PATCH`, with ``built_specs``: encoding specs pebench builds, as `pebench profile` does)."""
    for name in [*names, *([None] if built_specs else [])]:
        patch = DEFAULT_PATCH if name is None else sidecar_patch(name, need_weights)
        for res in resolutions if patch else ():
            check_resolution(*as_hw(res), patch, what=f"{option} {res}" if option else
                             f"resolution {res} for model {name}")
