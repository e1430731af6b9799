"""Reference solutions of the notebooks' exercises (try the exercise before reading these)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Where the package's own code is the reference, it is re-exported here rather than kept twice:
# notebook 04's batch flip is one line of resnet_lab/loader.py (``batch_flip``), notebook 05's filter
# normalisation (Li et al. 2018, Sec. 4) a dozen readable lines of resnet_lab/landscape.py.
from .landscape import filter_normalize
from .loader import batch_flip as flip_batch

__all__ = ["init_std", "input_gradient", "BasicBlockA", "cifar_param_count", "flip_batch", "filter_normalize"]


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


class BasicBlockA(nn.Module):
    """Notebook 02: a basic residual block with the parameter-free shortcut A (He et al. 2016, section 4.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra_channels = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra_channels))
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


def cifar_param_count(n: int) -> int:
    """Notebook 03: parameters of the CIFAR ResNet with n blocks per stage (depth 6n + 2, shortcut A)."""

    def block(c_in: int, c_out: int) -> int:
        return 9 * c_in * c_out + 9 * c_out * c_out + 2 * 2 * c_out  # two 3x3 convs (no bias), two BatchNorms

    stem = 9 * 3 * 16 + 2 * 16
    stages = sum(block(c_in, c_out) + (n - 1) * block(c_out, c_out) for c_in, c_out in [(16, 16), (16, 32), (32, 64)])
    classifier = 64 * 10 + 10
    return stem + stages + classifier
