"""One epoch of training and one evaluation pass: the inner loops of :func:`resnet_lab.train.fit`.

The loop is flat, in labelled phases (forward/backward, step, log, check). Per-step loss and accuracy stay on the
device; the host reads them only every few steps (every step on a CPU), which is when a NaN/inf loss is caught.
Under DDP every sum is reduced across ranks, so each rank sees the same metrics and stops at the same step.
The sums are float64, except on Apple's MPS, which has no float64 (float32 there: exact enough for a mean loss).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .loader import TensorLoader

__all__ = ["TrainingDiverged", "Evaluation", "evaluate", "train_epoch", "average_buffers", "world"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is left as it was."""


class Evaluation(NamedTuple):
    loss: float  # mean cross-entropy (no label smoothing)
    accuracy: float  # fraction correct
    confusion: torch.Tensor  # (classes, classes) int64 counts, rows = true class, columns = prediction


# Device types without float64 tensors: Apple's MPS refuses them (pytorch/pytorch#122602, a known limitation).
_NO_FLOAT64 = ("mps",)


def _sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the loss sums on ``device``: float64, or float32 where the device has no float64."""
    return torch.float32 if device.type in _NO_FLOAT64 else torch.float64


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate(model: nn.Module, loader: TensorLoader, *, num_classes: int = 10,
             amp_dtype: torch.dtype | None = None, flip: bool = False) -> Evaluation:
    """Loss, accuracy and confusion matrix of ``model`` (in eval mode) over ``loader``, summed across DDP ranks.

    ``flip=True`` is test-time augmentation: the logits are the mean over each image and its mirror image
    (what training with random flips taught the net to treat alike; airbench does the same).
    """
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), dtype=_sum_dtype(device), device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in loader:
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            logits = model(images)  # (N, classes)
            if flip:
                logits = (logits + model(images.flip(-1))) / 2
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        confusion += torch.bincount(labels * num_classes + logits.argmax(1), minlength=num_classes ** 2)
    if loader.world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(confusion)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    count = max(1, int(confusion.sum()))
    return Evaluation(float(loss_sum) / count, float(confusion.trace()) / count, confusion)


def train_epoch(model: nn.Module, loader: TensorLoader, optimizer, scheduler, scaler, config: dict, *,
                 epoch: int, amp_dtype: torch.dtype | None, bar: tqdm) -> dict:
    """One pass over ``loader``; returns summed loss/correct/images (all ranks) or raises TrainingDiverged."""
    model.train()
    device, steps, world = loader.device, len(loader), loader.world_size
    factor = scheduler.lr_lambdas[0]
    sum_dtype = _sum_dtype(device)
    losses = torch.zeros(steps, dtype=sum_dtype, device=device)  # per step: summed plain cross-entropy
    correct = torch.zeros(steps, dtype=torch.int64, device=device)
    sizes = torch.zeros(steps, dtype=torch.int64, device=device)
    sync_every = 1 if device.type == "cpu" else 20  # reading a GPU value waits for the GPU: only now and then
    bar.set_description(f"epoch {epoch}/{config['epochs']}")
    done = 0  # steps already counted on the bar
    for step, (images, labels) in enumerate(loader):
        # forward / backward in the chosen precision; label smoothing only in the objective
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            logits = model(images)  # (B, classes)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()  # per-step schedule
        # log on the device, without waiting for it
        with torch.no_grad():
            losses[step] = F.cross_entropy(logits.float(), labels, reduction="sum")
            correct[step] = (logits.argmax(1) == labels).sum()
            sizes[step] = len(labels)
        if (step + 1) % sync_every and step + 1 != steps:
            continue
        # check: a non-finite loss stops the run (on every rank at once)
        bad = (~torch.isfinite(losses[:step + 1])).nonzero().flatten()
        flag = torch.tensor([len(bad) > 0], dtype=torch.int64, device=device)
        if world > 1:
            dist.all_reduce(flag)
        if flag.item():
            first = int(bad[0]) if len(bad) else step
            raise TrainingDiverged(f"the loss became {float(losses[first]) / int(sizes[first]):.4g} at epoch "
                                   f"{epoch}, step {first + 1} of {steps} (lr {optimizer.param_groups[0]['lr']:.3g})")
        if factor.warming_up:  # the paper's ResNet-110 warm-up ends when the training error drops below 80 %
            window = torch.stack([correct[max(0, step - 9):step + 1].sum(), sizes[max(0, step - 9):step + 1].sum()])
            if world > 1:
                dist.all_reduce(window)
            if window[0] > 0.2 * window[1]:
                factor.warming_up = False
        seen = int(sizes[:step + 1].sum())
        bar.update(step + 1 - done)
        done = step + 1
        bar.set_postfix(loss=f"{float(losses[:step + 1].sum()) / seen:.3f}",
                        acc=f"{int(correct[:step + 1].sum()) / seen:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
    totals = torch.stack([losses.sum(), correct.sum().to(sum_dtype), sizes.sum().to(sum_dtype)])
    if world > 1:
        dist.all_reduce(totals)
    return {"loss_sum": float(totals[0]), "correct": int(totals[1]), "images": int(totals[2])}


def average_buffers(model: nn.Module, world: int) -> None:
    """Average BatchNorm's running statistics across ranks (each rank's come from its own shard)."""
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world
