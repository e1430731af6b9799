"""One epoch of training and one evaluation pass: the inner loops of :func:`resnet_lab.train.fit`.

The loop is flat, in labelled phases (forward/backward, step, log, check). Per-step loss and accuracy stay on the
device; the host reads them once per check, every few steps (every step on a CPU, and while the paper's warm-up
lasts), which is when a NaN/inf loss is caught. Under DDP every sum is reduced across ranks, so each rank sees the
same metrics and stops at the same step.
The sums are float64, except on Apple's MPS, which has no float64 (float32 there: exact enough for a mean loss).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .loader import TensorLoader
from .recipes import LRFactor

__all__ = ["TrainingDiverged", "Evaluation", "evaluate", "tta_logits", "train_epoch", "average_buffers", "world"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is left as it was."""


class Evaluation(NamedTuple):
    """What :func:`evaluate` measures over a data set."""

    loss: float  # mean cross-entropy (no label smoothing)
    accuracy: float  # fraction correct
    confusion: torch.Tensor  # (classes, classes) int64 counts, rows = true class, columns = prediction


# Device types without float64 tensors: Apple's MPS refuses them (pytorch/pytorch#122602, a known limitation).
_NO_FLOAT64 = ("mps",)


def _sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the loss sums on ``device``: float64, or float32 where the device has no float64."""
    return torch.float32 if device.type in _NO_FLOAT64 else torch.float64


def _check_every(device: torch.device) -> int:
    """Steps between checks: reading a value from a GPU waits for it to finish its queue, so only now and then."""
    return 1 if device.type == "cpu" else 20


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def tta_logits(model: nn.Module, images: torch.Tensor, *, flip: bool = False, shift: bool = False) -> torch.Tensor:
    """``model``'s logits for ``images`` ``(N, C, H, W)``, averaged over test-time views as airbench does.

    ``flip``: the mean over each image and its mirror image (what training with random flips taught the net to treat
    alike). ``shift``: half the logits of the image and a quarter each of the image moved by one pixel down-right and
    up-left (edges reflected), each of them flip-averaged with ``flip``: three times as many passes of the model.
    """
    def views(x: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        return (logits + model(x.flip(-1))) / 2 if flip else logits

    if not shift:
        return views(images)
    height, width = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    return views(images) / 2 + (views(padded[..., :height, :width]) + views(padded[..., 2:, 2:])) / 4


@torch.no_grad()
def evaluate(model: nn.Module, loader: TensorLoader, *, num_classes: int = 10,
             amp_dtype: torch.dtype | None = None, flip: bool = False, shift: bool = False) -> Evaluation:
    """Loss, accuracy and confusion matrix of ``model`` (in eval mode) over ``loader``, summed across DDP ranks.

    ``flip`` and ``shift`` are test-time augmentation (:func:`tta_logits`): the fast recipe scores with flips.
    """
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), dtype=_sum_dtype(device), device=device)
    # counted in int32: MPS before torch 2.9 accumulates no int64; returned as int64
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int32, device=device)
    try:
        for images, labels in loader:
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                logits = tta_logits(model, images, flip=flip, shift=shift)  # (N, classes)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
            # += 1 at (true class, prediction) for every image; unlike bincount, no wait for the GPU (reads no size)
            confusion.index_put_((labels, logits.argmax(1)), torch.ones_like(labels, dtype=torch.int32),
                                 accumulate=True)
    finally:  # an interrupted evaluation leaves the model in the mode it was given
        model.train(was_training)
    if loader.world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(confusion)
    confusion = confusion.to("cpu", torch.int64)
    count = max(1, int(confusion.sum()))
    return Evaluation(float(loss_sum) / count, float(confusion.trace()) / count, confusion)


def _advance(scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler) -> None:
    """``scheduler.step()``, every step, including those the float16 GradScaler skipped."""
    if not scaler.is_enabled():
        scheduler.step()
        return
    # A skipped step (the scaled gradients overflowed, often in the GradScaler's first steps while it searches for
    # a scale) makes PyTorch warn that the schedule's first value would be skipped. It is not: the schedule is a
    # function of the step count, skipped steps included, so it stays in line with the epochs and with a resume.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of", category=UserWarning)
        scheduler.step()


def train_epoch(model: nn.Module, loader: TensorLoader, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, *, epoch: int,
                label_smoothing: float = 0.0, amp_dtype: torch.dtype | None = None, bar: tqdm | None = None) -> dict:
    """One pass over ``loader``: summed ``loss_sum``, ``correct`` and ``images`` (all ranks), or TrainingDiverged.

    ``scheduler`` steps once per step. When it comes from ``recipes.make_scheduler`` with the paper's ResNet-110
    warm-up, its :class:`~resnet_lab.recipes.LRFactor`'s ``warming_up`` flag is cleared here once the training error of
    the last 10 steps drops below 80 % (checked every step while it is set).
    ``epoch`` names the epoch in a divergence message; ``bar`` counts the steps and shows the running metrics.
    """
    model.train()
    device, steps, world = loader.device, len(loader), loader.world_size
    warmup = next((f for f in getattr(scheduler, "lr_lambdas", ()) if isinstance(f, LRFactor)), None)
    sum_dtype = _sum_dtype(device)
    losses = torch.zeros(steps, dtype=sum_dtype, device=device)  # per step: summed plain cross-entropy
    correct = torch.zeros(steps, dtype=torch.int64, device=device)
    # images per step, on the host; every rank runs the same steps of the same size (the loader pads the shards)
    sizes: list[int] = []
    check_every = _check_every(device)
    show = bar is not None and not bar.disable
    done = 0  # steps already counted on the bar
    for step, (images, labels) in enumerate(loader):
        # forward / backward in the chosen precision; label smoothing only in the objective
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            logits = model(images)  # (B, classes)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _advance(scheduler, scaler)  # per-step schedule
        # log on the device, without waiting for it
        with torch.no_grad():
            losses[step] = F.cross_entropy(logits.float(), labels, reduction="sum")
            correct[step] = (logits.argmax(1) == labels).sum()
        sizes.append(len(labels))
        # while the warm-up lasts (a few hundred steps), check every step on every device: it ends at the same step
        warming_up = warmup is not None and warmup.warming_up
        if (step + 1) % check_every and step + 1 != steps and not warming_up:
            continue
        # check, with one host read: running sums so far, and the correct answers of the last 10 steps
        recent = slice(max(0, step - 9), step + 1)
        stats = torch.stack([losses[:step + 1].sum(), correct[:step + 1].sum().to(sum_dtype),
                             correct[recent].sum().to(sum_dtype)])
        if world > 1:
            dist.all_reduce(stats)  # a NaN/inf loss on any rank makes the sum non-finite on every rank
        loss_sum, seen_correct, recent_correct = stats.tolist()
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(f"the loss became NaN or infinite at epoch {epoch}, step "
                                   f"{_first_bad_step(losses[:step + 1], world) + 1} of {steps} "
                                   f"(lr {optimizer.param_groups[0]['lr']:.3g})")
        if warming_up and recent_correct > 0.2 * sum(sizes[recent]) * world:  # training error below 80 %
            warmup.warming_up = False
        if show:
            seen = sum(sizes) * world
            bar.update(step + 1 - done)
            done = step + 1
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{seen_correct / seen:.3f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.3g}")
    totals = torch.stack([losses.sum(), correct.sum().to(sum_dtype)])
    if world > 1:
        dist.all_reduce(totals)
    loss_sum, all_correct = totals.tolist()
    return {"loss_sum": loss_sum, "correct": int(all_correct), "images": sum(sizes) * world}


def _first_bad_step(losses: torch.Tensor, world: int) -> int:
    """The first step (0-based) whose loss is NaN/inf on any rank; every rank gets the same answer."""
    index = torch.arange(len(losses), device=losses.device)
    first = torch.where(torch.isfinite(losses), len(losses), index).min()  # len(losses): none on this rank
    if world > 1:
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
    return int(first)


def average_buffers(model: nn.Module, world: int) -> None:
    """Average BatchNorm's running statistics across ranks (each rank's come from its own shard)."""
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world
