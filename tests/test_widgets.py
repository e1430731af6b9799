"""resnet_lab.widgets: the redraw callback of notebook 01's explorer, tested without a browser."""

import itertools
import math

import matplotlib.pyplot as plt
import pytest

from resnet_lab.gradients import ACTIVATIONS
from resnet_lab.plots import PLAIN_COLOR, RESIDUAL_COLOR
from resnet_lab.widgets import (
    INIT_CHOICES,
    VARIANTS,
    block_explorer,
    draw_block_gradients,
    draw_gradient_norms,
    gradient_explorer,
)


@pytest.mark.parametrize(
    "activation, init, norm, variant",
    list(itertools.product(ACTIVATIONS, INIT_CHOICES, [None, "none", "batch"], VARIANTS)),
)
def test_every_control_combination_redraws(activation, init, norm, variant):
    fig = plt.figure()
    try:
        results = draw_gradient_norms(depth=6, activation=activation, init=init, gain=1.5, norm=norm, width=16,
                                      variant=variant, fig=fig)
        expected = {"plain": ["plain"], "residual": ["residual"], "both": ["plain", "residual"]}[variant]
        assert list(results) == expected and all(len(v) == 6 for v in results.values())
        (ax,) = fig.axes
        assert ax.get_yscale() == "log" and "depth 6" in ax.get_title()
        colors = {line.get_color() for line in ax.get_lines()}
        assert colors == {PLAIN_COLOR if name == "plain" else RESIDUAL_COLOR for name in expected}
    finally:
        plt.close(fig)


def test_redraw_reuses_the_figure_and_marks_overflow():
    fig = plt.figure()
    draw_gradient_norms(depth=5, fig=fig)
    results = draw_gradient_norms(depth=200, activation="relu", init="gain", gain=3.0, variant="plain", fig=fig)
    assert len(fig.axes) == 1  # cleared, not stacked
    assert not all(math.isfinite(v) for v in results["plain"])
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert any("overflow" in entry for entry in legend)
    assert fig.axes[0].get_xlim()[1] >= 200
    plt.close(fig)


def test_bad_widget_arguments():
    with pytest.raises(ValueError, match="variant must be one of"):
        draw_gradient_norms(depth=3, variant="resnet")
    with pytest.raises(ValueError, match="init must be one of"):
        draw_gradient_norms(depth=3, init="he")


def test_explorer_panel_redraws_when_a_control_changes():
    panel = gradient_explorer(depth=4)
    controls = {getattr(w, "description", ""): w for box in panel.children[:3] for w in box.children}
    output, timing = panel.children[3], panel.children[4]
    assert output.outputs and timing.value.startswith("redrawn in")
    assert controls["gain (init='gain')"].disabled
    first = output.outputs
    controls["depth"].value = 7
    assert output.outputs != first
    controls["init"].value = "gain"
    assert not controls["gain (init='gain')"].disabled
    controls["network"].value = "residual"
    assert len(plt.get_fignums()) == 0  # every redraw closes its figure


@pytest.mark.parametrize("block", ["plain", "basic", "bottleneck", "preact"])
@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
@pytest.mark.parametrize("zero_init", [False, True])
def test_block_explorer_callback_for_every_control(block, shortcut, zero_init):
    from resnet_lab.blocks import BLOCKS

    fig = plt.figure()
    result = draw_block_gradients(block, shortcut, zero_init, n_blocks=3, batch_size=2, image_size=8, fig=fig)
    assert len(result["norms"]) == len(result["plain_norms"]) == 3
    width = 64 if block == "bottleneck" else 16
    expected = BLOCKS[block](width, 2 * width, 2, shortcut)
    assert result["parameters"] == sum(p.numel() for p in expected.parameters())
    text = fig.axes[0].texts[0].get_text()
    assert f"parameters {result['parameters']:,}" in text and "out (1, " in text
    plt.close(fig)


def test_block_explorer_panel():
    panel = block_explorer(n_blocks=2)
    output = panel.children[-2]
    first = output.outputs
    panel.children[0].children[0].value = "preact"
    assert output.outputs != first
    assert len(plt.get_fignums()) == 0


def test_explorer_dropdowns_show_their_value():
    panel = gradient_explorer(depth=3)
    dropdowns = [w for box in panel.children[:3] for w in box.children if hasattr(w, "options")]
    for dropdown in dropdowns:
        assert dropdown.label, f"{dropdown.description} shows nothing"  # None as a value renders blank
