"""`pebench inspect` (attention statistics, position pictures, records, report) and `pebench finetune`."""

import json
import math

import pytest
import torch
from conftest import cli, perturbed_model

from pebench.encodings.base import Context
from pebench.measure.diagnostics import AttentionTally, bias_by_offset, embedding_similarity, probing
from pebench.models.checkpoint import save_checkpoint
from pebench.models.interface import LoadedModel
from pebench.results import read_records

DATA = "synthetic:train=8,val=6"


def _tally(spec="none") -> AttentionTally:
    net = perturbed_model(spec)
    return AttentionTally(LoadedModel("m", net, {}, "test", "m"), "native", maps=1)


def test_statistics_of_known_attention():
    """A 2x2 grid with a class token: patch queries that attend to themselves, to the class token,
    or uniformly to all five keys."""
    tally = _tally()
    ctx = Context(grid=(2, 2), trained_grid=(2, 2), mode="native", num_prefix=1)
    tally._labels = torch.tensor([7])
    uniform = torch.full((1, 3, 5, 5), 0.2)
    tally._observe(0, uniform, slice(0, 5), ctx)
    on_self = torch.zeros(1, 3, 5, 5)
    on_self[0, :, range(5), range(5)] = 1
    tally._observe(1, on_self, slice(0, 5), ctx)
    on_class_token = torch.zeros(1, 3, 4, 5)
    on_class_token[..., 0] = 1
    tally._observe(2, on_class_token, slice(1, 5), ctx)  # a chunk of the patch rows only
    layers = tally.layers()
    assert layers[0]["attention_distance"]["mean"] == pytest.approx((2 + math.sqrt(2)) / 4, abs=1e-4)
    assert layers[0]["attention_distance_fraction"]["mean"] == pytest.approx((2 + math.sqrt(2)) / 8, abs=1e-4)
    assert layers[0]["entropy"]["mean"] == pytest.approx(math.log(5), abs=1e-4)
    assert layers[0]["class_token_attention"]["per_head"] == pytest.approx([0.2] * 3)
    assert layers[1]["attention_distance"]["mean"] == 0 and layers[1]["entropy"]["mean"] == pytest.approx(0)
    assert layers[2]["class_token_attention"]["mean"] == pytest.approx(1)
    assert tally.maps == []  # class-token maps come from the last block only


def test_probing_sees_the_attention_without_changing_the_output(images):
    net = perturbed_model("relpos_table")
    x = images(224, batch=2)
    seen = []
    with torch.inference_mode():
        plain = net(x, "native")
        with probing(net, lambda block, attn, rows, ctx: seen.append((block, attn.sum(-1)))):
            probed = net(x, "native")
    assert torch.allclose(plain, probed, atol=1e-5)
    assert sorted({block for block, _ in seen}) == list(range(len(net.blocks)))
    assert all(torch.allclose(rows_sum, torch.ones_like(rows_sum)) for _, rows_sum in seen)
    assert all(block.attn.probe is None for block in net.blocks)


def test_position_pictures_per_family():
    alibi = bias_by_offset(perturbed_model("alibi"), (5, 5), "native", [0])
    centre_row = alibi["maps"][0][0][2]
    assert alibi["centre"] == [2, 2] and centre_row[2] == 0 and centre_row[0] < centre_row[1] < 0  # decays
    assert "contextual" in bias_by_offset(perturbed_model("rpe"), (5, 5), "native", [0])["reason"]
    assert bias_by_offset(perturbed_model("none"), (5, 5), "native", [0]) is None
    similarity = embedding_similarity(perturbed_model("sincos"), (6, 6), "interp")
    centre = similarity["references"][0]
    assert similarity["maps"][0][centre[0]][centre[1]] == pytest.approx(1, abs=1e-3)
    assert embedding_similarity(perturbed_model("rope"), (6, 6), "interp") is None


@pytest.fixture(scope="module")
def inspected(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    for name, spec in (("ape", "ape"), ("alibi", "alibi")):
        model = perturbed_model(spec)
        save_checkpoint(model, root / f"{name}.safetensors",
                        {"encoding": str(model.spec), "size": "micro", "patch": 16, "train_res": 224,
                         "num_classes": 10, "data": DATA})
    out = root / "diag.jsonl"
    result = cli("inspect", "-m", root / "ape.safetensors", "-m", root / "alibi.safetensors", "--res", "224",
                 "--res", "288", "--data", DATA, "--n", "3", "--maps", "2", "--batch-size", "2", "--workers", "0",
                 "--out", out, "--cache", "off")
    return root, out, result


def test_inspect_writes_diagnostics_records_and_the_report_draws_them(inspected):
    root, out, result = inspected
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert len(records) == 2 * 2 * 2 and {r["kind"] for r in records} == {"diagnostics"}
    ape_native_288 = next(r for r in records if r["model"]["encoding"] == "ape" and r["res"] == 288
                          and r["mode"] == "native")
    assert ape_native_288["status"] == "not_applicable"
    ok = [r for r in records if r["status"] == "ok"]
    assert all(r["data"]["n"] == 3 and len(r["diagnostics"]["class_token_maps"]) == 2 for r in ok)
    assert all(len(r["diagnostics"]["layers"]) == 6 for r in ok)
    alibi = next(r for r in ok if r["model"]["encoding"].startswith("alibi") and r["res"] == 288)
    assert alibi["diagnostics"]["grid"] == [18, 18] and len(alibi["diagnostics"]["bias_by_offset"]["maps"][0]) == 3
    again = cli("inspect", "-m", root / "ape.safetensors", "-m", root / "alibi.safetensors", "--res", "224",
                "--res", "288", "--data", DATA, "--n", "3", "--maps", "2", "--batch-size", "2", "--workers", "0",
                "--out", out, "--cache", "off")
    assert again.returncode == 0 and len(read_records(out)) == 8  # finished cells are not redone
    report = cli("report", out, "--out", root / "report", "--format", "md")
    assert report.returncode == 0, report.stderr
    text = (root / "report" / "report.md").read_text()
    assert "## Attention diagnostics (measured)" in text and "(plots/diagnostics.png)" in text
    maps = sorted(p.name for p in (root / "report" / "plots").glob("maps-*.png"))
    assert [name.endswith(("ape-safetensors.png", "alibi-safetensors.png")) for name in maps] == [True, True]


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n must be a positive number of images"),
    (["--mode", "tuned"], "inspect runs fixed modes"),
    (["--res", "300"], "not a multiple"),
])
def test_inspect_bad_input_exits_2_with_one_line(inspected, args, message):
    root, _, _ = inspected
    result = cli("inspect", "-m", root / "ape.safetensors", "--data", DATA, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_finetune_writes_a_checkpoint_a_suite_compares_with_zero_shot(inspected, tmp_path):
    root, _, _ = inspected
    data = "synthetic:train=32,val=8"
    tuned = tmp_path / "alibi-ft.safetensors"
    result = cli("finetune", "-m", root / "alibi.safetensors", "--res", "288", "--mode", "interp", "--data", data,
                 "--val-n", "8", "--batch-size", "16", "--out", tuned)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(tuned.with_suffix(".json").read_text())
    assert sidecar["train_res"] == 224 and sidecar["encoding"].startswith("alibi")
    finetune = sidecar["finetune"]
    assert (finetune["res"], finetune["mode"], finetune["samples"]) == (288, "interp", 32) and finetune["wall_s"] > 0
    assert not tuned.with_name(tuned.name + ".state.pt").exists()
    suite = tmp_path / "s.yaml"
    suite.write_text(f"models: ['{root / 'alibi.safetensors'}']\nresolutions: [288]\nmodes: [native, interp]\n"
                     f"finetuned: ['{tuned}']\ndata: '{data}'\nbatch_size: 8\nworkers: 0\n")
    run = cli("run", suite, "--out", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert [(r["res"], r["mode"]) for r in records if r["model"].get("finetune")] == [(288, "interp")]
    section = (tmp_path / "run" / "report.md").read_text().split("## Fine-tuned vs zero-shot (measured)")[1]
    row = next(line for line in section.split("##")[0].splitlines() if line.startswith(f"| {tuned} |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == [str(root / "alibi.safetensors"), "288", "interp"]
    assert all(cells[4:7]) and cells[7] == "32"  # fine-tuned, zero-shot native and interp; images seen


def test_finetune_bad_start_exits_2_with_one_line(inspected, tmp_path):
    root, _, _ = inspected
    result = cli("finetune", "-m", root / "ape.safetensors", "--res", "288", "--mode", "native", "--data", DATA,
                 "--out", tmp_path / "x.safetensors")
    assert result.returncode == 2 and "cannot fine-tune" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_live_table_and_plots_take_diagnostics_and_empty_groups(tmp_path):
    import io

    from rich.console import Console

    from pebench.cli.live import LiveRun
    from pebench.reports.figures import plots
    from pebench.runner.cells import expand
    from pebench.runner.suite import Diagnostics, Suite

    cells = expand(Suite(name="t", models=("m",), resolutions=(224,), modes=("native",),
                         diagnostics=Diagnostics(enabled=True)))
    live = LiveRun(Console(file=io.StringIO()), "t")
    live.started(cells, [])
    for cell in cells:  # an eval record, then a diagnostics record of the same model, resolution and mode
        live.record(cell, {"status": "ok", "metrics": {"top1": 0.5} if cell.kind == "eval" else None})
    Console(file=io.StringIO()).print(live._table())
    record = {"kind": "eval", "status": "ok", "model": {"name": "m"}, "res": 224, "mode": "native",
              "metrics": {"top1": 0.5, "top1_ci95": [0.4, 0.6], "n": 4, "groups": {"where": {"top1": None}}}}
    assert [caption for caption, _ in plots([record], tmp_path)][:2] == [
        "Accuracy vs resolution (measured)", "Accuracy by class group: where (told apart only by position) vs "
        "resolution (measured)"]
