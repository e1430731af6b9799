"""Deleting blocks from a trained network (Veit et al. 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", Sec. 4).

Removing one block from a trained ResNet barely hurts its test accuracy, and removing several degrades it smoothly,
whereas removing any layer of a plain (VGG-style) net destroys it (Figs. 3-5). Veit et al. read this as evidence
that a ResNet is an ensemble of many paths, most of which survive the loss of one block.

``lesioned(model, blocks)`` replaces blocks by their skip path for the duration of a ``with`` statement: the block
computes what it would compute with its residual branch deleted. For a plain block, which has no skip, removing
it means replacing it by the identity (by the parameter-free option-A shortcut where it changes the shape, so the
network still runs): the deletion of a layer that Veit et al. compare with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from .blocks import BasicBlock, Bottleneck, PaddingShortcut, PlainBlock, PlainBottleneck, PreActBlock, branch_layers
from .landscape import loss_and_accuracy
from .models import blocks_of, check_block_indices

__all__ = ["skip_path", "lesioned", "lesion_accuracy", "single_lesions", "lesion_sets", "random_lesions"]


def skip_path(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What ``block`` computes with its residual branch deleted.

    * ``BasicBlock``, ``Bottleneck``: ``relu(shortcut(x))``, the ReLU after the addition kept. With the identity
      shortcut this is ``x`` itself, since ``x`` is the output of an earlier ReLU and so already >= 0; with a
      projection (option B) the ReLU does act.
    * ``PreActBlock``: ``x``, or ``shortcut(relu(bn1(x)))`` where the block has a shortcut module (it takes the
      pre-activated input, as in the block's forward).
    * ``PlainBlock``, ``PlainBottleneck``: the identity, or option A's subsample-and-zero-pad where the block
      changes the shape.
    """
    if isinstance(block, (PlainBlock, PlainBottleneck)):
        convs = [m for m in branch_layers(block) if isinstance(m, nn.Conv2d)]
        in_channels, out_channels = convs[0].in_channels, convs[-1].out_channels
        stride = max(conv.stride[0] for conv in convs)
        if stride == 1 and in_channels == out_channels:
            return lambda x: x
        padding = PaddingShortcut(in_channels, out_channels, stride)
        return lambda x: padding(x)  # a plain function: assigning a module to block.forward would register it
    if isinstance(block, (BasicBlock, Bottleneck)):
        if block.downsample is None:
            return lambda x: block.relu(x)
        return lambda x: block.relu(block.downsample(x))
    if isinstance(block, PreActBlock):
        if block.downsample is None:
            return lambda x: x
        return lambda x: block.downsample(block.relu(block.bn1(x)))
    raise TypeError(f"cannot lesion a {type(block).__name__}; supported blocks: PlainBlock, BasicBlock, "
                    "PlainBottleneck, Bottleneck, PreActBlock (resnet_lab.blocks)")


@contextmanager
def lesioned(model: nn.Module, blocks: Iterable[int]) -> Iterator[nn.Module]:
    """Within the ``with`` statement, the blocks at these indices of ``model.blocks`` compute only their skip path.

    Each block's ``forward`` is swapped for :func:`skip_path` and restored on exit, also after an exception.
    Yields ``model``.
    """
    all_blocks = blocks_of(model)
    chosen = [all_blocks[i] for i in check_block_indices(blocks, len(all_blocks))]
    replacements = [skip_path(block) for block in chosen]  # all checked before any block is touched
    previous = [block.__dict__.get("forward") for block in chosen]  # set by an enclosing lesioned(), if any
    for block, replacement in zip(chosen, replacements):
        block.forward = replacement  # an instance attribute, found before the class's forward
    try:
        yield model
    finally:
        for block, forward in zip(chosen, previous):
            if forward is None:
                del block.forward
            else:
                block.forward = forward


def lesion_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, remove: Iterable[int] = (), *,
    batch_size: int = 500,
) -> float:
    """Accuracy (a fraction) of ``model`` in eval mode with the blocks ``remove`` deleted."""
    with lesioned(model, remove):
        return loss_and_accuracy(model, images, labels, batch_size=batch_size)[1]


def single_lesions(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500, progress: bool = True,
) -> list[float]:
    """Accuracy with block ``i`` deleted, for every ``i`` of ``model.blocks`` (Veit et al. Fig. 3)."""
    indices = range(len(blocks_of(model)))
    return [lesion_accuracy(model, images, labels, [i], batch_size=batch_size)
            for i in tqdm(indices, desc="single lesions", leave=False, disable=not progress)]


def lesion_sets(n_blocks: int, counts: Sequence[int], *, trials: int = 10, seed: int = 0) -> dict[int, list[list[int]]]:
    """For each count ``k``, ``trials`` random sets of ``k`` distinct block indices (sorted); seeded.

    Sets are drawn independently, so with few blocks the same set can come up twice.
    """
    for k in counts:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n_blocks:
            raise ValueError(f"each count must be an integer from 0 to the number of blocks, {n_blocks}; got {k!r}")
    if trials < 1:
        raise ValueError(f"trials must be a positive integer; got {trials!r}")
    generator = torch.Generator().manual_seed(seed)
    return {k: [sorted(torch.randperm(n_blocks, generator=generator)[:k].tolist()) for _ in range(trials)]
            for k in counts}


def random_lesions(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, counts: Sequence[int], *, trials: int = 10,
    seed: int = 0, batch_size: int = 500, progress: bool = True,
) -> dict[int, list[float]]:
    """For each count ``k``, the accuracy with ``trials`` random sets of ``k`` blocks deleted (Veit et al. Fig. 5).

    The sets are those of :func:`lesion_sets` with the same ``counts``, ``trials`` and ``seed``.
    """
    sets = lesion_sets(len(blocks_of(model)), counts, trials=trials, seed=seed)
    bar = tqdm(total=len(sets) * trials, desc="random lesions", leave=False, disable=not progress)
    accuracies: dict[int, list[float]] = {}
    with bar:
        for k, removals in sets.items():
            accuracies[k] = []
            for remove in removals:
                accuracies[k].append(lesion_accuracy(model, images, labels, remove, batch_size=batch_size))
                bar.update()
    return accuracies
