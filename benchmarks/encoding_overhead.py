"""Time of each encoding relative to `none` at 512 px on CPU, measured side by side in one run.

The bars (issue 4): the bias-type encodings (relpos_table, cpb, alibi, rpe bias) and rope stay on
fused attention and take at most 1.15 x `none`'s time; peg at most 1.05 x. iRPE contextual and
SP-ViT need the attention scores materialised; their overhead is printed, not judged. Each round
times `none` immediately before each encoding (pebench's timed blocks: warm-up, median of 5 blocks);
the ratio per encoding is the median over rounds of (encoding time) / (none time), so the slow
drifts of a shared machine cancel within each pair.

    python benchmarks/encoding_overhead.py [--size tiny] [--res 512] [--mode native] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from pebench.models import build_model
from pebench.profile import SpeedSettings, prepare, timed_blocks

BARS = {"relpos_table": 1.15, "cpb": 1.15, "alibi": 1.15, "rpe:mode=bias": 1.15, "rope": 1.15,
        "rope:variant=mixed": 1.15, "peg": 1.05, "rpe": None, "spvit": None, "ape": None, "sincos": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--res", type=int, default=512)
    parser.add_argument("--mode", default="native", choices=("native", "interp"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoding", action="append", help="restrict to these specs (repeat)")
    args = parser.parse_args()

    specs = args.encoding or list(BARS)
    settings = SpeedSettings(batch_size=args.batch_size)
    device = settings.device
    x = torch.randn(args.batch_size, 3, args.res, args.res)
    models = {spec: prepare(build_model(args.size, spec), settings) for spec in ["none", *specs]}

    def seconds(spec: str) -> float:
        model = models[spec]
        mode = "interp" if model.applicability(args.res, args.mode) else args.mode
        with torch.inference_mode():
            return statistics.median(timed_blocks(lambda: model(x, mode), device, 5, 0.2, 0.3))

    ratios: dict[str, list[float]] = {spec: [] for spec in specs}
    speeds: dict[str, list[float]] = {spec: [] for spec in ["none", *specs]}
    for _ in range(args.rounds):
        for spec in specs:
            reference, own = seconds("none"), seconds(spec)
            speeds["none"].append(args.batch_size / reference)
            speeds[spec].append(args.batch_size / own)
            ratios[spec].append(own / reference)
    print(f"{args.size} at {args.res} ({args.mode} mode; ape/sincos interp), batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds; time relative to none")
    print(f"  {'none':22} {statistics.median(speeds['none']):7.2f} img/s")
    failed = False
    for spec in specs:
        ratio = statistics.median(ratios[spec])
        bar = BARS.get(spec)
        verdict = "" if bar is None else f"  (bar <= {bar:.2f}: {'met' if ratio <= bar else 'NOT met'})"
        failed |= bar is not None and ratio > bar
        print(f"  {spec:22} {statistics.median(speeds[spec]):7.2f} img/s  x{ratio:.3f}{verdict}")
    print("all bars met" if not failed else "some bars NOT met")


if __name__ == "__main__":
    main()
