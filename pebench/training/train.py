"""`pebench train` and `pebench finetune`: train one ViT (size x encoding) at 224 on a dataset, or
continue training a trained one at another resolution in a chosen mode, resumably.

Recipe: AdamW (no weight decay on biases, norms, tokens and position parameters), linear warm-up
then cosine decay per step, label smoothing, and the augmentation ImageNet models are trained with:
random-resized crops (DeiT's area 0.08-1 and aspect 3/4-4/3), here rendered analytically from each
scene's parameters, every epoch anew, so a crop shows its shapes larger and sharper rather than
upsampled (see ``synthetic.random_crops`` for how a crop keeps what decides the label), plus
brightness/contrast jitter; no flips, which would change the direction that decides a *where*
class. After every epoch the full training state is written atomically next to the output, so an
interrupted run resumes from its last finished epoch with the same result as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pebench.atomic import atomic_path
from pebench.data import SyntheticData, normalize, parse_data
from pebench.data.stream import val_stream
from pebench.data.synthetic import CLASS_GROUPS, RENDER_VERSION
from pebench.encodings.plugins import provenance
from pebench.errors import PebenchError
from pebench.measure.evaluate import Tally, metrics_of, run_pass
from pebench.models.checkpoint import save_checkpoint
from pebench.models.resolve import built, resolve_model
from pebench.models.sizes import check_resolution
from pebench.models.vit import VisionTransformer, build_model
from pebench.randomness import STREAMS_VERSION, numpy_stream, torch_seed, torch_stream
from pebench.training.recipe import TrainConfig, resume_state_path


def param_groups(model: torch.nn.Module, weight_decay: float, position_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: weights decay; biases, norms and the class token do not; the position
    encoding's parameters neither decay nor learn at the base rate but ``position_lr_scale`` times it
    (the ``lr_scale`` entry, read by :func:`set_lr`)."""
    decay, no_decay, position = [], [], []
    for name, p in model.named_parameters():
        if name.startswith("pos_encoding"):
            position.append(p)
        else:
            (no_decay if p.ndim <= 1 or name == "cls_token" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
            {"params": position, "weight_decay": 0.0, "lr_scale": position_lr_scale}]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def epoch_order(data: SyntheticData, where_share: float | None, generator: torch.Generator) -> torch.Tensor:
    """The training positions of one epoch, shuffled; with ``where_share`` that share of them are
    *where* scenes (each group's scenes cycled without replacement), the epoch's length unchanged."""
    count = data.train
    order = torch.randperm(count, generator=generator)
    if where_share is None:
        return order
    is_where = torch.tensor([data.label("train", int(p)) in CLASS_GROUPS["where"] for p in order])
    if is_where.all() or not is_where.any():
        return order
    where_count = round(where_share * count)
    parts = []
    for pool, wanted in ((order[is_where], where_count), (order[~is_where], count - where_count)):
        cycles = -(-wanted // max(1, len(pool)))
        parts.append(torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(cycles)])[:wanted])
    mixed = torch.cat(parts)
    return mixed[torch.randperm(count, generator=generator)]


JITTER = 0.2  # brightness and contrast shift by up to this much either way


def training_batch(data: SyntheticData, cfg: TrainConfig, positions: list[int], epoch: int, step: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, augmented images and labels of these training items; the crops depend only on
    (seed, epoch, step), so a resumed run draws the same ones."""
    rng = numpy_stream("crops", cfg.seed, epoch, step)
    images, labels = data.read_crops("train", cfg.res, positions, rng, cfg.crop_scale, cfg.crop_ratio)
    x = normalize(images)
    b = len(labels)
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 2 * JITTER
    brightness = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 2 * JITTER
    return x * contrast + brightness, labels


#: validation batch size (memory only: the result does not depend on it)
VAL_BATCH = 128


def accuracy(model, data, res: int, mode: str, limit: int | None = None) -> dict[str, float | None]:
    """Top-1 overall and per class group (synthetic: *where* and *what*) on the first ``limit`` val images
    (all when None), through the same streamed pass and tallies as `pebench eval`."""
    count = min(limit or data.size("val"), data.size("val"))
    device = torch.device("cpu")
    tally = Tally(built("training", model.eval()), mode, VAL_BATCH, data.num_classes)
    run_pass([tally], val_stream(data, res, range(count), VAL_BATCH, None, device, cache=None), device, sharded=False)
    metrics = metrics_of(tally, data.class_groups)
    return {"top1": metrics["top1"], **{name: group["top1"] for name, group in metrics["groups"].items()}}


def _starting_point(cfg: TrainConfig, data) -> tuple | None:
    """(model, sidecar) of the trained model a fine-tune starts from (``cfg.init``), checked against
    the run; None for training from scratch."""
    if cfg.init is None:
        return None
    start = resolve_model(cfg.init)
    model, meta = start.net, start.meta
    if not isinstance(model, VisionTransformer):
        raise PebenchError(f"fine-tuning runs on pebench's own models, not '{cfg.init}'")
    if meta["num_classes"] != data.num_classes:
        raise PebenchError(f"'{cfg.init}' has {meta['num_classes']} classes and {data.spec} {data.num_classes}; "
                           "fine-tune on the data it was trained on")
    check_resolution(cfg.res, cfg.res, model.patch, what=f"--res {cfg.res}")
    if reason := model.applicability(cfg.res, cfg.mode):
        raise PebenchError(f"cannot fine-tune '{cfg.init}' at {cfg.res} px in {cfg.mode} mode: {reason}")
    cfg.size, cfg.encoding = meta["size"], meta["encoding"]
    return model.train(), meta


def train(cfg: TrainConfig, out: Path, command: str = "", console=None,
          save_dtype: torch.dtype = torch.float32) -> dict:
    """Train, write ``out`` (safetensors, ``save_dtype``) and its sidecar, and return the sidecar."""
    data = parse_data(cfg.data)
    if not isinstance(data, SyntheticData):
        raise PebenchError(f"training runs on the synthetic dataset only, not '{cfg.data}'")
    torch.manual_seed(torch_seed("init", cfg.seed))
    start = _starting_point(cfg, data)
    model = start[0] if start else build_model(cfg.size, cfg.encoding, num_classes=data.num_classes, img_size=cfg.res)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.position_lr_scale), lr=cfg.lr)
    state_path = resume_state_path(out)
    start_epoch = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)  # tensors and plain Python values: no code runs
        saved = state["config"]
        if (saved["encoding"], saved["size"], saved.get("init"), saved["res"], saved.get("mode", "native")) != (
                str(model.spec), cfg.size, cfg.init, cfg.res, cfg.mode):
            raise PebenchError(f"{state_path} belongs to another run; delete it or choose another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        cfg.history = state["config"]["history"]
        start_epoch = state["epoch"]
        torch.set_rng_state(state["rng"])

    steps_per_epoch = data.train // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{cfg.encoding}", total=total, completed=start_epoch * steps_per_epoch, stats="")
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            generator = torch_stream("epoch", cfg.seed, epoch)
            order = epoch_order(data, cfg.where_share, generator)
            seen = correct = 0
            loss_sum = 0.0
            started = time.perf_counter()
            for step in range(steps_per_epoch):
                positions = order[step * cfg.batch_size : (step + 1) * cfg.batch_size].tolist()
                x, y = training_batch(data, cfg, positions, epoch, step, generator)
                set_lr(optimizer, lr_at(epoch * steps_per_epoch + step, total, warmup, cfg.lr, cfg.min_lr))
                logits = model(x, cfg.mode)
                loss = loss_fn(logits, y)
                if not torch.isfinite(loss):
                    raise PebenchError(
                        f"loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; "
                        f"lower --lr (now {cfg.lr}) or resume from the last finished epoch"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(y)
                correct += (logits.argmax(1) == y).sum().item()
                loss_sum += loss.item() * len(y)
                rate = seen / (time.perf_counter() - started)
                progress.update(task, advance=1, stats=f"epoch {epoch + 1} loss {loss_sum / seen:.3f} "
                                f"acc {correct / seen:.3f} {rate:.0f} img/s")
            wall = time.perf_counter() - started
            val = accuracy(model, data, cfg.res, cfg.mode, cfg.val_limit)
            cfg.history.append({"epoch": epoch + 1, "samples": (epoch + 1) * steps_per_epoch * cfg.batch_size,
                                "wall_s": round(wall, 1),
                                "train_loss": round(loss_sum / seen, 4), "train_acc": round(correct / seen, 4),
                                "val_top1": round(val["top1"], 4),
                                **{f"val_{group}": round(val[group], 4) for group in CLASS_GROUPS},
                                "img_per_s": round(rate, 1)})
            progress.console.print(f"  {cfg.encoding} epoch {epoch + 1}/{cfg.epochs}: train loss {loss_sum / seen:.3f} "
                                   f"acc {correct / seen:.3f}, val top-1 {val['top1']:.3f} "
                                   f"(where {val['where']:.3f}, what {val['what']:.3f})")
            with atomic_path(state_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                            "config": asdict(cfg) | {"encoding": str(model.spec)}, "rng": torch.get_rng_state()},
                           tmp)

    sidecar = {
        "encoding": str(model.spec),
        "size": cfg.size,
        "patch": model.patch,
        "train_res": start[1]["train_res"] if start else cfg.res,
        "num_classes": data.num_classes,
        "data": data.spec,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("history", "size", "encoding", "data", "seed",
                                                                        "epochs", "res")},
        "val_top1": cfg.history[-1]["val_top1"] if cfg.history else None,
        **{f"val_{group}": cfg.history[-1][f"val_{group}"] if cfg.history else None for group in CLASS_GROUPS},
        "augmentation": {"random_resized_crop": {"scale": list(cfg.crop_scale), "ratio": list(cfg.crop_ratio),
                                                 "rendered": "analytically from the scene",
                                                 "window": "grown to hold every shape of the scene"},
                         "brightness": JITTER, "contrast": JITTER, "flip": False, "render_version": RENDER_VERSION,
                         "random_streams": STREAMS_VERSION},
        "learning_curve": cfg.history,
        "command": command,
    }
    if provenance(model.spec.names):  # a plugin's encoding: the checkpoint names what it needs to load
        sidecar["plugins"] = provenance(model.spec.names)
    if start:
        sidecar["finetune"] = {"from": cfg.init, "from_sha256": start[1]["checkpoint_sha256"], "res": cfg.res,
                               "mode": cfg.mode, "epochs": cfg.epochs, "samples": cfg.history[-1]["samples"],
                               "wall_s": round(sum(h["wall_s"] for h in cfg.history), 1)}
    save_checkpoint(model, out, sidecar, dtype=save_dtype)
    state_path.unlink(missing_ok=True)
    return sidecar
