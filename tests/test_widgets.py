"""resnet_lab.widgets: the explorers' redraw callbacks and panels, tested without a browser."""

import itertools
import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from resnet_lab import widgets
from resnet_lab.blocks import BLOCKS, SHORTCUTS, BlockStack
from resnet_lab.gradients import ACTIVATIONS, deep_mlp, grad_norms
from resnet_lab.models import count_parameters
from resnet_lab.plots import (
    PLAIN_COLOR,
    RESIDUAL_COLOR,
    describe,
    finish_layer_norms,
    landscape_levels,
    model_depth,
    plot_landscape,
    plot_layer_norms,
)
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


@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
@pytest.mark.parametrize("zero_init", [False, True])
def test_block_explorer_callback_for_every_control(block, shortcut, zero_init):
    fig = plt.figure()
    result = draw_block_gradients(block, shortcut, zero_init, n_blocks=3, batch_size=2, image_size=8, fig=fig)
    assert len(result["norms"]) == len(result["plain_norms"]) == 3
    width = 64 if "bottleneck" in block else 16
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
    with pytest.raises(ValueError, match="no finite, positive loss.*diverged"):
        landscape_levels([torch.full((3, 3), math.nan)])


def test_a_diverged_corner_of_a_landscape_is_drawn_in_the_top_colour_not_left_blank():
    surface = bowl(1.0)
    loss = surface.loss.clone()
    loss[0, 0], loss[0, 1] = math.nan, math.inf
    levels = landscape_levels([surface.loss])
    fig, ax = plt.subplots()
    drawn = []
    real_contourf = ax.contourf
    ax.contourf = lambda x, y, z, **kwargs: drawn.append(z) or real_contourf(x, y, z, **kwargs)
    plot_landscape(ax, surface.alphas, surface.betas, loss, levels=levels)
    plt.close(fig)
    (z,) = drawn
    assert np.isfinite(z).all() and z[0, 0] > levels[-1] and z[0, 1] > levels[-1]  # matplotlib masks nan and inf


def test_draw_landscapes_pairs_plain_and_residual_of_one_depth_and_coarsens_the_grid():
    fig = plt.figure()
    assert draw_landscapes(SURFACES, depth=14, grid=9, fig=fig)["points"] == 9
    assert fig.get_suptitle() == "14 layers: loss on 9 x 9 grid points"  # all computed points: nothing more to say
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("plain14") and titles[1].startswith("resnet14") and "0.1 at the trained" in titles[0]
    (colorbar,) = [ax for ax in fig.axes if ax.get_ylabel().startswith("cross-entropy")]  # the shared colour bar
    assert [f"{t:g}" for t in colorbar.get_yticks()] == ["0.1", "0.2", "0.5", "1", "2"]  # up to 30 x 0.1
    assert draw_landscapes(SURFACES, depth=8, grid=5, fig=fig)["alphas"] == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert draw_landscapes(SURFACES, depth=8, grid=3, fig=fig)["alphas"] == pytest.approx([-1, 0, 1])
    assert fig.get_suptitle() == "8 layers: loss on 3 x 3 grid points, a coarser view of the 9 x 9 computed"
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
    with pytest.raises(ValueError, match="at least one model"):
        lesion_explorer({})
    panel = lesion_explorer(LESIONS)
    (slider,) = panel.children[0].children
    first = panel.children[1].outputs
    assert slider.options == (0, 1, 2) and slider.value == 1
    slider.value = 2
    assert panel.children[1].outputs != first
    assert len(plt.get_fignums()) == 0


def test_model_depth_reads_the_depth_from_a_model_name():
    assert [model_depth(n) for n in ("plain56", "resnet20", "preact_resnet110")] == [56, 20, 110]
    assert model_depth("resnet20_seed1") == 20  # a run's suffix is not part of the depth
    with pytest.raises(ValueError, match="no depth in the model name 'resnet'"):
        model_depth("resnet")


# ---------------------------------------------------- states found by setting every control of the explorers


def plain_numbers(ax):
    """The y tick labels shown on ``ax``, after drawing, and whether each reads as a plain number."""
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels(which="both") if t.get_text()]
    return labels, all(text.replace(".", "", 1).isdigit() for text in labels)


def test_a_one_block_stack_shows_its_points_on_whole_block_ticks():
    fig = plt.figure()
    draw_block_gradients("basic", n_blocks=1, batch_size=2, image_size=8, fig=fig)
    ax = fig.axes[1]
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [1, 1]
    assert all(line.get_marker() not in (None, "None", "", " ") for line in ax.get_lines())  # a 1-point line is void
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    labels, plain = plain_numbers(ax)  # a narrow log axis: plain numbers, not 1.1x10^-1
    assert len(labels) >= 2 and plain, labels
    assert ax.get_title().startswith("1 block: ")
    plt.close(fig)


def test_an_axis_where_every_layer_overflowed_says_so_and_shows_each_curves_markers():
    fig = plt.figure()
    results = draw_gradient_norms(depth=100, activation="relu", init="gain", gain=3.5, fig=fig)
    assert not any(math.isfinite(v) for norms in results.values() for v in norms)  # nb01's "where does it overflow?"
    (ax,) = fig.axes
    assert any("every layer overflowed" in text.get_text() for text in ax.texts)
    labels, _ = plain_numbers(ax)
    assert labels == []  # the ticks of an empty log axis (1 to 10) meant nothing
    first, second = ax.collections
    assert {float(y) for y in first.get_offsets()[:, 1]} == {float(y) for y in second.get_offsets()[:, 1]} == {1.0}
    assert first.get_facecolors()[0][3] == 1 and second.get_facecolors().size == 0  # filled, then hollow: both seen
    assert second.get_sizes()[0] > first.get_sizes()[0]  # the ring goes around the filled marker, not under it
    renderer = fig.canvas.get_renderer()
    legend_top = ax.get_legend().get_window_extent(renderer).y1
    lowest_marker = min(second.get_offset_transform().transform(second.get_offsets())[:, 1])
    assert legend_top < lowest_marker - 2  # the legend sits below the markers on the frame (pixels)
    plt.close(fig)


def test_layer_norm_axes_note_an_empty_axis_until_a_curve_has_values_and_label_narrow_ones_plainly():
    fig, ax = plt.subplots()
    plot_layer_norms(ax, [0.0, 0.0, 0.0], label="a", color=PLAIN_COLOR)
    assert any("every norm is exactly 0" in text.get_text() for text in ax.texts)
    assert plain_numbers(ax)[0] == []
    plot_layer_norms(ax, [0.5, 0.3, 0.2], label="b", color=RESIDUAL_COLOR)  # now there is something to read
    assert not ax.texts and plain_numbers(ax)[0]
    finish_layer_norms(ax)
    labels, plain = plain_numbers(ax)
    assert {"0.2", "0.5"} <= set(labels) and plain, labels
    plt.close(fig)


def test_layer_norm_axes_keep_powers_of_ten_when_widened_after_the_curves():
    fig, ax = plt.subplots()
    plot_layer_norms(ax, [2e16, 5e17, 1e17], label="depth 50", color=PLAIN_COLOR)  # nb01 §4: a narrow curve...
    ax.set_ylim(1, 1e20)  # ...shown from order 1
    labels, plain = plain_numbers(ax)
    assert not plain and not any("e+" in text for text in labels), labels  # 10^18, not 1e+18
    plt.close(fig)


def test_the_bottleneck_explorer_compares_with_plain_bottlenecks_of_the_same_size():
    fig = plt.figure()
    kwargs = {"n_blocks": 3, "batch_size": 2, "image_size": 8, "fig": fig}
    plain_alone = draw_block_gradients("plain_bottleneck", "A", **kwargs)["norms"]
    assert fig.axes[1].get_title().startswith("3 blocks: plain bottleneck,")
    result = draw_block_gradients("bottleneck", "A", **kwargs)
    assert result["plain_norms"] == plain_alone and result["norms"] != plain_alone
    (label,) = [line.get_label() for line in fig.axes[1].get_lines() if line.get_color() == PLAIN_COLOR]
    assert label == "plain bottleneck"
    plain = count_parameters(BlockStack("plain_bottleneck", 3, 64))
    assert plain == count_parameters(BlockStack("bottleneck", 3, 64, "A"))
    assert f"plain stack: the same without skips\n  parameters {plain:,}" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_the_gain_slider_stops_at_the_gains_notebook_01_names_and_the_title_matches_it():
    panel = gradient_explorer(depth=3)
    slider = {w.description: w for box in panel.children[:3] for w in box.children}["gain (init='gain')"]
    stops = dict(slider.options)  # label -> gain
    for gain in (0.1, 1.0, 1.3, 1.5, 3.0, 3.5, 4.0, 8.0, 10.0, math.sqrt(2)):
        assert gain in stops.values(), gain
    (sqrt2_label,) = [label for label, gain in stops.items() if gain == math.sqrt(2)]
    assert "1.41" in sqrt2_label and "gain 1.41," in describe(100, "relu", math.sqrt(2))
    assert "gain 3.5," in describe(100, "relu", 3.5)
    assert len(plt.get_fignums()) == 0


def test_the_block_explorer_disables_the_controls_a_plain_block_ignores():
    panel = block_explorer(n_blocks=2)
    controls = {w.description: w for box in panel.children[:2] for w in box.children}
    assert not controls["shortcut"].disabled and not controls["zero-init last layer"].disabled
    for plain in ("plain", "plain_bottleneck"):
        controls["block"].value = "preact"
        assert not controls["shortcut"].disabled and not controls["zero-init last layer"].disabled
        controls["block"].value = plain
        assert controls["shortcut"].disabled and controls["zero-init last layer"].disabled
    assert controls["block"].label == "plain bottleneck"  # the name, in words
    assert len(plt.get_fignums()) == 0


def test_the_colour_bar_keeps_labels_when_the_losses_are_close():
    axis = torch.linspace(-1, 1, 9)
    flat = Surface(axis, axis, 0.8 + 0.05 * (axis[None, :] ** 2 + axis[:, None] ** 2))  # 0.8 to 0.9: no 1-2-5 value
    fig = plt.figure()
    draw_landscapes({"plain8": flat, "resnet8": flat}, depth=8, grid=9, fig=fig)
    (colorbar,) = [ax for ax in fig.axes if ax.get_ylabel().startswith("cross-entropy")]
    labels = [t.get_text() for t in colorbar.get_yticklabels() if t.get_text()]
    assert labels == ["0.8", "0.9"], labels
    plt.close(fig)


def test_init_choices_are_public():
    assert "INIT_CHOICES" in widgets.__all__


def test_narrow_layer_norm_axes_far_from_one_keep_scientific_labels():
    fig, ax = plt.subplots()
    plot_layer_norms(ax, [6e32, 1e33, 1.5e33], label="plain", color=PLAIN_COLOR)  # nb01's widget at gain 3
    finish_layer_norms(ax)
    fig.canvas.draw()
    labels = [tick.get_text() for tick in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if tick.get_text()]
    assert labels and not any("e+" in label for label in labels), labels  # 2×10^33, not 2e+33
    plt.close(fig)


@pytest.mark.parametrize("draw", [
    lambda fig: draw_gradient_norms(depth=4, fig=fig),
    lambda fig: draw_block_gradients(block="basic", n_blocks=2, fig=fig),
], ids=["gradient_norms", "block_gradients"])
def test_a_redraw_leaves_the_notebooks_random_numbers_as_they_were(draw):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fig = plt.figure()
    draw(fig)  # builds its networks from its own seed
    plt.close(fig)
    assert torch.equal(torch.rand(3), expected)


def test_the_gradient_explorer_draws_the_networks_it_names():
    fig = plt.figure()
    results = draw_gradient_norms(depth=20, activation="sigmoid", width=16, variant="both", fig=fig)
    plt.close(fig)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 32, generator=generator), torch.randint(10, (64,), generator=generator)
    for residual in (False, True):
        torch.manual_seed(0)
        net = deep_mlp(20, width=16, activation="sigmoid", init="default", residual=residual)
        assert results["residual" if residual else "plain"] == pytest.approx(grad_norms(net, x, y))
    assert results["plain"][0] < 1e-3 * results["residual"][0]  # the sigmoid's vanishing, and the skip's cure
