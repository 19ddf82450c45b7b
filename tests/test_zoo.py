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
def val_224(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield SyntheticData()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_shipped_model_is_what_its_sidecar_says_and_reproduces_its_accuracy(name, val_224):
    loaded = resolve_model(name)
    model, meta, source = loaded.net, loaded.meta, loaded.source
    assert source == "zoo"
    assert meta["encoding"] == str(parse_spec(ZOO[name]))
    assert (meta["size"], meta["train_res"], meta["dtype"]) == ("micro", 224, "float16")
    assert meta["data"] == SyntheticData().spec
    assert meta["learning_curve"][-1]["val_top1"] == meta["val_top1"]
    # val_top1 was measured in float32 just before the weights were saved in float16:
    # rounding may flip a handful of borderline images of the 1,000, not more
    assert accuracy(model, val_224, 224, "native")["top1"] == pytest.approx(meta["val_top1"], abs=0.005)
    if name != "none":
        assert meta["val_top1"] >= 0.70
    learned_position = meta["val_where"] >= WHERE_BAR and meta["val_top1"] >= TOP1_BAR
    assert learned_position != (name in BELOW_WHERE_BAR), BELOW_WHERE_BAR.get(name, "below the bar")


def test_position_blind_model_is_clearly_below_learned_ape():
    none, ape = (resolve_model(name).meta["val_top1"] for name in ("none", "ape"))
    assert ape - none >= 0.05


@pytest.mark.parametrize("name", list(ZOO))
def test_v2_model_was_trained_with_the_recipe_train_all_uses_now(name):
    """`pebench train --all` rebuilds what is shipped: TrainConfig's defaults with the model's ZOO_RECIPES entry."""
    meta = read_sidecar(zoo_path(name))
    expected = {**{f.name: f.default for f in fields(TrainConfig)}, **ZOO_RECIPES.get(name, {})}
    assert meta["epochs"] == expected["epochs"] and meta["seed"] == expected["seed"]
    for key, value in meta["recipe"].items():
        assert value == (list(expected[key]) if isinstance(expected[key], tuple) else expected[key]), key
