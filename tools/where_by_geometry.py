"""Which *where* scenes a model gets right: accuracy by how close the red disk comes to the image border.

A zero-padded convolution tells a token where it is only near the border (one 3x3 PEG: within one
patch). If a model's *where* accuracy is high when the disk nearly touches the border and at chance
when it sits further in, its position signal comes from the padding alone. This reads eval records on
the synthetic val split that kept each image's hit (``metrics.image_hits``), recomputes the scenes
from the data spec, and bins the *where* images by the gap between the disk's edge and the nearest
border, in patches of the evaluated grid.

    python tools/where_by_geometry.py [RESULTS (default results/zoo)] [--models peg,peg_x5] [--res 224]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pebench.data import parse_data
from pebench.data.synthetic import disk_border_gap
from pebench.results import load_results, unpack_hits

BIN_EDGES = (0.0, 1.0, 2.0, 3.0, np.inf)


LABELS = [f"[{lo:g},{hi:g})" for lo, hi in zip(BIN_EDGES[:-1], BIN_EDGES[1:], strict=True)]


def by_border_gap(results: Path, models: set[str] | None = None,
                  resolutions: set[int] | None = None) -> list[tuple[str, int, str, list[tuple[float, int] | None]]]:
    """Per eval record (model, res, mode): per gap bin, the *where* accuracy % and image count (None if empty)."""
    geometry, rows = {}, []
    for record in load_results([results]):
        if record.get("kind") != "eval" or record.get("status") != "ok":
            continue
        hits_hex, name = record["metrics"].get("image_hits"), record["model"]["name"]
        if hits_hex is None or not record["data"]["spec"].startswith("synthetic"):
            continue
        if (models and name not in models) or (resolutions and record["res"] not in resolutions):
            continue
        n = record["metrics"]["n"]
        key = (record["data"]["spec"], n)
        if key not in geometry:
            geometry[key] = disk_border_gap(parse_data(key[0]).seed, "val", n)
        where, gap = geometry[key]
        hits = np.array(unpack_hits(hits_hex, n))[where]
        bins = np.digitize(gap * record["res"] / record["model"]["patch"], BIN_EDGES[1:-1])
        cells = [(100 * hits[bins == b].mean(), int((bins == b).sum())) if (bins == b).any() else None
                 for b in range(len(LABELS))]
        rows.append((name, record["res"], record["mode"], cells))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent / "results"
                        / "zoo", help="a results .jsonl file or a run folder (default: the zoo suite's, results/zoo)")
    parser.add_argument("--models", default=None, help="comma-separated model names (default: all)")
    parser.add_argument("--res", default=None, help="comma-separated resolutions (default: all)")
    args = parser.parse_args()
    models = set(args.models.split(",")) if args.models else None
    resolutions = {int(r) for r in args.res.split(",")} if args.res else None

    print("where top-1 % (images) by the gap between the disk's edge and the nearest border, in patches")
    print(f"{'model':<14} {'res':>4} {'mode':<8} " + " ".join(f"{label:>14}" for label in LABELS))
    for name, res, mode, cells in by_border_gap(args.results, models, resolutions):
        shown = [f"{share:5.1f} ({count:>4})" if count else "-" for share, count in
                 (cell or (0.0, 0) for cell in cells)]
        print(f"{name:<14} {res:>4} {mode:<8} " + " ".join(f"{c:>14}" for c in shown))


if __name__ == "__main__":
    main()
