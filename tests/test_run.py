"""`pebench run`, `report` and `check` on small random-weight checkpoints and a tiny synthetic split."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, perturbed_model

from pebench.models.checkpoint import save_checkpoint
from pebench.reports.check import significant_drop
from pebench.results import read_records

DATA = "synthetic:train=8,val=30"



@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Two checkpoints and a suite over them; a private render cache."""
    root = tmp_path_factory.mktemp("run")
    os.environ["PEBENCH_CACHE"] = str(root / "cache")
    for name, spec in (("ape", "ape"), ("peg", "peg")):
        model = perturbed_model(spec)
        save_checkpoint(model, root / f"{name}.safetensors",
                        {"encoding": str(model.spec), "size": "micro", "patch": 16, "train_res": 224,
                         "num_classes": 10, "data": DATA})
    suite = root / "small.yaml"
    suite.write_text(f"models: ['{root / 'ape.safetensors'}', '{root / 'peg.safetensors'}']\n"
                     f"resolutions: [224, 384]\nmodes: [native, interp]\ndata: '{DATA}'\nbatch_size: 16\n"
                     "published: [cpvt]\n")
    yield root, suite
    os.environ.pop("PEBENCH_CACHE", None)


@pytest.fixture(scope="module")
def finished(workspace):
    root, suite = workspace
    out = root / "out"
    result = cli("run", suite, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_writes_one_keyed_record_per_cell_and_the_report(finished):
    from pebench.results import unpack_hits

    out, result = finished
    records = read_records(out / "results.jsonl")
    for m in (r["metrics"] for r in records if r["status"] == "ok"):
        assert sum(unpack_hits(m["image_hits"], m["n"])) == m["correct_top1"]
    assert len(records) == 2 * 2 * 2 and len({r["key"] for r in records}) == 8
    assert {r["suite"] for r in records} == {"small"}
    ape_native = [r for r in records if r["model"]["name"].endswith("ape.safetensors") and r["mode"] == "native"]
    assert {r["status"] for r in ape_native} == {"ok", "not_applicable"}  # APE off its grid needs interpolation
    # interp cells that run the native computation (PEG anywhere, everything at 224) reuse the native result
    reused = {(r["model"]["name"].rsplit("/", 1)[-1], r["res"]) for r in records if r.get("measured_as") == "native"}
    assert reused == {("ape.safetensors", 224), ("peg.safetensors", 224), ("peg.safetensors", 384)}
    for r in records:  # every cell scored 30 images, 3 of each class: 9 where, 21 what
        if r["status"] == "ok":
            groups = r["metrics"]["groups"]
            assert r["metrics"]["per_class"]["n"] == [3] * 10 and (groups["where"]["n"], groups["what"]["n"]) == (9, 21)
            assert sum(r["metrics"]["per_class"]["correct_top1"]) == r["metrics"]["correct_top1"]
            assert groups["where"]["correct_top1"] + groups["what"]["correct_top1"] == r["metrics"]["correct_top1"]
        assert r["data"]["class_groups"] == {"where": [0, 1, 2], "what": [3, 4, 5, 6, 7, 8, 9]}
        assert len(r["data"]["class_names"]) == 10
    native = {(r["model"]["name"], r["res"]): r["metrics"] for r in records if r["mode"] == "native"}
    assert all(r["metrics"] == native[r["model"]["name"], r["res"]] for r in records if r.get("measured_as"))
    for name in ("report.md", "report.html", "report.csv", "report.json", "plots/accuracy.png"):
        assert (out / name).exists(), name
    assert "report:" in result.stdout


def test_rerun_skips_finished_cells_and_redoes_only_missing_ones(workspace, finished):
    root, suite = workspace
    out = root / "resume"
    shutil.copytree(finished[0], out)
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # a kill after 5 records, in the middle of writing the sixth
    path.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    result = cli("run", suite, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "resuming: 5 of 8 cells are finished" in result.stdout
    records = read_records(path)
    assert len(records) == 8 and len({r["key"] for r in records}) == 8
    assert [json.loads(line)["key"] for line in lines[:5]] == [r["key"] for r in records[:5]]  # untouched
    again = cli("run", suite, "--out", out)
    assert "all 8 cells are finished" in again.stdout and len(read_records(path)) == 8


def test_results_of_another_config_are_not_mixed(workspace, finished):
    root, suite = workspace
    out = root / "other"
    shutil.copytree(finished[0], out)
    changed = root / "changed.yaml"
    changed.write_text(suite.read_text().replace("batch_size: 16", "batch_size: 16\nn: 20"))
    before = (out / "results.jsonl").read_bytes()
    result = cli("run", changed, "--out", out)
    assert result.returncode == 2 and "another suite config or pebench version" in result.stderr
    assert "Traceback" not in result.stderr and (out / "results.jsonl").read_bytes() == before


def test_shards_merge_to_the_same_cells(workspace, finished):
    root, suite = workspace
    out = root / "sharded"
    for shard in ("1/2", "2/2"):
        result = cli("run", suite, "--out", out, "--shard", shard)
        assert result.returncode == 0, result.stderr
    assert len(read_records(out / "results.shard-1-of-2.jsonl")) == 4
    report = cli("report", out, "--format", "json")
    assert report.returncode == 0, report.stderr
    report_rows = json.loads((out / "report.json").read_text())
    merged = {(r["model"], r["res"], r["mode"]): r["correct_top1"] for r in report_rows}
    whole = {(r["model"]["name"], r["res"], r["mode"]): (r["metrics"] or {}).get("correct_top1")
             for r in read_records(finished[0] / "results.jsonl")}
    assert merged == whole


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_accuracy(workspace, finished):
    root, suite = workspace
    out = root / "distributed"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--master-port", "29533", "-m", "pebench.cli", "run", str(suite), "--out", str(out)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    single = {r["key"]: r["metrics"] for r in read_records(finished[0] / "results.jsonl")}
    records = read_records(out / "results.jsonl")
    assert len(records) == len(single)  # rank 0 alone wrote, once per cell
    for r in records:
        if r["metrics"]:
            assert r["metrics"]["correct_top1"] == single[r["key"]]["correct_top1"]
            assert r["metrics"]["per_class"] == single[r["key"]]["per_class"]
            assert r["metrics"]["groups"] == single[r["key"]]["groups"]
            assert r["metrics"]["image_hits"] == single[r["key"]]["image_hits"]  # interleaved back in order
            assert r["metrics"]["n"] == 30


def test_markdown_report_has_the_seed_table_shape(finished):
    text = (finished[0] / "report.md").read_text()
    assert "## Top-1 %, native (measured)" in text and "## Top-1 %, interp (measured)" in text
    assert "| model | encoding | 224 | 384 |" in text
    assert "n/a: " in text  # APE native at 384
    assert "## Published: CPVT" in text and "Not measured by pebench" in text
    assert "![Accuracy vs resolution (measured)](plots/accuracy.png)" in text
    assert "## Accuracy by class group: where, interp (measured)" in text and "(plots/accuracy-where.png)" in text


def test_plots_give_every_model_its_own_line_style():
    from pebench.reports.axes import line_styles

    styles = line_styles([f"model{i}" for i in range(30)])
    assert len({(s["color"], s["marker"], s["linestyle"]) for s in styles.values()}) == 30
    assert len({s["color"] for s in list(styles.values())[:20]}) == 20


def test_html_report_renders_in_a_real_browser(finished, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium here (.ci/run installs Debian's)")
    html = finished[0] / "report.html"
    assert "http" not in html.read_text().split("<body>")[1].split("Measured:")[0]  # nothing fetched from a CDN
    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text().replace(
        "</body>", "<script>window.onload=()=>{const i=[...document.images];document.title="
        "`tables=${document.querySelectorAll('table').length} images=${i.length} "
        "decoded=${i.filter(x=>x.complete&&x.naturalWidth>100).length}`}</script></body>"))
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                             "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1000:]
    title = result.stdout.split("<title>")[1].split("</title>")[0]
    tables, images, decoded = (int(part.split("=")[1]) for part in title.split())
    assert tables >= 3 and images >= 1 and decoded == images
    shot = tmp_path / "report.png"  # what a reader sees: a page of tables and figures, not a blank one
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--window-size=1300,3200", f"--screenshot={shot}", html.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3200, 1300)
    assert 0.03 < (pixels.min(axis=2) < 0.9).mean() < 0.6  # ink: text, table rules and plot lines
    assert ((pixels.max(axis=2) - pixels.min(axis=2)) > 0.3).mean() > 0.001  # the plots' colours


def test_check_passes_on_the_same_results_and_fails_on_a_real_drop(finished, tmp_path):
    out = finished[0]
    baseline = tmp_path / "baseline.json"
    made = cli("check", out / "results.jsonl", "--baseline", baseline, "--update-baseline")
    assert made.returncode == 0, made.stderr
    same = cli("check", out / "results.jsonl", "--baseline", baseline)
    assert same.returncode == 0 and "check passed" in same.stdout
    data = json.loads(baseline.read_text())
    cell = next(c for c in data["cells"] if c["status"] == "ok")
    cell["correct"], cell["value"] = 30, 1.0  # the baseline claims every image was right
    baseline.write_text(json.dumps(data))
    failed = cli("check", out / "results.jsonl", "--baseline", baseline)
    assert failed.returncode == 1 and "regressed" in failed.stdout and "check failed" in failed.stdout


def test_check_reports_missing_cells_and_environment_changes(finished, tmp_path):
    out = finished[0]
    baseline = tmp_path / "baseline.json"
    cli("check", out / "results.jsonl", "--baseline", baseline, "--update-baseline")
    data = json.loads(baseline.read_text())
    data["cells"].append(dict(data["cells"][0], model="vanished"))
    data["env"]["torch"] = "0.0.1"
    baseline.write_text(json.dumps(data))
    result = cli("check", out / "results.jsonl", "--baseline", baseline)
    assert result.returncode == 1 and "missing" in result.stdout
    assert "torch differs: baseline 0.0.1" in result.stdout


def test_sample_size_decides_what_counts_as_a_drop():
    assert not significant_drop(180, 200, 178, 200)  # 1 point on 200 images: chance
    assert significant_drop(180, 200, 160, 200)  # 10 points on 200 images: not chance
    assert significant_drop(9000, 10000, 8850, 10000)  # 1.5 points on 10,000 images


@pytest.mark.parametrize("args, message", [
    (["check", "{out}/results.jsonl", "--baseline", "{tmp}/absent.json"], "does not exist; create it with"),
    (["check", "{out}/results.jsonl", "--baseline", "{tmp}/garbage.json"], "is not readable JSON"),
    (["check", "{out}/results.jsonl", "--baseline", "{tmp}/empty.json"], "the baseline has no cells"),
    (["check", "{out}/results.jsonl", "--baseline", "{tmp}/other_n.json"], "results from another suite version"),
    (["report", "{tmp}/nothing.jsonl"], "does not exist"),
    (["report", "{out}", "--format", "pdf"], "unknown report format 'pdf'"),
    (["run", "{tmp}/absent.yaml"], "cannot read suite"),
    (["run", "{suite}", "--shard", "3/2"], "is not i/n"),
])
def test_bad_input_exits_2_with_one_line(workspace, finished, tmp_path, args, message):
    root, suite = workspace
    out = finished[0]
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "empty.json").write_text(json.dumps({"pebench_baseline": 1, "metric": "top1", "cells": []}))
    cli("check", out / "results.jsonl", "--baseline", tmp_path / "other_n.json", "--update-baseline")
    other = json.loads((tmp_path / "other_n.json").read_text())
    for cell in other["cells"]:
        cell["n"] = 999
    (tmp_path / "other_n.json").write_text(json.dumps(other))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli(*[a.format(out=out, tmp=tmp_path, suite=suite) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing new or partial left behind


def test_validate_prints_the_cell_count(workspace):
    _, suite = workspace
    result = cli("validate", suite)
    assert result.returncode == 0 and "8 cells (8 eval, 0 profile)" in result.stdout
    assert cli("validate", Path(suite).with_name("nope.yaml")).returncode == 2
    with_diagnostics = Path(suite).with_name("inspected.yaml")
    with_diagnostics.write_text(Path(suite).read_text() + "\ndiagnostics: true\n")
    validated = cli("validate", with_diagnostics).stdout
    counts = re.search(r"(\d+) cells \(8 eval, 0 profile, (\d+) diagnostics\)", validated)
    assert counts and int(counts[1]) == 8 + int(counts[2]) and int(counts[2]) > 0


COMMITTED = Path(__file__).parent.parent / "results" / "baselines" / "quick.json"


def _records_of(baseline: dict) -> list[dict]:
    """Eval records holding exactly the baseline's counts, overall and per class group."""
    from pebench.measure.evaluate import wilson_interval

    def top1(n: int, correct: int) -> dict:
        return {"n": n, "correct_top1": correct, "top1": correct / n, "top1_ci95": list(wilson_interval(correct, n))}

    records = []
    for cell in baseline["cells"]:
        ok = cell["status"] == "ok"
        metrics = top1(cell["n"], cell["correct"]) | {
            "correct_top5": cell["n"], "top5": 1.0,
            "groups": {name: top1(g["n"], g["correct"]) for name, g in cell["groups"].items()}} if ok else None
        records.append({"schema_version": 2, "kind": "eval", "model": {"name": cell["model"], "encoding": "?"},
                        "res": cell["res"], "mode": cell["mode"], "status": cell["status"], "reason": None,
                        "data": {"spec": cell["data"], "n": cell["n"]}, "metrics": metrics, "device": "cpu",
                        "env": baseline["env"] | {"machine": "x", "threads": 2}})
    return records


def _gate(records: list[dict], baseline: Path, tmp_path, *flags) -> tuple[subprocess.CompletedProcess, dict]:
    """The command's result, and each row's status by label (pebench.reports.check.compare, as CI runs it)."""
    from pebench.reports.check import compare, read_baseline

    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = compare(records, read_baseline(baseline, "top1"), 1.0, baseline, 3.0)
    return (cli("check", results, "--baseline", baseline, "--max-drop", "1.0", "--max-group-drop", "3.0", *flags),
            {row.label: row.status for row in rows})


def _lose_where_hits(record: dict, count: int) -> None:
    """``count`` of the record's right *where* images turn wrong: a position signal lost, nothing else."""
    where, metrics = record["metrics"]["groups"]["where"], record["metrics"]
    for m in (where, metrics):
        m["correct_top1"] -= count
        m["top1"] = m["correct_top1"] / m["n"]


def test_the_committed_quick_baseline_covers_every_family_and_its_where_classes(tmp_path):
    from pebench.encodings import REGISTRY
    from pebench.zoo import ZOO

    baseline = json.loads(COMMITTED.read_text())
    assert {ZOO[c["model"]].split(":")[0] for c in baseline["cells"]} == set(REGISTRY)
    assert all(c["groups"]["where"]["n"] == 60 for c in baseline["cells"] if c["status"] == "ok")
    passed, rows = _gate(_records_of(baseline), COMMITTED, tmp_path, "--both-ways")
    assert passed.returncode == 0 and "check passed" in passed.stdout and set(rows.values()) == {"unchanged"}


@pytest.mark.parametrize("model", ["none", "ape", "sincos", "irpe", "relpos_table", "cpb", "spvit", "peg_x5",
                                   "rope_axial", "alibi", "lookhere", "fire"])
def test_a_lost_position_signal_fails_the_gate_in_every_family(model, tmp_path):
    """Half of a cell's right *where* images (at least 3) turn wrong; the gate fails on its *where* row. `none` and
    ALiBi are at chance on *where* (10 and 19 of 60): they have no signal to lose, so for them all their *where*
    hits go (half of them would be within chance on 60 images)."""
    records = _records_of(json.loads(COMMITTED.read_text()))
    record = next(r for r in records if r["model"]["name"] == model and r["res"] == 224 and r["mode"] == "native")
    hits = record["metrics"]["groups"]["where"]["correct_top1"]
    _lose_where_hits(record, hits if model in ("none", "alibi") else max(3, -(-hits // 2)))
    failed, rows = _gate(records, COMMITTED, tmp_path)
    assert failed.returncode == 1 and "check failed" in failed.stdout
    assert rows[f"{model} @ 224 native [where]"] == "regressed"


def test_the_where_gate_sees_a_loss_the_top1_gate_does_not(tmp_path):
    """ape at 224: 199/200 top-1, 60/60 where; 3 where images lost read -1.5 points of top-1 (not significant)
    but -5 points of where."""
    records = _records_of(json.loads(COMMITTED.read_text()))
    record = next(r for r in records if r["model"]["name"] == "ape" and r["res"] == 224 and r["mode"] == "native")
    _lose_where_hits(record, 3)
    failed, rows = _gate(records, COMMITTED, tmp_path)
    assert failed.returncode == 1
    assert rows["ape @ 224 native"] == "unchanged" and rows["ape @ 224 native [where]"] == "regressed"


def test_native_computing_interp_fails_the_two_sided_gate(tmp_path, monkeypatch):
    """A real regression: a bug that makes native mode run interp's positions lifts rope_axial at 384 native
    from 91% to 100%. The one-sided gate calls that an improvement and passes; --both-ways fails."""
    import pebench.encodings.base as base
    from pebench import modes

    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base, "position_scale", lambda mode, trained, grid: modes.position_scale(
        "interp" if mode == "native" else mode, trained, grid))
    out = tmp_path / "bug.jsonl"
    assert cli("eval", "-m", "rope_axial", "--res", 384, "--mode", "native", "--data", "synthetic:val=200",
               "--batch-size", 50, "--workers", 0, "--out", out).returncode == 0
    baseline = json.loads(COMMITTED.read_text())
    baseline["cells"] = [c for c in baseline["cells"] if (c["model"], c["res"], c["mode"]) == ("rope_axial", 384,
                                                                                              "native")]
    (tmp_path / "one.json").write_text(json.dumps(baseline))
    one_sided = cli("check", out, "--baseline", tmp_path / "one.json", "--max-group-drop", "3.0")
    assert one_sided.returncode == 0 and "improved" in one_sided.stdout
    both_ways = cli("check", out, "--baseline", tmp_path / "one.json", "--max-group-drop", "3.0", "--both-ways")
    assert both_ways.returncode == 1 and "an improvement fails with --both-ways" in both_ways.stdout


@pytest.mark.slow
def test_profile_cells_give_the_cost_table_and_plots(workspace, tmp_path):
    root, _ = workspace
    suite = tmp_path / "cost.yaml"
    suite.write_text(f"models: ['{root / 'peg.safetensors'}']\nresolutions: [224, 256]\nmodes: [native]\n"
                     f"data: '{DATA}'\nprofile: true\nprofile_repeats: 1\nprofile_batch_size: 1\n")
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out)
    assert result.returncode == 0, result.stderr
    records = read_records(out / "results.jsonl")
    assert [r["kind"] for r in records].count("profile") == 2
    text = (out / "report.md").read_text()
    assert "## Cost (measured)" in text and "| model | params M | PE params @224 | PE params @256 |" in text
    assert (out / "plots" / "cost.png").exists() and (out / "plots" / "tradeoff.png").exists()
