"""Figure styling shared by every notebook: one palette, labelled log-scale gradient plots.

Colours: plain networks are orange (``C1``), residual networks blue (``C0``), in every figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

__all__ = ["PLAIN_COLOR", "RESIDUAL_COLOR", "variant_color", "describe", "plot_layer_norms", "new_axes"]

PLAIN_COLOR = "C1"
RESIDUAL_COLOR = "C0"


def variant_color(residual: bool) -> str:
    """The collection-wide colour of a plain (orange) or residual (blue) network."""
    return RESIDUAL_COLOR if residual else PLAIN_COLOR


def describe(depth: int, activation: str, init: str | float, norm: str | None = None, width: int | None = None) -> str:
    """A short figure title such as ``depth 50, sigmoid, default init, no norm``."""
    init_text = f"gain {init:g}" if isinstance(init, (int, float)) else f"{init} init"
    parts = [f"depth {depth}", activation, init_text, "BatchNorm" if norm == "batch" else "no norm"]
    if width is not None:
        parts.append(f"width {width}")
    return ", ".join(parts)


def new_axes(figsize: tuple[float, float] = (7.0, 4.0)) -> Axes:
    """A fresh figure with one axes, sized for a notebook."""
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_layer_norms(
    ax: Axes,
    norms: Sequence[float],
    *,
    label: str,
    color: str,
    linestyle: str = "-",
    ylabel: str = "weight-gradient L2 norm",
) -> None:
    """Plot per-layer norms on a log axis; mark entries a log axis cannot show instead of dropping them.

    Overflow (``inf``/``nan``) is drawn as a triangle pointing up at the top edge and underflow (exactly 0)
    as one pointing down at the bottom edge, each with its own legend entry.
    """
    layers = range(1, len(norms) + 1)
    finite = [(i, v) for i, v in zip(layers, norms) if math.isfinite(v) and v > 0]
    overflow = [i for i, v in zip(layers, norms) if not math.isfinite(v)]
    underflow = [i for i, v in zip(layers, norms) if v == 0]
    if finite:
        xs, ys = zip(*finite)
        ax.plot(xs, ys, color=color, linestyle=linestyle, label=label)
    ax.set_yscale("log")
    transform = ax.get_xaxis_transform()  # x in data units, y in axes fraction (0 = bottom, 1 = top)
    if overflow:
        ax.scatter(overflow, [0.97] * len(overflow), transform=transform, marker="^", color=color, s=30,
                   label=f"{label}: overflow (inf/nan)", clip_on=False, zorder=3)
    if underflow:
        ax.scatter(underflow, [0.03] * len(underflow), transform=transform, marker="v", color=color, s=30,
                   label=f"{label}: underflow (0)", clip_on=False, zorder=3)
    left, right = ax.get_xlim()  # the edge markers do not take part in autoscaling: cover every layer
    ax.set_xlim(min(left, 0), max(right, len(norms) + 1))
    ax.set_xlabel("hidden layer (input → output)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
