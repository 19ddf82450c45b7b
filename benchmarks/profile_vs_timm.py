"""`pebench profile` vs timm's benchmark.py method on the same model, side by side, and why they differ.

timm's benchmark.py (inference): the model under ``torch.no_grad()``, one example batch made once,
10 warm-up steps, then 40 timed steps; samples/s = 40 x batch / seconds of the timed loop, i.e.
the *mean* over steps. `pebench profile`: ``torch.inference_mode()``, warm-up until two timed
blocks agree, then interleaved rounds of blocks; img/s = the *median* over rounds (the mean is in
the record too).

Each round runs, in fresh processes and alternating which goes first: (a) timm's method, and in the
same process the same loop under ``inference_mode`` and the median over its steps, to separate the
causes; (b) `pebench profile --model timm:NAME` (random weights: cost does not depend on them).

    python benchmarks/profile_vs_timm.py [--name deit_tiny_patch16_224] [--batch-size 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers import kept


def timm_method(name: str, res: int, batch: int, warmup: int = 10, steps: int = 40) -> dict:
    """benchmark.py's loop under no_grad (its way) and under inference_mode; mean and median over steps."""
    import timm
    import torch

    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(batch, 3, res, res)
    out = {}
    for label, context in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        with context():
            for _ in range(warmup):
                model(x)
            step_s = []
            started = time.perf_counter()
            for _ in range(steps):
                t0 = time.perf_counter()
                model(x)
                step_s.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        out[label] = {"mean_img_per_s": steps * batch / elapsed,
                      "median_img_per_s": batch / statistics.median(step_s)}
    return out


def pebench_profile(name: str, res: int, batch: int, out: Path) -> dict:
    out.unlink(missing_ok=True)
    command = [sys.executable, "-c", "from pebench.cli import main; main()", "profile", "--model", f"timm:{name}",
               "--res", str(res), "--batch-size", str(batch), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    if result.returncode:
        raise SystemExit(result.stderr)
    timing = json.loads(out.read_text().splitlines()[0])["timing"]
    return {"median_img_per_s": timing["img_per_s"], "mean_img_per_s": timing["img_per_s_mean"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="deit_tiny_patch16_224")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timm-method", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.timm_method:
        print(json.dumps(timm_method(args.name, args.res, args.batch_size)))
        return
    child = [sys.executable, __file__, "--timm-method", "--name", args.name, "--res", str(args.res),
             "--batch-size", str(args.batch_size)]
    timm_runs, pebench_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for which in (("timm", "pebench") if round_ % 2 == 0 else ("pebench", "timm")):
                if which == "timm":
                    timm_runs.append(json.loads(subprocess.run(child, capture_output=True, text=True,
                                                               check=True).stdout))
                else:
                    pebench_runs.append(pebench_profile(args.name, args.res, args.batch_size, Path(tmp) / "p.jsonl"))

    def median_of(runs, *keys) -> float:
        values = []
        for run in runs:
            for key in keys[:-1]:
                run = run[key]
            values.append(run[keys[-1]])
        return statistics.median(values)

    timm_way = median_of(timm_runs, "no_grad", "mean_img_per_s")
    ours = median_of(pebench_runs, "median_img_per_s")
    print(f"{args.name}, {args.res} px, batch {args.batch_size}, CPU, {args.rounds} alternating rounds "
          "(median over rounds of each figure):")
    print(f"  timm's method (no_grad, mean over 40 steps):   {timm_way:.1f} img/s  "
          f"{[round(r['no_grad']['mean_img_per_s'], 1) for r in timm_runs]}")
    print(f"  pebench profile (inference_mode, median):      {ours:.1f} img/s  "
          f"{[round(r['median_img_per_s'], 1) for r in pebench_runs]}")
    print("  the causes of a difference, one at a time:")
    print(f"    timm's loop, median over steps instead of mean: "
          f"{median_of(timm_runs, 'no_grad', 'median_img_per_s') / timm_way:.3f} x")
    print(f"    timm's loop under inference_mode instead of no_grad (means): "
          f"{median_of(timm_runs, 'inference_mode', 'mean_img_per_s') / timm_way:.3f} x")
    print(f"    pebench's own mean instead of its median: "
          f"{median_of(pebench_runs, 'mean_img_per_s') / ours:.3f} x")
    print(f"ratio pebench / timm: {ours / timm_way:.3f}")


if __name__ == "__main__":
    with kept(__file__):
        main()
