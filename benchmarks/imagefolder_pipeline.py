"""Image-folder evaluation at ImageNet scale, measured side by side in one run (issue 12's targets).

On an ImageNet-shaped folder (JPEGs of 400-640 px, 100 classes; generated once, reused):

1. memory: peak PSS of the whole `pebench eval` process tree (DataLoader workers included) on the
   shipped `ape` model at 512 px, n=100 vs n=800. Bar: ratio <= 1.15 (memory grows with the batch,
   not with the folder).
2. decoding: img/s of one streamed pass (no model) with --workers 2 vs --workers 0. Bar: >= 1.6x.
3. vs timm: `pebench eval` of a randomly initialised timm DeiT-tiny (100-class head) over the whole
   folder vs timm's own validation loop (ImageDataset + create_transform + DataLoader), same
   workers and batch, alternating which runs first. Bar: pass img/s ratio >= 0.95 and identical
   correct counts (top-1 and top-5).

    python benchmarks/imagefolder_pipeline.py [--folder DIR] [--images 800] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from helpers import HERE, fresh, kept, make_folder, run_measured, save_random_timm

from pebench.data import parse_data
from pebench.data.stream import SplitStream

PEBENCH = [sys.executable, "-c", "from pebench.cli import main; main()"]


def pebench_eval(args: list[str], out: Path) -> tuple[list[dict], float, float]:
    """Records, peak PSS (MB) and wall seconds of one `pebench eval` process."""
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    result, peak = run_measured([*PEBENCH, "eval", *args, "--out", str(out), "--cache", "off"])
    if result.returncode:
        raise SystemExit(result.stderr)
    return [json.loads(line) for line in out.read_text().splitlines()], peak, time.perf_counter() - started


def memory(folder: Path, scratch: Path) -> None:
    peaks = {}
    for n in (100, 800):
        records, peaks[n], wall = pebench_eval(["--model", "ape", "--data", f"imagefolder:{folder}", "--res", "512",
                                                "--mode", "interp", "--n", str(n), "--workers", "2"],
                                               scratch / "memory.jsonl")
        print(f"  n={n}: peak PSS {peaks[n]:.0f} MB, {wall:.1f} s, top-1 n={records[0]['metrics']['n']}")
    print(f"memory: peak n=800 / n=100 = {peaks[800] / peaks[100]:.3f} (bar <= 1.15)")


def decoding(folder: Path, res: int, images: int, rounds: int) -> None:
    data = parse_data(f"imagefolder:{folder}")
    rates: dict[int, list[float]] = {0: [], 2: []}
    for round_ in range(rounds):
        for workers in ((0, 2) if round_ % 2 == 0 else (2, 0)):
            stream = SplitStream(data, "val", res, list(range(images)), 64, workers, torch.device("cpu"))
            started = time.perf_counter()
            for _ in stream:
                pass
            rates[workers].append(images / (time.perf_counter() - started))
    zero, two = statistics.median(rates[0]), statistics.median(rates[2])
    print(f"decoding at {res} px ({images} images, {rounds} rounds): workers 0 {zero:.1f} img/s, workers 2 "
          f"{two:.1f} img/s, ratio {two / zero:.2f} (bar >= 1.6)")


def versus_timm(folder: Path, scratch: Path, rounds: int) -> None:
    checkpoint = save_random_timm("deit_tiny_patch16_224", scratch / "deit_tiny_100.safetensors", 100)
    ours, theirs, counts = [], [], set()
    loop = fresh(f"timm_loop(Path({str(folder.resolve())!r}), Path({str(checkpoint.resolve())!r}), "
                 "'deit_tiny_patch16_224', 224, 0.875, 2, 64, None, 'cpu')")
    for round_ in range(rounds):
        for which in (("pebench", "timm") if round_ % 2 == 0 else ("timm", "pebench")):
            if which == "pebench":
                records, _, _ = pebench_eval(["--model", "timm:deit_tiny_patch16_224", "--checkpoint", str(checkpoint),
                                              "--data", f"imagefolder:{folder}", "--res", "224", "--mode", "interp",
                                              "--workers", "2", "--batch-size", "64"], scratch / "timm.jsonl")
                ours.append(records[0]["timing"]["pass_img_per_s"])
                m = records[0]["metrics"]
                counts.add(("pebench", m["n"], m["correct_top1"], m["correct_top5"]))
            else:
                result, _ = run_measured(loop, cwd=HERE)
                if result.returncode:
                    raise SystemExit(result.stderr)
                row = json.loads(result.stdout.splitlines()[-1])
                theirs.append(row["img_per_s"])
                counts.add(("timm", row["images"], row["correct_top1"], row["correct_top5"]))
    same = len({c[1:] for c in counts}) == 1
    print(f"vs timm validation loop (deit_tiny, 224, workers 2, batch 64, {rounds} rounds): pebench "
          f"{statistics.median(ours):.1f} img/s, timm {statistics.median(theirs):.1f} img/s, ratio "
          f"{statistics.median(ours) / statistics.median(theirs):.3f} (bar >= 0.95); counts "
          f"{'identical' if same else 'DIFFER'}: {sorted(counts)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, help="reuse (or create) the generated folder here")
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        folder = make_folder(args.folder or scratch / "val", args.images)
        print(f"folder {folder}: {args.images} JPEGs, torch threads {torch.get_num_threads()}")
        memory(folder, scratch)
        for res in (224, 512):
            decoding(folder, res, min(400, args.images), args.rounds)
        versus_timm(folder, scratch, args.rounds)


if __name__ == "__main__":
    with kept(__file__):
        main()
