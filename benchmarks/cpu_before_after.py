"""On a CPU, nothing gets slower (issue 30): the forward time of every shipped encoding with the code as it is
vs the code at a base commit, measured side by side in one run.

The base (default: main before issue 30's attention paths, breakdown clock and device budgets) is exported
with `git archive` to a temporary folder. Then rounds alternate: a fresh interpreter times every encoding on
the base code, another on this tree (`tiny`, seed-0 weights, inference mode, one warm-up forward, the median
of --calls forwards), base first in odd rounds and last in even ones. Each encoding's ratio is this tree's
median over rounds / the base's; bar: <= 1.05 for each.

    python benchmarks/cpu_before_after.py            (tiny, 384 px, native, batch 4, median of 5 calls, 4 rounds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from helpers import kept

ROOT = Path(__file__).resolve().parents[1]
#: main at the end of issue 29's first sessions, before issue 30 touched the attention or the caches
BASE = "a1f7690"
BAR = 1.05
TIMER = """
import json, statistics, sys, time, torch
from pebench.models.vit import build_model
size, res, batch, calls, mode, specs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    sys.argv[5], sys.argv[6:]
torch.manual_seed(0)
x = torch.randn(batch, 3, res, res)
out = {}
for spec in specs:
    model = build_model(size, spec, num_classes=10).eval()
    if model.applicability(res, mode):  # APE natively off its grid
        continue
    with torch.inference_mode():
        model(x, mode)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            model(x, mode)
            times.append(time.perf_counter() - start)
    out[spec] = statistics.median(times)
print(json.dumps(out))
"""


def export(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pebench"], capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def timed(source: Path, args, specs: list[str]) -> dict[str, float]:
    env = os.environ | {"PYTHONPATH": str(source)}
    command = [sys.executable, "-c", TIMER, args.size, str(args.res), str(args.batch_size), str(args.calls),
               args.mode, *specs]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if result.returncode:
        raise SystemExit(f"timing with {source} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=BASE, help="the commit to compare with")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--res", type=int, default=384)
    parser.add_argument("--mode", default="native")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pebench.zoo import ZOO

    specs = list(dict.fromkeys(ZOO.values()))
    with tempfile.TemporaryDirectory() as folder, kept(__file__):
        base = export(args.base, Path(folder))
        print(f"forward time, {args.size}, {args.res} px, {args.mode}, batch {args.batch_size}, median of "
              f"{args.calls} calls per round, {args.rounds} alternating rounds; base {args.base} vs this tree")
        seconds: dict[str, list[dict]] = {"base": [], "now": []}
        for r in range(args.rounds):
            order = [("base", base), ("now", ROOT)] if r % 2 == 0 else [("now", ROOT), ("base", base)]
            for name, source in order:
                seconds[name].append(timed(source, args, specs))
        within = 0
        for spec in [spec for spec in specs if spec in seconds["now"][0]]:
            before = statistics.median(round_[spec] for round_ in seconds["base"])
            after = statistics.median(round_[spec] for round_ in seconds["now"])
            ratio = after / before
            within += ratio <= BAR
            print(f"{spec:24s} base {1000 * before:8.1f} ms   now {1000 * after:8.1f} ms   ratio {ratio:.3f}"
                  f"{'' if ratio <= BAR else '   over the bar'}")
        print(f"now / base within {BAR} for {within} of {len(seconds['now'][0])} encodings ({args.size}, "
              f"{args.res} px, {args.mode}, batch {args.batch_size})")


if __name__ == "__main__":
    main()
