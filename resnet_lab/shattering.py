"""Shattered gradients (Balduzzi et al. 2017, "The Shattered Gradients Problem: If resnets are the answer, then
what is the question?").

The paper's 1-D toy: a fully connected ReLU net maps a scalar ``x`` in [-2, 2] to a scalar, and we look at the
gradient ``df/dx`` on a fine grid of inputs. For a shallow net it is a smooth function of ``x``; as a plain net
gets deeper, the gradients at neighbouring inputs decorrelate until they look like white noise ("shattered"),
which makes them useless to a gradient-based optimiser. With skip connections and BatchNorm the correlation decays
far more slowly with depth: exponentially for plain nets, sublinearly for residual ones (abstract, Figs. 1-3).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .gradients import deep_mlp

__all__ = ["shattering_net", "input_gradients", "gradient_autocorrelation", "neighbour_correlation"]


def shattering_net(depth: int, *, residual: bool, width: int = 200, norm: str | None = "batch") -> nn.Module:
    """Scalar in, scalar out: ``depth`` fully connected ReLU layers of ``width`` units, He init (Balduzzi Fig. 1).

    Built by :func:`resnet_lab.gradients.deep_mlp`: with ``residual=True`` every hidden layer after the first
    adds ``relu(bn(W h))`` to its input ``h``. Input ``(N, 1)``, output ``(N, 1)``.
    """
    return deep_mlp(depth, width=width, in_features=1, num_classes=1, activation="relu", init="kaiming",
                    residual=residual, norm=norm)


def _with_batch_statistics(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """An eval-mode copy of ``model`` whose BatchNorm layers normalise with the statistics of ``inputs``."""
    frozen = copy.deepcopy(model)
    norms = [m for m in frozen.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one batch, the running statistics are that batch's
        # (its variance unbiased, n / (n - 1) times the one train mode divides by: 0.4 % more for 256 points)
    if norms:
        frozen.train()
        with torch.no_grad():
            frozen(inputs)
    return frozen.eval()


def input_gradients(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``d f_0(x) / d x`` ``(N, d)`` at every row ``x`` of ``inputs`` ``(N, d)``, ``f_0`` the first output unit.

    BatchNorm normalises with the mean and variance of the whole batch ``inputs`` (as the paper feeds all grid
    points as one batch), held fixed while differentiating: each row's gradient is that of one fixed function at
    that point, not mixed with the other points through the batch statistics, so finite differences agree.
    The model itself is not changed (a copy is differentiated).
    """
    if inputs.dim() != 2:
        raise ValueError(f"inputs must be (N, d), one input per row, e.g. x[:, None] for scalars; "
                         f"got shape {tuple(inputs.shape)}")
    frozen = _with_batch_statistics(model, inputs)
    x = inputs.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(frozen(x)[:, 0].sum(), x)  # rows are independent: the sum splits them
    return gradient


def gradient_autocorrelation(gradients: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Normalised autocorrelation ``(max_lag + 1,)`` of a 1-D sequence at lags ``0..max_lag`` (1 at lag 0).

    ``r(k) = sum_t (g_t - m)(g_{t+k} - m) / sum_t (g_t - m)^2`` with ``m`` the mean: about 0 beyond lag 0 for
    white noise, close to 1 at small lags for a smooth function (Balduzzi et al. Fig. 2).
    """
    g = gradients.detach().to("cpu", torch.float64)  # on the CPU: Apple's MPS has no float64
    if g.dim() == 2 and g.shape[1] == 1:  # input_gradients of a scalar input
        g = g[:, 0]
    if g.dim() != 1:
        raise ValueError(f"gradients must be one sequence, shape (N,) or (N, 1); got {tuple(gradients.shape)}")
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or not 0 <= max_lag < len(g):
        raise ValueError(f"max_lag must be an integer from 0 to len(gradients) - 1 = {len(g) - 1}; got {max_lag!r}")
    centred = g - g.mean()
    variance = centred.pow(2).sum()
    if variance == 0:
        raise ValueError("the gradients are constant, so their autocorrelation is undefined (a linear function?)")
    n = len(centred)
    return torch.stack([(centred[:n - lag] * centred[lag:]).sum() / variance for lag in range(max_lag + 1)])


def neighbour_correlation(
    depth: int, *, residual: bool, points: int = 256, seeds: Sequence[int] = (0, 1, 2), width: int = 200,
    norm: str | None = "batch",
) -> float:
    """Mean correlation of the gradients at neighbouring inputs (lag 1) on ``points`` inputs in [-2, 2].

    Averaged over the freshly initialised nets ``shattering_net(depth, ...)`` of the ``seeds``; the global random
    state is left as it was. Near 1 for a shallow net, decaying with depth, much faster without skips.
    """
    inputs = torch.linspace(-2, 2, points)[:, None]  # (points, 1)
    correlations = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = shattering_net(depth, residual=residual, width=width, norm=norm)
        correlations.append(float(gradient_autocorrelation(input_gradients(net, inputs), 1)[1]))
    return sum(correlations) / len(correlations)
