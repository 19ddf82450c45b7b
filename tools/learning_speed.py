"""How fast each encoding learns the synthetic task: validation top-1 every K steps of a short run.

This is the measurement behind the README's "learning speed" figures and the zoo recipe notes:
`micro` model, batches of training scenes (seed 0) drawn and rendered as `pebench train` draws and
renders them (shuffled epochs, random-resized crops, jitter), AdamW with pebench's parameter groups,
linear warm-up then cosine to the end, label smoothing 0.1, validation on the first 300 val images
at 224 (top-1 overall, on the *where* and on the *what* classes).

    python tools/learning_speed.py [ENCODING (default ape:init=sincos)] [--batch-size 32] [--lr 1e-3]
        [--steps 600] [--every 100] [--warmup 50] [--crop-min 0.08]
"""

from __future__ import annotations

import argparse
import time

import torch

from pebench.data import parse_data
from pebench.models import build_model
from pebench.training.train import TrainConfig, accuracy, epoch_order, lr_at, param_groups, set_lr, training_batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("encoding", nargs="?", default="ape:init=sincos")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--crop-min", type=float, default=TrainConfig.crop_scale[0],
                        help="smallest crop area (1 = whole scenes, no crop)")
    parser.add_argument("--size", default="micro")
    parser.add_argument("--where-share", type=float, default=None)
    parser.add_argument("--position-lr-scale", type=float, default=TrainConfig.position_lr_scale)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = parse_data("synthetic")
    cfg = TrainConfig(size=args.size, encoding=args.encoding, crop_scale=(args.crop_min, 1.0),
                      where_share=args.where_share)
    if args.crop_min >= 1:
        cfg.crop_ratio = (1.0, 1.0)
    model = build_model(args.size, args.encoding, num_classes=data.num_classes)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, args.position_lr_scale), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    generator = torch.Generator().manual_seed(0)
    correct = seen = 0
    started = time.perf_counter()
    order = torch.cat([epoch_order(data, cfg.where_share, generator)
                       for _ in range(-(-args.steps * args.batch_size // data.train))])
    for step in range(args.steps):
        positions = order[step * args.batch_size : (step + 1) * args.batch_size].tolist()
        x, y = training_batch(data, cfg, positions, 0, step, generator)
        set_lr(optimizer, lr_at(step, args.steps, args.warmup, args.lr, cfg.min_lr))
        model.train()
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        if (step + 1) % args.every == 0:
            rate = seen / (time.perf_counter() - started)
            val = accuracy(model, data, 224, "native", limit=300)
            print(f"{args.encoding} step {step + 1} samples {(step + 1) * args.batch_size} train acc "
                  f"{correct / seen:.3f} val top-1 {val['top1']:.3f} (where {val['where']:.3f}, "
                  f"what {val['what']:.3f}) {rate:.0f} img/s", flush=True)
            correct = seen = 0
            started = time.perf_counter()


if __name__ == "__main__":
    main()
