"""Notebook 05's package side: loss landscapes, lesions, shattered gradients, paths, the block-gradient recorder."""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab import checks, solutions
from resnet_lab.blocks import BasicBlock, PlainBlock, PlainBottleneck
from resnet_lab.gradients import BlockGradientRecorder, WeightSnapshots
from resnet_lab.landscape import filter_normalize, loss_along_line, loss_and_accuracy, loss_surface, random_direction
from resnet_lab.lesion import lesion_accuracy, lesion_sets, lesioned, random_lesions, single_lesions, skip_path
from resnet_lab.models import ResNet, build_model, cifar_resnet
from resnet_lab.paths import gradient_by_path_length, path_gradient, path_length_counts, single_path
from resnet_lab.shattering import (
    gradient_autocorrelation,
    input_gradients,
    neighbour_correlation,
    shattering_net,
)


def net(name: str, seed: int = 0) -> nn.Module:
    """A tiny CIFAR net in eval mode, with non-trivial BatchNorm statistics so eval mode is not the identity."""
    torch.manual_seed(seed)
    model = build_model(name)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, 16, 16))
    return model.eval()


def batch(n: int = 6, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator), torch.randint(10, (n,), generator=generator)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_bit_identical(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


# ------------------------------------------------------------------------------------------------- landscape


def test_filter_normalised_direction_has_the_weight_filter_norms_and_zero_1d_entries():
    model = net("resnet8")
    direction = random_direction(model, generator=torch.Generator().manual_seed(0))
    for name, weight in model.named_parameters():
        if weight.dim() > 1:
            torch.testing.assert_close(direction[name].flatten(1).norm(dim=1), weight.detach().flatten(1).norm(dim=1))
        else:
            assert not direction[name].any(), name
    again = random_direction(model, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(direction[name], again[name]) for name in direction)


def test_filter_normalize_rejects_a_direction_for_another_model():
    model = net("resnet8")
    direction = random_direction(model)
    with pytest.raises(ValueError, match="missing"):
        filter_normalize({k: v for k, v in direction.items() if k != "fc.bias"}, model)
    with pytest.raises(ValueError, match="shape"):
        filter_normalize({**direction, "fc.weight": torch.zeros(3, 3)}, model)


def test_zero_direction_gives_a_flat_line_at_the_model_loss_and_alpha_0_is_the_model():
    model = net("resnet8")
    images, labels = batch()
    loss, accuracy = loss_and_accuracy(model, images, labels, batch_size=4)  # two batches, one partial
    with torch.no_grad():
        logits = model(images)
    assert loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    assert accuracy == float((logits.argmax(1) == labels).float().mean())

    zero = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    flat = loss_along_line(model, images, labels, zero, [-1.0, 0.0, 0.5], batch_size=4, progress=False)
    torch.testing.assert_close(flat.loss, torch.full((3,), loss, dtype=torch.float64))
    line = loss_along_line(model, images, labels, random_direction(model), [0.0, 1.0], progress=False)
    assert line.loss[0] == pytest.approx(loss, rel=1e-6) and line.loss[1] != line.loss[0]


def test_landscape_restores_parameters_bit_for_bit_and_the_mode_even_after_an_error():
    model = net("resnet8")
    model.train()
    images, labels = batch()
    before = snapshot(model)
    direction = random_direction(model)
    loss_along_line(model, images, labels, direction, [0.3, -0.7], progress=False)
    assert_bit_identical(model, before)
    assert model.training
    with pytest.raises(IndexError):  # label 10 of 10 classes fails inside the evaluation of the first point
        loss_along_line(model, images, torch.full_like(labels, 10), direction, [0.3], progress=False)
    assert_bit_identical(model, before)
    assert model.training


def test_every_landscape_point_is_measured_from_the_trained_weights():
    model = net("resnet8")
    images, labels = batch()
    direction = random_direction(model, generator=torch.Generator().manual_seed(2))
    line = loss_along_line(model, images, labels, direction, [0.5, 0.5, 0.0], progress=False)
    assert line.loss[0] == line.loss[1]  # theta + 0.5 d twice, not theta + 0.5 d and then theta + d
    assert line.loss[2] == pytest.approx(loss_and_accuracy(model, images, labels)[0], rel=1e-6)


def test_surface_has_one_row_per_beta_and_its_beta_0_row_is_the_line():
    model = net("resnet8")
    images, labels = batch()
    generator = torch.Generator().manual_seed(3)
    d, e = random_direction(model, generator=generator), random_direction(model, generator=generator)
    before = snapshot(model)
    alphas, betas = [-0.5, 0.0, 0.5], [0.0, 0.4]
    surface = loss_surface(model, images, labels, d, e, alphas, betas, progress=False)
    assert surface.loss.shape == surface.accuracy.shape == (2, 3)
    line = loss_along_line(model, images, labels, d, alphas, progress=False)
    torch.testing.assert_close(surface.loss[0], line.loss)
    assert not torch.equal(surface.loss[1], line.loss)
    assert_bit_identical(model, before)


# ---------------------------------------------------------------------------------------------------- lesion


def test_removing_no_block_changes_nothing():
    model = net("resnet8")
    images, labels = batch()
    with torch.no_grad():
        logits = model(images)
        with lesioned(model, []):
            assert torch.equal(model(images), logits)
    assert lesion_accuracy(model, images, labels) == loss_and_accuracy(model, images, labels)[1]


@pytest.mark.parametrize("name", ["resnet8", "plain8", "preact_resnet8"])
def test_every_block_can_be_removed_including_the_downsampling_ones(name):
    model = net(name)
    images, _ = batch()
    with torch.no_grad():
        logits = model(images)
        for i in range(len(model.blocks)):
            with lesioned(model, [i]):
                lesioned_logits = model(images)
            assert lesioned_logits.shape == (6, 10)
            assert not torch.equal(lesioned_logits, logits)
        with lesioned(model, range(len(model.blocks))):
            assert model(images).shape == (6, 10)
        assert torch.equal(model(images), logits)  # every block restored


def test_lesioned_identity_block_outputs_relu_of_its_input_and_is_restored_after_an_error():
    model = net("resnet8")
    images, _ = batch()
    block = model.blocks[0]  # 16 -> 16 channels, stride 1: identity shortcut
    assert isinstance(block, BasicBlock) and block.downsample is None
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        intact, logits = block(x), model(images)
        with lesioned(model, [0]):
            torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="boom"), lesioned(model, [0, 1, 2]):
            raise RuntimeError("boom")
        assert torch.equal(block(x), intact) and torch.equal(model(images), logits)
        assert "forward" not in block.__dict__


@pytest.mark.parametrize("preact", [False, True], ids=["basic", "preact"])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_a_lesioned_downsampling_block_computes_what_it_computes_with_its_branch_zeroed(shortcut, preact):
    torch.manual_seed(0)
    model = cifar_resnet(8, shortcut=shortcut, preact=preact)
    with torch.no_grad():
        model(torch.randn(16, 3, 16, 16))  # training mode: BatchNorm statistics away from their initial values
    model.eval()
    block = model.blocks[1]  # 16 -> 32 channels, stride 2: zero-padding (A) or a projection (B)
    zeroed = copy.deepcopy(block)
    with torch.no_grad():
        if preact:  # the branch's last layer outputs 0
            zeroed.conv2.weight.zero_()
        else:
            zeroed.bn2.weight.zero_()
            zeroed.bn2.bias.zero_()
        x = torch.randn(2, 16, 8, 8)  # of both signs, where a missing ReLU shows
        with lesioned(model, [1]):
            assert torch.equal(block(x), zeroed(x))


def test_removed_plain_blocks_become_identity_or_option_a_shortcut():
    model = net("plain8")
    first, downsampling = model.blocks[0], model.blocks[1]
    assert isinstance(first, PlainBlock) and downsampling.conv1.stride == (2, 2)
    x = torch.rand(2, 16, 8, 8)
    with torch.no_grad(), lesioned(model, [0, 1]):
        assert torch.equal(first(x), x)
        padded = downsampling(x)
    assert padded.shape == (2, 32, 4, 4)
    assert torch.equal(padded[:, :16], x[:, :, ::2, ::2]) and not padded[:, 16:].any()


@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_a_plain_bottleneck_without_its_layers_is_the_identity_or_option_a_shortcut(stride_in_1x1):
    x = torch.rand(2, 64, 8, 8)
    assert torch.equal(skip_path(PlainBottleneck(64, 64))(x), x)
    padded = skip_path(PlainBottleneck(64, 128, 2, stride_in_1x1=stride_in_1x1))(x)
    assert padded.shape == (2, 128, 4, 4)
    assert torch.equal(padded[:, :64], x[:, :, ::2, ::2]) and not padded[:, 64:].any()


def test_bad_block_indices_name_the_valid_range():
    model = net("resnet8")
    with pytest.raises(IndexError, match=r"0\.\.2"), lesioned(model, [3]):
        pass
    with pytest.raises(IndexError, match=r"0\.\.2"), lesioned(model, [-1]):
        pass
    with pytest.raises(ValueError, match="from 0 to the number of blocks, 3"):
        lesion_sets(3, [4])
    with pytest.raises(ValueError, match="no `.blocks`"), lesioned(nn.Linear(2, 2), [0]):
        pass


def test_single_and_random_lesions_are_reproducible_with_distinct_blocks():
    model = net("resnet8")
    images, labels = batch()
    singles = single_lesions(model, images, labels, progress=False)
    assert singles == [lesion_accuracy(model, images, labels, [i]) for i in range(3)]

    sets = lesion_sets(6, [0, 2, 5], trials=8, seed=4)
    assert sets == lesion_sets(6, [0, 2, 5], trials=8, seed=4)
    assert sets != lesion_sets(6, [0, 2, 5], trials=8, seed=5)
    assert all(len(s) == k and len(set(s)) == k and all(0 <= i < 6 for i in s) for k in sets for s in sets[k])
    assert len({tuple(s) for s in sets[2]}) > 1  # different trials remove different blocks

    results = random_lesions(model, images, labels, [1, 3], trials=3, seed=2, progress=False)
    assert results == random_lesions(model, images, labels, [1, 3], trials=3, seed=2, progress=False)
    assert list(results) == [1, 3] and all(len(v) == 3 for v in results.values())
    expected = [lesion_accuracy(model, images, labels, s) for s in lesion_sets(3, [1, 3], trials=3, seed=2)[1]]
    assert results[1] == expected


# ------------------------------------------------------------------------------------------------ shattering


def test_autocorrelation_of_a_smooth_signal_and_of_white_noise():
    sine = torch.sin(torch.linspace(0, 6 * math.pi, 1000))
    smooth = gradient_autocorrelation(sine, 3)
    assert smooth.shape == (4,) and smooth[0] == pytest.approx(1.0) and smooth[1] > 0.99
    noise = gradient_autocorrelation(torch.randn(5000, generator=torch.Generator().manual_seed(0)), 5)
    assert noise[0] == pytest.approx(1.0) and noise[1:].abs().max() < 0.05
    with pytest.raises(ValueError, match="max_lag"):
        gradient_autocorrelation(sine, 1000)
    with pytest.raises(ValueError, match="constant"):
        gradient_autocorrelation(torch.ones(10), 1)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_input_gradients_match_finite_differences(norm):
    torch.manual_seed(0)
    model = shattering_net(4, residual=True, width=16, norm=norm).double()
    model.train()
    before = snapshot(model)
    x = torch.linspace(-2, 2, 32, dtype=torch.float64)[:, None]
    gradients = input_gradients(model, x)
    assert gradients.shape == (32, 1)
    assert_bit_identical(model, before)  # BatchNorm statistics were set on a copy
    assert model.training
    reference = model
    if norm == "batch":  # the function input_gradients differentiates: BN with the batch's statistics, held fixed
        reference = copy.deepcopy(model)
        for bn in (m for m in reference.modules() if isinstance(m, nn.BatchNorm1d)):
            bn.momentum = None
            bn.reset_running_stats()
        reference(x)
        reference.eval()
    h = 1e-6
    with torch.no_grad():
        finite_differences = (reference(x + h)[:, 0] - reference(x - h)[:, 0]) / (2 * h)
    # points within h of a ReLU kink would differ; with 32 points on a double grid there are none
    torch.testing.assert_close(gradients[:, 0], finite_differences, rtol=1e-5, atol=1e-7)


def test_deep_plain_gradients_shatter_but_residual_ones_stay_correlated():
    # measured over seeds 0-5: plain depth 30 in [-0.08, 0.11], residual in [0.87, 0.95]; depth 1 gives 0.99
    plain = neighbour_correlation(30, residual=False, seeds=(0, 1))
    residual = neighbour_correlation(30, residual=True, seeds=(0, 1))
    assert plain < 0.4 < 0.7 < residual
    assert neighbour_correlation(2, residual=False, seeds=(0,)) > 0.8


# ----------------------------------------------------------------------------------------------------- paths


def test_path_length_counts_are_binomial():
    for n in (0, 3, 9):
        counts = path_length_counts(n)
        assert counts.tolist() == [math.comb(n, k) for k in range(n + 1)]
        assert counts.sum() == 2**n


@pytest.mark.parametrize("name", ["resnet8", "preact_resnet8"])
def test_the_gradients_of_all_paths_add_up_to_the_ordinary_input_gradient(name):
    model = net(name, seed=2).double()  # float64: the sum of 8 path gradients is compared tightly
    images, labels = batch(n=4, size=8)
    images = images.double()
    x = images.clone().requires_grad_(True)
    F.cross_entropy(model(x), labels).backward()  # eval mode, as path_gradient
    paths = {branches: path_gradient(model, images, labels, branches)
             for k in range(4) for branches in itertools.combinations(range(3), k)}
    torch.testing.assert_close(sum(paths.values()), x.grad, rtol=1e-9, atol=1e-12)  # the unraveled view, exactly
    assert all(gradient.abs().sum() > 0 for gradient in paths.values())

    norms = gradient_by_path_length(model, images, labels, samples=2, progress=False)
    assert norms.shape == (4,)
    for k in (0, 3):  # a single path of this length: every sample is that path
        only = paths[tuple(range(k))]
        assert norms[k] == pytest.approx(float(only.norm()), rel=1e-9)
    assert torch.equal(norms, gradient_by_path_length(model, images, labels, samples=2, progress=False))


@pytest.mark.parametrize("name", ["resnet8", "preact_resnet8"])
def test_single_path_keeps_the_forward_values_and_removes_its_hooks(name):
    model = net(name)
    images, _ = batch()
    with torch.no_grad():
        logits = model(images)
    for branches in ([], [0], [1, 2], [0, 1, 2]):
        with single_path(model, branches):
            assert torch.equal(model(images), logits)
    assert all(not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())


def test_paths_refuse_a_plain_net():
    images, labels = batch()
    plain_bottlenecks = ResNet(PlainBottleneck, (1, 1, 1), (16, 32, 64), stem="cifar", num_classes=10)
    for model in (net("plain8"), plain_bottlenecks):  # both kinds of plain block
        with pytest.raises(ValueError, match="plain network has no skips"):
            gradient_by_path_length(model, images, labels, progress=False)


# ---------------------------------------------------------------------------------------- gradient recorder


def test_block_gradient_recorder_records_one_row_per_backward_pass():
    model = net("resnet8")
    model.train()
    images, labels = batch(n=4, size=8)
    expected = []
    with BlockGradientRecorder(model) as recorder:
        for step in range(3):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(images * (step + 1)), labels).backward()
            expected.append([math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in block.parameters()))
                             for block in model.blocks])
    assert recorder.norms.shape == (3, len(model.blocks))
    torch.testing.assert_close(recorder.norms, torch.tensor(expected, dtype=torch.float32))
    F.cross_entropy(model(images), labels).backward()  # after remove(): nothing recorded
    assert recorder.norms.shape == (3, len(model.blocks))
    assert all(not p._backward_hooks for p in model.parameters())


def test_weight_snapshots_hold_the_weights_after_t_steps():
    model = net("resnet8")
    images, labels = batch(n=4, size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    after = {}  # the weights after t steps, copied by hand
    with WeightSnapshots(model, steps=(0, 2, 99)) as snapshots:
        for step in range(3):
            after[step] = copy.deepcopy(model.state_dict())
            model.eval()(images)  # an evaluation pass in between: not a training step
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
        after[3] = copy.deepcopy(model.state_dict())
    assert sorted(snapshots.states) == [0, 2, 3]  # step 99 never came; the final weights come under 3
    for step, state in snapshots.states.items():
        for name, value in state.items():
            assert torch.equal(value, after[step][name]), (step, name)
    first_weight = next(name for name, value in after[0].items() if value.dim() == 4)
    assert not torch.equal(snapshots.states[0][first_weight], snapshots.states[3][first_weight])  # it trained
    model(images)  # after remove(): nothing counted
    assert snapshots.passes == 3 and not model._forward_pre_hooks
    with pytest.raises(ValueError, match="from 0"):
        WeightSnapshots(model, steps=(-1,))


# ---------------------------------------------------------------------------------------------------- checker


def whole_tensor(direction, model):
    return {name: direction[name] * w.norm() / direction[name].norm() if w.dim() > 1 else torch.zeros_like(w)
            for name, w in model.named_parameters()}


def bn_not_zeroed(direction, model):
    normalized = solutions.filter_normalize(direction, model)
    return {name: direction[name] if w.dim() <= 1 else normalized[name] for name, w in model.named_parameters()}


def weights_returned(direction, model):
    return {name: w.detach().clone() if w.dim() > 1 else torch.zeros_like(w) for name, w in model.named_parameters()}


def unit_filters(direction, model):
    def unit(d):
        return d / d.flatten(1).norm(dim=1).view(-1, *[1] * (d.dim() - 1))

    return {name: unit(direction[name]) if w.dim() > 1 else torch.zeros_like(w) for name, w in model.named_parameters()}


def not_attempted(direction, model):
    raise NotImplementedError


def test_references_the_package_already_has_are_its_own_code_not_copies():
    from resnet_lab import landscape, loader

    assert solutions.filter_normalize is landscape.filter_normalize
    assert solutions.flip_batch is loader.batch_flip


def test_filter_normalize_reference_passes(capsys):
    assert checks.check_filter_normalize(solutions.filter_normalize, strict=True) is True
    assert "PASS check_filter_normalize" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (whole_tensor, "whole tensor"),
        (bn_not_zeroed, "is not zero"),
        (weights_returned, "direction was ignored"),
        (unit_filters, "has norm 1"),
        (lambda direction, model: [], "return a dict"),
        (not_attempted, "not attempted yet"),
    ],
)
def test_filter_normalize_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_filter_normalize(wrong) is False
    assert hint in capsys.readouterr().out
    with pytest.raises(AssertionError, match=hint):
        checks.check_filter_normalize(wrong, strict=True)


def test_lesion_accuracy_is_the_accuracy_of_the_lesioned_model():
    torch.manual_seed(0)
    model = build_model("plain8").eval()
    images = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model(images).argmax(1)  # the intact net scores 100 %
    assert lesion_accuracy(model, images, labels) == 1.0
    with lesioned(model, [1]):
        expected = loss_and_accuracy(model, images, labels)[1]
    assert expected < 1.0
    assert lesion_accuracy(model, images, labels, [1]) == expected
    assert single_lesions(model, images, labels, progress=False)[1] == expected
