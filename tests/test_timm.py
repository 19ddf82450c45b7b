"""timm checkpoints: load, resize per family, compare with timm's own resized model (random weights)."""

from pathlib import Path

import pytest
import timm
import torch

from pebench.errors import PebenchError
from pebench.measure.profile import count_flops, param_counts
from pebench.models.resolve import resolve_model
from pebench.models.timm_adapter import build_timm_model, read_state_dict


def sharpen(net: torch.nn.Module) -> torch.nn.Module:
    """Random weights that make the logits depend on position: timm's init (std 0.02, layer scale 1e-5,
    Swin-v2's zeroed residual post-norms, near-uniform attention) gives logits that barely depend on
    attention, where any two resizing paths agree within 1e-4."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim >= 2 and "pos_embed" not in name:
                p.normal_(0, p[0].numel() ** -0.5)
            elif name.endswith(("gamma", "gamma_1", "gamma_2")) or ("norm" in name and name.endswith("weight")):
                p.fill_(1.0)
            elif "pos_embed" in name or "rope" in name:
                p.add_(torch.randn_like(p) * 0.5)
    return net


@pytest.fixture(scope="module")
def deit_file(tmp_path_factory):
    """A randomly initialised deit_tiny saved the way fine-tuners do: a .pth nested under 'model', 10 classes."""
    torch.manual_seed(0)
    net = sharpen(timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10))
    path = tmp_path_factory.mktemp("timm") / "deit_tiny_ft.pth"
    torch.save({"model": net.state_dict(), "epoch": 3}, path)
    return path, net


def _timm_at(name, state, res, **kwargs):
    classes = (state.get("head.weight") if "head.weight" in state else state["head.fc.weight"]).shape[0]
    net = timm.create_model(name, pretrained=False, num_classes=classes, **kwargs).eval()
    net.load_state_dict(state)
    net.set_input_size(img_size=(res, res))
    return net


def test_learned_ape_interp_equals_timm_set_input_size(deit_file):
    path, reference_net = deit_file
    loaded = resolve_model(f"timm:deit_tiny_patch16_224@{path}")
    model, meta, source = loaded.net, loaded.meta, loaded.source
    assert source == "timm" and meta["num_classes"] == 10 and meta["train_res"] == 224
    x = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(1))
    theirs = _timm_at("deit_tiny_patch16_224", reference_net.state_dict(), 384)
    with torch.inference_mode():
        assert theirs(x).std() > 0.1  # logits large enough for 1e-4 to mean something
        assert (model(x, "interp") - theirs(x)).abs().max() <= 1e-4
        at_224 = torch.randn(2, 3, 224, 224)
        assert (model(at_224, "native") - reference_net.eval()(at_224)).abs().max() <= 1e-5
    assert model.applicability(384, "native") and "interp" in model.applicability(384, "native")
    assert model.applicability(224, "native") is None
    assert model.resize_api(384, "interp").startswith("resample_abs_pos_embed")


def test_profile_counts_match_timms_published_deit_tiny(deit_file):
    path, _ = deit_file
    model = resolve_model(f"timm:deit_tiny_patch16_224@{path}").net
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


def _hub_cache(tmp_path, net) -> None:
    """A local Hugging Face cache holding `net`'s weights as timm's deit_tiny_patch16_224 (revision abc123)."""
    from safetensors.torch import save_file

    repo = tmp_path / "hub" / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(repo / "snapshots" / "abc123" / "model.safetensors"))


def test_weights_come_from_the_local_hugging_face_cache(deit_file, tmp_path, monkeypatch):
    _hub_cache(tmp_path, deit_file[1])
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
    with pytest.raises(PebenchError, match=r"not in a family pebench can resize, and its class \(ResNet\) has no "
                                           r"set_input_size"):
        build_timm_model("timm:resnet18", path)
    with pytest.raises(PebenchError, match="no weights for timm:deit_tiny_patch16_224: looked in Hugging Face "
                                           "cache .*; pass --checkpoint FILE"):
        build_timm_model("timm:deit_tiny_patch16_224")


def _random_checkpoint(name, path, seed=0, num_classes=7):
    torch.manual_seed(seed)
    net = sharpen(timm.create_model(name, pretrained=False, num_classes=num_classes))
    torch.save(net.state_dict(), path)
    return net.state_dict()


ROPE_MODELS = ["vit_small_patch16_rope_224", "vit_small_patch16_rope_mixed_224", "vit_small_patch16_rope_ape_224",
               "eva02_tiny_patch14_224"]


@pytest.mark.parametrize("name", ROPE_MODELS)
def test_rope_families_match_timms_own_resized_model(name, tmp_path):
    from timm.layers.pos_embed_sincos import RotaryEmbeddingMixed

    state = _random_checkpoint(name, tmp_path / "w.pth")
    model, meta = build_timm_model(f"timm:{name}", tmp_path / "w.pth")
    patch = meta["patch"]
    res = 24 * patch
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(2))
    trained = 224 // patch
    has_ape = model.net.pos_embed is not None
    for mode in ("native", "interp"):
        if mode == "native" and has_ape:
            assert "learned APE" in model.applicability(res, mode)
            continue
        mixed = "mixed" in name
        kwargs = {} if mixed else {"ref_feat_shape": (trained, trained) if mode == "interp" else None}
        theirs = _timm_at(name, state, res, **kwargs)
        if mixed and mode == "interp":
            assert isinstance(theirs.rope, RotaryEmbeddingMixed)
            theirs.rope.t_x.mul_(trained / 24)  # timm's cached grid, scaled by hand: G0 / G
            theirs.rope.t_y.mul_(trained / 24)
        with torch.inference_mode():
            reference = theirs(x)
            diff = (model(x, mode) - reference).abs().max().item()
        assert reference.std() > 0.1 and diff <= 1e-4, (mode, diff)
    with torch.inference_mode():  # the modes differ off-grid, so each test above compared something
        if not has_ape:
            assert (model(x, "native") - model(x, "interp")).abs().max() > 1e-3


def test_clamped_index_equals_timms_on_the_trained_grid_and_clamps_beyond():
    from timm.models.beit import gen_relative_position_index

    from pebench.models.timm_families import clamped_relative_index

    assert torch.equal(clamped_relative_index((14, 14), (14, 14)), gen_relative_position_index((14, 14)))
    index = clamped_relative_index((24, 24), (14, 14))
    trained = gen_relative_position_index((14, 14))
    assert index.max() == trained.max() and index[0, 0] == trained[0, 0]
    # token (0, 0) vs token (0, 20): offset -20 columns clamps to -13, the trained table's edge
    assert index[1, 1 + 20] == trained[1, 1 + 13]
    # within the trained range offsets keep their own entries
    assert index[1 + 24 * 2 + 3, 1 + 24 * 5 + 7] == trained[1 + 14 * 2 + 3, 1 + 14 * 5 + 7]


@pytest.mark.slow
def test_beit_table_interp_equals_timm_and_native_clamps(tmp_path):
    name = "beit_base_patch16_224"
    state = _random_checkpoint(name, tmp_path / "beit.pth")
    model, meta = build_timm_model(f"timm:{name}", tmp_path / "beit.pth")
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(3))
    theirs = _timm_at(name, state, 384)
    with torch.inference_mode():
        reference = theirs(x)
        first = model(x, "interp")
        native = model(x, "native")
        again = model(x, "interp")  # back from native: starts from the trained tables, nothing compounds
    assert reference.std() > 0.1 and (first - reference).abs().max() <= 1e-4
    assert torch.equal(first, again) and (native - first).abs().max() > 1e-3
    heads, table_rows = 12, 27 * 27 + 3
    assert model.position_param_count() == 12 * table_rows * heads
    assert model.position_values_at(384, "interp") == 12 * (47 * 47 + 3) * heads
    assert model.position_values_at(384, "native") == 12 * table_rows * heads


def test_relpos_mlp_native_is_timms_set_input_size_and_interp_scales_offsets(tmp_path):
    name = "vit_relpos_small_patch16_224"
    state = _random_checkpoint(name, tmp_path / "relpos.pth")
    model, _ = build_timm_model(f"timm:{name}", tmp_path / "relpos.pth")
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(4))
    theirs = _timm_at(name, state, 384)
    with torch.inference_mode():
        native_reference = theirs(x)
        interp = model(x, "interp")
        native = model(x, "native")  # same grid, other mode: the integer offsets come back
        offsets = torch.arange(-23, 24, dtype=torch.float32) * 14 / 24
        coords = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)
        for block in theirs.blocks:
            block.attn.rel_pos.rel_coords_log.copy_(torch.sign(coords) * torch.log1p(coords.abs()))
        interp_reference = theirs(x)
    assert native_reference.std() > 0.1
    assert (native - native_reference).abs().max() <= 1e-4 and (interp - interp_reference).abs().max() <= 1e-4
    assert (native - interp).abs().max() > 1e-3


def test_twins_peg_runs_any_grid_the_same_in_both_modes(tmp_path):
    name = "twins_pcpvt_small"
    state = _random_checkpoint(name, tmp_path / "twins.pth")
    model, meta = build_timm_model(f"timm:{name}", tmp_path / "twins.pth")
    assert meta["patch"] == 32 and model.interp_is_native
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(5))
    theirs = timm.create_model(name, pretrained=False, num_classes=7).eval()
    theirs.load_state_dict(state)
    twin = model.position_free_twin()
    with torch.inference_mode():
        reference = theirs(x)
        assert reference.std() > 0.1
        assert (model(x, "native") - reference).abs().max() <= 1e-4
        assert torch.equal(model(x, "native"), model(x, "interp"))
        assert twin(x, "native").shape == reference.shape
    assert twin.position_param_count() == 0 < model.position_param_count()


@pytest.mark.slow
def test_swinv2_cpb_interp_is_timms_default_and_native_keeps_trained_units(tmp_path):
    name = "swinv2_tiny_window8_256"
    state = _random_checkpoint(name, tmp_path / "swin.pth")
    model, meta = build_timm_model(f"timm:{name}", tmp_path / "swin.pth")
    assert meta["train_res"] == 256 and meta["patch"] == 32
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(6))
    interp_reference = _timm_at(name, state, 384)
    # timm's own way to keep offsets in trained units: declare the trained window as the pretrained one
    native_reference = timm.create_model(name, pretrained=False, num_classes=7, pretrained_window_sizes=(8, 8, 8, 8))
    native_reference.load_state_dict(state)
    native_reference.eval().set_input_size(img_size=(384, 384))
    with torch.inference_mode():
        expected_interp, expected_native = interp_reference(x), native_reference(x)
        interp, native = model(x, "interp"), model(x, "native")
    assert expected_interp.std() > 0.1
    assert (interp - expected_interp).abs().max() <= 1e-4 and (native - expected_native).abs().max() <= 1e-4
    assert (native - interp).abs().max() > 1e-3
    assert model.position_free_twin().position_param_count() == 0 < model.position_param_count()


@pytest.mark.slow
def test_eval_profile_and_suites_accept_timm_specs(deit_file, tmp_path, monkeypatch):
    from test_run import cli

    from pebench.results import read_records

    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))
    path, _ = deit_file
    out = tmp_path / "eval.jsonl"
    result = cli("eval", "--model", "timm:deit_tiny_patch16_224", "--checkpoint", path, "--data", "synthetic:val=10",
                 "--res", "224", "--res", "384", "--out", out)
    assert result.returncode == 0, result.stderr
    records = {(r["res"], r["mode"]): r for r in read_records(out)}
    assert records[(384, "native")]["status"] == "not_applicable"
    assert records[(384, "interp")]["resize_api"].startswith("resample_abs_pos_embed")
    assert records[(384, "interp")]["model"]["source"] == "timm" and records[(384, "interp")]["metrics"]["n"] == 10
    profiled = tmp_path / "profile.jsonl"
    result = cli("profile", "--model", f"timm:deit_tiny_patch16_224@{path}", "--res", "384", "--repeats", "1",
                 "--batch-size", "1", "--out", profiled)
    assert result.returncode == 0, result.stderr
    (record,) = read_records(profiled)
    assert record["params"]["encoding_at_res"] == 577 * 192 and record["overhead_vs_none"]["time"] > 0
    suite = tmp_path / "timm.yaml"
    suite.write_text(f"models: ['timm:deit_tiny_patch16_224@{path}']\nresolutions: [224]\nmodes: [interp]\n"
                     "data: 'synthetic:val=10'\n")
    result = cli("run", suite, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    two_timm_models = ["--model", "timm:deit_tiny_patch16_224", "--model", "timm:deit_small_patch16_224"]
    assert cli("eval", *two_timm_models, "--checkpoint", path, "--res", "224").returncode == 2


@pytest.mark.parametrize("name, res, gmacs, params_m", [
    ("deit_small_patch16_224", 224, 4.61, 22.05),  # published (reference.md, timm's benchmark CSVs)
    ("vit_base_patch16_384", 384, 55.54, 86.86),
])
@pytest.mark.slow
def test_profile_matches_published_compute(name, res, gmacs, params_m, tmp_path):
    net = timm.create_model(name, pretrained=False)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    model, meta = build_timm_model(f"timm:{name}", tmp_path / "w.pth")
    assert meta["train_res"] == res and meta["num_classes"] == 1000
    assert abs(param_counts(model, res, "interp")["total"] / 1e6 - params_m) / params_m < 0.005
    assert abs(count_flops(model, res, "interp") / 2e9 - gmacs) / gmacs < 0.01


@pytest.mark.parametrize("name", ["deit3_small_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_other_ape_layouts_interpolate_like_timm(name, tmp_path):
    """DeiT-III: no position for the class token (no_embed_class); distilled DeiT: two prefix tokens."""
    state = _random_checkpoint(name, tmp_path / "w.pth")
    model, _ = build_timm_model(f"timm:{name}", tmp_path / "w.pth")
    prefix_with_position, dim = (0, 384) if name.startswith("deit3") else (2, 192)
    assert model.position_param_count() == (prefix_with_position + 196) * dim
    x = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        reference = _timm_at(name, state, 448)(x)
        assert reference.std() > 0.1 and (model(x, "interp") - reference).abs().max() <= 1e-4


def test_cli_bad_timm_input_is_one_line(deit_file):
    from test_run import cli

    path, _ = deit_file
    for args, message in ((["--model", "timm:deit_tiny_patch16_244", "--checkpoint", path], "did you mean"),
                          (["--model", "timm:resnet18", "--checkpoint", path], "not in a family pebench can resize")):
        result = cli("eval", *args, "--res", "224")
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_pretrained_weights_come_through_the_hub_cache_and_say_where_from(deit_file, tmp_path, monkeypatch,
                                                                         private_cache):
    from conftest import cli

    from pebench.results import read_records

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cache answers; nothing reaches a network
    with pytest.raises(PebenchError, match=r"--pretrained: the weights of timm/deit_tiny_patch16_224.fb_in1k are not "
                                           r"in the cache .* \(HF_HUB_OFFLINE is set\); run once with a network"):
        build_timm_model("timm:deit_tiny_patch16_224", Path("hf-hub"))
    _hub_cache(tmp_path, deit_file[1])
    _, meta = build_timm_model("timm:deit_tiny_patch16_224", Path("hf-hub"))
    assert meta["weights"] == "pretrained"
    assert meta["weights_source"] == "hf-hub:timm/deit_tiny_patch16_224.fb_in1k/model.safetensors@abc123"
    out = tmp_path / "r.jsonl"
    result = cli("eval", "-m", "timm:deit_tiny_patch16_224", "--pretrained", "--res", 224, "--mode", "native",
                 "--n", 4, "--data", "synthetic:train=8,val=4", "--workers", 0, "--out", out)
    assert result.returncode == 0, result.stderr
    (record,) = read_records(out)
    assert record["model"]["weights_source"].startswith("hf-hub:timm/deit_tiny_patch16_224.fb_in1k")
    assert record["model"]["checkpoint_sha256"] == meta["checkpoint_sha256"]
    alone = cli("eval", "-m", "sincos", "--pretrained")
    assert alone.returncode == 2 and "--pretrained applies to --model timm:NAME" in alone.stderr


def test_an_unlisted_timm_vit_is_run_as_what_its_class_says(tmp_path, private_cache):
    """timm's test_vit matches no family's names, but it is a plain VisionTransformer with a learned pos_embed:
    interp resamples the grid through dynamic_img_size, native off the grid is not applicable (a class with no
    way to resize, a CNN, is refused: test_bad_input)."""
    from conftest import cli

    from pebench.results import read_records

    torch.manual_seed(0)
    path = tmp_path / "test_vit.pth"
    torch.save(timm.create_model("test_vit", pretrained=False, num_classes=10).state_dict(), path)
    out = tmp_path / "r.jsonl"
    result = cli("eval", "-m", f"timm:test_vit@{path}", "--res", 160, "--res", 224, "--n", 4,
                 "--data", "synthetic:train=8,val=4", "--workers", 0, "--out", out)
    assert result.returncode == 0, result.stderr
    cells = {(r["res"], r["mode"]): r for r in read_records(out)}
    assert cells[224, "interp"]["status"] == "ok"
    assert cells[224, "interp"]["resize_api"] == "resample_abs_pos_embed (bicubic) via dynamic_img_size"
    assert cells[224, "native"]["status"] == "not_applicable"
    _, meta = build_timm_model("timm:test_vit", path)
    assert meta["family"] == "learned APE (by its timm class)"


def test_an_unlisted_timm_class_with_set_input_size_runs_interp_through_it(tmp_path, private_cache):
    """test_maxvit (MaxxVit) is in no family: interp is timm's own set_input_size, each resolution from the
    trained tensors (a visit to 224 leaves 160 as trained), native off the grid says pebench cannot tell what it
    means, and the profile measures it without a ratio to `none` (no twin can be built)."""
    from conftest import cli

    from pebench.results import read_records

    torch.manual_seed(0)
    reference = sharpen(timm.create_model("test_maxvit", pretrained=False, num_classes=10)).eval()
    path = tmp_path / "maxvit.pth"
    torch.save(reference.state_dict(), path)
    model, meta = build_timm_model("timm:test_maxvit", path)
    assert meta["family"] == "set_input_size (by its timm class MaxxVit)" and model.img_size == 160
    x, at_160 = torch.randn(2, 3, 224, 224), torch.randn(2, 3, 160, 160)
    with torch.inference_mode():
        trained = reference(at_160)
        ours = model(x, "interp")
        reference.set_input_size(img_size=(224, 224))
        assert reference(x).std() > 0.1 and torch.equal(ours, reference(x))
        assert torch.equal(model(at_160, "native"), trained)
    assert "cannot tell what native means for timm's MaxxVit" in model.applicability(224, "native")
    assert model.resize_api(224, "interp").startswith("MaxxVit.set_input_size")
    assert model.position_free_twin() is None
    assert 0 < model.position_param_count() < model.position_values_at(224, "interp")

    out = tmp_path / "r.jsonl"
    result = cli("eval", "-m", f"timm:test_maxvit@{path}", "--res", 160, "--res", 224, "--n", 4,
                 "--data", "synthetic:train=8,val=4", "--workers", 0, "--out", out)
    assert result.returncode == 0, result.stderr
    cells = {(r["res"], r["mode"]): r for r in read_records(out)}
    assert cells[224, "interp"]["status"] == "ok" and cells[224, "native"]["status"] == "not_applicable"
    assert cells[224, "interp"]["resize_api"].startswith("MaxxVit.set_input_size")
    profile = tmp_path / "p.jsonl"
    result = cli("profile", "-m", f"timm:test_maxvit@{path}", "--res", 224, "--repeats", 2, "--batch-size", 1,
                 "--out", profile)
    assert result.returncode == 0, result.stderr
    (record,) = read_records(profile)
    assert record["status"] == "ok" and record["overhead_vs_none"] is None and record["flops"]["gmacs"] > 0
    assert record["flops"]["encoding_gmacs"] is None and record["timing"]["img_per_s"] > 0
    assert "no none twin" in result.stdout
    report = cli("report", profile, "--format", "md", "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    (row,) = [line for line in (tmp_path / "report" / "report.md").read_text().splitlines() if "test_maxvit@" in line]
    assert row.endswith("| - |")  # no ratio to `none`, and no made-up one
