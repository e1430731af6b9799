"""Interactive explorers for the notebooks. Each redraw is a plain function, tested without a browser.

``gradient_explorer()`` (notebook 01): sliders for depth, activation, initialisation, normalisation,
width and plain/residual, redrawing the per-layer gradient-norm plot through ``draw_gradient_norms``.
``block_explorer()`` (notebook 02): block type, shortcut, zero-init and stack depth, redrawing shapes,
parameter counts and per-block gradient norms through ``draw_block_gradients``.
``landscape_explorer()`` and ``lesion_explorer()`` (notebook 05) browse results computed in the notebook:
which pair of networks and how fine a grid (``draw_landscapes``); how many blocks removed (``draw_lesions``).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .blocks import BLOCKS, SHORTCUTS, BlockStack, branch_layers
from .gradients import ACTIVATIONS, deep_mlp, grad_norms
from .models import count_parameters
from .plots import (
    describe,
    finish_layer_norms,
    landscape_levels,
    model_depth,
    plot_landscape,
    plot_layer_norms,
    plot_lesion_curves,
    variant_color,
)

if TYPE_CHECKING:
    import ipywidgets

    from .landscape import LandscapeSurface

__all__ = ["VARIANTS", "INIT_CHOICES", "draw_gradient_norms", "gradient_explorer", "draw_block_gradients",
           "block_explorer", "draw_landscapes", "landscape_explorer", "draw_lesions", "lesion_explorer"]

VARIANTS = ("plain", "residual", "both")
INIT_CHOICES = ("default", "xavier", "kaiming", "gain")
# The gain slider's stops: round values, and those notebook 01 asks about (1.3, sqrt 2 and 1.5 for ReLU, 3 and 3.5
# for float32's overflow at depth 100, 4, 8 and 10 for the sigmoid).
_GAINS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.2, 1.3, math.sqrt(2), 1.5, 1.7, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0,
          7.0, 8.0, 9.0, 10.0)


def draw_gradient_norms(
    depth: int = 50,
    activation: str = "sigmoid",
    init: str = "default",
    gain: float = 1.0,
    norm: str | None = None,
    width: int = 64,
    variant: str = "both",
    *,
    batch_size: int = 64,
    seed: int = 0,
    fig: Figure | None = None,
) -> dict[str, list[float]]:
    """Draw per-layer gradient norms of ``deep_mlp`` networks into ``fig`` (a new figure if None).

    ``init="gain"`` uses ``gain`` (weights ~ N(0, gain^2/fan_in)); ``norm`` is None (or "none") or "batch".
    ``variant`` is ``plain``, ``residual`` or ``both`` (overlaid). The same seed builds the same weights and
    batch, so only the switch differs.
    Returns the norms per variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}; got {variant!r}")
    if init not in INIT_CHOICES:
        raise ValueError(f"init must be one of {', '.join(map(repr, INIT_CHOICES))}; got {init!r}")
    init_arg: str | float = gain if init == "gain" else init
    norm = None if norm == "none" else norm  # the widget's dropdown says "none" (ipywidgets shows None as blank)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 32, generator=generator)
    y = torch.randint(10, (batch_size,), generator=generator)
    residual_flags = {"plain": [False], "residual": [True], "both": [False, True]}[variant]
    results = {}
    for residual in residual_flags:
        with torch.random.fork_rng(devices=[]):  # the same weights every redraw, the notebook's random numbers kept
            torch.manual_seed(seed)
            net = deep_mlp(depth, width=width, activation=activation, init=init_arg, residual=residual, norm=norm)
        results["residual" if residual else "plain"] = grad_norms(net, x, y)
    fig = fig if fig is not None else plt.figure(figsize=(7.5, 4.2), layout="constrained")
    fig.clear()
    ax = fig.add_subplot()
    for name, norms in results.items():
        plot_layer_norms(ax, norms, label=name, color=variant_color(name == "residual"))
    ax.set_title(describe(depth, activation, init_arg, norm, width))
    finish_layer_norms(ax, fontsize="small")
    return results


def gradient_explorer(depth: int = 50, activation: str = "sigmoid", init: str = "default") -> ipywidgets.VBox:
    """An ipywidgets panel: change any control and the gradient-norm plot of notebook 01 is redrawn.

    Make it the last expression of a cell to show it. Each redraw's time is printed under the plot.
    """
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    controls = {
        "depth": widgets.IntSlider(depth, min=2, max=250, step=1, description="depth", continuous_update=False),
        "activation": widgets.Dropdown(options=list(ACTIVATIONS), value=activation, description="activation"),
        "init": widgets.Dropdown(options=list(INIT_CHOICES), value=init, description="init"),
        "gain": widgets.SelectionSlider(options=[("√2 ≈ 1.41" if gain == math.sqrt(2) else f"{gain:g}", gain)
                                                 for gain in _GAINS],
                                        value=1.0, description="gain (init='gain')", continuous_update=False,
                                        style=style),
        "norm": widgets.Dropdown(options=["none", "batch"], value="none", description="norm"),
        "width": widgets.IntSlider(64, min=8, max=256, step=8, description="width", continuous_update=False),
        "variant": widgets.ToggleButtons(options=list(VARIANTS), value="both", description="network"),
    }

    def before_redraw() -> None:
        controls["gain"].disabled = controls["init"].value != "gain"

    rows = [["depth", "width"], ["activation", "init", "gain"], ["norm", "variant"]]
    return _panel(controls, rows, draw_gradient_norms, before_redraw)


def _panel(
    controls: dict[str, ipywidgets.Widget],
    rows: list[list[str]],
    draw: Callable[..., object],
    before_redraw: Callable[[], None] | None = None,
    figsize: tuple[float, float] = (7.5, 4.2),
) -> ipywidgets.VBox:
    """Rows of ``controls`` above a plot that ``draw(**values, fig=fig)`` redraws on every change.

    The figure is shown as a PNG inside an Output widget (no ipympl needed); its redraw time below it.
    """
    import ipywidgets as widgets
    from IPython.display import Image

    output, timing = widgets.Output(), widgets.Label()

    def redraw(_change: object = None) -> None:
        if before_redraw is not None:
            before_redraw()
        start = time.perf_counter()
        fig = plt.figure(figsize=figsize, layout="constrained")
        draw(**{name: control.value for name, control in controls.items()}, fig=fig)
        png = io.BytesIO()
        fig.savefig(png, format="png")
        plt.close(fig)  # shown as a PNG below; closing keeps pyplot from showing it a second time
        output.outputs = ()
        output.append_display_data(Image(data=png.getvalue(), format="png"))
        timing.value = f"redrawn in {time.perf_counter() - start:.2f} s"

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([controls[name] for name in row]) for row in rows] + [output, timing])


def draw_block_gradients(
    block: str = "basic",
    shortcut: str = "A",
    zero_init: bool = False,
    n_blocks: int = 27,
    *,
    batch_size: int = 8,
    image_size: int = 16,
    seed: int = 0,
    fig: Figure | None = None,
) -> dict[str, object]:
    """Per-block gradient norms of a ``BlockStack`` of ``block``s, beside its plain twin of the same depth.

    A block's norm is that of its branch's weights: shortcut C's 1x1 projections are left out, so the curves of
    A, B and C measure the same layers, and a zero-initialised basic block shows no gradient with C either. The
    text panel gives the shapes and parameter count of one downsampling block (16 -> 32 channels, stride 2; 64 -> 128
    for the bottlenecks) of that type and shortcut, and the parameter counts of both stacks (where shortcut C's
    projections in every block show). The plain twin has the same layers without the skips: ``PlainBottleneck``s
    beside bottlenecks, ``PlainBlock``s beside the others (for pre-activation blocks, their layers in
    post-activation order). A plain ``block`` is drawn alone.
    Returns ``norms`` (this block), ``plain_norms`` and ``parameters`` (of the downsampling block).
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(map(repr, BLOCKS))}; got {block!r}")
    bottleneck = block in ("bottleneck", "plain_bottleneck")
    plain = "plain_bottleneck" if bottleneck else "plain"
    has_skip = BLOCKS[block].has_skip
    width = 64 if bottleneck else 16  # a bottleneck's inner width is width / 4
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    y = torch.randint(10, (batch_size,), generator=generator)
    norms, stack_parameters = {}, {}
    with torch.random.fork_rng(devices=[]):  # the same weights every redraw, the notebook's random numbers kept
        for name in dict.fromkeys([plain, block]):
            torch.manual_seed(seed)
            net = BlockStack(name, n_blocks, width, shortcut, zero_init_residual=zero_init and name != plain)
            norms[name] = grad_norms(net, x, y, layers=[torch.nn.ModuleList(branch_layers(b)) for b in net.hidden])
            stack_parameters[name] = count_parameters(net)
        down = BLOCKS[block](width, 2 * width, 2, shortcut, zero_init and has_skip)  # shown: shapes and parameters
    down_in = torch.zeros(1, down.conv1.in_channels, 32, 32)
    parameters = count_parameters(down)
    fig = fig if fig is not None else plt.figure(figsize=(9, 4.2), layout="constrained")
    fig.clear()
    ax_text, ax = fig.subplots(1, 2, width_ratios=[1, 2.2])
    ax_text.axis("off")
    blocks = f"{n_blocks} block{'' if n_blocks == 1 else 's'}"
    if not has_skip:  # the shortcut and zero-init controls do not apply
        header = f"{type(down).__name__} (no skip, no shortcut)" + (", zero-init n/a" if zero_init else "")
        shortcut_lines, plain_lines = [], []
    else:
        header = f"{type(down).__name__}, shortcut {shortcut}" + (", zero-init" if zero_init else "")
        shortcut_lines = [f"  shortcut parameters {count_parameters(down.downsample or torch.nn.Identity()):,}"]
        plain_lines = (["plain stack: the same layers in", "  post-activation order, no skips"] if block == "preact"
                       else ["plain stack: the same without skips"])
        plain_lines.append(f"  parameters {stack_parameters[plain]:,}")
    ax_text.text(0, 1, "\n".join([
        header,
        "downsampling instance (stride 2):",
        f"  in  {tuple(down_in.shape)}",
        f"  out {tuple(down(down_in).shape)}",
        f"  parameters {parameters:,}",
        *shortcut_lines,
        "",
        f"stack: {blocks} of width {width}",
        f"  parameters {stack_parameters[block]:,}",
        *plain_lines,
    ]), va="top", family="monospace", fontsize=9)
    for name, values in norms.items():
        label = f"residual ({name})" if BLOCKS[name].has_skip else name.replace("_", " ")
        plot_layer_norms(ax, values, label=label, color=variant_color(BLOCKS[name].has_skip))
    ax.set_xlabel("block (input → output)")
    projections = shortcut == "C" and has_skip  # the only stack here with a projection in its blocks
    ax.set_ylabel("block weight-gradient L2 norm" + ("\n(branch only: 1x1 shortcuts left out)" if projections else ""))
    compared = f"{block} vs {plain}" if has_skip else block
    ax.set_title(f"{blocks}: {compared.replace('_', ' ')}, BatchNorm, He init, ReLU")
    finish_layer_norms(ax, fontsize="small")
    return {"norms": norms[block], "plain_norms": norms[plain], "parameters": parameters}


def block_explorer(block: str = "basic", n_blocks: int = 27) -> ipywidgets.VBox:
    """An ipywidgets panel: choose block type, shortcut, zero-init and depth; see shapes, parameters, gradients.

    For the plain blocks the shortcut and zero-init controls are disabled: they have no skip and no branch to zero.
    """
    import ipywidgets as widgets

    controls = {
        "block": widgets.Dropdown(options=[(name.replace("_", " "), name) for name in BLOCKS], value=block,
                                  description="block"),
        "shortcut": widgets.ToggleButtons(options=list(SHORTCUTS), value="A", description="shortcut"),
        "zero_init": widgets.Checkbox(False, description="zero-init last layer"),
        "n_blocks": widgets.IntSlider(n_blocks, min=1, max=60, description="blocks", continuous_update=False),
    }

    def before_redraw() -> None:
        for name in ("shortcut", "zero_init"):
            controls[name].disabled = not BLOCKS[controls["block"].value].has_skip

    return _panel(controls, [["block", "shortcut"], ["zero_init", "n_blocks"]], draw_block_gradients, before_redraw,
                  figsize=(9, 4.2))


def _grid_sizes(computed: int) -> list[int]:
    """The coarser grids a ``computed``-point axis contains: every k-th point, keeping both ends and the centre.

    ``k`` must divide half the axis, e.g. 3, 5, 9 points of 9 and 3, 7, 11, 31 of 31. An even axis has no centre
    point and gives only itself.
    """
    if computed < 3 or computed % 2 == 0:
        return [computed]
    half = (computed - 1) // 2
    return [2 * (half // k) + 1 for k in range(half, 0, -1) if half % k == 0]


def draw_landscapes(
    surfaces: dict[str, LandscapeSurface], depth: int, grid: int, *, fig: Figure | None = None
) -> dict[str, object]:
    """Plain and residual loss surfaces of one depth side by side, on one log colour scale.

    ``surfaces`` maps model names ("plain20", "resnet20", ...) to results with ``alphas``, ``betas`` and ``loss``
    (:func:`resnet_lab.landscape.loss_surface`); ``grid`` is how many points per axis to draw: every k-th point of
    the computed grid, so the drawn grid keeps its ends and the trained weights at the centre (for a 9-point grid:
    3, 5 or 9). Returns ``{"every": k, "points": points drawn per axis, "alphas": the alphas drawn}``.
    """
    names = [name for name in surfaces if model_depth(name) == depth]
    if not names:
        raise ValueError(f"no surfaces of depth {depth}; computed: {', '.join(surfaces)}")
    computed = len(surfaces[names[0]].alphas)
    sizes = _grid_sizes(computed)
    if grid not in sizes:
        raise ValueError(f"grid must be one of {', '.join(map(str, sizes))} for surfaces computed on {computed} x "
                         f"{computed} points (every k-th point, keeping the centre and both ends); got {grid!r}")
    every = 1 if grid == computed else (computed - 1) // (grid - 1)
    levels = landscape_levels([surface.loss for surface in surfaces.values()])
    fig = fig if fig is not None else plt.figure(figsize=(9, 4.2), layout="constrained")
    fig.clear()
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, sorted(names, key=lambda n: not n.startswith("plain"))):
        surface = surfaces[name]
        centre = float(surface.loss[len(surface.betas) // 2, len(surface.alphas) // 2])
        contours = plot_landscape(ax, surface.alphas, surface.betas, surface.loss, levels=levels, every=every,
                                  title=f"{name}: loss {centre:.3g} at the trained weights")
    colorbar = fig.colorbar(contours, ax=list(axes), label="cross-entropy loss (log scale; arrow: higher)")
    low, high = levels[0] * (1 - 1e-6), levels[-1] * (1 + 1e-6)  # a tick at an end stays (float32 losses)
    ticks = [t for t in (10.0 ** e * m for e in range(-3, 10) for m in (1, 2, 5)) if low <= t <= high]
    if len(ticks) < 2:  # losses within about 2x of each other: label both ends of the scale instead
        ticks = [float(levels[0]), float(levels[-1])]
    colorbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    alphas = [float(a) for a in surfaces[names[0]].alphas[::every]]
    coarser = f", a coarser view of the {computed} x {computed} computed" if every > 1 else ""
    fig.suptitle(f"{depth} layers: loss on {len(alphas)} x {len(alphas)} grid points{coarser}", fontsize=9)
    return {"every": every, "points": len(alphas), "alphas": alphas}


def landscape_explorer(surfaces: dict[str, LandscapeSurface]) -> ipywidgets.VBox:
    """An ipywidgets panel over precomputed surfaces: choose the depth and how many grid points to draw.

    The grid sizes offered are the coarser grids contained in the computed one (see :func:`draw_landscapes`).
    """
    import ipywidgets as widgets

    depths = sorted({model_depth(name) for name in surfaces})
    computed = len(next(iter(surfaces.values())).alphas)
    controls = {
        "depth": widgets.Dropdown(options=depths, value=depths[-1], description="depth"),
        "grid": widgets.SelectionSlider(options=_grid_sizes(computed), value=computed, description="grid points",
                                        continuous_update=False),
    }
    return _panel(controls, [["depth", "grid"]], lambda fig, **values: draw_landscapes(surfaces, fig=fig, **values),
                  figsize=(9, 4.2))


def draw_lesions(
    results: dict[str, dict[int, list[float]]], removed: int, *, fig: Figure | None = None
) -> dict[str, float]:
    """Accuracy against blocks removed for every model, with the trials at ``removed`` blocks shown one by one.

    ``results`` is :func:`resnet_lab.lesion.random_lesions`'s output per model name. Returns the mean accuracy
    (a fraction) of each model at ``removed``.
    """
    fig = fig if fig is not None else plt.figure(figsize=(7.5, 4.2), layout="constrained")
    fig.clear()
    ax = fig.subplots()
    plot_lesion_curves(ax, results, highlight=removed)
    means = {name: sum(by_count[removed]) / len(by_count[removed]) for name, by_count in results.items()
             if removed in by_count}
    ax.set_title(f"{removed} blocks removed: " + ", ".join(f"{name} {100 * m:.1f} %" for name, m in means.items()),
                 fontsize=9)
    return means


def lesion_explorer(results: dict[str, dict[int, list[float]]]) -> ipywidgets.VBox:
    """An ipywidgets panel: a slider for the number of blocks removed, over precomputed random lesions."""
    import ipywidgets as widgets

    counts = sorted(set.intersection(*(set(by_count) for by_count in results.values()))) if results else []
    if not counts:
        raise ValueError("lesion_explorer needs random_lesions results of at least one model, with at least one "
                         f"number of removed blocks common to all; got models {sorted(results)}")
    controls = {"removed": widgets.SelectionSlider(options=counts, value=counts[min(len(counts) - 1, 1)],
                                                   description="removed", continuous_update=False)}
    return _panel(controls, [["removed"]], lambda fig, **values: draw_lesions(results, fig=fig, **values))
