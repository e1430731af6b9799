"""How long a plain network's BatchNorm gradient growth toward the input lasts in training, under a given schedule.

At initialisation plain-56's first block gets a gradient about a thousand times its last block's (notebook 03, §6);
notebook 05, §6, watches that fade over a short run (5,000 images, 2 epochs at batch 64: 158 steps, a one-cycle
warm-up of 79). Notebook 04's degradation runs (10,000 images, 8 epochs: 1,256 steps) warm up over 251 steps, so
their first steps take smaller ones. This trains ``--model`` with the fast recipe scheduled for the whole run, records
the first ``--record-epochs`` and prints the first block's gradient norm over the last block's, step by step
(`benchmarks/TRAINING.md`):

    python -m benchmarks.bn_growth --data DIR                         # notebook 04's schedule
    python -m benchmarks.bn_growth --data DIR --subset 5000 --epochs 2 --record-epochs 2   # notebook 05 §6's
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_lab.data import CifarData, load_cifar10  # noqa: E402
from resnet_lab.gradients import BlockGradientRecorder  # noqa: E402
from resnet_lab.models import build_model  # noqa: E402
from resnet_lab.train import fit  # noqa: E402

__all__ = ["growth_ratios", "main"]

REPORTED_STEPS = (1, 5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 80, 100, 120, 157)


class _Recorded(Exception):
    """Raised after the recorded epochs: the rest of the schedule is not needed."""


def growth_ratios(data: CifarData, *, model: str = "plain56", epochs: int = 8, record_epochs: int = 1,
                  batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """First block's over last block's parameter-gradient norm at each step of the first ``record_epochs``."""
    torch.manual_seed(seed)
    net = build_model(model)

    def stop(record: dict) -> None:
        if record["epoch"] >= record_epochs:
            raise _Recorded

    with BlockGradientRecorder(net) as recorder:
        try:
            fit(net, data, recipe="fast", epochs=epochs, batch_size=batch_size, seed=seed, progress=False,
                model_name=model, on_epoch_end=stop)
        except _Recorded:
            pass
    norms = recorder.norms  # (steps, blocks)
    return norms[:, 0] / norms[:, -1]


def main(argv: Sequence[str] | None = None) -> torch.Tensor:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="CIFAR-10 folder (official batches or an image folder)")
    parser.add_argument("--smoke", action="store_true", help="the synthetic stand-in instead (for tests)")
    parser.add_argument("--model", default="plain56")
    parser.add_argument("--subset", type=int, default=10000, help="training images (notebook 04's 10,000)")
    parser.add_argument("--val-split", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=8, help="the length of the schedule")
    parser.add_argument("--record-epochs", type=int, default=1, help="epochs actually trained and recorded")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.smoke and not args.data:
        parser.error("give --data DIR (or --smoke)")
    data = load_cifar10(args.data, val_split=args.val_split, subset=args.subset, seed=args.seed, smoke=args.smoke)
    ratios = growth_ratios(data, model=args.model, epochs=args.epochs, record_epochs=args.record_epochs,
                           batch_size=args.batch_size, seed=args.seed)
    print(f"{args.model}, seed {args.seed}, {len(data.train_labels):,} training images at batch {args.batch_size}, "
          f"fast recipe scheduled for {args.epochs} epochs; torch {torch.__version__}, {data.description}")
    print("step  first block / last block (gradient norm)")
    for step in REPORTED_STEPS:
        if step <= len(ratios):
            print(f"{step:4d}  {float(ratios[step - 1]):10.1f}")
    below = (ratios < 2).nonzero().flatten()
    print("first step below 2:", int(below[0]) + 1 if len(below) else "none")
    return ratios


if __name__ == "__main__":
    main()
