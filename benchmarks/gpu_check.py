"""What only a GPU can show, in one run that fits a short lease: the CUDA paths of pebench, measured.

    python3 benchmarks/gpu_check.py [--out DIR] [--images 5000] [--skip compile]

With no arguments: on a CUDA machine the full check into results/gpu/DEVICE-DATE; without one, a dry run
of the plumbing on the CPU at tiny sizes (40 JPEGs, batch 4) into a scratch folder.

Steps, in this order (each a separate process with its own time limit, all within --budget-s; a
failing step is recorded and the rest go on):

- streaming eval on CUDA: `pebench eval` of a random-init timm DeiT-S (100-class head) over an
  ImageNet-shaped folder (JPEGs 400-640 px) at 224 and 384, workers 8 and 16, vs timm's validation
  loop (ImageDataset + create_transform + DataLoader, bf16 autocast) at 224: img/s and counts.
- the shipped zoo on CUDA (bf16 autocast) at 224-1024, compared cell by cell with the committed
  CPU fp32 results (results/zoo/results.jsonl).
- out-of-memory back-off: eval of ViT-B at 1024 px with a batch that cannot fit; profile at 512 likewise.
- torchrun with nccl: a suite under `torchrun --nproc-per-node 1` (the process group is joined, so
  every all-reduce goes through nccl) gives the single-process counts; 2 processes on one GPU tried.
- throughput (last, the slowest steps; too many for one 10-minute call, so split them with --skip):
  `pebench profile` of timm DeiT-Ti, DeiT-S and ViT-B with random weights, bf16 autocast, at 224
  and 384 (plain and channels-last) and 224 (torch.compile), vs a timm-benchmark-style loop
  (warm-up, then timed forward passes under autocast with device synchronisation: samples/s =
  batch x steps / s), alternating, two rounds each.

Writes DIR/gpu_check.json (every measurement), DIR/gpu_check.md (the summary) and DIR/log.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from helpers import HERE, fresh, kept, make_folder, save_random_timm

ROOT = Path(__file__).resolve().parent.parent
PEBENCH = [sys.executable, "-m", "pebench.cli"]
#: sizes on the GPU, and for a quick dry run of the script's plumbing on a CPU (--device cpu)
SCALE = {"cuda": {"batch": 256, "zoo_res": (224, 384, 448, 512, 1024), "zoo_n": [], "oom_eval": 1536,
                  "oom_profile": 4096, "oom_res": 1024, "oom_profile_res": 512, "suite_n": 400},
         "cpu": {"batch": 4, "zoo_res": (224,), "zoo_n": ["--n", 8], "oom_eval": 4, "oom_profile": 4, "oom_res": 64,
                 "oom_profile_res": 64, "suite_n": 8}}


class Check:
    def __init__(self, out: Path, work: Path, device: str, budget_s: float):
        self.out, self.work, self.device, self.results = out, work, device, {}
        self.log = (out / "log.txt").open("a")
        self.deadline = time.monotonic() + budget_s
        self.scale = SCALE[device]

    def sh(self, name: str, command: list[str], timeout: int, env: dict | None = None,
           cwd: Path = ROOT) -> subprocess.CompletedProcess:
        started = time.perf_counter()
        timeout = max(1, min(timeout, int(self.deadline - time.monotonic())))  # the lease ends for every step
        self.log.write(f"\n$ {' '.join(map(str, command))}\n")
        self.log.flush()
        try:
            result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=timeout,
                                    env=os.environ | (env or {}), cwd=cwd)
        except subprocess.TimeoutExpired as expired:
            result = subprocess.CompletedProcess(command, 124, expired.stdout or "", f"timed out after {timeout} s")
        self.log.write(f"[{name}: rc {result.returncode}, {time.perf_counter() - started:.1f} s]\n"
                       f"{(result.stdout or '')[-4000:]}\n{(result.stderr or '')[-4000:]}\n")
        self.log.flush()
        return result

    def put(self, key: str, value) -> None:
        self.results[key] = value
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=1) + "\n")
        print(f"{key}: {json.dumps(value)[:300]}", flush=True)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def streaming(check: Check, folder: Path, ckpt: Path, n_images: int) -> None:
    model = f"timm:deit_small_patch16_224@{ckpt}"
    for workers in (8, 16):
        out = check.out / f"folder_eval_w{workers}.jsonl"
        out.unlink(missing_ok=True)
        resolutions = ["--res", 224, "--res", 384] if workers == 8 else ["--res", 224]
        result = check.sh(f"eval workers {workers}", [*PEBENCH, "eval", "--model", model, "--data",
                                                      f"imagefolder:{folder}", *resolutions, "--mode", "interp",
                                                      "--device", check.device, "--workers", workers,
                                                      "--batch-size", check.scale["batch"],
                                                      "--cache", "off", "--out", out], 600)
        for r in records(out):
            t = r["timing"]
            check.put(f"eval_folder_w{workers}_{r['res']}", {
                "rc": result.returncode, "n": r["metrics"]["n"], "correct_top1": r["metrics"]["correct_top1"],
                "correct_top5": r["metrics"]["correct_top5"], "pass_img_per_s": t["pass_img_per_s"],
                "model_img_per_s": t["model_img_per_s"], "data_img_per_s": t["data_img_per_s"],
                "wait_fraction": t["wait_fraction"], "data_bound": t["data_bound"], "startup_s": t["startup_s"]})
        if result.returncode:
            check.put(f"eval_folder_w{workers}_error", result.stderr[-600:])
    loop = check.sh("timm loop", fresh(f"timm_loop(Path({str(folder.resolve())!r}), Path({str(ckpt.resolve())!r}), "
                                       f"'deit_small_patch16_224', 224, 0.875, 8, {check.scale['batch']}, None, "
                                       f"{check.device!r})"), 600, cwd=HERE)
    if loop.returncode == 0:
        row = json.loads(loop.stdout.splitlines()[-1])
        ours = check.results.get("eval_folder_w8_224", {})
        check.put("timm_loop_224_w8", row | {
            "pebench_over_timm": ours.get("pass_img_per_s", 0) / row["img_per_s"],
            "same_counts": (ours.get("n"), ours.get("correct_top1"), ours.get("correct_top5")) == (
                row["images"], row["correct_top1"], row["correct_top5"])})


def throughput(check: Check, names: list[str], resolutions: tuple[int, ...], label: str, flags: list[str]) -> None:
    """`pebench profile` (random weights, bf16) vs the timm-style loop, alternating, two rounds each."""
    for name in names:
        for res in resolutions:
            out = check.work / "profile.jsonl"
            timm_rates, ours = [], []
            for _ in range(2):  # alternate: timm-style loop, pebench, timm-style loop, pebench
                style = check.sh(f"timm-style {name} {res} {label}", fresh(
                    f"timm_benchmark_style({name!r}, {res}, {check.scale['batch']}, {label == 'channels_last'}, "
                    f"{check.device!r}, compile={label == 'compile'})"), 300, cwd=HERE)
                if style.returncode == 0:
                    timm_rates.append(json.loads(style.stdout.splitlines()[-1])["img_per_s"])
                out.unlink(missing_ok=True)
                command = [*PEBENCH, "profile", "--model", f"timm:{name}", "--res", res, "--device", check.device,
                           "--dtype", "bf16", "--batch-size", check.scale["batch"], *flags, "--out", out]
                result = check.sh(f"profile {name} {res} {label}", command, 400, env={"HF_HUB_OFFLINE": "1"})
                rows = [r for r in records(out) if r["status"] == "ok"]
                if rows:
                    ours.append(rows[0]["timing"]["img_per_s"])
                    check.put(f"profile_{name}_{res}_{label}_record", {k: rows[0][k] for k in ("flops", "timing",
                                                                                              "memory")})
                elif result.returncode:
                    check.put(f"profile_{name}_{res}_{label}_error", result.stderr[-600:])
            if timm_rates and ours:
                check.put(f"throughput_{name}_{res}_{label}", {
                    "pebench_img_per_s": ours, "timm_style_img_per_s": timm_rates,
                    "ratio_of_medians": statistics.median(ours) / statistics.median(timm_rates)})


def zoo_on_cuda(check: Check) -> None:
    out = check.out / "zoo_cuda.jsonl"
    out.unlink(missing_ok=True)
    resolutions = [arg for res in check.scale["zoo_res"] for arg in ("--res", res)]
    result = check.sh("zoo on cuda", [*PEBENCH, "eval", *resolutions, *check.scale["zoo_n"], "--device", check.device,
                                      "--workers", 16, "--out", out], 900,
                      env={"PEBENCH_CACHE": str(check.work / "render-cache")})
    cpu = {(r["model"]["name"], r["res"], r["mode"]): r for r in records(ROOT / "results" / "zoo" / "results.jsonl")
           if r["kind"] == "eval" and r["status"] == "ok"}
    diffs, table = [], {}
    for r in records(out):
        if r["status"] != "ok":
            continue
        key = (r["model"]["name"], r["res"], r["mode"])
        table[f"{key[0]} {key[1]} {key[2]}"] = {"top1_cuda_bf16": r["metrics"]["top1"],
                                                "batch_size": r["timing"]["batch_size"]}
        if key in cpu:
            diffs.append(100 * (r["metrics"]["top1"] - cpu[key]["metrics"]["top1"]))
            table[f"{key[0]} {key[1]} {key[2]}"]["top1_cpu_fp32"] = cpu[key]["metrics"]["top1"]
    check.put("zoo_cuda", {"rc": result.returncode, "cells": len(table), "compared_with_cpu": len(diffs),
                           "max_abs_diff_points": max(map(abs, diffs), default=None),
                           "mean_diff_points": statistics.fmean(diffs) if diffs else None, "cells_detail": table})
    if result.returncode:
        check.put("zoo_cuda_error", result.stderr[-600:])


def oom_eval(check: Check, folder: Path, vit_base: Path) -> None:
    out = check.out / "oom_eval.jsonl"
    out.unlink(missing_ok=True)
    batch = check.scale["oom_eval"]
    result = check.sh("oom eval", [*PEBENCH, "eval", "--model", f"timm:vit_base_patch16_224@{vit_base}", "--data",
                                   f"imagefolder:{folder}", "--res", check.scale["oom_res"], "--mode", "interp", "--n",
                                   batch, "--batch-size", batch, "--device", check.device, "--workers", 8, "--cache",
                                   "off", "--out", out], 600)
    rows = records(out)
    check.put(f"oom_eval_vit_base_{check.scale['oom_res']}", {
        "rc": result.returncode, "asked_batch": batch, "ran_batch": rows[0]["timing"]["batch_size"] if rows else None,
        "n": rows[0]["metrics"]["n"] if rows else None, "stderr": result.stderr[-300:] if result.returncode else ""})


def oom_profile(check: Check, vit_base: Path) -> None:
    out = check.out / "oom_profile.jsonl"
    out.unlink(missing_ok=True)
    res = check.scale["oom_profile_res"]
    result = check.sh("oom profile", [*PEBENCH, "profile", "--model", f"timm:vit_base_patch16_224@{vit_base}", "--res",
                                      res, "--device", check.device, "--dtype", "bf16", "--batch-size",
                                      check.scale["oom_profile"], "--repeats", 3, "--out", out], 300)
    rows = [r for r in records(out) if r["status"] == "ok"]
    check.put(f"oom_profile_vit_base_{res}", {"rc": result.returncode, "asked_batch": check.scale["oom_profile"],
                                              "ran_batch": rows[0]["timing"]["batch_size"] if rows else None,
                                              "img_per_s": rows[0]["timing"]["img_per_s"] if rows else None,
                                              "stderr": result.stderr[-300:] if result.returncode else ""})


def torchrun(check: Check) -> None:
    suite = check.work / "cuda_suite.yaml"
    suite.write_text("models: [ape, peg, rope_axial]\nresolutions: [224, 512]\nmodes: [native, interp]\n"
                     f"data: synthetic:val={check.scale['suite_n']}\ndevice: {check.device}\nbatch_size: 100\n")
    env = {"PEBENCH_CACHE": str(check.work / "render-cache")}
    single = check.work / "single"
    check.sh("single process", [*PEBENCH, "run", suite, "--out", single], 300, env)
    counts = {}
    for procs in (1, 2):
        out = check.work / f"torchrun{procs}"
        result = check.sh(f"torchrun {procs}", [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                                                procs, "--master-port", 29600 + procs, "-m", "pebench.cli", "run",
                                                suite, "--out", out], 300, env)
        mine = {r["key"]: (r["metrics"] or {}).get("correct_top1") for r in records(out / "results.jsonl")}
        reference = {r["key"]: (r["metrics"] or {}).get("correct_top1") for r in records(single / "results.jsonl")}
        counts[procs] = {"rc": result.returncode, "cells": len(mine), "same_as_single_process": mine == reference
                         and bool(mine), "stderr": result.stderr[-400:] if result.returncode else ""}
    check.put("torchrun_nccl", counts)


def summary(check: Check) -> str:
    r = check.results
    lines = [f"# GPU check: {r['env']['device']}", "", f"torch {r['env']['torch']}, timm {r['env']['timm']}, "
             f"{r['env']['cpus']} CPU cores, {r['env']['date']}. Every figure below was measured by "
             "benchmarks/gpu_check.py in this run (random-init weights; costs and data paths do not depend on them).",
             ""]
    for key, value in r.items():
        if key in ("env",) or key.endswith("_record") or key == "zoo_cuda":
            continue
        lines.append(f"- `{key}`: {json.dumps(value)}")
    zoo = r.get("zoo_cuda")
    if zoo:
        lines += ["", f"- `zoo_cuda`: {zoo['cells']} cells ok, {zoo['compared_with_cpu']} compared with the committed "
                  f"CPU fp32 zoo results: max |diff| {zoo['max_abs_diff_points']} points, mean "
                  f"{zoo['mean_diff_points']} points (bf16 autocast on CUDA vs fp32 on CPU)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="results: eight files at most (default: results/gpu/DEVICE-DATE on "
                                                 "CUDA, a scratch folder for a CPU dry run)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-check-work"), help="generated data, scratch")
    parser.add_argument("--budget-s", type=float, default=540, help="every step ends by then (a device lease is short)")
    parser.add_argument("--images", type=int, help="JPEGs in the generated folder (default 5000; 40 on the CPU)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                        help="auto: cuda when one is visible; cpu: a dry run of the plumbing")
    parser.add_argument("--skip", action="append", default=[], help="step to skip: streaming, zoo, oom_eval, "
                                                                      "oom_profile, torchrun, throughput, "
                                                                      "channels_last, compile")
    args = parser.parse_args()
    import timm
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.images = args.images or (5000 if args.device == "cuda" else 40)
    if args.out is None:
        slug = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-") if args.device == "cuda" \
            else "cpu-dry-run"
        args.out = (ROOT / "results" / "gpu" / f"{slug}-{time.strftime('%Y-%m-%d')}" if args.device == "cuda"
                    else args.work / "dry-run")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.work, args.device, args.budget_s)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (dry run)"
    check.put("env", {"device": name, "torch": torch.__version__, "timm": timm.__version__, "cpus": os.cpu_count(),
                      "date": time.strftime("%Y-%m-%d")})
    started = time.perf_counter()
    folder = make_folder(args.work / "val", args.images)
    check.put("folder", {"images": args.images, "classes": 100, "seconds": round(time.perf_counter() - started, 1)})
    ckpts = {name: save_random_timm(name, args.work / f"{name}.safetensors", 100)
             for name in ("deit_small_patch16_224", "vit_base_patch16_224")}
    timm_names = ["deit_tiny_patch16_224", "deit_small_patch16_224", "vit_base_patch16_224"]
    # in order of what matters most, since the lease may end before the last step
    steps = {"streaming": lambda: streaming(check, folder, ckpts["deit_small_patch16_224"], args.images),
             "zoo": lambda: zoo_on_cuda(check),
             "oom_eval": lambda: oom_eval(check, folder, ckpts["vit_base_patch16_224"]),
             "oom_profile": lambda: oom_profile(check, ckpts["vit_base_patch16_224"]),
             "torchrun": lambda: torchrun(check),
             "throughput": lambda: throughput(check, timm_names, (224, 384), "plain", []),
             "channels_last": lambda: throughput(check, timm_names, (224, 384), "channels_last", ["--channels-last"]),
             "compile": lambda: throughput(check, timm_names, (224,), "compile", ["--compile"])}
    for name, step in steps.items():
        if name in args.skip:
            continue
        try:
            step()
        except Exception as error:  # noqa: BLE001 - one broken step must not lose the others' results
            check.put(f"{name}_exception", repr(error)[:600])
        (args.out / "gpu_check.md").write_text(summary(check))
    print(summary(check))


if __name__ == "__main__":
    with kept(__file__):
        main()
