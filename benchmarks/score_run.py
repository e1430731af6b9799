"""A training run's accuracy scored single-view (as the paper reports), with test-time flips, and with flips and shifts.

A run's ``metrics.json`` scores held-out images the way its recipe does (the fast recipe with flips, the paper's
single-view); this scores its last checkpoint three ways (``engine.tta_logits``: the flip-averaged logits of the
image and of the image moved by one pixel, as airbench scores), in the run's precision and memory format (bfloat16
or float16 autocast, channels_last, where it trained so), on the validation split it trained with:

    python -m benchmarks.score_run runs/resnet20 --data DIR --val-split 5000

``--val-split`` (and ``--subset``, ``--split-seed``) must be those of the training run; the run records its data
source, split sizes and split seed, and a different split is refused rather than scored on images the network
trained on.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_lab.checkpoint import CHECKPOINT_NAME, load_checkpoint  # noqa: E402
from resnet_lab.data import CifarData, load_cifar10  # noqa: E402
from resnet_lab.loader import TensorLoader  # noqa: E402
from resnet_lab.models import build_model  # noqa: E402
from resnet_lab.runtime import pick_device  # noqa: E402
from resnet_lab.train import evaluate  # noqa: E402

__all__ = ["score_run", "main"]


def score_run(run_dir: str | os.PathLike, data: CifarData, *, device: str | torch.device | None = None,
              model_name: str | None = None) -> dict[str, object]:
    """``{"model", "epoch", "val_single", "val_flip", "val_flip_shift", "test_single", ...}`` of the run's last
    checkpoint (``engine.tta_logits``'s views); accuracies as fractions, None for a split ``data`` does not have.
    ValueError if ``data`` is not the run's split (its source, training and validation sizes and split seed).
    ``model_name`` (``build_model``'s names) is for a run saved without one (``fit`` without ``model_name``); the
    network gets as many outputs as the run's head."""
    state = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)
    config = state["config"]
    given = {"data": data.source, "train_size": len(data.train_labels),
             "val_size": 0 if data.val_labels is None else len(data.val_labels), "split_seed": data.split_seed}
    saved = {key: config.get(key) for key in given}
    if None in saved.values():
        raise ValueError(f"{run_dir} was saved before runs recorded their validation split: it cannot be checked")
    if saved != given:
        raise ValueError(f"{run_dir} trained on {saved}, this data is {given}: pass the run's --val-split, --subset "
                         "and --split-seed (and its data), so that no training image is scored")
    device = pick_device(None if device is None else str(device))
    memory_format = torch.channels_last if config.get("channels_last") else torch.contiguous_format
    name = model_name or config["model"]
    try:  # as many outputs as the run's head: the command line gives an ImageNet net one per class of the data
        model = build_model(name, num_classes=state["model"]["fc.weight"].shape[0])
    except ValueError as error:
        raise ValueError(f"{run_dir} holds a {name!r} network, which this script cannot rebuild ({error}); pass "
                         "--model NAME, the name it was trained as") from None
    model.load_state_dict(state["model"])
    model.to(device, memory_format=memory_format)
    amp_dtype = getattr(torch, config["amp"]) if config.get("amp") else None  # as fit scored it
    scores: dict[str, object] = {"model": name, "epoch": state["epoch"]}
    for split, images, labels in (("val", data.val_images, data.val_labels),
                                  ("test", data.test_images, data.test_labels)):
        loader = None if images is None else TensorLoader(images, labels, 500, train=False, device=device,
                                                          channels_last=bool(config.get("channels_last")))
        for way, views in (("single", {}), ("flip", {"flip": True}), ("flip_shift", {"flip": True, "shift": True})):
            scores[f"{split}_{way}"] = (None if loader is None else
                                        evaluate(model, loader, num_classes=len(data.classes), amp_dtype=amp_dtype,
                                                 **views).accuracy)
    return scores


def _percent(value: object) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run folder (holds checkpoint.pt)")
    parser.add_argument("--data", help="the CIFAR-10 copy the run trained on (default $RESNET_LAB_DATA)")
    parser.add_argument("--val-split", type=int, default=5000, help="the run's --val-split (default 5000)")
    parser.add_argument("--subset", type=int, help="the run's --subset, if it had one")
    parser.add_argument("--split-seed", type=int, default=0, help="the run's --split-seed (default 0)")
    parser.add_argument("--smoke", action="store_true", help="the synthetic stand-in (a --smoke run)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--model", help="the network's name, for a run saved without one (default: the run's)")
    args = parser.parse_args(argv)
    data = load_cifar10(args.data, val_split=args.val_split, subset=args.subset, seed=args.split_seed,
                        smoke=args.smoke)
    scores = score_run(args.run, data, device=args.device, model_name=args.model)
    print(f"{args.run}: {scores['model']} after {scores['epoch']} epochs")
    for split in ("val", "test"):
        print(f"  {split:4s} single-view {_percent(scores[f'{split}_single'])}, with flips "
              f"{_percent(scores[f'{split}_flip'])}, with flips and shifts {_percent(scores[f'{split}_flip_shift'])}")
    return scores


if __name__ == "__main__":
    main()
