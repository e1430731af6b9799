"""An independent cross-check of resnet_lab's training: the paper's recipe written the textbook way.

    python -m benchmarks.reference --data /path/to/cifar --epochs 40 --val-split 5000 --out runs/reference_s0
    python -m resnet_lab.train --model resnet20 --recipe paper --epochs 40 --val-split 5000 --no-amp ...

The second command is what it checks. This script shares none of resnet_lab's model, loader or training code:
torchvision ``ImageFolder`` (or ``CIFAR10``) with PIL transforms in a ``DataLoader``
(:func:`benchmarks.throughput.standard_loader`), a ResNet-20 written below from the paper's text (He et al. 2016,
Sec. 4.2: three stages of 16/32/64 channels, option A shortcuts, He initialisation), ``torch.optim.SGD`` with
``MultiStepLR`` (lr 0.1, /10 at 50 % and 75 % of the epochs, momentum 0.9, weight decay 1e-4 on every parameter,
batch 128), float32, NCHW, single-view evaluation in ``eval()`` mode. Borrowed are only the validation split
(:func:`resnet_lab.data.stratified_split` with the same ``--split-seed``, so both runs are scored on the same
images) and the atomic file write.

If both land at the same accuracy (within the spread between seeds), what resnet_lab reaches on a dataset belongs to
the dataset and the recipe, not to its fast loader, its models or its loop. Measured on the JPEG development copy
(`benchmarks/TRAINING.md`): 40 epochs, 86.1 % against resnet_lab's 85.7 and 87.1 % (two seeds; the seed-1 run held out
other images, as ``--seed`` also drew the split then). Rewrites ``OUT/metrics.json`` after every epoch (losses and
accuracies as fractions, seconds) and prints one line per epoch (a progress bar within it). No resume: a 182-epoch
run takes about four hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.throughput import machine_info, standard_dataset, standard_loader  # noqa: E402
from resnet_lab.checkpoint import atomic_write  # noqa: E402
from resnet_lab.data import DATA_ENV, stratified_split  # noqa: E402

__all__ = ["ReferenceResNet", "split_indices", "train_reference", "main"]


class _Block(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the input (option A: subsampled and zero-padded when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.pad = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride]
        if self.pad:  # new channels of zeros after the old ones, as in the paper's Torch code (fb.resnet.torch)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + shortcut)


class ReferenceResNet(nn.Module):
    """The paper's CIFAR ResNet-(6n+2): a 3x3 conv to 16 channels, n blocks each at 16, 32 and 64 channels (the
    first of the last two stages with stride 2), global average pooling, a linear classifier."""

    def __init__(self, n: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, channels = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(_Block(channels, width, stride if i == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _evaluate(model: nn.Module, loader) -> tuple[float, float]:
    model.eval()
    loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            logits = model(images)
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
    return loss / count, correct / count


def split_indices(data_dir: Path, val_split: int, *, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train, val)`` indices into torchvision's dataset: the images ``load_cifar10(val_split=..., seed=...)``
    holds out (both list the files sorted by class, then name, and draw with the same seeded generator)."""
    labels = torch.as_tensor(standard_dataset(data_dir, train=False).targets)
    if not 0 < val_split < len(labels):
        raise ValueError(f"val_split must be between 1 and {len(labels) - 1}; got {val_split}")
    val_idx, train_idx = stratified_split(labels, val_split, generator=torch.Generator().manual_seed(seed))
    return train_idx.tolist(), val_idx.tolist()


def train_reference(data_dir: Path, *, epochs: int, val_split: int, seed: int = 0, split_seed: int = 0,
                    workers: int = 2, out: Path | None = None) -> dict:
    """Train :class:`ReferenceResNet` (n=3, ResNet-20) with the paper's recipe; the metrics, also in ``out``.

    ``seed``: initial weights, batch order and augmentation; ``split_seed``: the held-out images, as
    ``python -m resnet_lab.train --split-seed``."""
    train_idx, val_idx = split_indices(data_dir, val_split, seed=split_seed)
    train = standard_loader(data_dir, 128, workers=workers, seed=seed, indices=train_idx)
    val = standard_loader(data_dir, 500, workers=workers, seed=seed, train=False, indices=val_idx)
    torch.manual_seed(seed)
    model = ReferenceResNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [round(epochs * 0.5), round(epochs * 0.75)], 0.1)
    metrics = {"model": "reference resnet20", "recipe": "paper", "seed": seed, "split_seed": split_seed,
               "data": str(data_dir), "train": len(train_idx), "val": len(val_idx), "machine": machine_info(),
               "epochs": []}
    for epoch in range(1, epochs + 1):
        model.train()
        start, loss_sum, correct, count = time.perf_counter(), 0.0, 0, 0
        for images, targets in tqdm(train, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False):
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).sum().item()
            count += len(targets)
        scheduler.step()
        seconds = time.perf_counter() - start
        val_loss, val_acc = _evaluate(model, val)
        metrics["epochs"].append({"epoch": epoch, "train_loss": loss_sum / count, "train_acc": correct / count,
                                  "val_loss": val_loss, "val_acc": val_acc, "images_per_s": count / seconds,
                                  "seconds": seconds})
        print(f"epoch {epoch}/{epochs}: train loss {loss_sum / count:.3f} acc {correct / count:.2%} | "
              f"val loss {val_loss:.3f} acc {val_acc:.2%} | {count / seconds:.0f} img/s", flush=True)
        if out is not None:
            atomic_write(out / "metrics.json", lambda path: path.write_text(json.dumps(metrics, indent=1)))
    return metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get(DATA_ENV),
                        help=f"CIFAR-10 image folder or official batches (default ${DATA_ENV})")
    parser.add_argument("--epochs", type=int, default=182, help="lr /10 at 50 %% and 75 %% of them (default 182)")
    parser.add_argument("--val-split", type=int, default=5000, help="held-out training images (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, batch order and augmentation")
    parser.add_argument("--split-seed", type=int, default=0, help="draws the held-out images (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    parser.add_argument("--out", type=Path, help="folder for metrics.json")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error(f"give --data or set {DATA_ENV}: this script trains on real images and has no smoke mode")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    return train_reference(Path(args.data), epochs=args.epochs, val_split=args.val_split, seed=args.seed,
                           split_seed=args.split_seed, workers=args.workers, out=args.out)


if __name__ == "__main__":
    main()
