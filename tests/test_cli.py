"""The console script as a user runs it."""

import subprocess
import sys

from pebench.encodings import REGISTRY


def run(*args):
    return subprocess.run([sys.executable, "-c", "from pebench.cli import main; main()", *args],
                          capture_output=True, text=True)


def test_list_shows_every_family_with_its_modes_and_paper():
    out = run("list")
    assert out.returncode == 0, out.stderr
    for name, cls in REGISTRY.items():
        assert f"{name}  " in out.stdout
        assert cls.paper.split(",")[0] in out.stdout
    assert out.stdout.count("native  ") == len(REGISTRY)
    assert "rope_mixed" in out.stdout and "micro" in out.stdout


def test_list_models_marks_the_shipped_models_below_the_where_bar():
    import os

    from pebench.zoo import BELOW_WHERE_BAR, ZOO

    out = subprocess.run([sys.executable, "-c", "from pebench.cli import main; main()", "list", "models"],
                         capture_output=True, text=True, env=os.environ | {"COLUMNS": "400"})
    assert out.returncode == 0, out.stderr
    marked = [line.split()[1] for line in out.stdout.splitlines() if "below the bar" in line]
    assert marked == [name for name in ZOO if name in BELOW_WHERE_BAR]
    assert "h in all" in out.stdout


def test_version():
    out = run("version")
    assert out.returncode == 0 and "torch" in out.stdout and "timm" in out.stdout


def test_bad_argument_exits_2_without_traceback():
    out = run("list", "encodingz")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_training_time_adds_each_epochs_samples_at_its_own_rate():
    from pebench.cli.listing import training_seconds

    curve = [{"samples": 100, "img_per_s": 10.0}, {"samples": 300, "img_per_s": 20.0}]
    assert training_seconds(curve) == 20.0  # 100 images at 10 img/s, then 200 more at 20
