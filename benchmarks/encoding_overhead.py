"""Time of each encoding relative to `none`, as the product measures it: `pebench profile` itself.

Runs `pebench profile -e none -e ENC ...` twice in one go, the encodings listed in one order and
then in the reverse order, and prints each encoding's "time x none" (the median of per-round time
ratios, with its IQR) from both runs: a fair measurement gives the same answer whichever model is
listed first. Bars, checked on the first run's figures:

- issue 13: at 224 px on `micro` (the shipped models' size), `ape:init=sincos`, `sincos` and `rope`
  read between 0.95 and 1.10 (their extra work is one addition or one rotation);
- issue 4: at 512 px on `tiny`, the bias-type encodings and rope stay at or under 1.15, PEG at or
  under 1.05; contextual iRPE and SP-ViT (scores materialised) are printed, not judged.

    python benchmarks/encoding_overhead.py        (issue 4's bars: tiny, 512 px, native, batch 4, every encoding)
    python benchmarks/encoding_overhead.py --res 224 --size micro --batch-size 8   (issue 13's bars)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import kept

BARS_512 = {"relpos_table": (0, 1.15), "cpb": (0, 1.15), "alibi": (0, 1.15), "rpe:mode=bias": (0, 1.15),
            "rope": (0, 1.15), "rope:variant=mixed": (0, 1.15), "peg": (0, 1.05)}
BARS_224 = {"ape:init=sincos": (0.95, 1.10), "sincos": (0.95, 1.10), "rope": (0.95, 1.10)}
UNJUDGED = ("rpe", "spvit")  # scores materialised: printed, not judged


def profile(specs: list[str], args, out: Path) -> dict[str, dict]:
    rounds = ["--repeats", str(args.rounds)] if args.rounds else []  # default: the product's
    command = [sys.executable, "-c", "from pebench.cli import main; main()", "profile", "--size", args.size,
               "--res", str(args.res), "--mode", args.mode, "--batch-size", str(args.batch_size), *rounds,
               "--out", str(out), *[a for spec in specs for a in ("-e", spec)]]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return {r["model"]["name"]: r for r in map(json.loads, out.read_text().splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--res", type=int, default=512)
    parser.add_argument("--mode", default="native", choices=["native", "interp"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: pebench profile's)")
    parser.add_argument("--encoding", "-e", action="append", help="repeat (default: every encoding with a bar at "
                                                                   "this resolution, plus spvit and contextual rpe "
                                                                   "at 512, printed without a bar)")
    args = parser.parse_args()
    bars = BARS_224 if args.res == 224 else BARS_512
    args.encoding = args.encoding or [*bars, *([] if args.res == 224 else UNJUDGED)]
    with tempfile.TemporaryDirectory() as tmp:
        forward = profile(["none", *args.encoding], args, Path(tmp) / "forward.jsonl")
        backward = profile([*reversed(args.encoding), "none"], args, Path(tmp) / "backward.jsonl")
    none = forward["none"]["timing"]
    print(f"{args.size}, {args.res} px, {args.mode}, batch {args.batch_size}, {none['repeats']} rounds; none "
          f"{none['img_per_s']:.1f} img/s, reference drift {none['reference_drift']:+.1%} / "
          f"{backward['none']['timing']['reference_drift']:+.1%}")
    judged = met = 0
    for spec in args.encoding:
        cells = []
        for run in (forward, backward):
            over = run[spec]["overhead_vs_none"]
            cells.append(f"{over['time']:.3f} ({over['time_iqr'][0]:.3f}-{over['time_iqr'][1]:.3f})")
        low, high = bars.get(spec, (None, None))
        value = forward[spec]["overhead_vs_none"]["time"]
        verdict = "" if high is None else f"  bar [{low}, {high}]: {'ok' if low <= value <= high else 'MISSED'}"
        judged, met = judged + (high is not None), met + (high is not None and low <= value <= high)
        print(f"  {spec:22} x none: listed after none {cells[0]}, listed before none {cells[1]}{verdict}")
    print(f"time x none within its bar for {met} of {judged} encodings ({args.size}, {args.res} px, {args.mode})")


if __name__ == "__main__":
    with kept(__file__):
        main()
