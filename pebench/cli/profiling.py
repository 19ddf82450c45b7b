"""`pebench profile`: a one-row suite of cost cells through the cell runner (what imports torch is
imported inside the command, after the options are checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pebench.cli.evaluation import live_terminal, records_of
from pebench.cli.options import (
    AttentionOption,
    DeviceOption,
    DtypeChoice,
    OutOption,
    PretrainedOption,
    ResOption,
    attach_checkpoint,
    attach_pretrained,
    check_device_name,
    console,
    parse_device,
    parse_resolutions,
)
from pebench.cli.runs import check_writable, finish_run, results_file, start_run
from pebench.errors import PebenchError
from pebench.models.preflight import preflight
from pebench.models.sizes import SIZES
from pebench.modes import fixed_mode
from pebench.reports.tables import profile_table
from pebench.runner.suite import Profile, Suite
from pebench.zoo import ZOO

FP16_ON_CPU = "fp16 autocast is for CUDA; on CPU use --dtype bf16 or fp32"


def profile(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="shipped name or .safetensors path; "
                                                     "repeat for several")] = None,
    size: Annotated[str, typer.Option(help="backbone size for --encoding rows: micro, tiny, small, base")] = "micro",
    encoding: Annotated[list[str] | None, typer.Option("--encoding", "-e", help="encoding spec built with random "
                                                        "weights at --size; repeat (default with no --model: "
                                                        "every shipped model's encoding)")] = None,
    res: ResOption = None,
    mode: Annotated[str, typer.Option(help="native, interp or scale=S")] = "interp",
    batch_size: Annotated[int, typer.Option(help="batch size (halved automatically on out-of-memory)")] = 8,
    device: DeviceOption = "auto",
    attention: AttentionOption = "auto",
    dtype: Annotated[DtypeChoice, typer.Option(help="fp32, or bf16/fp16 autocast")] = DtypeChoice.fp32,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels-last memory format")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="run the model through torch.compile")] = False,
    repeats: Annotated[int, typer.Option(help="interleaved rounds: each times one block of every model and of "
                                              "`none` (medians and IQRs are over rounds)")] = 15,
    out: OutOption = None,
    checkpoint: Annotated[Path | None, typer.Option(help="weights for the one --model timm:NAME "
                                                         "(.safetensors, .pth, .bin)")] = None,
    pretrained: PretrainedOption = False,
) -> None:
    """Params, FLOPs (GMACs), throughput, latency and memory per encoding and resolution, vs `none`."""
    if mode.strip().lower() == "both":
        raise PebenchError("profile measures one mode at a time; use --mode native, interp or scale=S")
    mode = fixed_mode(mode, what="--mode", tuned_hint="profile measures a fixed mode (a tuned S costs what that "
                                                      "scale=S costs)")
    if size not in SIZES:
        raise PebenchError(f"unknown model size '{size}'; choose one of: {', '.join(SIZES)}")
    if batch_size <= 0 or repeats <= 0:
        raise PebenchError("--batch-size and --repeats must be positive")
    check_device_name(device)
    if device == "cpu" and dtype.value == "fp16":
        raise PebenchError(FP16_ON_CPU)
    resolutions = parse_resolutions(res)
    names = attach_checkpoint(attach_pretrained(model, pretrained), checkpoint) or []
    preflight(names, resolutions, "--res", need_weights=False, built_specs=encoding is not None or not model)
    if out is not None:
        check_writable(results_file(out))

    from pebench.runner.cells import expand
    from pebench.runner.runner import prepare, run_cells

    torch_device = parse_device(device)
    if torch_device.type == "cpu" and dtype.value == "fp16":  # --device auto found no GPU
        raise PebenchError(FP16_ON_CPU)
    specs = encoding if encoding is not None else ([] if model else list(dict.fromkeys(ZOO.values())))
    profile_settings = Profile(enabled=True, encodings=tuple(specs), size=size, mode=mode, batch_size=batch_size,
                               dtype=dtype.value, repeats=repeats, channels_last=channels_last, compile=compile_)
    suite = Suite(name="profile", models=tuple(names), resolutions=resolutions, modes=(mode,),
                  device=str(torch_device), attention=attention.value, profile=profile_settings)
    cells = [c for c in expand(suite) if c.kind == "profile"]
    keys = {c.key for c in cells}
    path = start_run(out, "profile", keys)
    job = prepare(suite, torch_device, {"profile"}, option="--res")
    if not model and encoding is None:
        console.print(f"[yellow]a bare profile measures {len(job.profile_rows)} encodings at {len(resolutions)} "
                      f"resolutions, {repeats} interleaved rounds each[/]: on a laptop CPU that is many minutes; "
                      "-e SPEC, --res and --repeats 5 narrow it (the time left shows after the first steps)",
                      highlight=False, soft_wrap=True)
    with live_terminal(f"profile on {torch_device}: {len(job.profile_rows)} rows at "
                       f"{', '.join(map(str, resolutions))} px") as live:
        records = run_cells(job, cells, keys, path, live, strict=False)
    records = records_of(records, path, keys)
    console.print(profile_table(records))
    warned: dict[tuple[int, str], list[str]] = {}
    for record in records:
        for warning in (record["timing"] or {}).get("warnings", []):
            warned.setdefault((record["res"], warning), []).append(record["model"]["name"])
    for (res, warning), names in warned.items():
        console.print(f"[yellow]warning[/] at {res} px ({', '.join(names)}): {warning}", highlight=False)
    for name in dict.fromkeys(r["model"]["name"] for r in records
                              if str(r["model"].get("weights") or "").startswith("random (")):
        console.print(f"{name}: no weights found, profiled with random ones (cost does not depend on them)",
                      highlight=False)
    finish_run(path, len(records), "writes the cost tables and plots")
