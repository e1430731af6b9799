"""Loss landscapes along random directions (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").

A 1-D slice is ``L(theta + alpha * d)``, a 2-D surface ``L(theta + alpha * d + beta * e)``, for random directions
``d`` and ``e`` in parameter space. Raw Gaussian directions would make wide nets look flat and narrow ones sharp
just through the scale of their weights, so each direction is *filter-normalised* (Sec. 4): every filter of ``d``
gets the norm of the same filter of ``theta``. The paper's finding, for networks trained to convergence: the
landscape of a deep plain net is chaotic, that of its residual twin smooth and nearly convex around the minimum
(Fig. 5). Notebook 05 draws these plots for its own networks (after a short CPU run they show mostly how far training
got).

Evaluation runs in eval mode, so BatchNorm normalises with the running statistics the trained model collected:
the landscape is that of the function the model computes at test time. The model is perturbed in place and
always restored exactly afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["Direction", "LandscapeSlice", "LandscapeSurface", "loss_and_accuracy", "random_direction",
           "filter_normalize", "loss_along_line", "loss_surface"]

Direction = dict[str, torch.Tensor]  # parameter name (as in model.named_parameters()) -> tensor of its shape


class LandscapeSlice(NamedTuple):
    """The loss along one direction through the weights (:func:`loss_along_line`)."""

    alphas: torch.Tensor  # (A,) step sizes along the direction
    loss: torch.Tensor  # (A,) mean cross-entropy at theta + alpha * d
    accuracy: torch.Tensor  # (A,) fraction correct


class LandscapeSurface(NamedTuple):
    """The loss over a plane through the weights (:func:`loss_surface`)."""

    alphas: torch.Tensor  # (A,) coordinates along x_direction
    betas: torch.Tensor  # (B,) coordinates along y_direction
    loss: torch.Tensor  # (B, A): row j, column i is the loss at theta + alphas[i] * d + betas[j] * e
    accuracy: torch.Tensor  # (B, A)


@torch.no_grad()
def loss_and_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500
) -> tuple[float, float]:
    """Mean cross-entropy and fraction correct of ``model`` in eval mode, in batches on the model's device.

    ``images`` ``(N, C, H, W)`` as the model takes them (normalised floats), ``labels`` ``(N,)``; either may live
    on the CPU. The model's train/eval mode is restored afterwards.
    """
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need as many labels as images, at least one; got {len(images)} images, {len(labels)} labels")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        loss_sum, correct = 0.0, 0
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device)
            logits = model(x)  # (B, classes)
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return loss_sum / len(images), correct / len(images)


def _check_direction(direction: Direction, model: nn.Module) -> None:
    """ValueError unless ``direction`` has exactly one tensor of the right shape per parameter of ``model``."""
    shapes = {name: p.shape for name, p in model.named_parameters()}
    missing, unknown = shapes.keys() - direction.keys(), direction.keys() - shapes.keys()
    if missing or unknown:
        raise ValueError(f"the direction must have one entry per model parameter; missing {sorted(missing)}, "
                         f"unknown {sorted(unknown)}. Build it with random_direction(model).")
    for name, shape in shapes.items():
        if direction[name].shape != shape:
            raise ValueError(f"direction[{name!r}] has shape {tuple(direction[name].shape)}, the parameter "
                             f"{tuple(shape)}: was the direction built for another model?")


def filter_normalize(direction: Direction, model: nn.Module) -> Direction:
    """Rescale every filter of ``direction`` to the norm of the same filter of ``model``'s weights (Li et al. Sec. 4).

    A filter is a slice along dim 0: one output channel of a conv kernel, one output unit (row) of a linear layer.
    Parameters with one dimension (BatchNorm scales and shifts, biases) get a zero direction, as in the paper:
    they are not perturbed. Returns a new dict; ``direction`` is left unchanged.
    """
    _check_direction(direction, model)
    normalized = {}
    for name, weight in model.named_parameters():
        d = direction[name].detach().to(weight)
        if weight.dim() <= 1:
            normalized[name] = torch.zeros_like(d)
            continue
        d_norms = d.flatten(1).norm(dim=1)  # (filters,)
        w_norms = weight.detach().flatten(1).norm(dim=1)  # (filters,)
        scale = w_norms / (d_norms + 1e-10)  # the paper's epsilon: a zero filter of d stays zero
        normalized[name] = d * scale.view(-1, *[1] * (d.dim() - 1))
    return normalized


def random_direction(model: nn.Module, *, generator: torch.Generator | None = None) -> Direction:
    """A Gaussian direction with every parameter's shape, filter-normalised by :func:`filter_normalize`.

    Drawn on the CPU (so a seeded ``generator`` gives the same direction on every device), then moved to the
    parameters' device.
    """
    direction = {name: torch.randn(p.shape, generator=generator).to(p) for name, p in model.named_parameters()}
    return filter_normalize(direction, model)


def _losses_on_grid(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, directions: Sequence[Direction],
    points: list[tuple[float, ...]], batch_size: int, progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy ``(len(points),)`` at ``theta + sum_k point[k] * directions[k]`` for every point."""
    for direction in directions:
        _check_direction(direction, model)
    parameters = dict(model.named_parameters())
    theta = {name: p.detach().clone() for name, p in parameters.items()}  # restored from this copy, bit for bit
    directions = [{name: d[name].detach().to(p) for name, p in parameters.items()} for d in directions]
    losses, accuracies = torch.empty(len(points), dtype=torch.float64), torch.empty(len(points), dtype=torch.float64)
    try:
        for i, coordinates in enumerate(tqdm(points, desc="loss landscape", leave=False, disable=not progress)):
            with torch.no_grad():
                for name, p in parameters.items():
                    moved = theta[name].clone()
                    for step, direction in zip(coordinates, directions):
                        moved.add_(direction[name], alpha=step)
                    p.copy_(moved)
            losses[i], accuracies[i] = loss_and_accuracy(model, images, labels, batch_size=batch_size)
    finally:
        with torch.no_grad():
            for name, p in parameters.items():
                p.copy_(theta[name])
    return losses, accuracies


def loss_along_line(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, direction: Direction, alphas: Sequence[float],
    *, batch_size: int = 500, progress: bool = True,
) -> LandscapeSlice:
    """Loss and accuracy at ``theta + alpha * direction`` for every ``alpha`` (Li et al. Fig. 2-3, 1-D plots)."""
    alphas = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    loss, accuracy = _losses_on_grid(model, images, labels, [direction], [(float(a),) for a in alphas],
                                     batch_size, progress)
    return LandscapeSlice(alphas, loss, accuracy)


def loss_surface(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, x_direction: Direction, y_direction: Direction,
    alphas: Sequence[float], betas: Sequence[float], *, batch_size: int = 500, progress: bool = True,
) -> LandscapeSurface:
    """Loss and accuracy at ``theta + alpha * x_direction + beta * y_direction`` on the grid (Li et al. Fig. 5).

    ``len(alphas) * len(betas)`` evaluations over all the images: keep both grids and the image set small on a CPU.
    """
    alphas = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    points = [(float(a), float(b)) for b in betas for a in alphas]  # row-major: one row per beta
    loss, accuracy = _losses_on_grid(model, images, labels, [x_direction, y_direction], points, batch_size, progress)
    shape = (len(betas), len(alphas))
    return LandscapeSurface(alphas, betas, loss.view(shape), accuracy.view(shape))
