"""Reference solutions of the notebooks' exercises (try the exercise before reading these)."""

from __future__ import annotations

import math

import torch

__all__ = ["init_std", "input_gradient"]


def init_std(fan_in: int, activation: str) -> float:
    """Notebook 01: weight std that keeps the activations' second moment constant from layer to layer."""
    return math.sqrt((2.0 if activation == "relu" else 1.0) / fan_in)


def input_gradient(weights: list[torch.Tensor], x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """Notebook 01: dL/dx of ``h_l = tanh(W_l h_{l-1})`` as a product of transposed layer Jacobians."""
    activations = []
    h = x
    for w in weights:
        h = torch.tanh(w @ h)
        activations.append(h)
    g = grad_output
    for w, h in zip(reversed(weights), reversed(activations)):
        g = w.T @ ((1 - h**2) * g)  # J_l^T g with J_l = diag(1 - h_l^2) W_l
    return g
