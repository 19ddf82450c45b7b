"""`pebench profile`: params, FLOPs against timm and the analytic formula, and the measuring code."""

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import cli
from torch.utils.flop_counter import FlopCounterMode

from pebench.measure.profile import SpeedSettings, analytic_vit_macs, count_flops, param_counts, profile_models
from pebench.measure.speed import Spread, Timed, drift, interleaved_rounds, peak_forward_bytes, time_ratio
from pebench.models import build_model
from pebench.models.resolve import built

PUBLISHED_GMACS = {("deit_tiny_patch16_224", 224): 1.26, ("vit_base_patch16_384", 384): 55.54}  # timm CSVs


class _TimmAdapter(torch.nn.Module):
    """timm's model behind pebench's ``forward(x, mode)`` so the same counter applies."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, mode):
        return self.model(x)


def test_deit_tiny_flops_match_timm_analytic_and_published():
    timm_model = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    ours = build_model("tiny", "ape")
    analytic = analytic_vit_macs(192, 12, 16, 224, 1000)
    assert count_flops(_TimmAdapter(timm_model), 224, "interp") == 2 * analytic
    assert count_flops(ours, 224, "interp") == 2 * analytic
    assert abs(analytic / 1e9 - PUBLISHED_GMACS[("deit_tiny_patch16_224", 224)]) / 1.26 < 0.01


def test_vit_base_384_flops_match_published():
    model = build_model("base", "ape", img_size=384)
    gmacs = count_flops(model, 384, "interp") / 2e9
    assert gmacs == analytic_vit_macs(768, 12, 16, 384, 1000) / 1e9
    assert abs(gmacs - 55.54) / 55.54 < 0.01


def test_attention_is_counted_not_zero():
    """Some torch builds count CPU SDPA as 0 FLOPs; pebench's count must include both attention matmuls."""
    model = build_model("tiny", "none")
    tokens, dim, depth = 197, 192, 12
    attention_macs = depth * 2 * tokens * tokens * dim
    without_attention = analytic_vit_macs(192, 12, 16, 224, 1000) - attention_macs
    assert count_flops(model, 224, "interp") == 2 * (without_attention + attention_macs)
    q = torch.randn(1, 3, tokens, 64)
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, q, q)
    if counter.get_total_flops() == 0:  # this build drops fused attention: the math backend must rescue it
        assert count_flops(model, 224, "interp") > 2 * without_attention


def test_encoding_extras_are_counted():
    base = count_flops(build_model("tiny", "none"), 224, "interp")
    peg = count_flops(build_model("tiny", "peg"), 224, "interp")
    assert peg - base == 2 * 196 * 192 * 9  # one 3x3 depthwise conv on the 14x14 grid
    assert count_flops(build_model("tiny", "rpe"), 224, "interp") > base  # contextual q.r products


def test_position_params_seeds_and_their_growth():
    peg = param_counts(build_model("tiny", "peg"), 384, "interp")
    assert peg["encoding"] == 1728 + 192 and peg["encoding_at_res"] == peg["encoding"]  # a PEG does not grow
    ape = build_model("tiny", "ape")
    assert param_counts(ape, 224, "interp")["encoding"] == 192 * 14 * 14 + 192
    assert param_counts(ape, 384, "interp")["encoding_at_res"] == 192 * (24 * 24 + 1)
    table = param_counts(build_model("tiny", "relpos_table"), 384, "interp")
    assert table["encoding_at_res"] == 12 * 3 * (47 * 47 + 3)
    assert param_counts(build_model("tiny", "relpos_table"), 384, "native")["encoding_at_res"] == table["encoding"]


@pytest.mark.parametrize("spec", ["relpos_table", "cpb", "rpe:mode=bias", "alibi"])
def test_static_biases_are_reused_at_inference_and_follow_the_weights(spec):
    model = build_model("micro", spec).eval()
    component = next(iter(model.pos_encoding.values()))
    x = torch.randn(2, 3, 288, 288)
    q = torch.zeros(1, 3, 1, 32)
    ctx = model.context((18, 18), "interp")
    with torch.inference_mode():
        first = model(x, "interp")
        assert component.attention_bias(0, q, q, ctx) is component.attention_bias(0, q, q, ctx)
    with torch.enable_grad():
        trained = component.attention_bias(0, q, q, ctx)
    assert trained.requires_grad == any(p.requires_grad for p in component.parameters())
    if not list(component.parameters()):
        return
    with torch.no_grad():
        for p in component.parameters():
            p.normal_(std=1.0)
    fresh = build_model("micro", spec)
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after = model(x, "interp")
        expected = fresh.eval()(x, "interp")
    assert not torch.allclose(first, after)
    assert torch.equal(after, expected)


def test_spread_and_noise_flag():
    spread = Spread.of([10.0, 11.0, 12.0, 13.0, 20.0])
    assert spread.median == 12.0 and (spread.q1, spread.q3) == (11.0, 13.0) and spread.mean == 13.2
    assert spread.relative_iqr == pytest.approx(2 / 12)


def test_interleaved_rounds_do_not_favour_the_model_measured_later():
    """Two identical forwards on a machine that is slow for its first 40 calls (a process warming up):
    measured one after the other, the first would look ~2x slower; interleaved, they read alike."""
    import time

    calls = {"n": 0}

    def forward():
        calls["n"] += 1
        time.sleep(0.004 if calls["n"] <= 40 else 0.002)

    first, second = Timed("first", forward, 1), Timed("second", forward, 1)
    interleaved_rounds([first, second], torch.device("cpu"), rounds=6, min_block_s=0.004, max_warmup_s=0.5)
    assert 0.85 < time_ratio(first, second).median < 1.15


def test_a_drifting_reference_is_flagged():
    from pebench.measure.profile import _timing

    steady = Timed("model", lambda: None, 8, seconds_per_call=[0.1] * 6)
    busier = Timed("none", lambda: None, 8, seconds_per_call=[0.1, 0.1, 0.11, 0.12, 0.13, 0.13])
    assert drift(busier) == pytest.approx(0.3)
    timing = _timing(steady, Timed("m", lambda: None, 1, seconds_per_call=[0.01] * 6), busier)
    assert timing["reference_drift"] == pytest.approx(0.3)
    assert any("30% slower at the end" in w and "machine was busy" in w for w in timing["warnings"])
    assert not _timing(steady, steady, steady)["warnings"]


@pytest.mark.parametrize("size, spec, res, lower_bound", [
    ("tiny", "ape", 224, 2 * 197 * 768 * 4),  # one fp32 MLP hidden activation (2, 197, 4 x 192)
    ("micro", "spvit", 512, 2 * 3 * 1025 * 1025 * 4),  # SP-ViT's materialised fp32 scores (2, 3, 1025, 1025)
])
def test_cpu_memory_is_the_peak_a_forward_allocates(size, spec, res, lower_bound):
    model = build_model(size, spec, num_classes=1000).eval()
    x = torch.randn(2, 3, res, res)
    with torch.inference_mode():
        model(x, "interp")  # warmed up: the allocator reuses memory, so resident-set growth would read ~0
        peak, kind = peak_forward_bytes(lambda: model(x, "interp"), torch.device("cpu"))
    assert kind == "cpu_allocated_peak" and lower_bound <= peak < 20 * lower_bound


def test_profile_records_on_cpu_with_overhead_and_not_applicable():
    settings = SpeedSettings(batch_size=2, repeats=2, min_block_s=0.01, warmup_s=0.0)
    models = [built(spec, build_model("micro", spec, num_classes=10)) for spec in ("none", "ape")]
    records = []
    profile_models(models, [224, 256], "native", settings, records.append)
    cells = {(r["model"]["name"], r["res"]): r for r in records}
    assert set(cells) == {("none", 224), ("ape", 224), ("none", 256), ("ape", 256)}
    assert cells[("ape", 256)]["status"] == "not_applicable" and "interp" in cells[("ape", 256)]["reason"]
    none = cells[("none", 256)]
    assert none["status"] == "ok" and none["overhead_vs_none"]["time"] == 1.0
    ape = cells[("ape", 224)]
    assert ape["timing"]["img_per_s"] > 0 and ape["timing"]["latency_ms"] > 0 and ape["timing"]["repeats"] == 2
    assert ape["flops"]["encoding_gmacs"] == 0 and ape["params"]["encoding"] == 96 * 197
    assert ape["kind"] == "profile" and ape["env"]["threads"] == torch.get_num_threads()
    assert ape["memory"]["kind"] == "cpu_allocated_peak" and ape["memory"]["peak_mib"] > 0
    assert ape["settings"] | {"threads": 0} == {"mode": "native", "batch_size": 2, "dtype": "fp32", "threads": 0,
                                               "device": "cpu", "device_name": ape["env"]["device_name"],
                                               "channels_last": False, "compiled": False, "rounds": 2}
    low, high = ape["overhead_vs_none"]["time_iqr"]
    assert low <= ape["overhead_vs_none"]["time"] <= high
    json.dumps(records)  # records are plain JSON


def test_timm_model_without_weights_is_profiled_with_random_ones_and_says_so(tmp_path, monkeypatch):
    from pebench.models.resolve import profile_row

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    row = profile_row("timm:deit_tiny_patch16_224", None)
    net, meta, source = row.net, row.meta, row.source
    assert source == "timm" and meta["weights"].startswith("random (no checkpoint: looked in")
    assert meta["checkpoint_sha256"] is None and net.num_classes == 1000


def test_cli_profile_writes_records(tmp_path):
    out = tmp_path / "cost.jsonl"
    result = cli("profile", "-e", "none", "-e", "peg", "-e", "spvit", "--res", "224", "--repeats", "1",
                 "--batch-size", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["model"]["encoding"] for r in records] == ["none", "peg", "spvit"]
    assert all(r["breakdown"]["total_ms"] > 0 for r in records) and "pos / attn / rest" in result.stdout
    assert records[2]["breakdown"]["position_ms"] > 0  # SP-ViT's prior (kept after the first call, then looked up)
    assert cli("report", out, "--format", "md", "--out", tmp_path / "report").returncode == 0
    report = (tmp_path / "report" / "report.md").read_text()
    section = report[report.index("## Where the time goes (measured)"):]
    assert "| spvit | 224 |" in section and "5 explicit, 1 sdpa" in section and "| peg | 224 |" in section
    assert records[1]["params"]["encoding"] == 96 * 9 + 96
    assert "GMACs" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("--mode", "both"), "one mode at a time"),
    (("--res", "200"), "not a multiple of the patch size"),
    (("--dtype", "fp16"), "fp16 autocast is for CUDA"),
    (("-e", "pegg"), "did you mean"),
    (("--size", "huge"), "unknown model size"),
])
def test_cli_profile_bad_input(args, message, tmp_path):
    out = tmp_path / "cost.jsonl"
    result = cli("profile", "-e", "none", "--repeats", "1", *args, "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_rope_mixed_angles_follow_the_learned_frequencies_at_inference():
    model = build_model("micro", "rope:variant=mixed").eval()
    x = torch.randn(2, 3, 288, 288)
    with torch.inference_mode():
        first = model(x, "interp")
    assert model.pos_encoding["rope"]._inference_cache  # the angles were kept for reuse
    with torch.no_grad():
        model.pos_encoding["rope"].freqs.mul_(3.0)
    fresh = build_model("micro", "rope:variant=mixed")
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after = model(x, "interp")
        expected = fresh.eval()(x, "interp")
    assert not torch.allclose(first, after) and torch.equal(after, expected)


def test_the_breakdown_splits_a_forward_into_position_attention_and_rest(monkeypatch):
    """Sections add up to at most the whole; a rotation shows as position time; a model without sections has no
    block; on a GPU the clock records CUDA events and reads them once, after one synchronize."""
    from pebench.measure import breakdown as split

    x = torch.randn(2, 3, 224, 224)
    rope = split.breakdown(build_model("micro", "rope_axial", num_classes=10).eval(), x, "native",
                           SpeedSettings().autocast)
    assert rope["clock"] == "wall clock" and rope["batch_size"] == 2 and rope["calls"] == split.CALLS
    assert rope["position_ms"] > 0 and rope["attention_ms"] > 0 and rope["rest_ms"] > 0
    assert rope["position_ms"] + rope["attention_ms"] + rope["rest_ms"] == pytest.approx(rope["total_ms"])
    assert rope["position_share"] + rope["attention_share"] + rope["rest_share"] == pytest.approx(1.0)
    assert rope["attention_paths"] == {"sdpa": 6}  # micro's six blocks
    prior = build_model("micro", "spvit", num_classes=10).eval()
    assert split.breakdown(prior, x, "native", SpeedSettings().autocast)["attention_paths"] == {"explicit": 5,
                                                                                              "sdpa": 1}
    prior.attention_path = "flex"
    assert split.breakdown(prior, x, "native", SpeedSettings().autocast)["attention_paths"] == {"flex": 5, "sdpa": 1}
    assert split.breakdown(timm.create_model("test_vit"), x, "native", SpeedSettings().autocast) is None

    events, synced = [], []

    class Event:
        def __init__(self, enable_timing):
            events.append(self)

        def record(self):
            self.at = len(events)

        def elapsed_time(self, end):
            return 2.0

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: synced.append(True))
    clock = split.SectionClock(torch.device("cuda"))
    for section in ("position", "attention", "position"):
        with clock(section):
            pass
    assert clock.method == "cuda events" and not synced
    assert clock.totals_ms() == {"position": 4.0, "attention": 2.0} and synced == [True]
