"""Models from outside pebench: `--model py:MODULE_OR_FILE:FACTORY` for any nn.Module that implements the
ResolutionModel protocol, through eval, tune, profile and inspect; and the errors of a broken factory."""

import textwrap

import pytest
from conftest import cli

from pebench.results import read_records

TINY = "synthetic:train=16,val=8"

MODEL = '''
import torch
from torch import nn

from pebench.modes import position_scale
from pebench.resolution import as_hw


class PooledSinCos(nn.Module):
    """Patches embedded, 2D sin-cos positions added (scaled as the mode says), mean-pooled: no attention."""

    patch, img_size, size, spec = 16, 224, "pooled", "sincos (pooled)"
    trained_grid = (14, 14)

    def __init__(self, classes=10, positions=True):
        super().__init__()
        self.embed = nn.Conv2d(3, 32, 16, 16)
        self.head = nn.Linear(32, classes)
        self.positions = positions

    @property
    def num_classes(self):
        return self.head.out_features

    @property
    def interp_is_native(self):
        return not self.positions

    def grid_at(self, res):
        h, w = as_hw(res)
        return h // 16, w // 16

    def applicability(self, res, mode):
        return None

    def resize_api(self, res, mode):
        return None

    def position_param_count(self):
        return 0

    def position_values_at(self, res, mode):
        return 0

    def position_free_twin(self):
        return PooledSinCos(self.num_classes, positions=False)

    def forward(self, images, mode):
        x = self.embed(images)
        if self.positions:
            rows, cols = x.shape[-2:]
            sr, sc = position_scale(mode, self.trained_grid, (rows, cols))
            r = torch.arange(rows, dtype=x.dtype, device=x.device)[:, None] * sr
            c = torch.arange(cols, dtype=x.dtype, device=x.device)[None, :] * sc
            freqs = torch.arange(1, 9, dtype=x.dtype, device=x.device)[:, None, None] / 8
            x = x + torch.cat([torch.sin(r * freqs).expand(8, rows, cols), torch.cos(r * freqs).expand(8, rows, cols),
                               torch.sin(c * freqs).expand(8, rows, cols), torch.cos(c * freqs).expand(8, rows, cols)])
        return self.head(x.mean(dim=(-2, -1)))


def make(checkpoint=None):
    torch.manual_seed(0)
    model = PooledSinCos()
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model


def not_a_model():
    return object()


def broken():
    raise RuntimeError("no weights here")
'''


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "pooled.py"
    path.write_text(textwrap.dedent(MODEL))
    return path


def test_an_outside_model_is_evaluated_tuned_profiled_and_inspected(factory_file, tmp_path, private_cache):
    spec = f"py:{factory_file}:make"
    out = tmp_path / "r.jsonl"
    common = ["--data", TINY, "--workers", 0, "--out", out]
    assert cli("eval", "-m", spec, "--res", 224, "--res", 384, *common).returncode == 0
    tuned = cli("tune", "-m", spec, "--res", 384, "--n", 8, "--tune-n", 4, "--points", 3, *common)
    assert tuned.returncode == 0, tuned.stderr
    inspected = cli("inspect", "-m", spec, "--res", 224, "--n", 4, *common)
    assert inspected.returncode == 0, inspected.stderr
    profiled = cli("profile", "-m", spec, "--res", 224, "--repeats", 2, "--batch-size", 1, "--out", out)
    assert profiled.returncode == 0, profiled.stderr
    records = read_records(out)
    evals = [r for r in records if r["kind"] == "eval"]
    assert {(r["res"], r["mode"]) for r in evals} >= {(224, "native"), (384, "native"), (384, "interp"),
                                                      (384, "tuned")}
    assert all(r["status"] == "ok" and r["model"]["source"] == "py" for r in evals)
    (profile,) = [r for r in records if r["kind"] == "profile"]
    assert profile["status"] == "ok" and profile["flops"]["gmacs"] > 0
    diagnostics = [r for r in records if r["kind"] == "diagnostics"]
    assert diagnostics and all("pebench's own ViT blocks" in r["reason"] for r in diagnostics)


def test_the_factory_source_is_part_of_the_cells_key(factory_file):
    from pebench.runner.cells import expand
    from pebench.runner.suite import Suite

    suite = Suite(name="t", models=(f"py:{factory_file}:make",), resolutions=(224,), modes=("native",))
    (before,) = expand(suite)
    factory_file.write_text(factory_file.read_text() + "\n# changed\n")
    (after,) = expand(suite)
    assert before.key != after.key


@pytest.mark.parametrize("function, message", [
    ("missing", "has no function 'missing'"),
    ("not_a_model", "returned a object that lacks patch"),
    ("broken", "broken() failed: RuntimeError: no weights here"),
])
def test_a_broken_factory_is_one_line_naming_it(factory_file, function, message):
    result = cli("eval", "-m", f"py:{factory_file}:{function}", "--res", 224, "--data", TINY, "--workers", 0)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_factory_that_does_not_import_is_named(tmp_path):
    (tmp_path / "bad.py").write_text("import not_installed_anywhere\n")
    result = cli("eval", "-m", f"py:{tmp_path / 'bad.py'}:make", "--res", 224, "--data", TINY)
    assert result.returncode == 2 and "importing" in result.stderr and "ModuleNotFoundError" in result.stderr


def test_the_gate_holds_an_outside_model(factory_file, tmp_path, private_cache):
    """A team's own model in CI: its records make a baseline, the same results pass, and a baseline that held more
    correct images than the model now scores is a regression (exit 1), as for a shipped model."""
    import json

    spec = f"py:{factory_file}:make"
    out, baseline = tmp_path / "r.jsonl", tmp_path / "baseline.json"
    assert cli("eval", "-m", spec, "--res", 224, "--res", 288, "--data", "synthetic:train=16,val=40", "--workers", 0,
               "--out", out).returncode == 0
    assert cli("check", out, "--baseline", baseline, "--update-baseline").returncode == 0
    same = cli("check", out, "--baseline", baseline)
    assert same.returncode == 0 and "regressed 0, missing 0" in same.stdout, same.stdout
    better = json.loads(baseline.read_text())
    cell = next(c for c in better["cells"] if c["res"] == 288 and c["mode"] == "interp")
    assert cell["model"] == spec
    cell["correct"], cell["value"] = cell["n"], 1.0  # the baseline's model scored every image
    baseline.write_text(json.dumps(better))
    gate = cli("check", out, "--baseline", baseline)
    assert gate.returncode == 1 and "regressed 1," in gate.stdout, gate.stdout
