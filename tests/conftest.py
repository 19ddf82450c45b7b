"""Shared fixtures and helpers: one spec per encoding family (and the papers' combinations), a private cache,
a tiny trained checkpoint, and the command line run in this process or in a fresh one."""

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from pebench.cli import main
from pebench.encodings import REGISTRY
from pebench.models import build_model
from pebench.training.train import TrainConfig, train

#: a split small enough to train on in seconds
TINY_DATA = "synthetic:train=64,val=24"

#: every family at its defaults, plus the option variants and combinations the papers use
SPECS = [
    "none",
    "ape",
    "sincos",
    "rpe",
    "rpe:mode=bias,method=euclidean",
    "rpe:method=quant,shared_heads=false",
    "rpe:method=cross,on=qkv",
    "rpe:method=clip",
    "relpos_table",
    "cpb",
    "spvit",
    "peg",
    "peg:blocks=0-4,separable=true",
    "peg:gap=true",
    "rope",
    "rope:variant=mixed",
    "alibi",
    "alibi:slopes=power2",
    "lookhere",
    "lookhere:fov=45",
    "fire",
    "fire:shared=false",
    "ape+peg",
    "ape+rpe",
    "rope:variant=mixed+ape",
]
RESOLUTIONS = [224, 384, 448, 512]


def test_specs_cover_every_family():
    covered = {part.split(":")[0] for spec in SPECS for part in spec.split("+")}
    assert covered == set(REGISTRY)


def perturbed_model(spec: str, seed: int = 0, **kwargs):
    """A micro model that behaves like a trained one as far as position goes.

    At initialisation several encodings are no-ops (zero tables, SP-ViT's prior of exactly 1) and
    the std-0.02 projections make attention almost uniform, so nothing depends much on where a
    patch is. Tests that ask whether position information flows need sharp attention and encoding
    parameters that carry something: projections get unit-variance fan-in scaling and every
    encoding parameter a random offset.
    """
    torch.manual_seed(seed)
    model = build_model("micro", spec, num_classes=10, **kwargs).eval()
    with torch.no_grad():
        for module in model.blocks.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, module.in_features**-0.5)
        for p in model.pos_encoding.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model


@pytest.fixture
def images():
    def make(res: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
        return torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(seed))

    return make


def cli(*args) -> subprocess.CompletedProcess:
    """The console script's entry point, run in this process (a fresh interpreter per call costs seconds)."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["pebench", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exit_:
        code = exit_.code or 0
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def cli_process(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command line in a fresh interpreter, for what a call in this process cannot show (what it
    imports, the terminal width it reads from the environment, a process of its own)."""
    return subprocess.run([sys.executable, "-m", "pebench.cli", *map(str, args)], capture_output=True, text=True,
                          env=None if env is None else os.environ | env)


@pytest.fixture(autouse=True)
def registry_as_shipped():
    """Whatever a test registers (a plugin, a docs example) is gone after it: the registry is the shipped one."""
    from pebench.encodings import plugins

    saved = (dict(REGISTRY), dict(plugins.PRESETS), dict(plugins.PLUGINS), dict(plugins.ORIGIN),
             plugins._entry_points_read)
    yield
    for live, kept in zip((REGISTRY, plugins.PRESETS, plugins.PLUGINS, plugins.ORIGIN), saved, strict=False):
        live.clear()
        live.update(kept)
    plugins._entry_points_read = saved[-1]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test reaches a network: the Hugging Face hub answers from local caches only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def private_runs(tmp_path, monkeypatch):
    """Run folders (commands without --out) of this test's own, never the working directory's results/runs."""
    monkeypatch.setenv("PEBENCH_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own: no test reads splits another one decoded."""
    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))


def tiny_config(encoding: str = "ape", epochs: int = 2) -> TrainConfig:
    return TrainConfig(encoding=encoding, data=TINY_DATA, epochs=epochs, batch_size=32)


@pytest.fixture
def checkpoint(tmp_path, private_cache):
    """A micro `ape` model trained for two epochs on :data:`TINY_DATA`."""
    path = tmp_path / "ape.safetensors"
    train(tiny_config(), path, command="test")
    return path
