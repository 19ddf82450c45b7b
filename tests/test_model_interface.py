"""The one model interface: pebench's ViT and the timm adapter both implement it, method for method."""

import inspect

import pytest
import torch

from pebench.models import build_model
from pebench.models.interface import LoadedModel, ResolutionModel
from pebench.models.resolve import built, resolve_model
from pebench.models.timm_adapter import build_timm_model

METHODS = [name for name, member in vars(ResolutionModel).items()
           if inspect.isfunction(member) and (not name.startswith("_") or name == "__call__")]


def _parameters(function) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


def _timm_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    return build_timm_model("timm:deit_tiny_patch16_224", random_if_missing=True)[0]


def conforms(net) -> list[str]:
    """What ``net`` lacks of the interface, or takes differently: empty when it implements it."""
    problems = [] if isinstance(net, ResolutionModel) else ["not a ResolutionModel"]
    for name in METHODS:
        ours = getattr(type(net), "forward" if name == "__call__" else name, None)
        if ours is None:
            problems.append(f"no {name}")
        elif _parameters(ours) != _parameters(getattr(ResolutionModel, name)):
            problems.append(f"{name}{inspect.signature(ours)}")
    return problems


def test_the_interface_names_what_the_runner_uses():
    assert {"grid_at", "applicability", "resize_api", "position_free_twin", "position_values_at", "__call__"} <= set(
        METHODS)


def test_pebench_vit_implements_the_interface():
    assert conforms(build_model("micro", "rope", num_classes=10)) == []


def test_timm_adapter_implements_the_interface(tmp_path, monkeypatch):
    assert conforms(_timm_model(tmp_path, monkeypatch)) == []


def test_a_model_without_grid_at_does_not_conform():
    class Partial(torch.nn.Module):
        patch, img_size, trained_grid, size, spec = 16, 224, (14, 14), "x", "none"
        num_classes, interp_is_native = 10, True

        def applicability(self, res, mode):
            return None

        def forward(self, images, mode):
            return images

    assert "no grid_at" in conforms(Partial())


@pytest.mark.parametrize("res, mode, same, scale", [
    (224, "native", True, [1.0, 1.0]),
    (384, "native", False, [1.0, 1.0]),
    (384, "interp", False, [14 / 24, 14 / 24]),
    ("384x512", "interp", False, [14 / 24, 14 / 32]),
    (384, "scale=0.5", False, [0.5, 0.5]),
])
def test_a_loaded_model_says_what_a_cell_runs(res, mode, same, scale):
    loaded = built("sincos", build_model("micro", "sincos", num_classes=10))
    assert isinstance(loaded, LoadedModel) and loaded.meta["train_res"] == 224 and loaded.source == "built"
    assert loaded.same_as_native(res, mode) is same
    assert loaded.position_scale(res, mode) == pytest.approx(scale)


def test_interp_of_an_encoding_with_nothing_to_interpolate_is_native():
    peg = built("peg", build_model("micro", "peg", num_classes=10))
    assert peg.same_as_native(384, "interp") and not peg.same_as_native(384, "scale=0.5")


def test_shipped_models_resolve_to_their_sidecar_and_file():
    loaded = resolve_model("ape")
    assert loaded.source == "zoo" and loaded.path.name == "ape.safetensors"
    assert isinstance(loaded.net, ResolutionModel) and loaded.meta["checkpoint_sha256"]
