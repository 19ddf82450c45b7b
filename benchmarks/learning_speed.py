"""How fast each encoding learns the synthetic task: validation top-1 every K steps of a short run.

This is the measurement behind the README's "learning speed" figures and the zoo recipe notes:
`micro` model, batches drawn with replacement from the cached train split (seed 0), AdamW with
pebench's parameter groups, 50 warm-up steps then cosine to the end, label smoothing 0.1, pebench's
augmentation, validation on the first 300 val images at 224.

    python benchmarks/learning_speed.py ENCODING [--batch-size 32] [--lr 1e-3] [--steps 600] [--every 100]
"""

from __future__ import annotations

import argparse
import time

import torch

from pebench.data import normalize, parse_data
from pebench.data.synthetic import POSITION_CLASSES
from pebench.models import build_model
from pebench.train import TrainConfig, _param_groups, augment, lr_at


@torch.inference_mode()
def val_accuracy(model, images_u8: torch.Tensor, labels: torch.Tensor) -> str:
    """Top-1 overall, on the position ("where") classes and on the shape ("what") classes."""
    model.eval()
    hits = torch.cat([model(normalize(images_u8[i : i + 100]), "native").argmax(1) for i in range(0, len(labels), 100)])
    hits = hits == labels
    where = labels < POSITION_CLASSES
    return (
        f"val top-1 {hits.float().mean():.3f} (where {hits[where].float().mean():.3f}, "
        f"what {hits[~where].float().mean():.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("encoding")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--translate", type=int, default=TrainConfig.translate)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = parse_data("synthetic")
    train_images, train_labels = data.load("train", 224)
    val_images, val_labels = data.load("val", 224)
    val_images, val_labels = val_images[:300], val_labels[:300]
    model = build_model("micro", args.encoding, num_classes=data.num_classes)
    optimizer = torch.optim.AdamW(_param_groups(model, 0.05), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(0)
    correct = seen = 0
    started = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(0, len(train_labels), (args.batch_size,), generator=generator).sort().values
        x = augment(normalize(train_images[idx]), args.translate, generator)
        y = train_labels[idx]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, 50, args.lr, 1e-5)
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
            print(
                f"{args.encoding} step {step + 1} samples {(step + 1) * args.batch_size} train acc "
                f"{correct / seen:.3f} {val_accuracy(model, val_images, val_labels)} {rate:.0f} img/s",
                flush=True,
            )
            correct = seen = 0
            started = time.perf_counter()


if __name__ == "__main__":
    main()
