"""Peak memory of `pebench eval` at 1024 px, batch 1, measured side by side in one run (issue 14's target).

For `tiny` (3 heads, 12 blocks, 4,097 tokens at 1024) with random weights and encodings `none`,
`relpos_table` and `spvit` (plus the other attention-bias encodings for the record), one
`pebench eval --res 1024 --batch-size 1 --workers 0` process each, on the same synthetic images
rendered once into a private cache first (so no process pays the renderer's intermediates). The
peak is the process's high-water mark of resident memory (VmHWM, read from /proc when the command
exits), which catches short spikes that sampling would miss.

Target: peak(encoding) <= 2 x peak(none) + one block's bias, where one block's bias is
(1, heads, T, T) float32 = 3 x 4097^2 x 4 bytes = 192 MiB. The extra memory over `none` is printed
too: it is what the position terms cost on top of the same model without them. ``--pythonpath DIR``
measures another checkout of pebench (e.g. an older commit) the same way.

    python benchmarks/memory_1024.py [--n 2] [--specs relpos_table,spvit,...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import kept

from pebench.models.checkpoint import save_checkpoint
from pebench.models.vit import build_model

WRAPPER = ("import atexit\n"
           "def report():\n"
           "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
           "    print('PEAK_KB', hwm.split()[1], file=__import__('sys').stderr)\n"
           "atexit.register(report)\n"
           "from pebench.cli import main\n"
           "main()\n")
DATA = "synthetic:seed=0,train=10,val={n}"


def peak_mib(checkpoint: Path, n: int, cache: Path, pythonpath: str | None) -> float:
    command = [sys.executable, "-c", WRAPPER, "eval", "-m", str(checkpoint), "--res", "1024", "--mode", "interp",
               "--n", str(n), "--batch-size", "1", "--workers", "0", "--data", DATA.format(n=n)]
    env = os.environ | {"PEBENCH_CACHE": str(cache)} | ({"PYTHONPATH": pythonpath} if pythonpath else {})
    # from the cache's folder: `python -c` puts the working directory first on sys.path, which would
    # shadow --pythonpath when run from a checkout
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cache.parent)
    if result.returncode:
        raise SystemExit(result.stderr)
    line = next(line for line in result.stderr.splitlines() if line.startswith("PEAK_KB"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--specs", default="relpos_table,spvit,alibi,cpb,lookhere,fire,rpe:mode=bias")
    parser.add_argument("--pythonpath", help="run the eval commands with this pebench checkout first on the path")
    args = parser.parse_args()
    specs = ["none", *args.specs.split(",")]
    bias_mib = 3 * 4097**2 * 4 / 2**20
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        paths = {}
        for spec in specs:
            model = build_model("tiny", spec, num_classes=10)
            paths[spec] = root / f"{spec.replace(':', '_').replace('=', '_')}.safetensors"
            save_checkpoint(model, paths[spec], {"encoding": str(model.spec), "size": "tiny", "patch": 16,
                                                 "train_res": 224, "num_classes": 10, "data": DATA.format(n=args.n)})
        peak_mib(paths["none"], args.n, root / "cache", args.pythonpath)  # renders into the cache: not measured
        peaks = {spec: peak_mib(paths[spec], args.n, root / "cache", args.pythonpath) for spec in specs}
    limit = 2 * peaks["none"] + bias_mib
    print(f"tiny at 1024 px, batch 1, interp, n={args.n}; one block's bias {bias_mib:.0f} MiB; "
          f"bound = 2 x none + bias = {limit:.0f} MiB")
    print(f"{'encoding':<16}{'peak MiB':>9}{'over none MiB':>15}{'peak / bound':>14}")
    for spec, peak in peaks.items():
        print(f"{spec:<16}{peak:>9.0f}{peak - peaks['none']:>15.0f}{peak / limit:>14.2f}")
    for spec in ("relpos_table", "spvit"):
        if spec in peaks:
            verdict = "met" if peaks[spec] <= limit else "NOT met"
            print(f"target {spec}: {peaks[spec]:.0f} MiB <= {limit:.0f} MiB: {verdict}")


if __name__ == "__main__":
    with kept(__file__):
        main()
