"""What only a GPU can show, in one run that fits a short lease: the CUDA paths of pebench, measured.

    python3 benchmarks/gpu_check.py [--out DIR] [--images 5000] [--skip zoo] [--with throughput]

With no arguments: on a CUDA machine the full check into results/gpu/DEVICE-DATE; without one, a dry run
of the plumbing on the CPU at tiny sizes (40 JPEGs, batch 4) into a scratch folder.

Steps, in this order (each a separate process with its own time limit, all within --budget-s, 9 minutes
by default; a failing step is recorded and the rest go on):

- costs: `pebench profile --size small` of every shipped encoding at 224 and 1024 px, bf16, batch 32,
  each against its `none` twin: time and memory x none, the breakdown (position terms / attention /
  rest), and issue 30's targets at 1024 (bias encodings <= 2.1, rpe <= 3.0 with memory <= 2x, spvit
  <= 3.0, RoPE <= 1.1 at 224 and 1024).
- attention: one attention call at 4,097 tokens (batch 8, 6 heads of 64, bf16) each way pebench runs
  one (SDPA without and with a bias, FlexAttention with that bias, with ALiBi's and LookHere's offset
  formulas and with a multiplier too, the explicit chunks), SP-ViT's, iRPE's, ALiBi's and LookHere's
  forward on `small` at 1024 through the reference (SDPA with the bias for the last two) vs
  FlexAttention, and RoPE's at 224 and 1024 with the eager vs the fused (compiled) rotation: time, peak
  memory and logit agreement in each mode.
- decode: `pebench eval` of DeiT-S at 224 on the folder with `--decode gpu` vs the PIL path, 16 workers,
  and, on its first 1,024 images, the two paths' pixel differences and top-1 agreement.
- streaming eval on CUDA: `pebench eval` of a random-init timm DeiT-S (100-class head) over an
  ImageNet-shaped folder (JPEGs 400-640 px) at 224 and 384, workers 8 and 16, vs timm's validation
  loop (ImageDataset + create_transform + DataLoader, bf16 autocast) at 224: img/s and counts.
- zoo: the shipped zoo on CUDA (bf16 autocast) at 224-1024, compared cell by cell with the committed
  CPU fp32 results (results/zoo/results.jsonl).
- out-of-memory back-off: eval of ViT-B at 1024 px with a batch that cannot fit; profile at 512 likewise.
- torchrun with nccl: a suite under `torchrun --nproc-per-node 1` (the process group is joined, so
  every all-reduce goes through nccl) gives the single-process counts; 2 processes on one GPU tried.
- zoo, last of the default steps (the slowest of them).
- throughput, only with --with (too slow for the default run's one 10-minute call):
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
                  "oom_profile": 4096, "oom_res": 1024, "oom_profile_res": 512, "suite_n": 400,
                  "cost_size": "small", "cost_res": (224, 1024), "cost_batch": 32, "cost_repeats": 5,
                  "attention": {"tokens": 4097, "batch": 8, "heads": 6, "dim": 64}, "agreement_n": 1024},
         "cpu": {"batch": 4, "zoo_res": (224,), "zoo_n": ["--n", 8], "oom_eval": 4, "oom_profile": 4, "oom_res": 64,
                 "oom_profile_res": 64, "suite_n": 8, "cost_size": "micro", "cost_res": (224, 256), "cost_batch": 2,
                 "cost_repeats": 2, "attention": {"tokens": 257, "batch": 2, "heads": 3, "dim": 32},
                 "agreement_n": 16}}
#: issue 30's targets on `small` (bf16, batch 32) at 1024 px (RoPE's at 224 too): time x none at most, and peak
#: memory x none for rpe
COST_TARGETS = {"alibi": 2.1, "lookhere": 2.1, "fire": 2.1, "cpb": 2.1, "relpos_table": 2.1, "rpe": 3.0,
                "spvit": 3.0, "rope": 1.1, "rope:variant=mixed": 1.1}


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


def encoding_costs(check: Check) -> None:
    """`pebench profile` of every shipped encoding on `small` at 224 and 1024 px (bf16, batch 32), each against
    its `none` twin in interleaved rounds: time and memory x none, the breakdown, and issue 30's targets."""
    from pebench.zoo import ZOO

    out = check.out / "encoding_costs.jsonl"
    out.unlink(missing_ok=True)
    specs = [arg for spec in dict.fromkeys(ZOO.values()) for arg in ("-e", spec)]
    resolutions = [arg for res in check.scale["cost_res"] for arg in ("--res", res)]
    result = check.sh("encoding costs", [*PEBENCH, "profile", "--size", check.scale["cost_size"], *specs, *resolutions,
                                         "--device", check.device, "--dtype", "bf16" if check.device == "cuda" else
                                         "fp32", "--batch-size", check.scale["cost_batch"], "--repeats",
                                         check.scale["cost_repeats"], "--out", out], 400)
    table, verdicts = {}, {}
    for r in records(out):
        if r["status"] != "ok":
            continue
        over, split = r["overhead_vs_none"], r["breakdown"] or {}
        table[f"{r['model']['encoding']} {r['res']}"] = {
            "time_x_none": over["time"], "memory_x_none": over["memory"], "img_per_s": r["timing"]["img_per_s"],
            "batch": r["timing"]["batch_size"], "attention_paths": split.get("attention_paths"),
            **{f"{k}_share": split.get(f"{k}_share") for k in ("position", "attention", "rest")}}
        encoding, bar = r["model"]["encoding"], COST_TARGETS.get(r["model"]["encoding"])
        if bar is not None and (r["res"] == max(check.scale["cost_res"]) or encoding.startswith("rope")):
            met = over["time"] <= bar and (encoding != "rpe" or (over["memory"] or 0) <= 2)
            verdicts[f"{encoding} {r['res']}"] = {"time_x_none": round(over["time"], 3), "bar": bar, "met": met}
    check.put("encoding_costs", {"rc": result.returncode, "cells": table,
                                 "stderr": result.stderr[-400:] if result.returncode else ""})
    check.put("encoding_cost_targets", verdicts)


def attention(check: Check) -> None:
    """One attention call each way pebench runs one; SP-ViT's, iRPE's, ALiBi's and LookHere's forward on the
    reference vs FlexAttention, and RoPE's with the eager vs the fused rotation."""
    a = check.scale["attention"]
    call = check.sh("attention call", fresh(f"attention_call({check.device!r}, {a['tokens']}, {a['batch']}, "
                                            f"{a['heads']}, {a['dim']})"), 300, cwd=HERE)
    if call.returncode == 0:
        check.put("attention_call", json.loads(call.stdout.splitlines()[-1]))
    elif call.returncode:
        check.put("attention_call_error", call.stderr[-600:])
    size, batch, (low, high) = check.scale["cost_size"], check.scale["cost_batch"], check.scale["cost_res"]
    for spec, res in (("spvit", high), ("rpe", high), ("alibi", high), ("lookhere", high), ("rope", low),
                      ("rope", high)):
        name = f"attention_paths_{spec}" + (f"_{res}" if spec == "rope" else "")
        paths = check.sh(name.replace("_", " "), fresh(f"attention_paths({check.device!r}, {size!r}, {res}, "
                                                       f"{batch}, {spec!r})"), 300, cwd=HERE)
        if paths.returncode == 0:
            check.put(name, json.loads(paths.stdout.splitlines()[-1]))
        else:
            check.put(f"{name}_error", paths.stderr[-600:])


def gpu_decoding(check: Check, folder: Path, ckpt: Path) -> None:
    """`pebench eval` of DeiT-S at 224 with --decode gpu vs the PIL path, same workers, and how far the two
    paths' pixels and top-1 are apart."""
    model = f"timm:deit_small_patch16_224@{ckpt}"
    rates = {}
    for decode in ("gpu", "cpu") if check.device == "cuda" else ("cpu",):
        out = check.out / f"decode_{decode}.jsonl"
        out.unlink(missing_ok=True)
        result = check.sh(f"eval decode {decode}", [*PEBENCH, "eval", "--model", model, "--data",
                                                    f"imagefolder:{folder}", "--res", 224, "--mode", "interp",
                                                    "--device", check.device, "--decode", decode, "--workers", 16,
                                                    "--batch-size", check.scale["batch"], "--cache", "off", "--out",
                                                    out], 300)
        rows = records(out)
        if rows:
            t, m = rows[0]["timing"], rows[0]["metrics"]
            rates[decode] = {"pass_img_per_s": t["pass_img_per_s"], "n": m["n"], "correct_top1": m["correct_top1"],
                             "skipped": rows[0]["data"].get("skipped")}
        elif result.returncode:
            check.put(f"decode_{decode}_error", result.stderr[-600:])
    if "gpu" in rates and "cpu" in rates:
        rates["gpu_over_cpu"] = rates["gpu"]["pass_img_per_s"] / rates["cpu"]["pass_img_per_s"]
    check.put("decode_eval_224_w16", rates)
    agreement = check.sh("decode agreement", fresh(
        f"decode_agreement(Path({str(folder.resolve())!r}), Path({str(ckpt.resolve())!r}), 'deit_small_patch16_224', "
        f"224, 0.875, {check.scale['agreement_n']}, {check.device!r})"), 300, cwd=HERE)
    if agreement.returncode == 0:
        check.put("decode_agreement_224", json.loads(agreement.stdout.splitlines()[-1]))
    else:
        check.put("decode_agreement_error", agreement.stderr[-600:])


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


#: the slowest steps, beyond the default run (a device call is 10 minutes at most): pebench profile vs timm's
EXTRA_STEPS = {"throughput": lambda check, names: throughput(check, names, (224, 384), "plain", []),
               "channels_last": lambda check, names: throughput(check, names, (224, 384), "channels_last",
                                                                ["--channels-last"]),
               "compile": lambda check, names: throughput(check, names, (224,), "compile", ["--compile"])}


def summary(check: Check) -> str:
    r = check.results
    lines = [f"# GPU check: {r['env']['device']}", "", f"torch {r['env']['torch']}, timm {r['env']['timm']}, "
             f"{r['env']['cpus']} CPU cores, {r['env']['date']}. Every figure below was measured by "
             "benchmarks/gpu_check.py in this run (random-init weights; costs and data paths do not depend on them).",
             ""]
    for key, value in r.items():
        if key in ("env",) or key.endswith("_record") or key in ("zoo_cuda", "encoding_costs"):
            continue
        lines.append(f"- `{key}`: {json.dumps(value)}")
    costs = (r.get("encoding_costs") or {}).get("cells", {})
    if costs:
        lines += ["", "| encoding @res | time x none | memory x none | position / attention / rest |",
                  "|---|---|---|---|"]
        for cell, c in costs.items():
            shares = " / ".join(f"{100 * c[f'{k}_share']:.0f}%" if c[f"{k}_share"] is not None else "-"
                                for k in ("position", "attention", "rest"))
            memory = f"{c['memory_x_none']:.2f}" if c["memory_x_none"] is not None else "-"
            lines.append(f"| {cell} | {c['time_x_none']:.2f} | {memory} | {shares} |")
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
    parser.add_argument("--skip", action="append", default=[], help="step to skip: costs, attention, decode, "
                                                                      "streaming, oom_eval, oom_profile, torchrun, "
                                                                      "zoo")
    parser.add_argument("--with", dest="extra", action="append", default=[], choices=list(EXTRA_STEPS),
                        help="a step beyond the default run's 9 minutes: throughput, channels_last, compile")
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
    steps = {"costs": lambda: encoding_costs(check),
             "attention": lambda: attention(check),
             "decode": lambda: gpu_decoding(check, folder, ckpts["deit_small_patch16_224"]),
             "streaming": lambda: streaming(check, folder, ckpts["deit_small_patch16_224"], args.images),
             "oom_eval": lambda: oom_eval(check, folder, ckpts["vit_base_patch16_224"]),
             "oom_profile": lambda: oom_profile(check, ckpts["vit_base_patch16_224"]),
             "torchrun": lambda: torchrun(check),
             "zoo": lambda: zoo_on_cuda(check)}
    steps |= {name: lambda name=name: EXTRA_STEPS[name](check, timm_names) for name in args.extra}
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
