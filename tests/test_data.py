"""The synthetic dataset and image folders."""

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pebench.data import SyntheticData, parse_data
from pebench.data.synthetic import (
    CLASS_NAMES,
    CONTENT_SHAPES,
    DISK,
    NUM_CLASSES,
    POSITION_CLASSES,
    RING,
    random_crops,
    render,
    sample_scenes,
)
from pebench.errors import PebenchError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))


def test_scenes_are_deterministic_per_seed_split_and_index():
    a = render(sample_scenes(0, "val", [3, 7]), 64)
    b = render(sample_scenes(0, "val", [7, 3]), 64)
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    assert not torch.equal(a, render(sample_scenes(0, "train", [3, 7]), 64))
    assert not torch.equal(a, render(sample_scenes(1, "val", [3, 7]), 64))


def test_same_scene_at_any_resolution_with_more_detail_when_larger():
    scenes = sample_scenes(0, "val", range(8))
    small, large = render(scenes, 224), render(scenes, 448)
    pooled = F.avg_pool2d(large, 2)
    assert (pooled - small).abs().mean() < 0.02  # the same picture
    upsampled = F.interpolate(small, size=448, mode="bicubic", align_corners=False)
    # 448 px is not an upsampled 224 px image: it holds detail the smaller render cannot
    assert (large - upsampled).abs().mean() > 10 * (pooled - small).abs().mean()


def test_ten_balanced_classes():
    assert NUM_CLASSES == len(CLASS_NAMES) == 10
    data = SyntheticData(train=40, val=20)
    labels = torch.tensor([data.label("val", i) for i in range(data.size("val"))])
    assert torch.bincount(labels, minlength=10).tolist() == [2] * 10


def _ring_to_disk_degrees(centers: np.ndarray) -> np.ndarray:
    """Direction from the ring (object 1) to the disk (object 0), clockwise from right (y points down)."""
    return np.degrees(np.arctan2(*(centers[:, 0] - centers[:, 1])[:, ::-1].T)) % 360


def test_position_classes_are_the_disk_sector_and_the_ring_points_at_it():
    scenes = sample_scenes(0, "train", range(300))
    where = scenes.label < POSITION_CLASSES
    assert where.sum() == 90
    shapes, centers, radii = scenes.shape[where], scenes.center[where], scenes.radius[where]
    assert (shapes == [DISK, RING]).all()  # the three classes show the same two objects
    disk, ring = centers[:, 0], centers[:, 1]
    low = scenes.label[where] * 120
    for origin in (0.5, ring):  # the disk's sector around the centre, and its direction from the ring
        angle = (
            np.degrees(
                np.arctan2(
                    disk[:, 1] - np.broadcast_to(origin, disk.shape)[:, 1],
                    disk[:, 0] - np.broadcast_to(origin, disk.shape)[:, 0],
                )
            )
            % 360
        )
        assert ((angle > low + 14.9) & (angle < low + 120 - 14.9)).all()
    gap = np.hypot(*(disk - ring).T) - radii.sum(axis=1)
    assert (gap > 16 / 224).all()  # no 224-px patch holds both shapes
    assert ((disk - radii[:, :1] > 0) & (disk + radii[:, :1] < 1)).all()


def test_crops_keep_every_shape_and_the_label_and_follow_the_area_and_aspect_ranges():
    scenes = sample_scenes(0, "train", range(400))
    crops = random_crops(scenes, np.random.default_rng(0))
    x0, y0, w, h = crops.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 1 + 1e-9).all() and (y0 + h <= 1 + 1e-9).all()
    aspect = w / h
    assert (aspect > 3 / 4 - 1e-9).all() and (aspect < 4 / 3 + 1e-9).all()
    assert (w * h).min() < 0.1 and (w * h).max() > 0.9  # DeiT's area range, as far as the shapes allow
    present = scenes.shape >= 0
    reach = scenes.radius[..., None] * 1.13  # the square's corner: the farthest any shape reaches
    first, last = crops[:, None, :2], crops[:, None, :2] + crops[:, None, 2:]
    inside = (scenes.center - reach >= first) & (scenes.center + reach <= last)
    assert inside.all(axis=2)[present].all()
    # in crop coordinates the ring-to-disk direction still lies in its class's sector
    where = scenes.label < POSITION_CLASSES
    in_crop = (scenes.center[where] - crops[where, None, :2]) / crops[where, None, 2:]
    low = scenes.label[where] * 120
    angle = _ring_to_disk_degrees(in_crop)
    assert ((angle > low + 5) & (angle < low + 115)).all()


def test_a_crop_renders_its_window_of_the_scene_at_full_detail():
    scenes = sample_scenes(0, "val", [3])
    whole = render(scenes, 448)
    window = render(scenes, 224, np.array([[0.25, 0.5, 0.5, 0.5]]))
    # the crop of (x 0.25-0.75, y 0.5-1) at 224 is the same picture as that window of the 448 render
    assert (window - whole[..., 224:, 112:336]).abs().mean() < 0.01
    assert not torch.equal(window, render(scenes, 224))


def test_shape_classes_show_one_distinct_shape_anywhere():
    scenes = sample_scenes(0, "train", range(300))
    what = scenes.label >= POSITION_CLASSES
    shapes = scenes.shape[what]
    assert (shapes[:, 1] == -1).all()
    assert (shapes[:, 0] == np.array(CONTENT_SHAPES)[scenes.label[what] - POSITION_CLASSES]).all()
    assert len(set(CONTENT_SHAPES) | {DISK, RING}) == len(CONTENT_SHAPES) + 2
    centers = scenes.center[what, 0]
    assert centers.min() >= 0.15 and centers.max() <= 0.85 and centers.std(axis=0).min() > 0.15


def test_shape_classes_each_have_their_own_hue_and_none_is_the_disks_red():
    scenes = sample_scenes(0, "val", range(700))
    what = scenes.label >= POSITION_CLASSES
    hues = np.array([colorsys.rgb_to_hsv(*rgb)[0] * 360 for rgb in scenes.color[what, 0]])
    kinds = scenes.label[what] - POSITION_CLASSES
    ranges = [(hues[kinds == k].min(), hues[kinds == k].max()) for k in range(len(CONTENT_SHAPES))]
    assert all(high < next_low for (_, high), (next_low, _) in zip(ranges[:-1], ranges[1:], strict=True))
    assert ranges[0][0] > 25 and ranges[-1][1] < 335  # red (0 deg) stays the disk's


@pytest.mark.parametrize("shape", CONTENT_SHAPES)
def test_each_shape_has_its_own_silhouette(shape):
    """Rendered alone on a flat background, each shape's mask differs from every other's."""

    def mask(shape_id):
        scenes = sample_scenes(0, "val", [3])
        scenes.shape[:] = [shape_id, -1]
        scenes.center[0, 0] = 0.5
        scenes.radius[0, 0] = 0.3
        scenes.bg[:] = 0.0
        scenes.bg_grating[:, 0] = 0
        scenes.color[:] = 1.0
        scenes.grating[:, 0] = 0
        return render(scenes, 64)[0, 0] > 0.5

    own = mask(shape)
    assert own.sum() > 64 * 64 * 0.03
    for other in set(CONTENT_SHAPES) - {shape}:
        assert (own ^ mask(other)).sum() > 40


def test_synthetic_reads_render_exactly_the_asked_items_a_few_at_a_time(monkeypatch):
    import pebench.data.synthetic as data_module

    data = SyntheticData(train=8, val=6)
    whole = data.read("val", 32, list(range(6)))
    rendered = []
    real_render = data_module.render
    monkeypatch.setattr(data_module, "render", lambda scenes, res: rendered.append(len(scenes.label))
                        or real_render(scenes, res))
    monkeypatch.setattr(data_module, "RENDER_PIXELS", 2 * 32 * 32)  # two images per render call
    some = data.read("val", 32, [4, 1, 5])
    assert rendered == [2, 1]  # only the three asked for, never the split
    assert some.images.dtype == torch.uint8 and torch.equal(some.images, whole.images[[4, 1, 5]])
    assert some.labels.tolist() == [4, 1, 5] and some.valid.all() and some.problems == []


def test_read_split_maps_the_cached_split_instead_of_copying_it(tmp_path):
    from pebench.data import read_split

    data = SyntheticData(train=8, val=6)
    images, labels = read_split(data, "val", 32, limit=4)
    cached = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert cached == [".json", ".u8"] and images.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3]
    assert torch.equal(images, data.read("val", 32, [0, 1, 2, 3]).images)
    again, _ = read_split(data, "val", 32, limit=4)
    assert torch.equal(again, images) and len(list((tmp_path / "cache").iterdir())) == 2


@pytest.mark.parametrize(
    "spec,message",
    [
        ("synthetik", "unknown dataset"),
        ("synthetic:val=ten", "bad dataset option"),
        ("imagefolder:/no/such/dir", "does not exist"),
    ],
)
def test_bad_dataset_specs(spec, message):
    with pytest.raises(PebenchError, match=message):
        parse_data(spec)


def _folder(tmp_path, broken=False):
    root = tmp_path / "images"
    for label, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((60, 80, 3), colour, dtype=np.uint8)).save(root / label / f"{i}.png")
    if broken:
        (root / "dog" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_image_folder_reads_with_timm_eval_transform_and_names_undecodable_files(tmp_path):
    data = parse_data(f"imagefolder:{_folder(tmp_path, broken=True)}", crop_pct={224: 0.875, 384: 1.0})
    assert [f.name for f, _ in data.files] == ["0.png", "0.png", "1.png", "1.png", "broken.jpg"]  # classes alternate
    items = data.read("val", 48, list(range(5)))
    assert items.images.shape == (5, 3, 48, 48) and items.labels.tolist() == [0, 1, 0, 1, 1]
    assert items.valid.tolist() == [True, True, True, True, False]
    assert len(items.problems) == 1 and items.problems[0].startswith("dog/broken.jpg (UnidentifiedImageError")
    assert data.crop_for(384) == 1.0 and data.crop_for(448) == 0.875
    assert items.images[0, 0].float().mean() > 190 and items.images[1, 2].float().mean() > 190


def test_empty_image_folder_is_an_error(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(PebenchError, match="no images"):
        parse_data(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(PebenchError, match="no class subfolders"):
        parse_data(f"imagefolder:{tmp_path / 'empty' / 'cls'}")


def _disk_gap_in_pixels(images: torch.Tensor) -> np.ndarray:
    """Per image, the gap between the red disk and the nearest border, read off the pixels: the disk is
    the only red object (its colour is tinted +0.3 red, -0.3 blue), so red minus blue marks it."""
    red = (images[:, 0].float() - images[:, 2].float()) / 255 > 0.3
    side = images.shape[-1]
    gaps = []
    for mask in red.numpy():
        rows, cols = np.nonzero(mask)
        gaps.append(min(rows.min(), cols.min(), side - 1 - rows.max(), side - 1 - cols.max()))
    return np.array(gaps, dtype=float)


@pytest.mark.slow
def test_where_by_geometry_bins_each_where_image_by_its_disk_to_border_gap(tmp_path):
    """tools/where_by_geometry.py bins the *where* images by the disk's gap to the border, in patches. The
    expected bins come from the rendered pixels, not from the scene parameters the tool reads: hits are made
    right exactly when the disk lies 40 px (2.5 patches) or more from the border, so the bins below 2 patches
    must read 0% and the one from 3 patches 100%, whatever a pixel of anti-aliasing does at the bin edges."""
    import json
    import re
    import subprocess
    import sys
    from pathlib import Path

    from pebench.results import pack_hits

    root = Path(__file__).resolve().parents[1]
    spec, n = "synthetic:seed=0,train=10000,val=1000", 400
    items = SyntheticData().read("val", 224, list(range(n)))
    where = np.flatnonzero(items.labels.numpy() < 3)
    gap_px = _disk_gap_in_pixels(items.images[where])
    hits = [False] * n
    for index, gap in zip(where, gap_px, strict=True):
        hits[index] = bool(gap >= 40)
    record = {"schema_version": 2, "kind": "eval", "status": "ok", "suite": "t", "key": "k", "mode": "native",
              "res": 224, "model": {"name": "m", "patch": 16, "encoding": "none"},
              "data": {"spec": spec, "split": "val", "n": n},
              "metrics": {"n": n, "image_hits": pack_hits(hits)}}
    (tmp_path / "results.jsonl").write_text(json.dumps(record) + "\n")
    out = subprocess.run([sys.executable, str(root / "tools" / "where_by_geometry.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("m "))
    cells = [(float(share), int(count)) for share, count in re.findall(r"([\d.]+) \(\s*(\d+)\)", row)]
    assert sum(count for _, count in cells) == len(where)  # every where image binned once
    by_pixels = np.bincount(np.digitize(gap_px / 16, [1, 2, 3]), minlength=4)
    assert all(abs(count - expected) <= 2 for (_, count), expected in zip(cells, by_pixels, strict=True))
    assert [cells[0][0], cells[1][0], cells[3][0]] == [0.0, 0.0, 100.0] and 0 < cells[2][0] < 100
