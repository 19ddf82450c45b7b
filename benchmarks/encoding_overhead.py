"""Time of each encoding relative to `none` at 512 px on CPU, measured side by side in one run.

The bars (issue 4): the bias-type encodings (relpos_table, cpb, alibi, rpe bias) and rope stay on
fused attention and take at most 1.15 x `none`'s time; peg at most 1.05 x. iRPE contextual and
SP-ViT need the attention scores materialised; their overhead is printed, not judged. Each round
measures `none` and then every encoding; the ratio per encoding is the median over rounds of
(none img/s) / (encoding img/s), so slow drifts of a shared machine cancel within a round.

    python benchmarks/encoding_overhead.py [--size tiny] [--res 512] [--mode native] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from pebench.models import build_model
from pebench.profile import SpeedSettings, measure_speed, prepare

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
    settings = SpeedSettings(batch_size=args.batch_size, repeats=5)
    models = {spec: prepare(build_model(args.size, spec), settings) for spec in ["none", *specs]}
    ratios: dict[str, list[float]] = {spec: [] for spec in specs}
    speeds: dict[str, list[float]] = {spec: [] for spec in ["none", *specs]}
    for _ in range(args.rounds):
        reference = measure_speed(models["none"], args.res, args.mode, settings)["img_per_s"]
        speeds["none"].append(reference)
        for spec in specs:
            mode = "interp" if models[spec].applicability(args.res, args.mode) else args.mode
            speed = measure_speed(models[spec], args.res, mode, settings)["img_per_s"]
            speeds[spec].append(speed)
            ratios[spec].append(reference / speed)
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
