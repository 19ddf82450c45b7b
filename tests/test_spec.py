"""Encoding specs: parsing, canonical form and the errors users see."""

import pytest

from pebench.encodings import parse_spec
from pebench.errors import PebenchError
from pebench.models import build_model


@pytest.mark.parametrize(
    "text,canonical",
    [
        ("ape", "ape"),
        ("peg:kernel=3,blocks=0-4", "peg:blocks=0-4"),
        ("peg:blocks=0,2,4,kernel=5", "peg:blocks=0,2,4,kernel=5"),
        ("rpe:mode=contextual,method=product", "rpe"),
        ("rpe:method=cross,mode=bias", "rpe:method=cross,mode=bias"),
        ("rope_mixed+ape", "rope:variant=mixed+ape"),
        ("rpe_clip", "rpe:method=clip"),
        ("ape + peg", "ape+peg"),
        ("peg:separable=yes", "peg:separable=true"),
    ],
)
def test_canonical_form(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec


def test_yaml_mapping_form_equals_the_string_form():
    assert parse_spec({"peg": {"kernel": 3, "blocks": "0-4"}}) == parse_spec("peg:blocks=0-4")
    assert parse_spec([{"ape": None}, "peg:blocks=0-4"]) == parse_spec("ape+peg:blocks=0-4")


@pytest.mark.parametrize(
    "text,message",
    [
        ("rop", "unknown encoding 'rop' (did you mean 'rope'?)"),
        ("peg:kernal=3", "has no option 'kernal' (did you mean 'kernel'?)"),
        ("peg:kernel=4", "kernel must be odd"),
        ("peg:kernel=three", "is not a int"),
        ("rpe:method=manhattan", "is not one of: product, cross, euclidean, quant, clip"),
        ("peg:blocks=first", "expected blocks it applies to"),
        ("ape+ape", "appears twice"),
        ("none+ape", "cannot be combined"),
        ("", "empty encoding spec"),
        ("peg:3", "cannot read option '3'"),
    ],
)
def test_errors_name_the_problem(text, message):
    with pytest.raises(PebenchError) as info:
        parse_spec(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_blocks_out_of_range_is_reported_against_the_depth():
    with pytest.raises(PebenchError, match="names block 6 but the model has 6 blocks"):
        build_model("micro", "peg:blocks=0-6")


def test_unknown_size():
    with pytest.raises(PebenchError, match="unknown model size 'huge'"):
        build_model("huge", "ape")
