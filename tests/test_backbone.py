"""The shared backbone: timm compatibility, explicit attention, encoding parameter counts."""

import pytest
import timm
import torch
import torch.nn.functional as F

from pebench.encodings import build_encoding
from pebench.encodings.base import Arch
from pebench.models import build_model
from pebench.models.attention import explicit_attention


@pytest.fixture(scope="module")
def deit_tiny_weights():
    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    with torch.no_grad():  # timm zero-initialises the head; make the logits depend on everything
        reference.head.weight.normal_(0, 0.02)
    return reference.state_dict()


def test_timm_deit_state_dict_loads_unchanged_and_matches_at_224(deit_tiny_weights, images):
    ours = build_model("tiny", "ape", num_classes=1000).eval()
    assert set(ours.state_dict()) == set(deit_tiny_weights)
    ours.load_state_dict(deit_tiny_weights, strict=True)
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    reference.load_state_dict(deit_tiny_weights)
    x = images(224)
    with torch.inference_mode():
        diff = (ours(x, "native") - reference(x)).abs().max().item()
    assert diff <= 1e-4


def test_interp_at_384_matches_timm_dynamic_img_size(deit_tiny_weights, images):
    ours = build_model("tiny", "ape", num_classes=1000).eval()
    ours.load_state_dict(deit_tiny_weights)
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False, dynamic_img_size=True).eval()
    reference.load_state_dict(deit_tiny_weights)
    x = images(384)
    with torch.inference_mode():
        diff = (ours(x, "interp") - reference(x)).abs().max().item()
    assert diff <= 1e-4


def test_saved_state_dict_round_trips_through_timm_names():
    a = build_model("micro", "ape+peg", num_classes=10)
    b = build_model("micro", "ape+peg", num_classes=10)
    state = a.state_dict()
    assert "pos_embed" in state and not any(k.startswith("pos_encoding.ape") for k in state)
    b.load_state_dict(state)
    assert torch.equal(b.pos_encoding["ape"].pos_embed, a.pos_encoding["ape"].pos_embed)


def _qkv(seed=0, b=2, h=3, t=17, d=32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g) for _ in range(3)]


def test_explicit_attention_equals_sdpa_without_a_multiplier_or_value_term():
    q, k, v = _qkv()
    arch = Arch(dim=96, depth=1, num_heads=3, trained_grid=(4, 4), num_prefix=1)
    none = build_encoding("none", arch)
    ctx = build_model("micro", "none").context((4, 4), "native")
    got = explicit_attention(q, k, v, 32**-0.5, None, None, none, 0, ctx)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)
    bias = torch.randn(1, 3, 17, 17)
    got = explicit_attention(q, k, v, 32**-0.5, bias, None, none, 0, ctx)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("spec", ["spvit", "rpe:on=kv"])
def test_explicit_attention_encodings_switched_off_equal_the_sdpa_model(spec, images):
    """SP-ViT with a zero prior MLP output (prior 1) and iRPE with zero tables are plain attention."""
    torch.manual_seed(0)
    explicit = build_model("micro", spec, num_classes=10).eval()
    with torch.no_grad():
        for p in explicit.pos_encoding.parameters():
            p.zero_()
    assert any(explicit.pos_encoding.explicit_attention(b) for b in range(6))
    fused = build_model("micro", "none", num_classes=10).eval()
    fused.load_state_dict({k: v for k, v in explicit.state_dict().items() if not k.startswith("pos_encoding")})
    x = images(224)
    with torch.inference_mode():
        torch.testing.assert_close(explicit(x), fused(x), atol=1e-5, rtol=1e-5)


def _encoding_params(size, spec):
    return sum(p.numel() for p in build_model(size, spec).pos_encoding.parameters())


def test_peg_on_tiny_adds_1728_weights_plus_192_biases():
    """CPVT counts the 192 x 3 x 3 depthwise weights; the conv's bias adds 192 more."""
    model = build_model("tiny", "peg")
    conv = model.pos_encoding["peg"].generators["0"][0]
    assert conv.weight.numel() == 192 * 3 * 3 == 1728
    assert conv.bias.numel() == 192
    assert _encoding_params("tiny", "peg") == 1728 + 192
    assert _encoding_params("tiny", "peg:blocks=0-4") == 5 * (1728 + 192)


def test_ape_on_tiny_is_the_seeds_grid_plus_the_class_position():
    assert _encoding_params("tiny", "ape") == 192 * (14 * 14 + 1)  # 37,632 grid + 192 class token


def test_parameter_free_encodings_add_nothing():
    for spec in ("none", "sincos", "alibi", "rope"):
        assert _encoding_params("micro", spec) == 0, spec
    assert _encoding_params("tiny", "rope:variant=mixed") == 2 * 12 * 3 * 32  # (x, y) x depth x heads x hd/2


def test_gap_head_has_no_class_token():
    model = build_model("micro", "peg:gap=true", num_classes=10)
    assert model.cls_token is None and model.num_prefix == 0


@pytest.mark.parametrize("variant", ["axial", "mixed"])
def test_rope_rotation_equals_timms_rope_vit_arithmetic(variant):
    """One complex multiplication per channel pair is timm's get_mixed_freqs + apply_rot_embed_cat."""
    from timm.layers.pos_embed_sincos import apply_rot_embed_cat, get_mixed_freqs

    from pebench.encodings.base import patch_coordinates

    model = build_model("micro", f"rope:variant={variant}").eval()
    rope = model.pos_encoding["rope"]
    ctx = model.context((18, 18), "interp")
    q = torch.randn(2, 3, 1 + 18 * 18, 32, generator=torch.Generator().manual_seed(0))
    index = 2 if variant == "mixed" else 0
    ours, _ = rope.rotate(index, q, q, ctx)
    coords = patch_coordinates(ctx, q.device)
    emb = get_mixed_freqs(rope.freqs[:, index], t_x=coords[:, 1], t_y=coords[:, 0])
    theirs = torch.cat([q[:, :, :1], apply_rot_embed_cat(q[:, :, 1:], emb)], dim=2)
    assert (ours - theirs).abs().max() < 1e-5 and (ours - q).abs().max() > 0.1  # a rotation, and timm's
