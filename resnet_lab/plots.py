"""Figure styling shared by every notebook: one palette, labelled log-scale gradient plots.

Colours: plain networks are orange (``C1``), residual networks blue (``C0``), in every figure.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.contour import QuadContourSet
from matplotlib.legend import Legend
from matplotlib.patches import Arc, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator
from numpy.typing import ArrayLike
from torch import nn

from .blocks import branch_layers
from .checkpoint import METRICS_NAME

__all__ = ["PLAIN_COLOR", "RESIDUAL_COLOR", "variant_color", "model_depth", "describe", "plot_layer_norms",
           "finish_layer_norms", "draw_network", "plot_history", "LiveCurves", "plot_confusion", "landscape_levels",
           "plot_landscape", "plot_lesion_curves", "plain_log_labels"]

PLAIN_COLOR = "C1"
RESIDUAL_COLOR = "C0"


def variant_color(residual: bool) -> str:
    """The collection-wide colour of a plain (orange) or residual (blue) network."""
    return RESIDUAL_COLOR if residual else PLAIN_COLOR


def model_depth(name: str) -> int:
    """The depth in a model name, its first number: ``"plain56"`` -> 56, ``"resnet20_seed1"`` -> 20."""
    match = re.search(r"\d+", name)
    if match is None:
        raise ValueError(f"no depth in the model name {name!r}; expected e.g. 'resnet20' or 'plain56'")
    return int(match.group())


def describe(depth: int, activation: str, init: str | float, norm: str | None = None, width: int | None = None) -> str:
    """A short figure title such as ``depth 50, sigmoid, default init, no norm``; a gain shows 3 digits (1.41)."""
    init_text = f"gain {init:.3g}" if isinstance(init, (int, float)) else f"{init} init"
    parts = [f"depth {depth}", activation, init_text, "BatchNorm" if norm == "batch" else "no norm"]
    if width is not None:
        parts.append(f"width {width}")
    return ", ".join(parts)


_NO_VALUES = "no finite values"  # the gid of the note an axis without a finite value gets


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

    Overflow (``inf``/``nan``) is drawn as a triangle pointing up on the top edge of the frame and exactly 0 (an
    underflow, or a gradient cut off, e.g. by a zero-initialised scale) as one pointing down on the bottom edge,
    each with its own legend entry: on the frame, they cannot be read as values. Each further curve's markers are
    hollow and larger, so that none hides another's. A curve of fewer than 30 layers gets a dot per layer (a single
    layer is a line of one point, invisible without). Call it once per curve; while no curve has a finite value, the
    axes get a note in place of the meaningless ticks of an empty log axis. :func:`finish_layer_norms`, after the
    last curve, places the legend off the markers.
    """
    layers = range(1, len(norms) + 1)
    finite = [(i, v) for i, v in zip(layers, norms) if math.isfinite(v) and v > 0]
    overflow = [i for i, v in zip(layers, norms) if not math.isfinite(v)]
    underflow = [i for i, v in zip(layers, norms) if v == 0]
    ax.set_yscale("log")  # also restores the ticks that a call for an earlier curve may have hidden
    if finite:
        xs, ys = zip(*finite)
        ax.plot(xs, ys, color=color, linestyle=linestyle, label=label, marker="." if len(norms) < 30 else None)
    transform = ax.get_xaxis_transform()  # x in data units, y in axes fraction (0 = bottom, 1 = top)
    for kind, found, marker, what in (("overflow", overflow, "^", "overflow (inf/nan)"),
                                      ("underflow", underflow, "v", "exactly 0")):
        if found:
            earlier = _edge_rows(ax, kind)  # curves drawn before with such markers: ring theirs, do not cover them
            y = 1.0 if kind == "overflow" else 0.0
            ax.scatter(found, [y] * len(found), transform=transform, marker=marker, s=30 + 45 * earlier,
                       facecolors="none" if earlier else color, edgecolors=color, linewidths=1.2,
                       label=f"{label}: {what}", clip_on=False, zorder=3, gid=kind)
    left, right = ax.get_xlim()  # the edge markers do not take part in autoscaling: cover every layer
    ax.set_xlim(min(left, 0), max(right, len(norms) + 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # no tick between two layers
    ax.set_xlabel("hidden layer (input → output)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    _note_if_empty(ax)


def _edge_rows(ax: Axes, kind: str) -> int:
    """How many rows of ``kind`` ("overflow" or "underflow") markers :func:`plot_layer_norms` drew on ``ax``."""
    return sum(collection.get_gid() == kind for collection in ax.collections)


def _has_values(ax: Axes) -> bool:
    """Whether ``ax``, or an axes sharing its y axis, shows a curve (an edge marker is not a value)."""
    return any(sibling.lines for sibling in ax.get_shared_y_axes().get_siblings(ax))


def _note_if_empty(ax: Axes) -> None:
    """A note in place of the y ticks while no curve on ``ax`` (or an axes sharing its y axis) has a value."""
    for note in [text for text in ax.texts if text.get_gid() == _NO_VALUES]:
        note.remove()
    if _has_values(ax):
        return
    ax.yaxis.set_major_locator(NullLocator())  # the ticks of a log axis without data mean nothing
    ax.yaxis.set_minor_locator(NullLocator())
    overflowed, underflowed = _edge_rows(ax, "overflow"), _edge_rows(ax, "underflow")
    if overflowed and not underflowed:
        what = "every layer overflowed (inf/nan)"
    elif underflowed and not overflowed:
        what = "every norm is exactly 0"
    else:
        what = "no layer has a finite, non-zero norm"
    ax.text(0.5, 0.5, f"{what}:\nnothing to draw on a log axis, only the markers on its frame",
            transform=ax.transAxes, ha="center", va="center", color="0.35", gid=_NO_VALUES)


def finish_layer_norms(ax: Axes, **legend_kwargs: object) -> Legend:
    """After the last :func:`plot_layer_norms` curve: label a narrow y axis, and place the legend off the markers.

    An axis spanning at most two decades between 1e-4 and 1e5 gets plain numbers (0.2, 0.5), not 2x10^-1, and
    one-digit ends; the legend, ``ax.legend(**legend_kwargs)``, goes to the best place clear of the edge markers.
    """
    if _has_values(ax):
        low, high = ax.get_ylim()
        if high / low <= 100 and 1e-4 <= low and high <= 1e5:  # else 2e+33: matplotlib's 2×10^33 reads better
            plain_log_labels(ax)
    over, under = _edge_rows(ax, "overflow"), _edge_rows(ax, "underflow")
    top = 0.97 if over else 1.0  # the markers on the frame reach about 0.02 into the axes
    bottom = 0.03 if under else 0.0
    return ax.legend(loc="best", bbox_to_anchor=(0, bottom, 1, top - bottom), **legend_kwargs)


def _block_summary(block: nn.Module) -> tuple[int, int, str]:
    """(output channels, stride, skip kind) of a block from ``resnet_lab.blocks``, read off its layers."""
    convs = [m for m in branch_layers(block) if isinstance(m, nn.Conv2d)]
    stride = max(m.stride[0] for m in convs)
    if not getattr(block, "has_skip", True):
        skip = "none"
    elif block.downsample is None:
        skip = "identity"
    elif any(isinstance(m, nn.Conv2d) for m in block.downsample.modules()):
        skip = "projection"
    else:
        skip = "zero-pad"
    return convs[-1].out_channels, stride, skip


def draw_network(model: nn.Module, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Draw a ResNet from ``resnet_lab.models`` as a row of blocks with their skip connections.

    Read from the model itself: one box per block (label: output channels, ``/2`` where it downsamples),
    coloured by stage; arcs above the boxes are the skips — solid for the identity, dashed for zero-padding
    (option A), dotted with a square for a projection; a plain network has none.
    """
    stages = model.stages
    n_boxes = 2 + sum(len(stage) for stage in stages)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.55 * n_boxes + 1), 2.2), layout="constrained")
    x = 0.0
    ax.add_patch(Rectangle((x, 0), 0.8, 1, facecolor="0.85", edgecolor="0.3"))
    ax.text(x + 0.4, 0.5, "stem", ha="center", va="center", fontsize=7, rotation=90)
    for stage_index, stage in enumerate(stages):
        for block in stage:
            x += 1
            channels, stride, skip = _block_summary(block)
            ax.add_patch(Rectangle((x, 0), 0.8, 1, facecolor=f"C{stage_index + 2}", alpha=0.45, edgecolor="0.3"))
            ax.text(x + 0.4, 0.5, f"{channels}" + ("\n/2" if stride == 2 else ""), ha="center", va="center",
                    fontsize=7)
            if skip != "none":
                style = {"identity": "-", "zero-pad": "--", "projection": ":"}[skip]
                ax.add_patch(Arc((x + 0.4, 1.0), 1.3, 0.9, theta1=0, theta2=180, linestyle=style,
                                 color=RESIDUAL_COLOR, linewidth=1.2))
                if skip == "projection":
                    ax.plot([x + 0.4], [1.45], marker="s", color=RESIDUAL_COLOR, markersize=4)
    x += 1
    ax.add_patch(Rectangle((x, 0), 0.8, 1, facecolor="0.85", edgecolor="0.3"))
    ax.text(x + 0.4, 0.5, "pool\n+fc", ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.3, x + 1.1)
    ax.set_ylim(-0.2, 1.7)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_history(histories: dict[str, list[dict]], *, metric: str = "error", axes: Sequence[Axes] | None = None,
                 colors: dict[str, str] | None = None, styles: dict[str, str] | None = None) -> list[Axes]:
    """Training curves from :func:`resnet_lab.train.fit` histories: one colour and line style per run.

    ``metric="error"`` plots error in % (log axis: errors span decades late in training) for the training,
    validation and test splits that were measured; ``metric="loss"`` plots cross-entropy. Left: training split;
    right: held-out splits, where a run's test line has its validation line's colour and style but is lighter and
    marked with crosses (the line style is the run's, so the test split needs another mark). ``colors``/``styles``
    map run names to colours/line styles.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained", sharey=True)
    for index, (name, history) in enumerate(histories.items()):
        color = (colors or {}).get(name, f"C{index}")
        style = (styles or {}).get(name, "-")
        epochs = [record["epoch"] for record in history]
        few = len(epochs) < 30  # a dot per epoch; longer runs only mark their test line, about 12 times
        for ax, splits in zip(axes, (("train",), ("val", "test"))):
            for split in splits:
                values = [record.get(f"{split}_{'acc' if metric == 'error' else 'loss'}") for record in history]
                if any(v is None for v in values) or not values:
                    continue
                values = [100 * (1 - v) for v in values] if metric == "error" else values
                if split == "test":
                    marks = {"alpha": 0.6, "marker": "x", "markevery": 1 if few else len(epochs) // 12}
                else:
                    marks = {"marker": "." if few else None}
                ax.plot(epochs, values, style, color=color, label=f"{name} ({split})", **marks)
    ylabel = "error (%)" if metric == "error" else "cross-entropy"
    for ax, title in zip(axes, ("training", "held-out")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} {ylabel}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        plain_log_labels(ax)
    return list(axes)


def _one_digit(value: float, rounding: Callable[[float], int]) -> float:
    """``value`` to one significant digit by ``rounding`` (``math.floor``: 0.35 -> 0.3, ``math.ceil``: 1.8 -> 2)."""
    scale = 10.0 ** math.floor(math.log10(value))
    return rounding(round(value / scale, 9)) * scale


def plain_log_labels(ax: Axes) -> None:
    """Label a log y axis with plain numbers (``20``, ``50``, ``100``, not ``2×10¹``).

    Minor ticks get labels too when the axis is narrow: all of them within one decade (an axis from 30 to 70 would
    otherwise show a single number), the 2× and 5× ticks within two; wider axes keep only the decades. A narrow
    axis is widened to one-digit values at both ends (0.35-1.8 becomes 0.3-2), so its top and bottom can be read.
    """
    low, high = ax.get_ylim()
    span = high / max(low, 1e-300)
    if span <= 100 and low > 0:
        low, high = _one_digit(low, math.floor), _one_digit(high, math.ceil)
        ax.set_ylim(low, high)
        span = high / low
    labelled_digits = "23456789" if span <= 10 else "25" if span <= 100 else ""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in labelled_digits else ""))


class LiveCurves:
    """``fit(..., on_epoch_end=LiveCurves("resnet20"))``: redraw the training curves in place after every epoch.

    In a notebook the figure updates in the cell's output (an IPython display handle, no ipympl needed);
    elsewhere it does nothing visible. ``history`` holds the records drawn. With ``run_dir`` (fit's
    ``out_dir``), the epochs already in the run's ``metrics.json`` are drawn at once: a resumed run's curves start at
    epoch 1, and re-running the cell of a finished run (``fit`` then trains nothing) still shows its curves.
    """

    def __init__(self, name: str, color: str = RESIDUAL_COLOR, run_dir: str | os.PathLike | None = None) -> None:
        self.name, self.color, self.history = name, color, []
        self._handle = None
        metrics = Path(run_dir) / METRICS_NAME if run_dir is not None else None
        if metrics is not None and metrics.exists():
            self.history = json.loads(metrics.read_text())["epochs"]
            if self.history:
                self._draw()

    def __call__(self, record: dict) -> None:
        self.history = [r for r in self.history if r["epoch"] < record["epoch"]] + [record]
        self._draw()

    def _draw(self) -> None:
        from IPython.display import display

        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
        epochs = [r["epoch"] for r in self.history]
        for split, style in (("train", "-"), ("val", "--"), ("test", ":")):
            if self.history[-1][f"{split}_loss"] is not None:
                axes[0].plot(epochs, [r[f"{split}_loss"] for r in self.history], style, color=self.color,
                             marker=".", label=split)
                axes[1].plot(epochs, [100 * r[f"{split}_acc"] for r in self.history], style, color=self.color,
                             marker=".", label=split)
        axes[0].set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title=f"{self.name}: loss")
        axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title=f"{self.name}: accuracy after epoch {epochs[-1]}")
        plain_log_labels(axes[0])
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


def plot_confusion(
    confusion: torch.Tensor | np.ndarray, classes: Sequence[str], ax: Axes | None = None, title: str = ""
) -> Axes:
    """A confusion matrix (rows: true class, columns: prediction) as row-normalised percentages."""
    matrix = torch.as_tensor(confusion, dtype=torch.float64)
    percent = 100 * matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{percent[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if percent[i, j] > 50 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (% of each true class)")
    ax.figure.colorbar(image, ax=ax, label="% of true class")
    return ax


def landscape_levels(losses: Sequence[ArrayLike], count: int = 25, max_ratio: float = 30.0) -> np.ndarray:
    """Log-spaced contour levels from the lowest loss in ``losses`` (tensors/arrays): one colour scale for all.

    The top level is the highest loss, but at most ``max_ratio`` times the lowest: the levels resolve the basins
    around the minima, and the far corners of a surface (losses in the thousands) share the top colour.
    """
    values = np.concatenate([np.asarray(loss, dtype=float).ravel() for loss in losses])
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        raise ValueError("no finite, positive loss in the surfaces: the model diverged (or the losses are empty); "
                         "check the trained weights, e.g. with evaluate(), before drawing their landscape")
    low, high = values.min(), values.max()
    return np.geomspace(low, min(max(high, 1.01 * low), max_ratio * low), count)


def plot_landscape(
    ax: Axes, alphas: ArrayLike, betas: ArrayLike, loss: ArrayLike, *, levels: np.ndarray, every: int = 1,
    title: str = "",
) -> QuadContourSet:
    """Filled contours of a 2-D loss surface ``loss[beta, alpha]`` on a log colour scale shared through ``levels``.

    ``every=k`` draws only every k-th grid point per axis (a coarser grid, to see what it would hide). The trained
    weights sit at the centre (marked). Non-finite losses are drawn above the top level. Returns the contour set.
    """
    alphas, betas = np.asarray(alphas)[::every], np.asarray(betas)[::every]
    above = levels[-1] * 10  # nan and inf: drawn in the top colour (contourf would leave them blank)
    loss = np.nan_to_num(np.asarray(loss, dtype=float)[::every, ::every], nan=above, posinf=above)
    contours = ax.contourf(alphas, betas, np.clip(loss, levels[0], None), levels=levels, norm=LogNorm(),
                           cmap="viridis", extend="max")
    ax.contour(alphas, betas, np.clip(loss, levels[0], None), levels=levels[::3], colors="white", linewidths=0.4,
               norm=LogNorm(), antialiased=False)  # thin lines: as clear without, and half the PNG's size
    ax.plot([0], [0], marker="*", color="red", markersize=9, label="trained weights")
    ax.set_xlabel(r"$\alpha$ (direction $\delta$)")
    ax.set_ylabel(r"$\beta$ (direction $\eta$)")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    return contours


def plot_lesion_curves(ax: Axes, results: dict[str, dict[int, Sequence[float]]], *, chance: float = 0.1,
                       highlight: int | None = None) -> None:
    """Mean accuracy (%) +- one standard deviation against the number of blocks removed, one line per model.

    ``results[name][k]`` holds the accuracies (fractions) of the trials that removed ``k`` blocks; plain models
    (names starting with "plain") are orange, residual ones blue, the deeper one solid. ``highlight=k`` also
    scatters each trial at ``k``.
    """
    deepest = max(model_depth(name) for name in results)
    for name, by_count in results.items():
        counts = sorted(by_count)
        values = [np.asarray(by_count[k], dtype=float) * 100 for k in counts]
        mean = np.array([v.mean() for v in values])
        std = np.array([v.std() for v in values])
        color = variant_color(not name.startswith("plain"))
        style = "-" if model_depth(name) == deepest else "--"
        ax.plot(counts, mean, style, color=color, marker=".", label=name)
        ax.fill_between(counts, mean - std, mean + std, color=color, alpha=0.15)
        if highlight is not None and highlight in by_count:
            ax.scatter([highlight] * len(by_count[highlight]), 100 * np.asarray(by_count[highlight]), color=color,
                       s=14, zorder=3)
    ax.axhline(100 * chance, color="0.5", linewidth=0.8, linestyle=":", label="chance")
    if highlight is not None:
        ax.axvline(highlight, color="0.3", linewidth=0.6)
    ax.set_xlabel("blocks removed at test time")
    ax.set_ylabel("accuracy on held-out images (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
