"""Interactive explorers for the notebooks. Each redraw is a plain function, tested without a browser.

``gradient_explorer()`` (notebook 01): sliders for depth, activation, initialisation, normalisation,
width and plain/residual, redrawing the per-layer gradient-norm plot through ``draw_gradient_norms``.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .gradients import ACTIVATIONS, deep_mlp, grad_norms
from .plots import describe, plot_layer_norms, variant_color

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["VARIANTS", "draw_gradient_norms", "gradient_explorer"]

VARIANTS = ("plain", "residual", "both")
INIT_CHOICES = ("default", "xavier", "kaiming", "gain")


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

    ``init="gain"`` uses ``gain`` (weights ~ N(0, gain^2/fan_in)). ``variant`` is ``plain``, ``residual``
    or ``both`` (overlaid). The same seed builds the same weights and batch, so only the switch differs.
    Returns the norms per variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}; got {variant!r}")
    if init not in INIT_CHOICES:
        raise ValueError(f"init must be one of {', '.join(map(repr, INIT_CHOICES))}; got {init!r}")
    init_arg: str | float = gain if init == "gain" else init
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 32, generator=generator)
    y = torch.randint(10, (batch_size,), generator=generator)
    residual_flags = {"plain": [False], "residual": [True], "both": [False, True]}[variant]
    results = {}
    for residual in residual_flags:
        torch.manual_seed(seed)
        net = deep_mlp(depth, width=width, activation=activation, init=init_arg, residual=residual, norm=norm)
        results["residual" if residual else "plain"] = grad_norms(net, x, y)
    fig = fig if fig is not None else plt.figure(figsize=(7.5, 4.2), layout="constrained")
    fig.clear()
    ax = fig.add_subplot()
    for name, norms in results.items():
        plot_layer_norms(ax, norms, label=name, color=variant_color(name == "residual"))
    ax.set_title(describe(depth, activation, init_arg, norm, width))
    ax.legend(loc="best", fontsize="small")
    return results


def gradient_explorer(depth: int = 50, activation: str = "sigmoid", init: str = "default") -> ipywidgets.VBox:
    """An ipywidgets panel: change any control and the gradient-norm plot of notebook 01 is redrawn.

    Make it the last expression of a cell to show it. Each redraw's time is printed under the plot.
    """
    import ipywidgets as widgets
    from IPython.display import Image

    style = {"description_width": "initial"}
    controls = {
        "depth": widgets.IntSlider(depth, min=2, max=250, step=1, description="depth", continuous_update=False),
        "activation": widgets.Dropdown(options=list(ACTIVATIONS), value=activation, description="activation"),
        "init": widgets.Dropdown(options=list(INIT_CHOICES), value=init, description="init"),
        "gain": widgets.FloatLogSlider(1.0, base=10, min=-1, max=1, step=0.02, description="gain (init='gain')",
                                       continuous_update=False, style=style),
        "norm": widgets.Dropdown(options=[("none", None), ("batch", "batch")], value=None, description="norm"),
        "width": widgets.IntSlider(64, min=8, max=256, step=8, description="width", continuous_update=False),
        "variant": widgets.ToggleButtons(options=list(VARIANTS), value="both", description="network"),
    }
    output = widgets.Output()
    timing = widgets.Label()

    def redraw(**values: object) -> None:
        start = time.perf_counter()
        fig = plt.figure(figsize=(7.5, 4.2), layout="constrained")
        draw_gradient_norms(**values, fig=fig)
        png = io.BytesIO()
        fig.savefig(png, format="png")
        plt.close(fig)  # shown as a PNG below; closing keeps pyplot from showing it a second time
        output.outputs = ()
        output.append_display_data(Image(data=png.getvalue(), format="png"))
        timing.value = f"redrawn in {time.perf_counter() - start:.2f} s"

    def on_change(_change: object = None) -> None:
        controls["gain"].disabled = controls["init"].value != "gain"
        redraw(**{name: control.value for name, control in controls.items()})

    for control in controls.values():
        control.observe(on_change, names="value")
    panel = widgets.VBox([
        widgets.HBox([controls["depth"], controls["width"]]),
        widgets.HBox([controls["activation"], controls["init"], controls["gain"]]),
        widgets.HBox([controls["norm"], controls["variant"]]),
        output,
        timing,
    ])
    on_change()
    return panel
