"""resnet_lab.widgets: the explorers' redraw callbacks and panels, tested without a browser."""

import itertools
import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from resnet_lab.blocks import SHORTCUTS, BlockStack
from resnet_lab.gradients import ACTIVATIONS
from resnet_lab.plots import PLAIN_COLOR, RESIDUAL_COLOR, landscape_levels, model_depth
from resnet_lab.widgets import (
    INIT_CHOICES,
    VARIANTS,
    block_explorer,
    draw_block_gradients,
    draw_gradient_norms,
    draw_landscapes,
    draw_lesions,
    gradient_explorer,
    landscape_explorer,
    lesion_explorer,
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
    (markers,) = fig.axes[0].collections  # on the top edge of the frame, where no value can be read
    assert markers.get_offset_transform() == fig.axes[0].get_xaxis_transform()
    assert np.all(markers.get_offsets()[:, 1] == 1.0) and not markers.get_clip_on()
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
    stack = BlockStack(block, 3, width, shortcut)  # the stack's count, where shortcut C differs from B
    assert f"stack: 3 blocks of width {width}\n  parameters {sum(p.numel() for p in stack.parameters()):,}" in text
    plt.close(fig)


def test_block_explorer_is_honest_about_plain_blocks_and_projections():
    fig = plt.figure()
    draw_block_gradients("plain", "C", True, n_blocks=2, batch_size=2, image_size=8, fig=fig)
    text = fig.axes[0].texts[0].get_text()
    assert text.startswith("PlainBlock (no skip, no shortcut), zero-init n/a") and "shortcut parameters" not in text
    assert fig.axes[1].get_title().startswith("2 blocks: plain,")  # not "plain vs plain"
    # zero-init empties the branch's gradients; shortcut C's projections got gradients and used to hide that
    for shortcut in SHORTCUTS:
        result = draw_block_gradients("basic", shortcut, True, n_blocks=3, batch_size=2, image_size=8, fig=fig)
        assert result["norms"] == [0.0, 0.0, 0.0], shortcut
        assert ("1x1 shortcuts left out" in fig.axes[1].get_ylabel()) == (shortcut == "C")
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


class Surface(NamedTuple):  # the fields draw_landscapes reads from resnet_lab.landscape's results
    alphas: torch.Tensor
    betas: torch.Tensor
    loss: torch.Tensor


def bowl(scale: float, points: int = 9) -> Surface:
    axis = torch.linspace(-1, 1, points)
    return Surface(axis, axis, 0.1 + scale * (axis[None, :] ** 2 + axis[:, None] ** 2))


SURFACES = {"plain8": bowl(5.0), "resnet8": bowl(1.0), "plain14": bowl(50.0), "resnet14": bowl(2.0)}


def test_landscape_levels_span_every_surface_on_a_log_scale_up_to_a_cap():
    losses = [s.loss for s in SURFACES.values()] + [torch.tensor([math.inf])]
    levels = landscape_levels(losses, max_ratio=math.inf)
    assert levels[0] == pytest.approx(0.1) and levels[-1] == pytest.approx(100.1)  # inf ignored
    assert np.allclose(np.diff(np.log(levels)), np.log(levels[1] / levels[0]))  # log-spaced
    capped = landscape_levels(losses)  # by default at most 30x the lowest loss: the basins get the colours
    assert capped[0] == pytest.approx(0.1) and capped[-1] == pytest.approx(3.0)


def test_draw_landscapes_pairs_plain_and_residual_of_one_depth_and_coarsens_the_grid():
    fig = plt.figure()
    assert draw_landscapes(SURFACES, depth=14, grid=9, fig=fig)["points"] == 9
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("plain14") and titles[1].startswith("resnet14") and "0.1 at the trained" in titles[0]
    (colorbar,) = [ax for ax in fig.axes if ax.get_ylabel().startswith("cross-entropy")]  # the shared colour bar
    assert [f"{t:g}" for t in colorbar.get_yticks()] == ["0.1", "0.2", "0.5", "1", "2"]  # up to 30 x 0.1
    assert draw_landscapes(SURFACES, depth=8, grid=5, fig=fig)["alphas"] == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert draw_landscapes(SURFACES, depth=8, grid=3, fig=fig)["alphas"] == pytest.approx([-1, 0, 1])
    with pytest.raises(ValueError, match=r"grid must be one of 3, 5, 9 for surfaces computed on 9 x 9 .*got 4"):
        draw_landscapes(SURFACES, depth=8, grid=4, fig=fig)  # every 3rd point: -1, -0.25, 0.5, no centre
    with pytest.raises(ValueError, match="no surfaces of depth 20; computed: plain8"):
        draw_landscapes(SURFACES, depth=20, grid=3, fig=fig)
    plt.close(fig)


@pytest.mark.parametrize("points", [9, 21, 31])
def test_every_grid_the_landscape_slider_offers_is_symmetric_and_keeps_the_centre(points):
    surfaces = {"plain8": bowl(5.0, points), "resnet8": bowl(1.0, points)}
    panel = landscape_explorer(surfaces)
    slider = {w.description: w for w in panel.children[0].children}["grid points"]
    assert slider.value == points and len(slider.options) >= 3
    fig = plt.figure()
    for grid in slider.options:
        alphas = draw_landscapes(surfaces, depth=8, grid=grid, fig=fig)["alphas"]
        assert len(alphas) == grid and alphas == pytest.approx([-a for a in reversed(alphas)], abs=1e-6)
        assert alphas[grid // 2] == surfaces["plain8"].alphas[points // 2]  # the centre: the trained weights
        assert np.allclose(np.diff(alphas), alphas[1] - alphas[0])  # evenly spaced: what a coarser grid computes
    plt.close(fig)
    assert len(plt.get_fignums()) == 0


LESIONS = {"plain14": {0: [0.8], 1: [0.3, 0.2], 2: [0.1, 0.12]}, "resnet14": {0: [0.85], 1: [0.8, 0.7], 2: [0.6, 0.5]}}


def test_draw_lesions_reports_the_mean_at_the_chosen_count():
    fig = plt.figure()
    means = draw_lesions(LESIONS, removed=2, fig=fig)
    assert means == pytest.approx({"plain14": 0.11, "resnet14": 0.55})
    (ax,) = fig.axes
    assert "2 blocks removed" in ax.get_title() and "resnet14 55.0 %" in ax.get_title()
    assert ax.get_xlabel() == "blocks removed at test time" and ax.get_ylim() == (0, 100)
    plt.close(fig)


def test_landscape_and_lesion_panels_redraw_when_a_control_changes():
    panel = landscape_explorer(SURFACES)
    controls = {w.description: w for w in panel.children[0].children}
    output = panel.children[1]
    first = output.outputs
    controls["grid points"].value = 3
    assert output.outputs != first and controls["depth"].value == 14
    panel = lesion_explorer(LESIONS)
    (slider,) = panel.children[0].children
    first = panel.children[1].outputs
    assert slider.options == (0, 1, 2) and slider.value == 1
    slider.value = 2
    assert panel.children[1].outputs != first
    assert len(plt.get_fignums()) == 0


def test_model_depth_reads_the_depth_from_a_model_name():
    assert [model_depth(n) for n in ("plain56", "resnet20", "preact_resnet110")] == [56, 20, 110]
    with pytest.raises(ValueError, match="no depth in the model name 'resnet'"):
        model_depth("resnet")
