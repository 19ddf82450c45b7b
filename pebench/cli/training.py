"""`pebench train` and `pebench finetune` (torch and the trainer are imported inside the commands, so that
`pebench --help` stays fast)."""

from __future__ import annotations

import multiprocessing
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import pebench.zoo as zoo
from pebench.atomic import claimed
from pebench.cli.options import console
from pebench.cli.runs import start_training
from pebench.errors import PebenchError
from pebench.modes import fixed_mode
from pebench.training.recipe import ZOO_RECIPES, TrainConfig


def train(
    encoding: Annotated[str, typer.Option("--encoding", "-e", help="encoding spec, e.g. 'peg:blocks=0-4'")] = "ape",
    out: Annotated[Path, typer.Option(help="safetensors checkpoint to write (sidecar: same name, .json)")] = Path(
        "model.safetensors"),
    size: Annotated[str, typer.Option(help="backbone size: micro, tiny, small, base")] = "micro",
    data: Annotated[str, typer.Option(help="dataset spec")] = "synthetic",
    epochs: Annotated[int, typer.Option(min=1)] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(min=1)] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(min=0)] = TrainConfig.lr,
    position_lr_scale: Annotated[float, typer.Option(
        min=0, help="the position encoding's parameters learn at this multiple of --lr"
    )] = TrainConfig.position_lr_scale,
    where_share: Annotated[float | None, typer.Option(
        min=0, max=1, help="share of each epoch's samples from the synthetic *where* classes "
                           "(the val split's natural share is 0.3)")] = TrainConfig.where_share,
    seed: Annotated[int, typer.Option()] = TrainConfig.seed,
    all_: Annotated[bool, typer.Option("--all", help="(re)build every shipped model that is missing, "
                                                     "into the package's zoo folder, with its settings "
                                                     "from pebench.training.recipe.ZOO_RECIPES over these")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="with --all: models trained at once, each in its own "
                                                  "process with an equal share of the CPU cores")] = 1,
) -> None:
    """Train a ViT at 224 on a dataset; rerun the same command to resume an interrupted run.

    `pebench train --all --jobs 2` rebuilds the zoo with two processes; several `pebench train --all`
    commands can also run side by side: each model is claimed by one process."""
    from pebench.env import cpu_cores, git_state

    if jobs > 1 and not all_:
        raise PebenchError("--jobs splits the shipped zoo among processes; use it with --all")
    git_state()  # every sidecar records the commit this process loaded, though the checkout may move during --all
    command = shlex.join(["pebench", *sys.argv[1:]])
    work = ([(spec, zoo.zoo_path(name), ZOO_RECIPES.get(name, {})) for name, spec in zoo.ZOO.items()] if all_
            else [(encoding, out, {})])
    options = {"size": size, "data": data, "epochs": epochs, "batch_size": batch_size, "lr": lr,
               "position_lr_scale": position_lr_scale, "where_share": where_share, "seed": seed}
    start_training([path for _, path, _ in work])
    if jobs == 1:
        _train_each(work, options, command, zoo=all_)
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise PebenchError("--jobs needs a platform that can fork; start several `pebench train --all` "
                           "commands instead")
    threads = max(1, cpu_cores() // jobs)
    context = multiprocessing.get_context("fork")  # children inherit the commit read above and the loaded code
    workers = [context.Process(target=_worker, args=(work, options, command, threads)) for _ in range(jobs)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: let the workers stop before exiting
        for worker in workers:
            worker.join()
        raise
    failed = [worker.exitcode for worker in workers if worker.exitcode]
    if failed:
        console.print(f"{len(failed)} of {jobs} training processes failed (exit codes {failed}); "
                      "rerun the same command to resume")
        sys.exit(max(failed))


def _train_each(work: list[tuple[str, Path, dict]], options: dict, command: str, zoo: bool) -> None:
    """Train every job no other process has claimed; with ``zoo``, skip those already built."""
    import torch

    from pebench.training.train import train as train_model

    for spec, path, settings in work:
        with claimed(path) as ours:
            if not ours:
                console.print(f"{path.name} is being trained by another process; skipping")
                continue
            if zoo and path.exists():
                console.print(f"{path.name} exists; skipping (delete it to retrain)")
                continue
            cfg = TrainConfig(**{"encoding": spec} | options | settings)
            sidecar = train_model(cfg, path, command=command, console=console,
                                  save_dtype=torch.float16 if zoo else torch.float32)
            console.print(f"wrote {path} (val top-1 {sidecar['val_top1']:.3f})")


def _worker(work: list[tuple[str, Path, dict]], options: dict, command: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        _train_each(work, options, command, zoo=True)
    except PebenchError as error:
        Console(stderr=True).print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)  # the parent says how to resume, once


def finetune(
    model: Annotated[str, typer.Option("--model", "-m", help="shipped name or .safetensors checkpoint to start from")],
    res: Annotated[int, typer.Option(help="resolution to fine-tune at (square, a multiple of the patch)")] = 384,
    mode: Annotated[str, typer.Option(help="the start: native (positions as trained, extended), interp "
                                           "(interpolated) or scale=S; the fine-tuned model runs in it")] = "interp",
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    lr: Annotated[float, typer.Option(min=0)] = 1e-4,
    batch_size: Annotated[int, typer.Option(min=1)] = TrainConfig.batch_size,
    data: Annotated[str, typer.Option(help="dataset spec (the model's own; synthetic:train=N for fewer images)")
                    ] = "synthetic",
    val_n: Annotated[int, typer.Option(min=1, help="validate on the first N val images after each epoch")] = 500,
    seed: Annotated[int, typer.Option()] = TrainConfig.seed,
    out: Annotated[Path | None, typer.Option(help="checkpoint to write (default: MODEL-ftRES-MODE.safetensors)")
                   ] = None,
) -> None:
    """A short fine-tune of a trained model at a new resolution, from its native or interp start (the way
    DeiT-B/384 is made); resumable, writing a checkpoint whose sidecar records the cost (images, wall time)."""
    from pebench.training.train import train as train_model

    mode = fixed_mode(mode, what="--mode", tuned_hint="fine-tune from a fixed start")
    out = out or Path(f"{Path(model).stem}-ft{res}-{mode.replace('=', '')}.safetensors")
    cfg = TrainConfig(init=model, res=res, mode=mode, epochs=epochs, lr=lr, min_lr=lr / 100, warmup_epochs=0.1,
                      batch_size=batch_size, data=data, seed=seed, val_limit=val_n)
    start_training([out])
    sidecar = train_model(cfg, out, command=shlex.join(["pebench", *sys.argv[1:]]), console=console)
    cost = sidecar["finetune"]
    console.print(f"wrote {out}: val top-1 {sidecar['val_top1']:.3f} at {res} px {mode} after {cost['samples']:,} "
                  f"images in {cost['wall_s']:.0f} s")
