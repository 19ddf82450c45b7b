"""A first run as a new user meets it: nothing computed is lost, errors come before any work, progress moves,
output survives a pipe, and the headers say what was scored."""

import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO

import numpy as np
import pytest
from conftest import cli, cli_process
from PIL import Image
from rich.console import Console

from pebench.results import read_records

DATA = "synthetic:train=8,val=60"


@pytest.fixture(autouse=True)
def own_cache(private_cache):
    """Every test here decodes into a cache of its own."""


def _same_work(record: dict) -> dict:
    """A record without what differs between two runs of the same cells: when and how fast."""
    return {k: v for k, v in record.items() if k not in ("env", "timing")}


def imports_torch(*args: str) -> tuple[subprocess.CompletedProcess, bool]:
    """The command in a fresh interpreter, and whether it imported torch."""
    result = cli_process(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    lines = result.stderr.splitlines()
    imported = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time")]
    result.stderr = "\n".join(line for line in lines if not line.startswith("import time"))
    return result, "torch" in imported


def test_eval_without_out_keeps_its_records_and_report_reads_the_last_run(private_runs):
    args = ["eval", "--model", "sincos", "--res", 224, "--n", 8, "--data", DATA, "--workers", 0]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    (folder,) = [p for p in private_runs.iterdir() if p.is_dir()]
    assert folder.name.startswith("eval-") and f"records: {folder / 'results.jsonl'}" in first.stdout
    assert len(read_records(folder / "results.jsonl")) == 2 and "2 records in" in first.stdout
    again = cli(*args)  # the same command resumes in the same folder
    assert "all 2 cells are finished" in again.stdout and len(read_records(folder / "results.jsonl")) == 2
    report = cli("report")
    assert report.returncode == 0, report.stderr
    assert f"the last run: {folder.resolve()}" in report.stdout and (folder / "report.md").exists()


def test_report_without_a_last_run_says_what_to_pass():
    result = cli("report")
    assert result.returncode == 2 and "no last run recorded" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["eval", "--out", "{file}/sub/r.jsonl"], "cannot write there"),
    (["profile", "--out", "{file}/sub"], "cannot write there"),
    (["eval", "--res", 390], "--res 390 is not a multiple of the patch size 16"),
    (["profile", "--res", 390], "--res 390 is not a multiple of the patch size 16"),
    (["eval", "--model", "{tmp}/missing.safetensors"], "does not exist"),
    (["eval", "--model", "sincoss"], "did you mean 'sincos'"),
    (["eval", "--data", "imagefolder:{tmp}/no-such-folder"], "is not a folder"),
    (["run", "{tmp}/bad.yaml"], "2 problems in the suite"),
])
def test_bad_input_fails_before_torch_loads(tmp_path, args, message):
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "bad.yaml").write_text("models: [sincos]\nn: -1\nmodez: [native]\n")
    result, torch_loaded = imports_torch(*[str(a).format(file=tmp_path / "file", tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not torch_loaded


def test_a_read_only_out_folder_fails_with_exit_2(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits; the unwritable-parent case above covers it
        pytest.skip("permission bits do not stop root")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    result = cli("eval", "--model", "sincos", "--out", folder)
    assert result.returncode == 2 and "cannot write there" in result.stderr


def test_unknown_option_suggests_the_option_it_starts_like():
    result = cli("eval", "--resolution", 384)
    assert result.returncode == 2 and "--res" in result.stderr


def test_list_answers_without_torch_and_matches_the_registries():
    from pebench.cli.listing import catalogue, read_catalogue

    assert read_catalogue() == catalogue(), "catalogue.json is stale: run `python -m pebench.cli.listing`"
    result, torch_loaded = imports_torch("list")
    assert result.returncode == 0, result.stderr
    assert not torch_loaded and "rope_mixed" in result.stdout and "Shipped models" in result.stdout


def test_long_notes_of_list_models_go_below_the_table():
    from pebench.zoo import BELOW_WHERE_BAR, ZOO

    result = cli("list", "models")
    lines = result.stdout.splitlines()
    below = [name for name in ZOO if name in BELOW_WHERE_BAR]
    assert below
    for number, name in enumerate(below, start=1):
        note = next(i for i, line in enumerate(lines) if line.startswith(f"[{number}] {name}: "))
        row = next(i for i, line in enumerate(lines) if f"below the bar [{number}]" in line)
        assert row < note and BELOW_WHERE_BAR[name] in lines[note]


def test_a_failing_results_write_keeps_the_rest_in_a_rescue_file(tmp_path, monkeypatch):
    import pebench.runner.runner as runner

    out = tmp_path / "r.jsonl"
    real_append = runner.append_record

    def disk_full(path, record):
        if path == out:
            raise OSError(28, "No space left on device")
        real_append(path, record)

    monkeypatch.setattr(runner, "append_record", disk_full)
    result = cli("eval", "--model", "sincos", "--res", 224, "--n", 8, "--data", DATA, "--workers", 0, "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No space left on device" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    rescue = next(word for word in result.stderr.split() if "pebench-rescued-" in word)
    rescued = read_records(rescue.rstrip(":"))
    assert [(r["model"]["name"], r["mode"]) for r in rescued] == [("sincos", "native"), ("sincos", "interp")]


def test_a_killed_pass_resumes_at_its_image_with_identical_records(tmp_path):
    """SIGKILL in the middle of a pass, once it has saved itself; the rerun resumes inside the pass, and every
    record (per-class counts and per-image hits included) equals an uninterrupted run's."""
    args = ["eval", "--model", "sincos", "--model", "rope_axial", "--res", 384, "--n", 48, "--batch-size", 4,
            "--workers", 0, "--data", DATA]
    killed_out = tmp_path / "killed"
    env = os.environ | {"PEBENCH_CHECKPOINT_S": "0"}
    process = subprocess.Popen([sys.executable, "-m", "pebench.cli", *map(str, args), "--out", str(killed_out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    saved = None
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        states = list((killed_out / "partial").glob("eval-*.json"))
        position = json.loads(states[0].read_text())["next_position"] if states else 0
        if position >= 12:
            saved = position
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert saved is not None and saved < 48, "the pass was not caught in the middle"
    assert not (killed_out / "results.jsonl").exists() or not read_records(killed_out / "results.jsonl")
    resumed = cli(*args, "--out", killed_out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming an interrupted pass at image" in resumed.stdout
    assert not list((killed_out / "partial").glob("*")) if (killed_out / "partial").exists() else True
    whole = cli(*args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    after_kill = {r["key"]: _same_work(r) for r in read_records(killed_out / "results.jsonl")}
    uninterrupted = {r["key"]: _same_work(r) for r in read_records(tmp_path / "whole" / "results.jsonl")}
    assert after_kill == uninterrupted and len(after_kill) == 4
    assert all(r["metrics"]["n"] == 48 and "image_hits" in r["metrics"] for r in after_kill.values())


def test_ctrl_c_before_anything_is_saved_says_there_is_nothing_to_resume(tmp_path, monkeypatch):
    import pebench.measure.evaluate as evaluate

    def interrupt(self, x, y, autocast):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate.Tally, "step", interrupt)
    result = cli("eval", "--model", "sincos", "--res", 224, "--n", 8, "--data", DATA, "--workers", 0,
                 "--out", tmp_path / "r.jsonl")
    assert result.returncode == 130
    assert "interrupted before anything was saved" in result.stderr and "rerun" not in result.stderr


def test_piped_profile_table_holds_every_digit(tmp_path):
    result = cli_process("profile", "-e", "rope", "--res", 224, "--repeats", 2, "--batch-size", 1,
                         "--out", tmp_path / "p.jsonl", env={"COLUMNS": ""})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for record in read_records(tmp_path / "p.jsonl"):
        timing = record["timing"]
        for text in (f"{record['params']['total'] / 1e6:.3f}", f"{record['flops']['gmacs']:.3f}",
                     f"{timing['img_per_s']:.1f}", f"{timing['latency_ms']:.1f}",
                     f"{record['memory']['peak_mib']:.1f}"):
            assert text in result.stdout, text


def test_each_finished_resolution_prints_its_rows_and_the_whole_table_comes_once():
    result = cli("eval", "--model", "sincos", "--res", 224, "--res", 256, "--n", 8, "--data", DATA,
                 "--workers", 0)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("256 px: 8 images through") == 1
    assert out.index("224 px finished") < out.index("256 px: 2 cells over")  # 224's rows before 256 starts
    assert out.count("n=8 scored") == 1  # the final table, once


def test_the_bar_moves_within_a_batch_and_estimates_time_left():
    from pebench.cli.live import LiveRun
    from pebench.runner.cells import Cell

    cells = [Cell("eval", name, 384, "native", {}, name) for name in ("a", "b", "c")]
    live = LiveRun(Console(file=StringIO(), force_terminal=False), "test")
    live.started(cells, [(384, 100, 3.0)])
    live.pass_started(384, 100, {cell: None for cell in cells})
    assert live.time_left() is None
    live.step_done(384, 10)  # one model has run the first batch of 10, the others not yet
    task = live.progress.tasks[0]
    assert task.completed == 10 and task.total == 300 and live.time_left() is not None


def test_n_is_what_was_scored_and_a_class_mismatch_is_named(tmp_path):
    root = tmp_path / "val" / "cats"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
    whole = (root / "3.jpg").read_bytes()
    (root / "3.jpg").write_bytes(whole[: len(whole) // 2])
    result = cli("eval", "--model", "sincos", "--res", 224, "--mode", "interp", "--data",
                 f"imagefolder:{tmp_path / 'val'}", "--workers", 0)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # a narrow table wraps its title
    assert "n=3 scored, 1 unreadable skipped" in out and "n=4" not in out
    assert "sincos has 10 output classes" in out and "has 1 (cats)" in out


def test_every_problem_of_a_suite_is_reported_at_once_and_one_value_is_a_one_item_list(tmp_path):
    from pebench.errors import PebenchError
    from pebench.runner.suite import read_suite

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [sincos]\nn: 0\nbatch_size: -1\nmodez: native\ntune: {pointz: 3}\n")
    with pytest.raises(PebenchError) as error:
        read_suite(bad)
    text = str(error.value)
    assert text.startswith("4 problems in the suite")
    for part in ("'n' must be", "'batch_size' must be", "unknown key 'modez'", "unknown key 'tune.pointz'"):
        assert part in text
    scalars = tmp_path / "scalars.yaml"
    scalars.write_text("models: sincos\nresolutions: 384\nmodes: native\ntune_scales: 0.5\n")
    suite = read_suite(scalars)
    assert (suite.models, suite.resolutions, suite.modes, suite.tune.scales) == (("sincos",), (384,), ("native",),
                                                                                 (0.5,))


@pytest.mark.slow
def test_readme_first_run_prints_what_the_readme_shows():
    """README's first screen: its command, run as written, prints the lines it shows (all but the ones that
    name a folder or a speed)."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A first run"):]
    command = re.search(r"```bash\n(pebench eval .*?)\n```", section)[1]
    shown = re.search(r"```text\n(.*?)\n```", section, re.S)[1].splitlines()
    result = cli(*shlex.split(command)[1:])
    assert result.returncode == 0, result.stderr

    def steady(lines: list[str]) -> list[str]:
        varying = re.compile(r"^records: |records in |img/s|images through .* in \d")
        return [line.rstrip() for line in lines if not varying.search(line)]

    assert steady(result.stdout.splitlines()) == steady(shown)
    assert len(steady(shown)) > 25  # the per-resolution lines and the whole table are compared


def test_ctrl_c_in_training_says_whether_an_epoch_was_kept(tmp_path, monkeypatch):
    import pebench.training.train as training

    out = tmp_path / "m.safetensors"
    args = ["train", "-e", "ape", "--data", "synthetic:train=64,val=8", "--epochs", 2, "--batch-size", 32,
            "--out", out]
    real_accuracy = training.accuracy
    calls = []

    def interrupt_second_validation(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(training, "accuracy", interrupt_second_validation)
    stopped = cli(*args)
    assert stopped.returncode == 130 and "kept the finished epochs in m.safetensors.state.pt" in stopped.stderr
    state = out.with_name(out.name + ".state.pt")
    state.unlink()
    calls.clear()
    monkeypatch.setattr(training, "accuracy", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    early = cli(*args)
    assert "interrupted before a training epoch finished; there is nothing to resume" in early.stderr
