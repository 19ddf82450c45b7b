"""timm checkpoints: load, resize per family, compare with timm's own resized model (random weights)."""

import pytest
import timm
import torch

from pebench.errors import PebenchError
from pebench.models.timm_adapter import build_timm_model, read_state_dict
from pebench.profile import count_flops, param_counts
from pebench.zoo import resolve_model


@pytest.fixture(scope="module")
def deit_file(tmp_path_factory):
    """A randomly initialised deit_tiny saved the way fine-tuners do: a .pth nested under 'model', 10 classes."""
    torch.manual_seed(0)
    net = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10)
    with torch.no_grad():
        net.pos_embed.normal_(0, 0.5)  # a grid that matters, so a wrong resample shows in the logits
    path = tmp_path_factory.mktemp("timm") / "deit_tiny_ft.pth"
    torch.save({"model": net.state_dict(), "epoch": 3}, path)
    return path, net


def _timm_at(name, state, res, **kwargs):
    net = timm.create_model(name, pretrained=False, num_classes=state["head.weight"].shape[0], **kwargs).eval()
    net.load_state_dict(state)
    net.set_input_size(img_size=(res, res))
    return net


def test_learned_ape_interp_equals_timm_set_input_size(deit_file):
    path, reference_net = deit_file
    model, meta, source, _ = resolve_model(f"timm:deit_tiny_patch16_224@{path}")
    assert source == "timm" and meta["num_classes"] == 10 and meta["train_res"] == 224
    x = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(1))
    theirs = _timm_at("deit_tiny_patch16_224", reference_net.state_dict(), 384)
    with torch.inference_mode():
        assert (model(x, "interp") - theirs(x)).abs().max() <= 1e-4
        at_224 = torch.randn(2, 3, 224, 224)
        assert (model(at_224, "native") - reference_net.eval()(at_224)).abs().max() <= 1e-5
    assert model.applicability(384, "native") and "interp" in model.applicability(384, "native")
    assert model.applicability(224, "native") is None
    assert model.resize_api(384, "interp").startswith("resample_abs_pos_embed")


def test_profile_counts_match_timms_published_deit_tiny(deit_file):
    path, _ = deit_file
    model, *_ = resolve_model(f"timm:deit_tiny_patch16_224@{path}")
    params = param_counts(model, 384, "interp")
    assert params["encoding"] == 197 * 192 and params["encoding_at_res"] == (1 + 24 * 24) * 192
    # published (reference.md): 5.72 M params, 1.26 GMACs with the 1000-class head; ours has 10 classes
    assert abs(params["total"] + 192 * 990 - 5.72e6) / 5.72e6 < 0.005
    gmacs = count_flops(model, 224, "interp") / 2e9
    assert abs(gmacs - 1.26) / 1.26 < 0.01
    twin = model.position_free_twin()
    assert twin.position_param_count() == 0 and twin.num_classes == 10


def test_safetensors_and_plain_state_dicts_load(deit_file, tmp_path):
    from safetensors.torch import save_file

    _, net = deit_file
    plain = tmp_path / "plain.bin"
    torch.save(net.state_dict(), plain)
    saved = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(saved))
    for path in (plain, saved):
        model, _ = build_timm_model("timm:deit_tiny_patch16_224", path)
        assert torch.equal(model.net.pos_embed, net.pos_embed)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": print}, path)  # a callable needs unpickling code
    with pytest.raises(PebenchError, match="not a readable checkpoint"):
        read_state_dict(path)


def test_weights_come_from_the_local_hugging_face_cache(deit_file, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    _, net = deit_file
    repo = tmp_path / "hub" / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(repo / "snapshots" / "abc123" / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model, meta = build_timm_model("timm:deit_tiny_patch16_224")
    assert meta["checkpoint"].endswith("model.safetensors") and meta["num_classes"] == 10


def test_bad_input(deit_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    path, _ = deit_file
    with pytest.raises(PebenchError, match=r"unknown timm model 'deit_tiny_patch16_244' \(did you mean "
                                           r"'deit_tiny_patch16_224'\?\)"):
        build_timm_model("timm:deit_tiny_patch16_244", path)
    with pytest.raises(PebenchError, match=r"not a checkpoint of timm:deit_small_patch16_224: tensor "
                                           r"'cls_token' has shape \(1, 1, 192\)"):
        build_timm_model("timm:deit_small_patch16_224", path)
    with pytest.raises(PebenchError, match="not in a family pebench can resize; supported: learned APE"):
        build_timm_model("timm:resnet18", path)
    with pytest.raises(PebenchError, match="no weights for timm:deit_tiny_patch16_224: looked in Hugging Face "
                                           "cache .*; pass --checkpoint FILE"):
        build_timm_model("timm:deit_tiny_patch16_224")
