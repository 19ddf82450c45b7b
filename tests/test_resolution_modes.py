"""The two resolution modes, for every encoding: what runs, what is identity, what never mutates."""

import pytest
import torch
from conftest import RESOLUTIONS, SPECS, perturbed_model

from pebench.encodings import NotApplicable
from pebench.errors import PebenchError
from pebench.models import build_model


@pytest.mark.parametrize("spec", SPECS)
def test_every_resolution_and_mode_runs_or_says_why_not(spec, images):
    model = perturbed_model(spec)
    for res in RESOLUTIONS:
        x = images(res, batch=1)
        for mode in ("native", "interp"):
            reason = model.applicability(res, mode)
            if reason:
                assert "ape" in spec and mode == "native" and res != 224
                with pytest.raises(NotApplicable, match="interp"):
                    model(x, mode)
                continue
            with torch.inference_mode():
                logits = model(x, mode)
            assert logits.shape == (1, 10)
            assert torch.isfinite(logits).all(), (spec, res, mode)


@pytest.mark.parametrize("spec", SPECS)
def test_modes_agree_exactly_at_the_training_grid(spec, images):
    model = perturbed_model(spec)
    x = images(224)
    with torch.inference_mode():
        assert torch.equal(model(x, "interp"), model(x, "native"))


@pytest.mark.parametrize("spec", SPECS)
def test_resolution_and_mode_switches_never_touch_the_weights(spec, images):
    model = perturbed_model(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x224 = images(224)
    with torch.inference_mode():
        reference = model(x224, "native")
        for res in (384, 512):
            for mode in ("interp", "native"):
                if model.applicability(res, mode) is None:
                    model(images(res), mode)
        again = model(x224, "native")
    assert torch.equal(reference, again)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("spec", ["none", "peg", "peg:blocks=0-4,gap=true"])
def test_interp_is_the_native_computation_where_nothing_interpolates(spec, images):
    model = perturbed_model(spec)
    assert model.pos_encoding.interp_is_native
    x = images(384)
    with torch.inference_mode():
        assert torch.equal(model(x, "interp"), model(x, "native"))


#: specs with a learned APE grid: native has no values off the trained grid (asserted below, not skipped)
WITH_APE = [s for s in SPECS if "ape" in {part.split(":")[0] for part in s.split("+")}]


@pytest.mark.parametrize("spec", [s for s in SPECS if s not in ("none", "peg", "peg:blocks=0-4,separable=true",
                                                                   "peg:gap=true", *WITH_APE)])
def test_interp_differs_from_native_off_the_training_grid(spec, images):
    model = perturbed_model(spec)
    assert not model.pos_encoding.interp_is_native and model.applicability(384, "native") is None
    x = images(384)
    with torch.inference_mode():
        assert not torch.allclose(model(x, "interp"), model(x, "native"))


@pytest.mark.parametrize("spec", WITH_APE)
def test_a_learned_ape_grid_has_no_native_mode_off_its_grid_and_says_why(spec, images):
    model = perturbed_model(spec)
    assert not model.pos_encoding.interp_is_native
    assert model.applicability(384, "native") == "learned APE exists only on its trained 14x14 grid; use interp mode"
    assert model.applicability(224, "native") is None
    with pytest.raises(NotApplicable, match="trained 14x14 grid"), torch.inference_mode():
        model(images(384), "native")


def _shuffle_patches(x: torch.Tensor, patch: int, seed: int = 0) -> torch.Tensor:
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    tiles = x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, patch, patch)
    order = torch.randperm(gh * gw, generator=torch.Generator().manual_seed(seed))
    tiles = tiles[:, order]
    return tiles.reshape(b, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("res,mode", [(224, "native"), (384, "interp")])
def test_shuffling_patches_changes_the_output_unless_there_is_no_position(spec, res, mode, images):
    model = perturbed_model(spec)
    x = images(res)
    shuffled = _shuffle_patches(x, 16)
    assert not torch.equal(x, shuffled)
    with torch.inference_mode():
        original, permuted = model(x, mode), model(shuffled, mode)
    if spec == "none":
        torch.testing.assert_close(permuted, original, atol=1e-5, rtol=1e-5)
    else:
        assert (permuted - original).abs().max() > 1e-3, spec


@pytest.mark.parametrize("res", [200, 385])
def test_resolution_must_be_a_multiple_of_the_patch(res):
    model = build_model("micro", "none", num_classes=10)
    with pytest.raises(PebenchError, match="multiple of the patch size 16"):
        model(torch.zeros(1, 3, res, res))


def test_rectangular_inputs_run():
    model = perturbed_model("rpe")
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 224, 320), "interp").shape == (1, 10)


def test_ape_sincos_init_starts_from_the_sincos_grid_and_is_learned():
    from pebench.encodings.sincos import sincos_2d

    model = build_model("micro", "ape:init=sincos")
    grid = model.pos_encoding["ape"].pos_embed
    rows, cols = torch.meshgrid(torch.arange(14), torch.arange(14), indexing="ij")
    expected = sincos_2d(torch.stack([rows.flatten(), cols.flatten()], 1).float(), 96, 10000.0)
    assert torch.equal(grid[0, 1:], expected) and grid.requires_grad
    assert str(model.spec) == "ape:init=sincos" and str(build_model("micro", "ape").spec) == "ape"
