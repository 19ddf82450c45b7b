"""pebench profile's CPU throughput vs a bare torch.utils.benchmark loop, side by side in one run.

The bar (issue 4): the img/s that `pebench profile` reports for a model is within 3% of what
``torch.utils.benchmark.Timer.blocked_autorange`` measures for the same model, batch and threads.
Both are measured in alternation for several rounds, each going first in every other round; the
ratio is taken per round (so the drifts of a shared machine cancel) and its median is printed with
the medians of each.

    python benchmarks/profile_vs_bare.py [--size micro] [--encoding none] [--res 224] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils import benchmark

from pebench.models import build_model
from pebench.profile import SpeedSettings, measure_speed, prepare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="micro")
    parser.add_argument("--encoding", default="none")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    settings = SpeedSettings(batch_size=args.batch_size)
    model = prepare(build_model(args.size, args.encoding), settings)
    x = torch.randn(args.batch_size, 3, args.res, args.res)
    timer = benchmark.Timer(stmt="model(x, 'interp')", globals={"model": model, "x": x},
                            num_threads=torch.get_num_threads())
    ours, bare = [], []

    def measure_bare() -> None:
        with torch.inference_mode():
            bare.append(args.batch_size / timer.blocked_autorange(min_run_time=1.5).median)

    def measure_ours() -> None:
        ours.append(measure_speed(model, args.res, "interp", settings)["img_per_s"])

    for round_index in range(args.rounds):  # alternate which goes first, so order effects cancel
        for measure in (measure_ours, measure_bare) if round_index % 2 == 0 else (measure_bare, measure_ours):
            measure()
    ratio = statistics.median(a / b for a, b in zip(ours, bare, strict=True))
    print(f"{args.size} {args.encoding} at {args.res}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds")
    print(f"  pebench profile   {statistics.median(ours):8.2f} img/s  (rounds: "
          f"{', '.join(f'{v:.2f}' for v in ours)})")
    print(f"  torch.benchmark   {statistics.median(bare):8.2f} img/s  (rounds: "
          f"{', '.join(f'{v:.2f}' for v in bare)})")
    print(f"  median per-round ratio {ratio:.3f} (bar: within 3%, {'met' if abs(ratio - 1) <= 0.03 else 'NOT met'})")


if __name__ == "__main__":
    main()
