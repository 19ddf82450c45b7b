"""`pebench train`: train one ViT (size x encoding) at 224 on a dataset, resumably.

Recipe: AdamW (no weight decay on biases, norms, tokens and position parameters), linear warm-up
then cosine decay per step, label smoothing, light augmentation (random translation with reflect
padding, brightness/contrast jitter; no flips, which would swap "left of" and "right of"). After
every epoch the full training state is written atomically next to the output, so an interrupted
run resumes from its last finished epoch with the same result as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pebench.atomic import atomic_path
from pebench.checkpoint import save_checkpoint
from pebench.data import SyntheticData, normalize, parse_data, read_split
from pebench.errors import PebenchError
from pebench.models import build_model
from pebench.recipe import TrainConfig


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.ndim <= 1 or name.startswith("pos_encoding") or name == "cls_token"
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def augment(x: torch.Tensor, translate: int, generator: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    if translate:
        padded = F.pad(x, (translate,) * 4, mode="reflect")
        shifts = torch.randint(0, 2 * translate + 1, (b, 2), generator=generator).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(shifts)])
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.4
    brightness = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.4
    return x * contrast + brightness


@torch.inference_mode()
def accuracy(model, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(normalize(images_u8[start : start + batch_size]), "native")
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum().item()
    return correct / len(labels)


def train(cfg: TrainConfig, out: Path, command: str = "", console=None,
          save_dtype: torch.dtype = torch.float32) -> dict:
    """Train, write ``out`` (safetensors, ``save_dtype``) and its sidecar, and return the sidecar."""
    data = parse_data(cfg.data)
    if not isinstance(data, SyntheticData):
        raise PebenchError(f"training runs on the synthetic dataset only, not '{cfg.data}'")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.size, cfg.encoding, num_classes=data.num_classes, img_size=cfg.res)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    state_path = out.with_name(out.name + ".state.pt")
    start_epoch = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["config"]["encoding"] != str(model.spec) or state["config"]["size"] != cfg.size:
            raise PebenchError(f"{state_path} belongs to another run; delete it or choose another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        cfg.history = state["config"]["history"]
        start_epoch = state["epoch"]
        torch.set_rng_state(state["rng"])

    train_u8, train_labels = read_split(data, "train", cfg.res)
    val_u8, val_labels = read_split(data, "val", cfg.res)
    steps_per_epoch = len(train_labels) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{cfg.encoding}", total=total, completed=start_epoch * steps_per_epoch, stats="")
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.randperm(len(train_labels), generator=generator)
            seen = correct = 0
            loss_sum = 0.0
            started = time.perf_counter()
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size].sort().values
                x = augment(normalize(train_u8[idx]), cfg.translate, generator)
                y = train_labels[idx]
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(epoch * steps_per_epoch + step, total, warmup, cfg.lr, cfg.min_lr)
                logits = model(x)
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
            val = accuracy(model, val_u8, val_labels)
            cfg.history.append({"epoch": epoch + 1, "samples": (epoch + 1) * steps_per_epoch * cfg.batch_size,
                                "train_loss": round(loss_sum / seen, 4), "train_acc": round(correct / seen, 4),
                                "val_top1": round(val, 4), "img_per_s": round(rate, 1)})
            progress.console.print(f"  {cfg.encoding} epoch {epoch + 1}/{cfg.epochs}: "
                                   f"train loss {loss_sum / seen:.3f} acc {correct / seen:.3f}, val top-1 {val:.3f}")
            with atomic_path(state_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                            "config": asdict(cfg) | {"encoding": str(model.spec)}, "rng": torch.get_rng_state()},
                           tmp)

    sidecar = {
        "encoding": str(model.spec),
        "size": cfg.size,
        "patch": model.patch,
        "train_res": cfg.res,
        "num_classes": data.num_classes,
        "data": data.spec,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("history", "size", "encoding", "data", "seed",
                                                                        "epochs", "res")},
        "val_top1": cfg.history[-1]["val_top1"] if cfg.history else None,
        "learning_curve": cfg.history,
        "command": command,
    }
    save_checkpoint(model, out, sidecar, dtype=save_dtype)
    state_path.unlink(missing_ok=True)
    return sidecar
