"""timm NaFlexViT, RoPE with registers / GAP, Perception Encoder and DINOv3-style RoPE: both modes against
timm's own resizing, at square and non-square grids. Small random-weight models (width 64, depth 2,
trained grid 4x4 = 64 px), so every comparison runs in milliseconds."""

import pytest
import timm
import torch
from test_timm import sharpen

from pebench.models.timm_adapter import TimmModel, build_timm_model
from pebench.models.timm_families import family_of

SMALL = {"depth": 2, "embed_dim": 64, "num_heads": 2, "num_classes": 7}
TRAINED, SQUARE, WIDE = (64, 64), (96, 96), (64, 112)  # grids 4x4, 6x6, 4x7 at patch 16


def _small(name, **kwargs):
    """A sharpened small timm model of ``name`` behind pebench's interface, and its state."""
    torch.manual_seed(0)
    net = sharpen(timm.create_model(name, pretrained=False, **SMALL, **kwargs)).eval()
    model = TimmModel(name, net, family_of(name))
    model.snapshot_trained()
    return model, net.state_dict()


def _image(hw, seed=0):
    return torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, family, train_res", [
    ("naflexvit_base_patch16_gap", "NaFlexViT", 256),
    ("vit_medium_patch16_rope_reg1_gap_256", "RoPE", 256),
    ("vit_tiny_patch16_dinov3_qkvb", "RoPE (DINOv3)", 256),
])
def test_new_families_build_with_random_weights(name, family, train_res, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    model, meta = build_timm_model(f"timm:{name}", random_if_missing=True)
    assert meta["weights"].startswith("random") and meta["family"] == family and meta["train_res"] == train_res
    assert model.applicability(train_res, "native") is None and model.applicability("256x384", "interp") is None
    assert (model.applicability(384, "native") is None) == (family != "NaFlexViT")
    assert model.resize_api("256x384", "interp") == model.family.interp


def test_family_patterns_and_exclusions():
    assert family_of("vit_small_patch16_dinov3").name == "RoPE (DINOv3)"  # an Eva, not a learned-APE ViT
    assert family_of("vit_base_patch16_lingbot").name == "RoPE (DINOv3)"
    assert family_of("vit_betwixt_patch16_rope_reg4_gap_256").name == "RoPE"
    assert family_of("vit_pe_core_tiny_patch16_384").name == "RoPE"
    assert family_of("naflexvit_so150m2_patch16_reg1_gap").name == "NaFlexViT"
    for name in ("naflexvit_base_patch16_radio_v3", "vit_base_patch16_sapiens2", "vit_base_patch16_reg4_gap_256"):
        assert family_of(name) is None, name


NAFLEX = ["naflexvit_base_patch16_gap", "naflexvit_base_patch16_par_gap", "naflexvit_base_patch16_parfac_gap",
          "naflexvit_base_patch16_siglip"]


@pytest.mark.parametrize("name", NAFLEX)
def test_naflexvit_interp_is_timms_own_resampling(name):
    """Interp = NaFlexViT's own resize of plain image tensors; checked against timm's other code path,
    NaFlex's pre-patchified batches with patch coordinates."""
    from timm.models.naflexvit import batch_patchify

    model, _ = _small(name, pos_embed_grid_size=(4, 4))
    assert model.img_size == 64 and model.trained_grid == (4, 4)
    for hw in (TRAINED, SQUARE, WIDE):
        x = _image(hw)
        patches, (gh, gw) = batch_patchify(x, (16, 16))
        rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        batch = {"patches": patches, "patch_coord": torch.stack([rows, cols], -1).view(1, -1, 2),
                 "patch_valid": torch.ones(1, gh * gw, dtype=torch.bool)}
        with torch.inference_mode():
            reference, interp = model.net(batch), model(x, "interp")
            assert reference.std() > 0.1 and (interp - reference).abs().max() <= 1e-4, hw
            if hw == TRAINED:
                assert torch.equal(model(x, "native"), interp)
        if hw != TRAINED:
            assert "learned APE" in model.applicability(hw, "native")
    factorized = "parfac" in name
    dim = 64
    assert model.position_param_count() == (4 + 4 if factorized else 16) * dim
    assert model.position_values_at("64x112", "interp") == (4 + 7 if factorized else 28) * dim
    twin = model.position_free_twin()
    assert twin.position_param_count() == 0 and twin.net.embeds.pos_embed_type == "none"
    with torch.inference_mode():
        assert twin(_image(WIDE), "interp").shape == (1, 7)


ROPE = [("vit_medium_patch16_rope_reg1_gap_256", 1, {}), ("vit_betwixt_patch16_rope_reg4_gap_256", 4, {}),
        ("vit_pe_core_tiny_patch16_384", 1, {"attn_pool_num_heads": 2})]


@pytest.mark.parametrize("name, prefix, extra", ROPE)
def test_rope_registers_gap_and_pe_match_timms_own_resized_model(name, prefix, extra):
    """Interp = timm's ref_feat_shape set to the trained grid (positions scaled by G0/G per axis); native =
    ref_feat_shape set to the new grid, i.e. integer positions (a None kwarg would fall back to timm's default)."""
    kwargs = {"img_size": 64, "ref_feat_shape": (4, 4), **extra}
    model, state = _small(name, dynamic_img_size=True, **kwargs)
    has_ape = model.net.pos_embed is not None  # Perception Encoder: APE + RoPE
    assert model.trained_grid == (4, 4) and model.net.num_prefix_tokens == prefix
    for hw in (TRAINED, SQUARE, WIDE):
        x = _image(hw, seed=1)
        outputs = {}
        for mode in ("native", "interp"):
            if mode == "native" and has_ape and hw != TRAINED:
                assert "learned APE" in model.applicability(hw, mode)
                continue
            grid = (4, 4) if mode == "interp" else (hw[0] // 16, hw[1] // 16)
            theirs = timm.create_model(name, pretrained=False, **SMALL, **kwargs | {"ref_feat_shape": grid}).eval()
            theirs.load_state_dict(state)
            theirs.set_input_size(img_size=hw)
            with torch.inference_mode():
                reference, outputs[mode] = theirs(x), model(x, mode)
            assert reference.std() > 0.1 and (outputs[mode] - reference).abs().max() <= 1e-4, (hw, mode)
        if hw != TRAINED and not has_ape:  # the modes differ off-grid, so each comparison tested something
            assert (outputs["native"] - outputs["interp"]).abs().max() > 1e-3
    twin = model.position_free_twin()
    assert twin.position_param_count() == 0 and twin.net.rope is None
    with torch.inference_mode():
        assert twin(_image(WIDE), "interp").shape == (1, 7)


@pytest.mark.parametrize("name", ["vit_small_patch16_dinov3", "vit_small_patch16_lingbot"])
def test_dinov3_rope_interp_is_timms_default_and_native_keeps_trained_spacing(name):
    """Interp: timm's own forward (a statically sized model). Native: the same static model with its RoPE
    table rebuilt by hand from coordinates (2 i + 1 - G) / G0: the trained spacing 2/G0 about the image
    centre. The anchor matters (class and register tokens are not rotated): top-left differs."""
    model, state = _small(name, img_size=64)
    assert model.trained_grid == (4, 4) and model.net.rope.normalize_coords == "separate"
    for hw in (TRAINED, SQUARE, WIDE):
        x = _image(hw, seed=2)
        theirs = timm.create_model(name, pretrained=False, **SMALL, img_size=hw, dynamic_img_size=False).eval()
        theirs.load_state_dict(state)
        with torch.inference_mode():
            interp_reference, interp = theirs(x), model(x, "interp")
            gh, gw = hw[0] // 16, hw[1] // 16
            rows, cols = torch.meshgrid(torch.arange(gh) * 2. + 1, torch.arange(gw) * 2. + 1, indexing="ij")
            native_reference = {}
            for anchor, (origin_h, origin_w) in {"centre": (gh, gw), "top-left": (4, 4)}.items():
                coords = torch.stack([(rows - origin_h) / 4, (cols - origin_w) / 4], -1).view(-1, 2)
                embed = torch.cat(theirs.rope._get_pos_embed_from_coords(coords), -1)
                theirs.rope.pos_embed_cached.copy_(embed)
                native_reference[anchor] = theirs(x)
            native = model(x, "native")
        assert interp_reference.std() > 0.1 and (interp - interp_reference).abs().max() <= 1e-4, hw
        assert (native - native_reference["centre"]).abs().max() <= 1e-4, hw
        if hw != TRAINED:
            assert (native - native_reference["top-left"]).abs().max() > 1e-3
        assert (hw == TRAINED) == ((native - interp).abs().max() < 1e-5), hw
    assert model.resize_api(96, "native").startswith("patch-centre spacing")
    twin = model.position_free_twin()
    assert twin.position_param_count() == 0 and twin.net.rope is None
    with torch.inference_mode():
        assert twin(_image(WIDE), "native").shape == (1, 7)
