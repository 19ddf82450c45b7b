"""iRPE's piecewise index and buckets against values worked out by hand."""

import math

import pytest
import torch

from pebench.encodings.irpe import bucket_index, num_buckets, offset_buckets, piecewise_index
from pebench.models.vit import build_model


def _by_hand(x: float, alpha: float, beta: float, gamma: float) -> int:
    if abs(x) <= alpha:
        return round(x)
    far = round(alpha + math.log(abs(x) / alpha) / math.log(gamma / alpha) * (beta - alpha))
    return int(math.copysign(min(beta, far), x))


# ratio 1.9: alpha 1.9, beta 3.8, gamma 15.2; ln(gamma / alpha) = ln 8 = 2.0794
#   x = 3:  1.9 + ln(3/1.9)  / 2.0794 * 1.9 = 2.317 -> 2
#   x = 5:  1.9 + ln(5/1.9)  / 2.0794 * 1.9 = 2.784 -> 3
#   x = 10: 1.9 + ln(10/1.9) / 2.0794 * 1.9 = 3.417 -> 3
#   x = 20: 1.9 + ln(20/1.9) / 2.0794 * 1.9 = 4.051 -> 4, capped at beta 3.8 -> bucket 3
RATIO_19 = {0: 0, 1: 1, 1.6: 2, -1: -1, 2: 2, -2: -2, 3: 2, 5: 3, -5: -3, 10: 3, 20: 3, -20: -3, 100: 3}
# ratio 1: alpha 1, beta 2, gamma 8: x = 1.4 -> 1 + ln 1.4 / ln 8 = 1.162 -> 1; x = 3 -> 1.528 -> 2
RATIO_1 = {0.4: 0, 1: 1, 1.4: 1, 3: 2, -3: -2, 8: 2, 50: 2}


@pytest.mark.parametrize("ratio,table", [(1.9, RATIO_19), (1.0, RATIO_1)])
def test_piecewise_index_matches_hand_computation(ratio, table):
    xs = torch.tensor(list(table), dtype=torch.float32)
    got = piecewise_index(xs, ratio, 2 * ratio, 8 * ratio).tolist()
    assert got == list(table.values())
    assert got == [_by_hand(x, ratio, 2 * ratio, 8 * ratio) for x in table]


def test_bucket_counts_per_method():
    # ratio 1.9 -> beta_int 3: 7 buckets per axis; +1 for the class token
    assert num_buckets("product", 1.9, 8) == 7 * 7 + 1
    assert num_buckets("cross", 1.9, 8) == 2 * 7 + 1
    assert num_buckets("euclidean", 1.9, 8) == 4 + 1
    assert num_buckets("quant", 1.9, 8) == 4 + 1
    assert num_buckets("clip", 1.9, 8) == 17 * 17 + 1


def test_clip_method_is_shaw_clipping_per_axis():
    offsets = torch.tensor([[0.0, 0.0], [3.0, -2.0], [12.0, -30.0]])
    buckets, count = offset_buckets(offsets, "clip", ratio=1.9, clip=8)
    assert count == 289
    rows, cols = [0, 3, 8], [0, -2, -8]
    assert buckets[0].tolist() == [(r + 8) * 17 + (c + 8) for r, c in zip(rows, cols, strict=True)]


def test_class_token_has_its_own_bucket_and_far_offsets_saturate_natively():
    model = build_model("micro", "rpe", num_classes=10)
    native = model.context((24, 24), "native")
    buckets = bucket_index(native, "product", 1.9, 8, torch.device("cpu"))[0]
    cls_bucket = num_buckets("product", 1.9, 8) - 1
    assert (buckets[0] == cls_bucket).all() and (buckets[:, 0] == cls_bucket).all()
    assert (buckets[1:, 1:] != cls_bucket).all()
    # patch 0 is (0, 0); patch 23 is (0, 23): offset (0, -23) saturates to column bucket -3 natively
    assert buckets[1, 1 + 23].item() == (0 + 3) * 7 + (-3 + 3)


def test_interp_scales_offsets_before_bucketing():
    model = build_model("micro", "rpe", num_classes=10)
    interp = model.context((28, 28), "interp")  # scale 14 / 28 = 0.5
    buckets = bucket_index(interp, "product", 1.9, 8, torch.device("cpu"))[0]
    # offset (0, -2) becomes (0, -1): bucket (0+3)*7 + (-1+3)
    assert buckets[1, 1 + 2].item() == 3 * 7 + 2


def test_bias_mode_only_on_keys():
    from pebench.errors import PebenchError

    with pytest.raises(PebenchError, match="on=k"):
        build_model("micro", "rpe:mode=bias,on=qk")
