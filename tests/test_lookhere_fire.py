"""LookHere and 2D FIRE: every mode runs, the modes relate as documented, the bias is the formula."""

import math

import pytest
import torch
from conftest import cli

from pebench.encodings.base import Context
from pebench.encodings.lookhere import head_plan
from pebench.models import build_model

SPECS = ["lookhere", "fire"]
NEG32 = torch.finfo(torch.float32).min / 2


def _model(spec: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("micro", spec, num_classes=10).eval()


def _image(height: int, width: int | None = None) -> torch.Tensor:
    return torch.randn(1, 3, height, width or height, generator=torch.Generator().manual_seed(1))


def _bias(model, name: str, block: int, grid, mode: str = "native") -> torch.Tensor:
    """The (heads, T, T) bias of one block, computed directly from the component."""
    ctx = Context(grid=grid, trained_grid=model.trained_grid, mode=mode, num_prefix=model.num_prefix)
    q = torch.zeros(1, model.blocks[0].attn.num_heads, 1 + grid[0] * grid[1], 8)
    with torch.no_grad():
        return model.pos_encoding[name].attention_bias(block, q, q, ctx)[0]


@pytest.mark.parametrize("spec", SPECS)
def test_every_mode_runs_at_every_resolution_and_on_a_rectangle(spec):
    model = _model(spec)
    with torch.inference_mode():
        for shape in [(224, 224), (384, 384), (512, 512), (224, 320)]:
            x = _image(*shape)
            for mode in ("native", "interp", "scale=0.5"):
                assert model.applicability(shape[0], mode) is None
                logits = model(x, mode)
                assert logits.shape == (1, 10) and torch.isfinite(logits).all(), (spec, shape, mode)


@pytest.mark.parametrize("spec", ["lookhere:fov=180", "lookhere:fov=45", "fire:shared=false,hidden=16"])
def test_option_variants_run(spec):
    model = _model(spec)
    with torch.inference_mode():
        assert torch.isfinite(model(_image(384), "native")).all()


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["lookhere", "fire"])
def test_both_modes_run_at_1024_and_differ(spec):
    model = _model(spec)
    with torch.inference_mode():
        x = _image(1024)
        native, interp = model(x, "native"), model(x, "interp")
    assert torch.isfinite(native).all() and torch.isfinite(interp).all() and not torch.allclose(native, interp)


@pytest.mark.parametrize("spec", SPECS)
def test_modes_agree_at_224_and_scale_1_is_native(spec):
    model = _model(spec)
    with torch.inference_mode():
        x224, x384 = _image(224), _image(384)
        assert torch.equal(model(x224, "native"), model(x224, "interp"))
        native = model(x384, "native")
        assert torch.equal(model(x384, "scale=1"), native)
        assert not torch.allclose(model(x384, "interp"), native)


def test_lookhere_interp_is_scale_g0_over_g_on_a_square_grid():
    model = _model("lookhere")
    x = _image(384)
    with torch.inference_mode():
        torch.testing.assert_close(model(x, "interp"), model(x, f"scale={14 / 24!r}"), rtol=0, atol=0)


def test_lookhere_has_no_parameters_and_no_state():
    model = _model("lookhere")
    assert model.position_param_count() == 0
    assert not [k for k in model.state_dict() if k.startswith("pos_encoding")]
    assert set(model.state_dict()) == set(_model("none").state_dict())


def test_lookhere_head_directions_for_every_pebench_head_count():
    assert head_plan(3, 90) == [(90, 0.5), (0, 0.5), (270, 0.5)]  # up, right, down
    assert [d for d, _ in head_plan(6, 180)] == [90, 0, 270, 180, 45, 225]  # + two opposite diagonals
    twelve = head_plan(12, 90)  # ViT-B: the axis cones twice (1/2, 1/4), the quadrants once (1/2)
    assert [d for d, _ in twelve] == [90, 0, 270, 180, 45, 315, 225, 135, 90, 0, 270, 180]
    assert [s for _, s in twelve] == [0.5] * 8 + [0.25] * 4
    assert sorted(d for d, _ in head_plan(8, 45)) == [22.5 + 45 * i for i in range(8)]


# keys (row-major patch indices of a 3x3 grid) that the query sees, per (fov, head, query)
_SEEN = {
    (90, 0, 4): {0, 1, 2, 4},  # up cone from the centre: the whole top row (diagonals included)
    (90, 1, 4): {2, 5, 8, 4},  # right cone
    (90, 2, 4): {6, 7, 8, 4},  # down cone
    (90, 0, 0): {0},  # up cone from the top-left corner: nothing but itself
    (90, 1, 0): {0, 1, 2, 4, 5, 8},  # right cone from the top-left corner
    (180, 0, 4): {0, 1, 2, 3, 4, 5},  # upper half-plane, its own row included
    (180, 1, 4): {1, 2, 4, 5, 7, 8},  # right half-plane
    (45, 0, 4): {0, 1, 4},  # wedge 90..135 degrees: straight up and up-left
    (45, 0, 8): {0, 1, 2, 4, 5, 8},  # the same wedge from the bottom-right corner
    (45, 1, 4): {2, 4, 5},  # wedge 0..45: right and up-right
}


@pytest.mark.parametrize("fov", [90, 180, 45])
def test_lookhere_masks_and_penalties_by_hand_on_a_3x3_grid(fov):
    model = _model(f"lookhere:fov={fov}")
    first, last = _bias(model, "lookhere", 0, (3, 3)), _bias(model, "lookhere", 5, (3, 3))
    assert first.shape == (3, 10, 10)
    assert (first[:, 0, :] == 0).all() and (first[:, :, 0] == 0).all()  # class token: no bias either way
    assert (first.diagonal(dim1=1, dim2=2) == 0).all()  # every query sees itself, at distance 0
    coords = [(r, c) for r in range(3) for c in range(3)]
    for (f, head, query), seen in _SEEN.items():
        if f != fov:
            continue
        assert {k for k in range(9) if first[head, 1 + query, 1 + k] > NEG32 / 2} == seen, (fov, head, query)
        assert (first[head, 1 + query, 1 + torch.tensor(sorted(set(range(9)) - seen))] == NEG32).all()
        for key in seen:
            distance = math.dist(coords[query], coords[key])
            # global 1 x layer slope (1.5 in block 0, 0.5 in block 5) x head slope 1/2 x distance
            assert first[head, 1 + query, 1 + key].item() == pytest.approx(-1.5 * 0.5 * distance)
            assert last[head, 1 + query, 1 + key].item() == pytest.approx(-0.5 * 0.5 * distance)


def test_lookhere_keeps_directions_across_modes_and_scales_distances_per_axis():
    model = _model("lookhere:global_slope=2")
    grid = (14, 20)  # 224x320
    native, interp, half = (_bias(model, "lookhere", 0, grid, m) for m in ("native", "interp", "scale=0.5"))
    assert torch.equal(native == NEG32, interp == NEG32) and torch.equal(native == NEG32, half == NEG32)
    right, below = 1 + 1, 1 + 20  # neighbours of patch 0 (query row 1 + 0)
    assert native[1, 1, right].item() == pytest.approx(-2 * 1.5 * 0.5 * 1)
    assert interp[1, 1, right].item() == pytest.approx(-2 * 1.5 * 0.5 * 14 / 20)  # columns scaled by 14/20
    assert interp[2, 1, below].item() == pytest.approx(-2 * 1.5 * 0.5 * 1)  # rows by 14/14
    assert half[2, 1, below].item() == pytest.approx(-2 * 1.5 * 0.5 * 0.5)


def _fire_expected(fn, offset, extents, scale=(1.0, 1.0)):
    """FIRE's formula written out: mlp(sign(d) log(1 + c|d|s) / log(1 + c max(L, E)))."""
    c, threshold = abs(fn.c.item()), abs(fn.threshold_scale.item()) * fn.init_threshold
    u = [math.copysign(math.log1p(c * abs(d) * s), d) / math.log1p(c * max(threshold, e))
         for d, s, e in zip(offset, scale, extents, strict=True)]
    with torch.no_grad():
        return fn.mlp(torch.tensor(u))


def test_fire_bias_is_the_formula_for_a_few_offsets():
    model = _model("fire")
    fn = model.pos_encoding["fire"].functions[0]
    with torch.no_grad():
        fn.c.fill_(-0.2)  # used as |c|
    bias = _bias(model, "fire", 3, (14, 14))
    q, k = 5 * 14 + 4, 2 * 14 + 6  # (5, 4) and (2, 6): offset query - key = (3, -2)
    torch.testing.assert_close(bias[:, 1 + q, 1 + k], _fire_expected(fn, (3, -2), (13, 13)))
    torch.testing.assert_close(bias[:, 1 + k, 1 + q], _fire_expected(fn, (-3, 2), (13, 13)))
    torch.testing.assert_close(bias[:, 1 + q, 1 + q], _fire_expected(fn, (0, 0), (13, 13)))
    assert (bias[:, 0, :] == 0).all() and (bias[:, :, 0] == 0).all()

    q, k = 20 * 24 + 3, 0 * 24 + 23  # 384 px: offset (20, -20), longer than any at 224 px
    interp, native = _bias(model, "fire", 3, (24, 24), "interp"), _bias(model, "fire", 3, (24, 24), "native")
    torch.testing.assert_close(interp[:, 1 + q, 1 + k], _fire_expected(fn, (20, -20), (23, 23)))  # |u| <= 1
    torch.testing.assert_close(native[:, 1 + q, 1 + k], _fire_expected(fn, (20, -20), (13, 13)))  # |u| > 1
    scaled = _bias(model, "fire", 3, (24, 24), "scale=0.5")
    torch.testing.assert_close(scaled[:, 1 + q, 1 + k], _fire_expected(fn, (20, -20), (13, 13), (0.5, 0.5)))


def test_fire_parameters_are_the_mlp_c_and_l():
    assert _model("fire").position_param_count() == (2 * 32 + 32) + (32 * 3 + 3) + 2
    assert _model("fire:shared=false").position_param_count() == 6 * ((2 * 32 + 32) + (32 * 3 + 3) + 2)
    model = _model("fire")
    model.train()
    model(_image(224)).sum().backward()
    fn = model.pos_encoding["fire"].functions[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (fn.c, fn.threshold_scale, *fn.mlp.parameters()))


def test_fire_threshold_floors_the_normaliser():
    model = _model("fire")
    x = _image(384)
    with torch.inference_mode():
        assert not torch.equal(model(x, "interp"), model(x, "native"))
        model.pos_encoding["fire"].functions[0].threshold_scale.fill_(2.0)  # L = 26 > 23 = G - 1
        assert torch.equal(model(x, "interp"), model(x, "native"))


def _count_calls(monkeypatch, obj, method: str) -> list[int]:
    calls = [0]
    original = getattr(obj, method)

    def counted(*args):
        calls[0] += 1
        return original(*args)

    monkeypatch.setattr(obj, method, counted)
    return calls


def test_shared_parts_are_computed_once_per_forward(monkeypatch):
    lookhere, fire, unshared = _model("lookhere"), _model("fire"), _model("fire:shared=false")
    geometry = _count_calls(monkeypatch, lookhere.pos_encoding["lookhere"], "_penalty")
    per_block = _count_calls(monkeypatch, lookhere.pos_encoding["lookhere"], "_bias")
    fire_calls = _count_calls(monkeypatch, fire.pos_encoding["fire"], "_bias")
    unshared_calls = _count_calls(monkeypatch, unshared.pos_encoding["fire"], "_bias")
    x = _image(384)
    with torch.inference_mode():
        for _ in range(2):  # the second forward reuses everything
            lookhere(x, "interp"), fire(x, "interp"), unshared(x, "interp")
    assert geometry == [1] and per_block == [6]  # masks and distances once; the layer slope per block
    assert fire_calls == [1] and unshared_calls == [6]
    b0, b5 = (_bias(fire, "fire", block, (24, 24), "interp") for block in (0, 5))
    assert b0.data_ptr() == b5.data_ptr()  # the same tensor serves every block


def test_list_shows_both():
    out = cli("list", "encodings")
    assert out.returncode == 0, out.stderr
    assert "lookhere  " in out.stdout and "LookHere, Fuller et al." in out.stdout
    assert "fire  " in out.stdout and "FIRE, Li et al." in out.stdout
