"""The shipped zoo: every model is built, stored as its sidecar says, and still scores what it recorded."""

from dataclasses import fields

import pytest

from pebench.data import SyntheticData
from pebench.encodings.spec import parse_spec
from pebench.models.checkpoint import read_sidecar
from pebench.models.resolve import resolve_model
from pebench.training.recipe import ZOO_RECIPES, TrainConfig
from pebench.training.train import accuracy
from pebench.zoo import BELOW_WHERE_BAR, TOP1_BAR, WHERE_BAR, ZOO, zoo_path


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """name -> top-1 overall, *where* and *what* of the shipped model, measured here on the full 1,000-image
    val split at 224 (each model once per test session)."""
    scores: dict[str, dict] = {}

    def measure(name: str) -> dict:
        if name not in scores:
            scores[name] = accuracy(resolve_model(name).net, SyntheticData(), 224, "native")
        return scores[name]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield measure


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_shipped_model_is_what_its_sidecar_says_and_reproduces_its_accuracy(name, measured):
    loaded = resolve_model(name)
    meta = loaded.meta
    assert loaded.source == "zoo"
    assert meta["encoding"] == str(parse_spec(ZOO[name]))
    assert (meta["size"], meta["train_res"], meta["dtype"]) == ("micro", 224, "float16")
    assert meta["data"] == SyntheticData().spec
    scores = measured(name)
    # the sidecar's figures were measured in float32 just before the weights were saved in float16:
    # rounding may flip a handful of borderline images (of 1,000 overall, 300 *where*), not more
    assert scores["top1"] == pytest.approx(meta["val_top1"], abs=0.005)
    assert scores["where"] == pytest.approx(meta["val_where"], abs=0.01)
    assert scores["what"] >= 0.95  # every shipped model learned the shapes, whatever it made of position
    learned_position = scores["where"] >= WHERE_BAR and scores["top1"] >= TOP1_BAR
    assert learned_position != (name in BELOW_WHERE_BAR), BELOW_WHERE_BAR.get(name, "below the bar")


@pytest.mark.slow
def test_position_blind_model_is_clearly_below_a_learned_ape(measured):
    none, ape = measured("none"), measured("ape_random")
    assert ape["top1"] - none["top1"] >= 0.05 and none["where"] <= 0.40 <= ape["where"]


@pytest.mark.parametrize("name", list(ZOO))
def test_v2_model_was_trained_with_the_recipe_train_all_uses_now(name):
    """`pebench train --all` rebuilds what is shipped: TrainConfig's defaults with the model's ZOO_RECIPES entry."""
    meta = read_sidecar(zoo_path(name))
    expected = {**{f.name: f.default for f in fields(TrainConfig)}, **ZOO_RECIPES.get(name, {})}
    assert meta["epochs"] == expected["epochs"] and meta["seed"] == expected["seed"]
    for key, value in meta["recipe"].items():
        assert value == (list(expected[key]) if isinstance(expected[key], tuple) else expected[key]), key
