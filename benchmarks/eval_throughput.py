"""Eval throughput with data included vs the bare model forward, side by side in one run.

A streamed pebench pass over a cached split (memory-mapped uint8, read in-process), normalising
each batch and running the model, vs the model alone on pre-normalised tensors at the same batch
size. The bar (issue 3): the pass reaches at least 0.9 x the bare model. Both are timed in
alternation, several rounds, and the median of each is compared. The one-time cost of rendering a
split into the cache (paid once per resolution, shared by every model and mode) is printed separately.

    python benchmarks/eval_throughput.py [--res 224 --res 512] [--n 256] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from helpers import kept

from pebench.data import SyntheticData, normalize, read_split
from pebench.data.stream import SplitStream
from pebench.measure.evaluate import Tally, run_pass
from pebench.models import build_model
from pebench.models.resolve import built


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--res", type=int, action="append")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--encoding", default="ape")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("micro", args.encoding, num_classes=10).eval()
    device = torch.device("cpu")
    print(f"threads={torch.get_num_threads()} n={args.n} batch={args.batch_size} encoding={args.encoding}")
    for res in args.res or [224, 512]:
        with tempfile.TemporaryDirectory() as cache:
            import os

            os.environ["PEBENCH_CACHE"] = cache
            data = SyntheticData(train=0, val=args.n)
            started = time.perf_counter()
            images, _ = read_split(data, "val", res)
            render_s = time.perf_counter() - started
            prepared = [normalize(images[i : i + args.batch_size]) for i in range(0, args.n, args.batch_size)]
            pebench_rates, model_rates = [], []
            with torch.inference_mode():
                model(prepared[0], "interp")  # warm-up
            for _ in range(args.rounds):
                stream = SplitStream(data, "val", res, list(range(args.n)), args.batch_size, 0, device, Path(cache))
                wall = run_pass([Tally(built("m", model), "interp", args.batch_size)],
                                stream, device)
                pebench_rates.append(args.n / wall)
                started = time.perf_counter()
                with torch.inference_mode():
                    for x in prepared:
                        model(x, "interp")
                model_rates.append(args.n / (time.perf_counter() - started))
        ours, bare = statistics.median(pebench_rates), statistics.median(model_rates)
        print(f"res {res}: eval loop {ours:.1f} img/s, model alone {bare:.1f} img/s, "
              f"ratio {ours / bare:.3f} (bar >= 0.9); one-time render {args.n / render_s:.0f} img/s")


if __name__ == "__main__":
    with kept(__file__):
        main()
