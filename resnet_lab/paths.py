"""The unraveled view of a ResNet: paths and their gradients (Veit et al. 2016, "Residual Networks Behave Like
Ensembles of Relatively Shallow Networks", Secs. 3 and 5).

Unrolling ``n`` residual blocks gives ``2**n`` paths from input to output: each block is passed either through its
residual branch or through its skip, so ``C(n, k)`` paths go through exactly ``k`` branches (path length ``k``).
Veit et al. measured how much gradient each length carries: a normal forward pass, then a backward pass that goes
only through the residual branch of ``k`` random blocks and only through the skip of all the others (Sec. 5).
In their trained ResNet-110 the gradient of one path shrank exponentially with its length (a measured property,
not a law), so although the typical path is ``n / 2`` blocks long, nearly all of the gradient came from short ones
(Fig. 6: 5-17 of 54 blocks).

For post-activation blocks (``BasicBlock``, ``Bottleneck``) the ReLU after the addition is shared by both paths:
its mask comes from the full sum in the forward pass, and a path's gradient passes through it whichever way it
took. Evaluation is in eval mode (BatchNorm with the running statistics, meant for a trained model), so the network
is a fixed function of each image and its input gradient is exactly the sum of the gradients of its ``2**n`` paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle
from tqdm.auto import tqdm

from .blocks import branch_layers
from .models import blocks_of, check_block_indices

__all__ = ["path_length_counts", "single_path", "path_gradient", "gradient_by_path_length"]


def path_length_counts(n_blocks: int) -> torch.Tensor:
    """``C(n, k)`` for ``k = 0..n``: the number of paths through exactly ``k`` residual branches (they sum to 2**n)."""
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
        raise ValueError(f"n_blocks must be a non-negative integer; got {n_blocks!r}")
    return torch.tensor([math.comb(n_blocks, k) for k in range(n_blocks + 1)], dtype=torch.float64)


def _branch_ends(block: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The first and the last layer of ``block``'s residual branch; ValueError for a plain block."""
    if not getattr(block, "has_skip", True):  # PlainBlock, PlainBottleneck
        raise ValueError("a plain network has no skips, so every path goes through every block and there is only "
                         "one path length; use a residual net (e.g. build_model('resnet20'))")
    layers = branch_layers(block)
    return layers[0], layers[-1]


def _residual_blocks(model: nn.Module) -> list[nn.Module]:
    blocks = blocks_of(model)
    for block in blocks:
        _branch_ends(block)  # refuses plain and unknown blocks before anything runs
    return blocks


def _detach_output(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.detach()  # the same values; the backward pass stops here


def _route_gradient(block: nn.Module, *, through_branch: bool) -> list[RemovableHandle]:
    """Hooks that let the gradient through ``block`` take only its residual branch, or only its skip."""
    first, last = _branch_ends(block)
    if not through_branch:
        return [last.register_forward_hook(_detach_output)]
    if block.downsample is not None:  # the skip is the shortcut module's output
        return [block.downsample.register_forward_hook(_detach_output)]
    # The skip is the block's input itself: detach it, and hand the branch's first layer the original instead.
    original: list[torch.Tensor] = []

    def detach_input(_block: nn.Module, args: tuple) -> tuple:
        original.append(args[0])
        return (args[0].detach(), *args[1:])

    def reattach_input(_layer: nn.Module, args: tuple) -> tuple:
        return (original.pop(), *args[1:])

    return [block.register_forward_pre_hook(detach_input), first.register_forward_pre_hook(reattach_input)]


@contextmanager
def single_path(model: nn.Module, branches: Iterable[int]) -> Iterator[nn.Module]:
    """Within the ``with`` statement, backward passes follow one path: through the residual branch (and not the
    skip) of the blocks ``branches``, through the skip (and not the branch) of every other block.

    The forward pass is unchanged, bit for bit: hooks only detach tensors, which stops the gradient at them (the
    last layer of a blocked branch, the shortcut's output or the block's input for a blocked skip). The hooks are
    removed on exit. Yields ``model``.
    """
    blocks = _residual_blocks(model)
    chosen = set(check_block_indices(branches, len(blocks)))
    handles = [handle for i, block in enumerate(blocks)
               for handle in _route_gradient(block, through_branch=i in chosen)]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def path_gradient(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, branches: Iterable[int]
) -> torch.Tensor:
    """d(mean cross-entropy)/d(images) ``(N, C, H, W)`` along the one path through the residual branches of the
    blocks ``branches`` and the skips of all other blocks (:func:`single_path`); eval mode, on the model's device.

    The gradients of all ``2**n`` paths add up to the ordinary input gradient.
    """
    device = next(model.parameters()).device
    x = images.detach().to(device).requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with single_path(model, branches):
            loss = F.cross_entropy(model(x), labels.to(device))
        (gradient,) = torch.autograd.grad(loss, x)  # the parameters' .grad are left alone
    finally:
        model.train(was_training)
    return gradient


def gradient_by_path_length(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, samples: int = 10, seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Mean L2 norm of the input gradient of one path of length ``k``, for ``k = 0..n`` (Veit et al. Fig. 6a).

    For each ``k``, ``samples`` random sets of ``k`` blocks (seeded) whose branches the gradient goes through;
    the norm is taken over the whole batch's gradient ``(N, C, H, W)``. Multiply by :func:`path_length_counts`
    for the total gradient each length carries (Fig. 6b). Returns ``(n + 1,)`` float64 on the CPU.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer; got {samples!r}")
    n_blocks = len(_residual_blocks(model))
    generator = torch.Generator().manual_seed(seed)
    norms = torch.zeros(n_blocks + 1, dtype=torch.float64)
    with tqdm(total=(n_blocks + 1) * samples, desc="gradient by path length", leave=False,
              disable=not progress) as bar:
        for k in range(n_blocks + 1):
            for _ in range(samples):
                branches = torch.randperm(n_blocks, generator=generator)[:k].tolist()
                norms[k] += float(path_gradient(model, images, labels, branches).to("cpu", torch.float64).norm())
                bar.update()
    return norms / samples
