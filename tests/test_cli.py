"""The console script as a user runs it."""

import re
import subprocess
import sys

import pytest
from conftest import cli, cli_process

from pebench.cli.suites import load_suite
from pebench.encodings import REGISTRY
from pebench.errors import PebenchError


def test_list_shows_every_family_with_its_modes_and_paper():
    out = cli("list")
    assert out.returncode == 0, out.stderr
    for name, cls in REGISTRY.items():
        assert f"{name}  " in out.stdout
        assert cls.paper.split(",")[0] in out.stdout
    assert out.stdout.count("native  ") == len(REGISTRY)
    assert "rope_mixed" in out.stdout and "micro" in out.stdout


@pytest.mark.slow
def test_list_models_marks_the_shipped_models_below_the_where_bar():
    from pebench.zoo import BELOW_WHERE_BAR, ZOO

    out = cli_process("list", "models", env={"COLUMNS": "400"})
    assert out.returncode == 0, out.stderr
    marked = [line.split()[1] for line in out.stdout.splitlines() if "below the bar" in line]
    assert marked == [name for name in ZOO if name in BELOW_WHERE_BAR]
    assert "h in all" in out.stdout


def test_version():
    out = cli("version")
    assert out.returncode == 0 and "torch" in out.stdout and "timm" in out.stdout


def test_bad_argument_exits_2_without_traceback():
    out = cli("list", "encodingz")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_training_time_adds_each_epochs_samples_at_its_own_rate():
    from pebench.cli.listing import training_seconds

    curve = [{"samples": 100, "img_per_s": 10.0}, {"samples": 300, "img_per_s": 20.0}]
    assert training_seconds(curve) == 20.0  # 100 images at 10 img/s, then 200 more at 20


def test_the_eval_table_names_the_data_and_shows_changes_only_against_a_measured_224(private_cache):
    alone = cli("eval", "--model", "peg", "--res", 256, "--data", "synthetic:train=8,val=6", "--workers", 0)
    assert alone.returncode == 0, alone.stderr
    assert "synthetic:seed=0,train=8,val=6, val split, n=6" in alone.stdout and "change vs" not in alone.stdout
    both = cli("eval", "--model", "peg", "--res", 224, "--res", 256, "--data", "synthetic:train=8,val=6",
               "--workers", 0)
    assert "change vs 224" in both.stdout
    changes = re.findall(r"(\d+\.\d) ([+-]\d+\.\d)", both.stdout)  # "66.7 -16.7": a 256 cell and its change
    top1_224 = float(re.search(r"│ peg +│ (\d+\.\d)", both.stdout).group(1))
    assert changes and all(float(top1) - top1_224 == pytest.approx(float(change), abs=0.11) for top1, change in changes)


def test_help_version_and_typos_answer_without_importing_torch():
    probe = ("import sys; from pebench.cli import main; sys.argv = ['pebench', '--version']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split()[-1] == "False", result.stderr
    assert "pebench " in result.stdout and " torch " in result.stdout
    typo = cli("evl")
    assert typo.returncode == 2 and "Did you mean 'eval'" in typo.stderr


def test_bad_workers_and_cache_values_are_one_line_errors(tmp_path):
    bad = cli("eval", "--model", "peg", "--workers", -1)
    assert bad.returncode == 2 and "--workers must be 0" in bad.stderr
    suite = tmp_path / "s.yaml"
    suite.write_text("models: [peg]\nworkers: two\n")
    assert "'workers' must be a number of data worker processes" in cli("validate", suite).stderr
    with pytest.raises(PebenchError, match="cache"):
        suite.write_text("models: [peg]\ncache: 3\n")
        load_suite(suite)


def test_device_auto_is_every_commands_default_and_cells_name_the_device_that_ran(tmp_path, private_cache,
                                                                                 monkeypatch):
    """No --device: CUDA where one is visible, else the CPU; the records and the cell keys say "cpu" here, as an
    explicit --device cpu does, so results made before the default changed resume and gate as before."""
    import torch

    from pebench.cli.options import parse_device
    from pebench.results import read_records

    args = ["eval", "-m", "sincos", "--res", 224, "--mode", "native", "--n", 4, "--data", "synthetic:train=8,val=4",
            "--workers", 0]
    default, explicit = tmp_path / "auto.jsonl", tmp_path / "cpu.jsonl"
    assert cli(*args, "--out", default).returncode == 0
    assert cli(*args, "--device", "cpu", "--out", explicit).returncode == 0
    (auto_record,), (cpu_record,) = read_records(default), read_records(explicit)
    assert auto_record["device"] == "cpu" and auto_record["key"] == cpu_record["key"]

    fp16 = cli("profile", "-e", "sincos", "--res", 224, "--dtype", "fp16")  # auto found no GPU
    assert fp16.returncode == 2 and "fp16 autocast is for CUDA" in fp16.stderr and "Traceback" not in fp16.stderr
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels: [sincos]\ndevice: auto\n")
    assert load_suite(suite).device == "auto"

    assert parse_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parse_device("auto") == torch.device("cuda")
