"""Position scale modes (scale=S, tuned), non-square resolutions, ALiBi's slopes and bounded position terms."""

import json

import pytest
import torch
from conftest import cli, perturbed_model

from pebench.encodings import base
from pebench.encodings.alibi import alibi_slopes, power2_slopes
from pebench.errors import PebenchError
from pebench.measure.tune import candidate_scales, choose_scale, interp_scale
from pebench.models import attention, vit
from pebench.models.checkpoint import save_checkpoint
from pebench.modes import parse_mode, scale_of
from pebench.resolution import as_hw, parse_res, sort_key
from pebench.results import read_records

DATA = "synthetic:train=8,val=40"


def test_resolutions_and_modes_parse_to_canonical_labels():
    assert parse_res("384") == 384 and parse_res(384) == 384 and parse_res("384x384") == 384
    assert parse_res("384x512") == "384x512" and parse_res([384, 512]) == "384x512"
    assert as_hw("384x512") == (384, 512) and as_hw(224) == (224, 224)
    assert sorted([512, "384x512", 224], key=sort_key) == [224, "384x512", 512]
    for bad in ("0", "384x", "big", "-3", True):
        with pytest.raises(PebenchError, match="not a size in px"):
            parse_res(bad)
    assert parse_mode(" Scale=0.50 ") == "scale=0.5" and scale_of("scale=0.5") == 0.5
    assert parse_mode("tuned") == "tuned" and scale_of("interp") is None
    for bad in ("scale=0", "scale=-1", "scale=x", "scale=nan"):
        with pytest.raises(PebenchError, match="positive number"):
            parse_mode(bad)
    with pytest.raises(PebenchError, match="did you mean 'interp'"):
        parse_mode("interpp")


def test_alibi_uses_alibis_own_slopes_for_any_head_count():
    assert alibi_slopes(3) == [1 / 16, 1 / 256, 1 / 4]  # ALiBi's get_slopes(3), as the issue quotes
    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(6) == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    assert alibi_slopes(12)[:8] == alibi_slopes(8) and alibi_slopes(12)[8:] == alibi_slopes(16)[0::2][:4]
    assert power2_slopes(4) == alibi_slopes(4) and power2_slopes(3) != alibi_slopes(3)
    model = vit.build_model("micro", "alibi:slopes=power2", num_classes=10)
    assert torch.allclose(model.pos_encoding["alibi"].slopes, torch.tensor(power2_slopes(3)))


FORMULA_SPECS = ["sincos", "rope", "rope:variant=mixed", "alibi", "cpb", "spvit", "rpe", "rpe:mode=bias",
                 "lookhere"]


@pytest.mark.parametrize("spec", [*FORMULA_SPECS, "relpos_table", "fire"])
def test_scale_1_is_native(spec, images):
    model = perturbed_model(spec).eval()
    x = images(384, batch=1)
    with torch.no_grad():
        assert torch.allclose(model(x, "scale=1"), model(x, "native"), atol=1e-5)


@pytest.mark.parametrize("spec", FORMULA_SPECS)
def test_scale_g0_over_g_is_interp_for_encodings_whose_positions_are_a_formula(spec, images):
    model = perturbed_model(spec).eval()
    x = images(448, batch=1)
    with torch.no_grad():
        assert torch.allclose(model(x, "scale=0.5"), model(x, "interp"), atol=1e-5)  # 224/448
        assert (model(x, "scale=0.3") - model(x, "interp")).abs().max() > 1e-4  # another S changes the logits


@pytest.mark.parametrize("spec, reason", [("ape", "only be resampled"), ("peg", "nothing to scale"),
                                          ("none", "nothing to scale"), ("rope+ape", "only be resampled")])
def test_scale_is_not_applicable_where_nothing_scales(spec, reason):
    model = vit.build_model("micro", spec, num_classes=10)
    assert reason in model.applicability(224, "scale=0.5")
    assert model.applicability(384, "interp") is None


def test_pair_bias_in_row_chunks_equals_gathering_every_pair(monkeypatch):
    ctx = base.Context(grid=(5, 7), trained_grid=(4, 4), mode="native", num_prefix=1)
    offsets, index = base.relative_offsets(ctx.grid, torch.device("cpu"))
    per_offset = torch.randn(3, len(offsets))
    expected = torch.nn.functional.pad(per_offset[:, index], (1, 0, 1, 0), value=2.5).unsqueeze(0)
    monkeypatch.setattr(base, "PAIR_ROWS", 4)  # 35 patches: 9 chunks, the last one short
    assert torch.equal(base.pair_bias(per_offset, ctx, torch.float32, fill=2.5), expected)


@pytest.mark.parametrize("spec", ["spvit", "rpe:method=cross,on=qkv"])
def test_explicit_attention_in_query_chunks_equals_one_chunk(spec, images, monkeypatch):
    model = perturbed_model(spec).eval()
    x = images(288, batch=2)
    with torch.no_grad():
        whole = model(x, "native")
        monkeypatch.setattr(attention, "SCORE_CHUNK_BYTES", 2 * 3 * 325 * 4 * 50)  # 50 query rows per chunk
        assert torch.allclose(model(x, "native"), whole, atol=1e-5)


def test_static_biases_are_cached_within_a_byte_budget(images):
    model = perturbed_model("relpos_table").eval()
    component = model.pos_encoding["relpos_table"]
    with torch.no_grad():
        model(images(320, batch=1), "native")
        model(images(320, batch=1), "interp")
        one = 1 * 3 * 401 * 401 * 4
        assert len(component._inference_cache) == 12 and component._kept_bytes() == 12 * one  # 6 blocks x 2 modes
        model(images(224, batch=1), "native")  # fits beside them: nothing dropped
        assert len(component._inference_cache) == 18
        component.cache_budget = 8 * one
        component._inference_cache.clear()
        model(images(320, batch=1), "native")
        model(images(320, batch=1), "interp")
        assert len(component._inference_cache) == 8 and component._kept_bytes() <= component.cache_budget
        model(images(224, batch=1), "native")  # another grid: the old grid's terms make room
        assert {key[1] for key in component._inference_cache} == {(14, 14)}
        component.cache_budget = 0
        component._inference_cache.clear()
        model(images(320, batch=1), "native")
        assert not component._inference_cache


def test_budgets_follow_the_device(images, monkeypatch):
    """Unset, a component's budget is the device's: the CPU constant here, a share of the free memory on a GPU
    (asked at each miss), and explicit attention's chunks grow with a GPU's free memory too."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 << 30, 80 << 30))
    assert base.cache_budget_on(torch.device("cpu")) == base.DEFAULT_CACHE_BUDGET
    assert base.cache_budget_on(cuda) == 10 << 30
    assert attention.score_chunk_bytes(cuda) == 5 << 30 and attention.score_chunk_bytes(torch.device("cpu")) == 64 << 20
    model = perturbed_model("relpos_table").eval()
    component = model.pos_encoding["relpos_table"]
    assert component.cache_budget is None
    one = 1 * 3 * 401 * 401 * 4
    asked = []

    def device_budget(device):
        asked.append(device.type)
        return 3 * one

    monkeypatch.setattr(base, "cache_budget_on", device_budget)
    with torch.no_grad():
        model(images(320, batch=1), "native")
    assert asked == ["cpu"] * 6 and len(component._inference_cache) == 3


def test_candidate_scales_and_the_choice():
    scales = candidate_scales((14, 14), (28, 28), points=5)
    assert 1.0 in scales and 0.5 in scales and min(scales) == 0.25 and scales == sorted(scales)
    assert interp_scale((14, 14), (14, 28)) == pytest.approx(0.5**0.5)
    assert candidate_scales((14, 14), (28, 28), 5, explicit=(0.3, 0.7)) == [0.3, 0.7]
    # best top-1, then best top-5, then nearest to interp (0.5) on a log scale
    assert choose_scale({0.25: (5, 9), 0.5: (7, 9), 1.0: (7, 10)}, 0.5) == 1.0
    assert choose_scale({0.25: (7, 9), 0.7: (7, 9), 1.0: (7, 9)}, 0.5) == 0.7


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    for name in ("rope", "ape"):
        model = perturbed_model(name)
        save_checkpoint(model, root / f"{name}.safetensors",
                        {"encoding": str(model.spec), "size": "micro", "patch": 16, "train_res": 224,
                         "num_classes": 10, "data": DATA})
    return root


def test_tune_chooses_on_held_out_images_and_scores_every_mode_on_the_rest(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tune.jsonl"
    args = ["tune", "-m", checkpoints / "rope.safetensors", "-m", checkpoints / "ape.safetensors", "--res", "256x320",
            "--data", DATA, "--tune-n", "12", "--points", "3", "--workers", "0", "--out", out]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert {(r["model"]["name"].rsplit("/", 1)[-1], r["mode"]) for r in records} == {
        (m, mode) for m in ("rope.safetensors", "ape.safetensors") for mode in ("native", "interp", "tuned")}
    for record in records:
        assert record["res"] == "256x320" and record["data"]["holdout"] == 12
        assert record["data"]["positions"] == [12, 40]
        if record["status"] == "ok":
            assert record["metrics"]["n"] == 28  # never the 12 images that chose S
    tuned = next(r for r in records if r["mode"] == "tuned" and r["status"] == "ok")
    tuning = tuned["tuning"]
    assert tuning["tune_n"] == 12 and tuning["tune_positions"] == [0, 12]
    # scored on positions 12-39 only (label = position % 10): per class and per group too
    assert tuned["metrics"]["per_class"]["n"] == [2, 2] + [3] * 8
    groups = tuned["metrics"]["groups"]
    assert (groups["where"]["n"], groups["what"]["n"]) == (7, 21)
    assert groups["where"]["correct_top1"] + groups["what"]["correct_top1"] == tuned["metrics"]["correct_top1"]
    assert tuning["scale"] in tuning["scales"] and tuned["position_scale"] == [tuning["scale"]] * 2
    ratio = round(tuning["interp_scale"], 6)
    assert len(tuning["scales"]) == 4 and {1.0, ratio} <= set(tuning["scales"])  # G0/G/2 .. 1 in 3 points, G0/G
    best = max(tuning["tune_top1"])
    assert tuning["tune_top1"][tuning["scales"].index(tuning["scale"])] == best
    interp = next(r for r in records if r["mode"] == "interp" and r["model"]["name"].endswith("rope.safetensors"))
    assert interp["position_scale"] == [224 / 256, 224 / 320]
    assert "only be resampled" in next(r for r in records if r["mode"] == "tuned" and r["status"] != "ok")["reason"]
    assert "position scale S chosen" in result.stdout
    rerun = cli(*args)  # resumes: nothing left to run
    assert rerun.returncode == 0 and len(read_records(out)) == len(records)


def test_tune_refuses_a_holdout_that_leaves_nothing_to_score(checkpoints):
    result = cli("tune", "-m", checkpoints / "rope.safetensors", "--res", "224", "--data", DATA, "--tune-n", "40")
    assert result.returncode == 2 and "leaves no image to score" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--mode", "scale=abc"], "S must be a positive number"),
    (["--mode", "stretch"], "unknown --mode 'stretch'"),
    (["--res", "384x"], "--res '384x' is not a size in px"),
    (["--res", "384x500"], "--res 384x500 is not a multiple of the patch size 16"),
])
def test_eval_rejects_bad_modes_and_resolutions_in_one_line(checkpoints, args, message):
    result = cli("eval", "-m", checkpoints / "rope.safetensors", "--data", DATA, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_eval_runs_a_scale_mode_on_a_non_square_grid_and_reports_it(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval.jsonl"
    result = cli("eval", "-m", checkpoints / "rope.safetensors", "--res", "224x320", "--mode", "native",
                 "--mode", "scale=0.6", "--data", DATA, "--n", "8", "--workers", "0", "--out", out)
    assert result.returncode == 0, result.stderr
    records = {r["mode"]: r for r in read_records(out)}
    assert set(records) == {"native", "scale=0.6"} and records["scale=0.6"]["position_scale"] == [0.6, 0.6]
    assert "224x320 scale=0.6" in result.stdout.replace("\n", " ") or "scale=0.6" in result.stdout
    report = cli("report", out, "--format", "md,json")
    assert report.returncode == 0, report.stderr
    rows = json.loads((tmp_path / "report.json").read_text())
    assert {(r["res"], r["mode"], r["position_scale"]) for r in rows} == {("224x320", "native", 1.0),
                                                                         ("224x320", "scale=0.6", 0.6)}
    assert "| model | encoding | 224x320 |" in (tmp_path / "report.md").read_text()
