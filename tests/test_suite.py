"""Suite files: loading, include, validation errors, expansion into keyed cells, shards."""

from pathlib import Path

import pytest

from pebench.cli.suites import load_suite
from pebench.errors import PebenchError
from pebench.runner.cells import expand, parse_shard, shard_cells

SUITES = Path(__file__).parent.parent / "suites"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["quick", "zoo", "imagenet-deit", "frontier", "frontier-cpu", "finetune"])
def test_shipped_suites_validate(name):
    suite = load_suite(SUITES / f"{name}.yaml")
    assert suite.name == name and expand(suite)


def test_frontier_suite_reaches_1024_in_every_mode_with_a_holdout():
    cells = expand(load_suite(SUITES / "frontier-cpu.yaml"))
    assert {c.res for c in cells} == {224, 384, 512, 768, 1024}
    assert {c.mode for c in cells} == {"native", "interp", "tuned"}
    assert {c.config["holdout"] for c in cells} == {30}  # every cell scored on the same images
    tuned = next(c for c in cells if c.mode == "tuned")
    assert tuned.config["tune_points"] == 3 and tuned.config["n"] == 100


def test_quick_suite_spans_every_family_the_ci_gate_watches():
    from pebench.encodings import REGISTRY
    from pebench.zoo import ZOO

    suite = load_suite(SUITES / "quick.yaml")
    assert {ZOO[m].split(":")[0] for m in suite.models} == set(REGISTRY)
    assert suite.resolutions == (224, 384) and suite.modes == ("native", "interp")


def test_the_zoo_suite_keeps_its_own_resolutions():
    assert load_suite(SUITES / "zoo.yaml").resolutions == (224, 384, 448, 512)


def test_include_inherits_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "models: [ape, peg]\nresolutions: [224, 384]\nn: 100\npublished: [cpvt]\n")
    child = write(tmp_path / "child.yaml", "include: base.yaml\nn: 50\nmodes: [interp]\n")
    suite = load_suite(child)
    assert suite.name == "child" and suite.models == ("ape", "peg") and suite.n == 50
    assert suite.modes == ("interp",) and suite.resolutions == (224, 384) and suite.published == ("cpvt",)


def test_cells_and_keys(tmp_path):
    suite = load_suite(write(tmp_path / "s.yaml", "models: [ape, peg]\nresolutions: [224, 384]\nprofile: true\n"
                                                  "profile_encodings: [alibi]\n"))
    cells = expand(suite)
    assert [c.kind for c in cells].count("eval") == 2 * 2 * 2
    assert [c.kind for c in cells].count("profile") == 3 * 2
    assert len({c.key for c in cells}) == len(cells)
    assert [c.key for c in expand(suite)] == [c.key for c in cells]  # stable
    changed = load_suite(write(tmp_path / "t.yaml", "models: [ape, peg]\nresolutions: [224, 384]\nn: 10\n"))
    assert not {c.key for c in expand(changed)} & {c.key for c in cells if c.kind == "eval"}


def test_diagnostics_cells_follow_models_resolutions_and_fixed_modes(tmp_path):
    suite = load_suite(write(tmp_path / "s.yaml", "models: [ape, peg]\nresolutions: [224, 384]\n"
                                                  "modes: [native, tuned]\ndiagnostics: true\ndiagnostics_n: 8\n"))
    cells = [c for c in expand(suite) if c.kind == "diagnostics"]
    assert [(c.model, c.res, c.mode) for c in cells] == [(m, r, "native") for m in ("ape", "peg") for r in (224, 384)]
    assert {c.config["n"] for c in cells} == {8}
    with pytest.raises(PebenchError, match="'diagnostics_maps' must be a number of images"):
        load_suite(write(tmp_path / "bad.yaml", "models: [ape]\ndiagnostics_maps: -1\n"))


def test_retrained_weights_change_the_key(tmp_path):
    weights = write(tmp_path / "m.safetensors", "one")
    suite = load_suite(write(tmp_path / "s.yaml", f"models: ['{weights}']\nresolutions: [224]\nmodes: [native]\n"))
    before = expand(suite)[0].key
    weights.write_text("two")
    assert expand(suite)[0].key != before


def test_shards_partition_the_cells(tmp_path):
    suite = load_suite(write(tmp_path / "s.yaml", "models: [ape, peg, sincos]\n"))
    cells = expand(suite)
    parts = [shard_cells(cells, i, 3) for i in (1, 2, 3)]
    assert sorted(c.key for p in parts for c in p) == sorted(c.key for c in cells)
    assert parse_shard("2/3") == (2, 3)


@pytest.mark.parametrize("text, message", [
    ("models: [ape\n", "malformed YAML at line"),
    ("modelz: [ape]\n", "unknown key 'modelz' (did you mean 'models'?)"),
    ("models: [ape]\nmodes: [natve]\n", "unknown mode 'natve' (did you mean 'native'?)"),
    ("models: [ape]\nresolutions: [224, big]\n", "'resolutions': resolution 'big' is not a size in px"),
    ("models: [ape]\nmodes: [scale=0]\n", "'modes': mode 'scale=0': S must be a positive number"),
    ("models: [ape]\ntune_scales: [0.5, 0]\n", "'tune_scales' must be a list of positive position scales"),
    ("models: [ape]\ntune_n: 0\n", "'tune_n' must be a positive integer"),
    ("models: [ape]\nprofile_mode: tuned\n", "'profile_mode' must be native, interp or scale=S"),
    ("models: [ape]\nn: 0\n", "'n' must be a positive number of images or null"),
    ("models: [ape]\ndevice: gpu\n", "'device' is 'gpu'"),
    ("models: [ape]\ncrop_pct: 1.5\n", "'crop_pct' must be a fraction in (0, 1]"),
    ("models: [ape]\npublished: [cpvtt]\n", "unknown table 'cpvtt' (did you mean 'cpvt'?)"),
    ("- ape\n", "a suite must be a mapping"),
    ("description: nothing\n", "the suite has nothing to run"),
])
def test_bad_suites_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(PebenchError) as error:
        load_suite(path)
    assert message in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "include: b.yaml\nmodels: [ape]\n")
    write(tmp_path / "b.yaml", "include: a.yaml\n")
    with pytest.raises(PebenchError, match=r"include cycle a.yaml -> b.yaml -> a.yaml"):
        load_suite(tmp_path / "a.yaml")


def test_missing_include_and_missing_file(tmp_path):
    with pytest.raises(PebenchError, match="which does not exist"):
        load_suite(write(tmp_path / "a.yaml", "include: nowhere.yaml\n"))
    with pytest.raises(PebenchError, match="cannot read suite"):
        load_suite(tmp_path / "absent.yaml")


@pytest.mark.parametrize("text", ["3/2", "0/2", "1-2", "a/b", "2"])
def test_bad_shard_specs(text):
    with pytest.raises(PebenchError, match="is not i/n"):
        parse_shard(text)
