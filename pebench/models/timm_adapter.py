"""Real checkpoints: timm models behind pebench's model interface (``model(x, mode)``).

A model spec ``timm:NAME`` builds ``timm.create_model(NAME, pretrained=False)`` and loads weights
from a file (.safetensors, or .pth/.bin read with ``torch.load(weights_only=True)``, a plain state
dict or one nested under ``model`` / ``state_dict``) or from the local Hugging Face cache, which
is only read, never filled: pebench does not download. The classifier size comes from the weights.

Each supported family (:mod:`pebench.models.timm_families`) says what the two resolution modes
mean for it and which timm API implements them; the API is recorded in every result.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from pebench.errors import PebenchError, did_you_mean
from pebench.models.timm_families import (
    FAMILIES,
    Family,
    cpb_divisor,
    cpb_modules,
    family_by_class,
    family_of,
    position_state,
    relpos_mlps,
    table_modules,
)
from pebench.modes import scale_of
from pebench.resolution import as_hw

PREFIX = "timm:"


def _unknown_name_error(name: str) -> PebenchError:
    import timm

    known = timm.list_models()
    return PebenchError(f"unknown timm model '{name}'{did_you_mean(name, known)}; `pebench list models` shows the "
                        "supported timm families")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; pickled files are read with weights_only=True (no code runs)."""
    if not path.is_file():
        raise PebenchError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch.load raise many types for foreign or corrupt files
        raise PebenchError(f"{path}: not a readable checkpoint ({type(error).__name__}: {str(error)[:120]}); "
                           "pass a .safetensors, .pth or .bin file holding a state dict") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PebenchError(f"{path}: holds no state dict of tensors (nor one under 'model' or 'state_dict')")
    return state


#: the files timm's pretrained weights come in on the Hugging Face hub, in the order they are tried
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _hub_repo_and_cache(net: nn.Module) -> tuple[str | None, str]:
    """The Hugging Face repository of a timm model's pretrained weights (None: timm names none) and the cache
    folder timm would use ($HF_HUB_CACHE first)."""
    from huggingface_hub import constants

    repo = (getattr(net, "pretrained_cfg", {}) or {}).get("hf_hub_id")
    return repo, os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def _hf_cache_file(net: nn.Module) -> tuple[Path | None, str]:
    """The cached pretrained weights of a timm model, if any, and where pebench looked."""
    repo, cache = _hub_repo_and_cache(net)
    if not repo:
        return None, "no Hugging Face id in timm's pretrained config"
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(found, str):
            return Path(found), ""
    return None, f"Hugging Face cache {cache} (repo {repo})"


#: ``timm:NAME@hf-hub`` (what ``--pretrained`` makes of ``timm:NAME``): timm's own pretrained weights, through the
#: Hugging Face cache as timm fetches them, downloaded when missing unless HF_HUB_OFFLINE is set
HUB = "hf-hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_download(net: nn.Module, name: str) -> tuple[Path, str]:
    """The pretrained weights file of a timm model, from the cache or (online) downloaded into it, and where
    it came from (repo, file, revision)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, cache = _hub_repo_and_cache(net)
    if not repo:
        raise PebenchError(f"timm:{name} --pretrained: timm has no Hugging Face weights for it; pass --checkpoint FILE")
    problem = ""
    for filename in HUB_FILES:
        try:
            path = Path(hf_hub_download(repo, filename, cache_dir=cache, local_files_only=_offline()))
        except EntryNotFoundError:
            continue
        except LocalEntryNotFoundError as error:
            problem = str(error).splitlines()[0]
            continue
        except Exception as error:  # noqa: BLE001 - network and hub errors of every kind end the same way
            raise PebenchError(f"timm:{name} --pretrained: could not fetch {repo}/{filename}: "
                               f"{type(error).__name__}: {str(error).splitlines()[0]}") from None
        revision = path.parent.name if path.parent.parent.name == "snapshots" else "?"
        return path, f"hf-hub:{repo}/{filename}@{revision}"
    why = "HF_HUB_OFFLINE is set" if _offline() else (problem or "the hub has neither weights file")
    raise PebenchError(f"timm:{name} --pretrained: the weights of {repo} are not in the cache {cache} and cannot be "
                       f"downloaded ({why}); run once with a network, or pass --checkpoint FILE")


def _classes_in(state: dict[str, torch.Tensor]) -> int | None:
    for key in ("head.weight", "head.fc.weight", "fc.weight"):
        if key in state and state[key].ndim == 2:
            return state[key].shape[0]
    return None


def _first_mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    for key, value in expected.items():
        if key not in state:
            return f"tensor '{key}' is missing"
        if tuple(state[key].shape) != tuple(value.shape):
            return f"tensor '{key}' has shape {tuple(state[key].shape)}, the model expects {tuple(value.shape)}"
    extra = next((k for k in state if k not in expected), None)
    return f"unexpected tensor '{extra}'" if extra else None


class TimmModel(nn.Module):
    """A timm classifier run at any resolution in pebench's native / interp modes."""

    def __init__(self, name: str, net: nn.Module, family: Family):
        super().__init__()
        self.name, self.net, self.family = name, net, family
        self.patch = net.feature_info[-1]["reduction"]  # the total stride (Twins: 32)
        if hasattr(getattr(net, "embeds", None), "pos_embed_grid_size"):  # NaFlexViT: the stored grid's size
            self.img_size = net.embeds.pos_embed_grid_size[0] * self.patch
        elif hasattr(net, "patch_embed") or hasattr(net, "patch_embeds"):
            self.img_size = (getattr(net, "patch_embed", None) or net.patch_embeds[0]).img_size[0]
        else:  # a class without a patch embedding (MaxViT's stem) keeps its own img_size
            self.img_size = tuple(getattr(net, "img_size", None) or net.pretrained_cfg["input_size"][1:])[0]
        self.trained_grid = (self.img_size // self.patch, self.img_size // self.patch)
        self.size = name
        self.spec = f"{PREFIX}{name}"
        self.trained_tables: list[torch.Tensor] = []
        self.trained_cpb: list[tuple[int, float]] = []
        self.trained_pos_embed: torch.Tensor | None = None
        self.trained_position_state: dict[str, torch.Tensor] = {}
        self._configured: tuple | None = None

    def snapshot_trained(self) -> None:
        """Keep the trained relative tables and APE grid: every resolution change starts from them."""
        self.trained_tables = [m.relative_position_bias_table.detach().clone() for m in table_modules(self.net)]
        self.trained_cpb = [(m.window_size[0], cpb_divisor(m)) for m in cpb_modules(self.net)]
        pos_embed = self._pos_embed()
        self.trained_pos_embed = None if pos_embed is None else pos_embed.detach().clone()
        self.trained_position_state = {key: value.detach().clone() for key, value in position_state(self.net).items()}

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def interp_is_native(self) -> bool:
        return self.family.native == self.family.interp

    def _pos_embed(self) -> torch.Tensor | None:
        return getattr(self.net, "pos_embed", None)

    def _naflex_tables(self, grid: tuple[int, int] = (0, 0)) -> list[tuple[torch.Tensor, int]]:
        """NaFlexViT's learned grid (1, H, W, C) or factorized tables (1, H, C), (1, W, C), each with the
        rows it uses on ``grid``."""
        embeds, (gh, gw) = getattr(self.net, "embeds", None), grid
        tables = ((getattr(embeds, "pos_embed", None), gh * gw), (getattr(embeds, "pos_embed_y", None), gh),
                  (getattr(embeds, "pos_embed_x", None), gw))
        return [(table, rows) for table, rows in tables if isinstance(table, torch.Tensor)]

    def _module_param_count(self) -> int:
        """Position parameters that do not change with resolution: RoPE frequencies, relative MLPs, PEGs."""
        modules = [getattr(self.net, "rope", None), *relpos_mlps(self.net), getattr(self.net, "pos_block", None),
                   *(m.cpb_mlp for m in cpb_modules(self.net))]
        return sum(p.numel() for m in modules if m is not None for p in m.parameters())

    def _parameters_in(self, state: dict[str, torch.Tensor]) -> int:
        """Values of ``state``'s tensors that are parameters of the net (an unlisted class's position tensors,
        found by name, include buffers such as index tables)."""
        return sum(state[name].numel() for name, _ in self.net.named_parameters() if name in state)

    def position_param_count(self) -> int:
        if self.family.generic:
            return self._parameters_in(self.trained_position_state)
        ape = 0 if self.trained_pos_embed is None else self.trained_pos_embed.numel()
        ape += sum(table.numel() for table, _ in self._naflex_tables())
        return ape + self._module_param_count() + sum(t.numel() for t in self.trained_tables)

    def position_values_at(self, res, mode: str) -> int:
        """Stored position values in use at ``res``: a resampled APE grid or resized table grows with it."""
        gh, gw = (side // self.patch for side in as_hw(res))
        if self.family.generic:  # timm's set_input_size decides the sizes: configure, then count
            self._configure((gh, gw), mode)
            return self._parameters_in(position_state(self.net))
        count = self._module_param_count()
        if self.trained_pos_embed is not None:
            prefix = self.trained_pos_embed.shape[1] - self.trained_grid[0] * self.trained_grid[1]
            count += (prefix + gh * gw) * self.trained_pos_embed.shape[2]
        count += sum(rows * table.shape[-1] for table, rows in self._naflex_tables((gh, gw)))
        for table in self.trained_tables:
            rows = (2 * gh - 1) * (2 * gw - 1) + 3 if mode == "interp" else table.shape[0]
            count += rows * table.shape[1]
        return count

    def position_free_twin(self) -> nn.Module | None:
        """The same timm architecture without position information, the cost reference; None for an unlisted
        class, which pebench cannot strip."""
        import timm

        if self.family.generic:
            return None
        built = dict(getattr(self.net, "_model_args", {}))  # what timm was asked for, e.g. a smaller depth
        if "img_size" in built:  # timm records set_input_size's resizes too: the twin starts trained
            built["img_size"] = self.img_size
        kwargs = built | dict(self.family.create_kwargs) | dict(self.family.position_free_kwargs)
        kwargs["num_classes"] = self.num_classes
        net = timm.create_model(self.name, pretrained=False, **kwargs)
        if self.family.strip_position is not None:
            self.family.strip_position(net)
        twin = TimmModel(self.name, net.eval(), self.family)
        twin.snapshot_trained()
        return twin

    def grid_at(self, res) -> tuple[int, int]:
        height, width = as_hw(res)
        return (height // self.patch, width // self.patch)

    def applicability(self, res, mode: str) -> str | None:
        height, width = as_hw(res)
        if height % self.patch or width % self.patch:
            return f"{height}x{width} px is not a multiple of the patch size {self.patch}"
        if scale_of(mode) is not None:
            return "timm models run in native and interp mode only: pebench does not rescale positions inside timm"
        if mode == "native" and (height, width) != (self.img_size, self.img_size) and (
                self.family.native is None or self._pos_embed() is not None):
            if self.family.generic:
                return (f"pebench cannot tell what native means for timm's {type(self.net).__name__} (no listed "
                        "family): timm resizes its position parameters only through set_input_size, which is interp")
            grid = self.img_size // self.patch
            return f"the learned APE (pos_embed) exists only on its trained {grid}x{grid} grid; use interp mode"
        return None

    def resize_api(self, res, mode: str) -> str | None:
        """The timm API that adapts position parameters for this cell (recorded with results)."""
        if as_hw(res) == (self.img_size, self.img_size):
            return None
        return self.family.native if mode == "native" else self.family.interp

    def forward(self, images: torch.Tensor, mode: str = "interp") -> torch.Tensor:
        reason = self.applicability(tuple(images.shape[-2:]), mode)
        if reason:
            raise ValueError(reason)
        self._configure(self.grid_at(tuple(images.shape[-2:])), mode)
        return self.net(images)

    def _configure(self, grid: tuple[int, int], mode: str) -> None:
        if self.family.configure is not None and self._configured != (grid, mode):
            self.family.configure(self, grid, mode)
            self._configured = (grid, mode)


def build_timm_model(spec: str, checkpoint: Path | None = None, random_if_missing: bool = False
                     ) -> tuple[TimmModel, dict]:
    """(model, sidecar-like metadata) for ``timm:NAME`` with weights from ``checkpoint`` or the HF cache;
    with ``random_if_missing`` (profiling: cost does not depend on the weights), random weights and
    ``meta["weights"] == "random"`` when neither has any."""
    import timm
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    name = spec.removeprefix(PREFIX)
    if not timm.is_model(name):
        raise _unknown_name_error(name)
    family = family_of(name)
    probe = timm.create_model(name, pretrained=False, num_classes=0)
    family = family or family_by_class(name, probe)
    if family is None:
        supported = ", ".join(f"{f.name} ({' '.join(f.patterns[:3])} ...)" for f in FAMILIES)
        raise PebenchError(f"timm model '{name}' is not in a family pebench can resize, and its class "
                           f"({type(probe).__name__}) has no set_input_size to resize it with; supported: "
                           f"{supported}, and any other class with set_input_size (interp only)")
    looked, source = "", None
    if checkpoint is not None and str(checkpoint) == HUB:
        checkpoint, source = _hub_download(probe, name)
    elif checkpoint is None:
        checkpoint, looked = _hf_cache_file(probe)
    if checkpoint is None and random_if_missing:
        net = timm.create_model(name, pretrained=False, **dict(family.create_kwargs))
        model = TimmModel(name, net.eval(), family)
        model.snapshot_trained()
        return model, {"size": name, "encoding": family.encoding, "train_res": model.img_size, "patch": model.patch,
                       "num_classes": net.num_classes, "checkpoint_sha256": None, "family": family.name,
                       "checkpoint": None, "weights": f"random (no checkpoint: looked in {looked})"}
    if checkpoint is None:
        raise PebenchError(f"no weights for timm:{name}: looked in {looked}; pass --checkpoint FILE "
                           "(.safetensors/.pth/.bin) or fill the cache on a machine with network (pebench never "
                           "downloads; set HF_HUB_OFFLINE=1 to keep timm from trying)")
    checkpoint = Path(checkpoint)
    state = read_state_dict(checkpoint)
    num_classes = _classes_in(state) or 0
    net = timm.create_model(name, pretrained=False, num_classes=num_classes, **dict(family.create_kwargs))
    module = __import__(type(net).__module__, fromlist=["checkpoint_filter_fn"])
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, net)
    mismatch = _first_mismatch(state, net.state_dict())
    if mismatch:
        raise PebenchError(f"{checkpoint}: not a checkpoint of timm:{name}: {mismatch}")
    net.load_state_dict(state)
    model = TimmModel(name, net.eval(), family)
    model.snapshot_trained()
    meta = {"size": name, "encoding": family.encoding, "train_res": model.img_size, "patch": model.patch,
            "num_classes": num_classes, "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "family": family.name, "checkpoint": str(checkpoint), "weights": "pretrained" if source else "trained",
            **({"weights_source": source} if source else {}),
            # inputs are normalised as the model was trained (timm's validate.py reads the same config)
            "mean": list(net.pretrained_cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
            "std": list(net.pretrained_cfg.get("std", IMAGENET_DEFAULT_STD))}
    return model.eval(), meta
