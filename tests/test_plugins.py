"""Encodings from outside the package: a file, a module, an installed entry point; and every way a plugin can
be broken, each a one-line error naming it that leaves the commands that do not use it alone."""

import json
import textwrap

import pytest
import torch
from conftest import cli

from pebench.encodings import REGISTRY, parse_spec
from pebench.encodings import plugins as plugin_api
from pebench.errors import PebenchError
from pebench.results import read_records

TINY = "synthetic:train=32,val=8"

GOOD = '''
import torch
import pebench
from pebench.encodings.base import Component, Option, pair_bias, scaled_offsets


@pebench.register_encoding
class GaussLocal(Component):
    name = "{name}"
    summary = "per-head Gaussian locality bias"
    paper = "ConViT, d'Ascoli et al. 2021 (arXiv:2103.10697)"
    options = {{"alpha": Option(0.1, "initial alpha")}}
    native_means = "squared distances between the new integer positions"
    interp_means = "distances scaled by G0/G"

    def __init__(self, arch, alpha):
        super().__init__(arch)
        self.alpha = torch.nn.Parameter(torch.full((arch.num_heads,), float(alpha)))

    def attention_bias(self, block, q, k, ctx):
        squared = scaled_offsets(ctx, q.device).pow(2).sum(dim=1)
        return pair_bias(-self.alpha[:, None] * squared, ctx, q.dtype)


pebench.register_preset("{name}_wide", "{name}", alpha=0.01)
'''


def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def forget(*names: str) -> None:
    """As a fresh process would be: these encodings and their plugins unknown."""
    for name in names:
        REGISTRY.pop(name, None)
        plugin_api.PRESETS.pop(f"{name}_wide", None)
        plugin_api.ORIGIN.pop(name, None)
        plugin_api.ORIGIN.pop(f"{name}_wide", None)
    plugin_api.PLUGINS.clear()


@pytest.fixture
def good(tmp_path):
    return write(tmp_path, "gauss.py", GOOD.format(name="gauss_local"))


def test_a_file_plugin_trains_evaluates_profiles_and_its_checkpoint_names_it(good, tmp_path, private_cache):
    listed = cli("--plugin", good, "list", "encodings")
    assert listed.returncode == 0, listed.stderr
    assert "gauss_local" in listed.stdout and "sha256" in listed.stdout and "gauss_local_wide" in listed.stdout
    model = tmp_path / "g.safetensors"
    trained = cli("--plugin", good, "train", "-e", "gauss_local+peg", "--data", TINY, "--epochs", 1,
                  "--batch-size", 16, "--out", model)
    assert trained.returncode == 0, trained.stderr
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["encoding"] == "gauss_local+peg"
    assert sidecar["plugins"]["gauss_local"]["file"] == str(good.resolve())
    out = tmp_path / "r.jsonl"
    evaluated = cli("--plugin", good, "eval", "-m", model, "--res", 224, "--res", 256, "--data", TINY,
                    "--workers", 0, "--out", out)
    assert evaluated.returncode == 0, evaluated.stderr
    records = read_records(out)
    assert {(r["res"], r["mode"]) for r in records} == {(224, "native"), (224, "interp"), (256, "native"),
                                                        (256, "interp")}
    assert all(r["status"] == "ok" and "gauss_local" in r["model"]["plugins"] for r in records)
    profiled = cli("--plugin", good, "profile", "-e", "gauss_local_wide+peg", "--res", 224, "--repeats", 2,
                   "--batch-size", 1, "--out", tmp_path / "p.jsonl")
    assert profiled.returncode == 0, profiled.stderr
    (row,) = read_records(tmp_path / "p.jsonl")
    assert row["model"]["encoding"] == "gauss_local:alpha=0.01+peg" and row["model"]["plugins"]
    inspected = cli("--plugin", good, "inspect", "-m", model, "--res", 256, "--mode", "interp", "--data", TINY,
                    "--n", 4, "--maps", 1, "--workers", 0, "--out", tmp_path / "d.jsonl")
    assert inspected.returncode == 0, inspected.stderr
    (diagnosed,) = read_records(tmp_path / "d.jsonl")
    assert diagnosed["status"] == "ok" and diagnosed["model"]["plugins"]
    tuned = tmp_path / "g-256.safetensors"
    finetuned = cli("--plugin", good, "finetune", "-m", model, "--res", 256, "--data", TINY, "--val-n", 4,
                    "--batch-size", 16, "--out", tuned)
    assert finetuned.returncode == 0, finetuned.stderr
    assert json.loads(tuned.with_suffix(".json").read_text())["plugins"] == sidecar["plugins"]

    forget("gauss_local")  # a fresh process without --plugin
    missing = cli("eval", "-m", model, "--res", 224, "--data", TINY, "--workers", 0)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"comes from a plugin that is not loaded ('gauss_local': --plugin {good.resolve()}" in missing.stderr


def test_plugins_come_from_the_environment_and_from_a_suite(good, tmp_path, monkeypatch, private_cache):
    monkeypatch.setenv("PEBENCH_PLUGINS", str(good))
    assert cli("list", "encodings").stdout.count("gauss_local  ") == 1
    monkeypatch.delenv("PEBENCH_PLUGINS")
    forget("gauss_local")
    suite = tmp_path / "suites" / "mine.yaml"
    suite.parent.mkdir()
    (tmp_path / "suites" / "gauss.py").write_text(good.read_text())
    suite.write_text(f"plugins: gauss.py\nprofile: {{encodings: [gauss_local], repeats: 1, batch_size: 1}}\n"
                     f"resolutions: [224]\ndata: {TINY}\n")
    ran = cli("run", suite, "--out", tmp_path / "run")
    assert ran.returncode == 0, ran.stderr
    (row,) = read_records(tmp_path / "run" / "results.jsonl")
    assert row["model"]["name"] == "gauss_local" and row["status"] == "ok"


def test_an_installed_entry_point_needs_no_flag(tmp_path, monkeypatch):
    package = tmp_path / "site" / "gauss_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(GOOD.format(name="gauss_ep")).replace(
        "@pebench.register_encoding\n", "").replace('pebench.register_preset("gauss_ep_wide", "gauss_ep", '
                                                    'alpha=0.01)', ""))
    dist = tmp_path / "site" / "gauss_pkg-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gauss-pkg\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[pebench.encodings]\ngauss_ep = gauss_pkg:GaussLocal\n")
    (dist / "top_level.txt").write_text("gauss_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(plugin_api, "_entry_points_read", False)
    spec = parse_spec("gauss_ep+peg")  # found through the entry point, no flag
    assert spec.names == ("gauss_ep", "peg")
    assert plugin_api.provenance(["gauss_ep"]) == {"gauss_ep": {"entry_point": "gauss_ep",
                                                                 "distribution": "gauss-pkg", "version": "1.2"}}
    listed = cli("list", "encodings")
    assert "gauss_ep  " in listed.stdout and "gauss-pkg" in listed.stdout


def test_a_broken_entry_point_breaks_only_what_uses_it(tmp_path, monkeypatch, private_cache):
    site = tmp_path / "site"
    (site / "broken_pkg").mkdir(parents=True)
    (site / "broken_pkg" / "__init__.py").write_text("raise ImportError('needs torch 9')\n")
    dist = site / "broken_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pebench.encodings]\nbroken = broken_pkg:Broken\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugin_api, "_entry_points_read", False)
    listed = cli("list", "encodings")
    assert listed.returncode == 0 and "rope_mixed" in listed.stdout
    assert "failed" in listed.stdout and "needs torch 9" in listed.stdout and "broken-pkg" in listed.stdout
    fine = cli("eval", "-m", "sincos", "--res", 224, "--n", 4, "--data", TINY, "--workers", 0)
    assert fine.returncode == 0, fine.stderr
    used = cli("profile", "-e", "broken", "--res", 224, "--repeats", 1)
    assert used.returncode == 2 and "unknown encoding 'broken'" in used.stderr and "needs torch 9" in used.stderr
    assert len(used.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("import nothing_here\n", "failed to import: ModuleNotFoundError"),
    ("import pebench\npebench.register_encoding(object)\n", "is not a subclass of pebench's Component"),
    (GOOD.format(name="rope"), "clashes with a shipped encoding or preset 'rope'; rename it"),
    (GOOD.format(name="gauss_local").replace('    paper = "ConViT, d\'Ascoli et al. 2021 (arXiv:2103.10697)"\n',
                                             ""), "does not say paper"),
    ("x = 1\n", "registered no encoding"),
])
def test_a_broken_plugin_file_is_one_line_naming_it(tmp_path, text, message):
    plugin = write(tmp_path, "bad.py", text)
    result = cli("--plugin", plugin, "list")
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and str(plugin) in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_plugin_file_or_value_is_one_line(tmp_path):
    missing = cli("--plugin", tmp_path / "nope.py", "list")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    empty = cli("list", "--plugin")
    assert empty.returncode == 2 and "--plugin needs a module or a .py file" in empty.stderr


def test_two_plugins_cannot_take_the_same_name(tmp_path):
    first = write(tmp_path, "one.py", GOOD.format(name="twin"))
    second = write(tmp_path, "two.py", GOOD.format(name="twin"))
    result = cli("--plugin", first, "--plugin", second, "list")
    assert result.returncode == 2 and f"another plugin's ({first})" in result.stderr


def test_a_hook_with_the_wrong_shape_or_an_exception_names_the_plugin(tmp_path):
    from pebench.models import build_model

    wrong = GOOD.format(name="wrong_shape").replace("return pair_bias(-self.alpha[:, None] * squared, ctx, q.dtype)",
                                                    "return torch.zeros(3, 3)")
    plugin_api.load_plugin(str(write(tmp_path, "wrong.py", wrong)), "--plugin")
    model = build_model("micro", "wrong_shape", num_classes=10).eval()
    with pytest.raises(PebenchError, match=r"plugin encoding 'wrong_shape' \(.*wrong.py\): attention_bias returned "
                                           r"shape \(3, 3\) where a tensor broadcastable to \(1, 3, 197, 197\)"):
        model(torch.zeros(1, 3, 224, 224), "native")
    raising = GOOD.format(name="raising").replace("squared = scaled_offsets", "1 / 0\n        squared = scaled_offsets")
    plugin_api.load_plugin(str(write(tmp_path, "raising.py", raising)), "--plugin")
    model = build_model("micro", "raising", num_classes=10).eval()
    with pytest.raises(PebenchError, match="plugin encoding 'raising' .*attention_bias raised ZeroDivisionError"):
        model(torch.zeros(1, 3, 224, 224), "native")
    for name, formula, message in (
        ("wrong_formula", "torch.zeros(3)", r"bias_by_offset returned Tensor where a pebench.encodings.base.OffsetBias "
                                            r"\(or None\) is needed"),
        ("raising_formula", "OffsetBias(lambda head, dr, dc: 1 / 0)",
         "bias_by_offset's formula raised ZeroDivisionError: division by zero"),
        ("integer_formula", "OffsetBias(lambda head, dr, dc: dr * dc)",
         r"bias_by_offset's formula gave shape \(1, 729\) where float values are needed"),
        ("blind_formula", "OffsetBias(lambda head, dr, dc: 0.0 * dr, visible=lambda head, dr, dc: dr)",
         r"bias_by_offset's formula gave a visibility of shape \(1, 729\) where booleans broadcastable to \(3, 729\)")):
        text = GOOD.format(name=name).replace("\n\npebench.register_preset", f"""
    def bias_by_offset(self, block, ctx):
        from pebench.encodings.base import OffsetBias

        return {formula}


pebench.register_preset""")
        plugin_api.load_plugin(str(write(tmp_path, f"{name}.py", text)), "--plugin")
        model = build_model("micro", name, num_classes=10).eval()
        model.attention_path = "flex"  # fused kernels ask for the formula
        with pytest.raises(PebenchError, match=rf"plugin encoding '{name}' \(.*{name}.py\): {message}"):
            model(torch.zeros(1, 3, 224, 224), "native")


def test_a_plugin_encoding_gives_the_same_cell_keys_only_for_the_same_plugin(good, tmp_path):
    from pebench.runner.cells import expand
    from pebench.runner.suite import Profile, Suite

    plugin_api.load_plugin(str(good), "--plugin")
    suite = Suite(name="t", profile=Profile(enabled=True, encodings=("gauss_local",)), resolutions=(224,))
    (first,) = expand(suite)
    forget("gauss_local")
    good.write_text(good.read_text() + "\n# a new version of the plugin\n")
    plugin_api.load_plugin(str(good), "--plugin")
    (second,) = expand(suite)
    assert first.config["plugins"]["gauss_local"]["sha256"] != second.config["plugins"]["gauss_local"]["sha256"]
    assert first.key != second.key
    shipped = expand(Suite(name="t", profile=Profile(enabled=True, encodings=("alibi",)), resolutions=(224,)))
    assert "plugins" not in shipped[0].config  # shipped encodings keep the keys they always had


def test_a_users_records_are_reported_beside_the_zoos_on_the_same_images_only(tmp_path, private_cache):
    args = ["--res", 224, "--res", 256, "--n", 8, "--data", TINY, "--workers", 0]
    assert cli("eval", "-m", "sincos", *args, "--out", tmp_path / "zoo").returncode == 0
    assert cli("eval", "-m", "rope_axial", *args, "--out", tmp_path / "mine").returncode == 0
    report = cli("report", tmp_path / "mine", "--beside", tmp_path / "zoo", "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert "beside: 4 cells of" in report.stdout  # sincos at 224 and 256, native and interp
    page = (tmp_path / "report" / "report.md").read_text()
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Accuracy vs resolution (measured)"  # the figure first, then the tables
    assert "| sincos |" in page and "| rope_axial |" in page
    other = cli("eval", "-m", "sincos", "--res", 224, "--n", 6, "--data", TINY, "--workers", 0,
                "--out", tmp_path / "other")
    assert other.returncode == 0
    refused = cli("report", tmp_path / "mine", "--beside", tmp_path / "other", "--out", tmp_path / "report2")
    assert refused.returncode == 2 and "n (images asked for): 8 here vs 6 there" in refused.stderr


def test_a_table_whose_every_cell_reads_at_least_99_5_is_folded_in_html():
    from pebench.reports.write import _uninformative

    assert _uninformative([["ape", "100.0 (99.2-100.0)", "99.6 +0.1"], ["peg", "n/a", "99.5"]])
    assert not _uninformative([["ape", "100.0", "98.9 -1.1"]])
    assert not _uninformative([["ape", "GMACs 1.2"]])


@pytest.mark.slow
def test_torchrun_ranks_load_the_plugin_from_the_command_line(good, tmp_path, private_cache):
    """Every torchrun process parses --plugin itself: two ranks score a plugin model as one process does."""
    import os
    import subprocess
    import sys

    model = tmp_path / "g.safetensors"
    assert cli("--plugin", good, "train", "-e", "gauss_local", "--data", TINY, "--epochs", 1, "--batch-size", 16,
               "--out", model).returncode == 0
    args = ["--plugin", str(good), "eval", "-m", str(model), "--res", "256", "--mode", "interp", "--data", TINY,
            "--workers", "0"]
    single = cli(*args, "--out", tmp_path / "one.jsonl")
    assert single.returncode == 0, single.stderr
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            "29541", "-m", "pebench.cli", *args, "--out", str(tmp_path / "two.jsonl")],
                           capture_output=True, text=True, env=env)
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    (one,), (two,) = read_records(tmp_path / "one.jsonl"), read_records(tmp_path / "two.jsonl")
    assert two["model"]["plugins"] == one["model"]["plugins"] and two["key"] == one["key"]
    assert two["metrics"]["image_hits"] == one["metrics"]["image_hits"] and two["metrics"]["n"] == 8
