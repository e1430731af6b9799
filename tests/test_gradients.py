"""resnet_lab.gradients: the vanishing/exploding behaviour notebook 01 teaches, and the probes' contract."""

import math

import pytest
import torch

from resnet_lab.gradients import deep_cnn, deep_mlp, grad_norms, probe_layers


def batch(n: int = 64, features: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=generator), torch.randint(10, (n,), generator=generator)


def norms_of(seed: int = 0, **options) -> list[float]:
    torch.manual_seed(seed)
    return grad_norms(deep_mlp(**options), *batch())


def test_plain_sigmoid_vanishes_and_residual_twin_does_not():
    plain = norms_of(depth=50, activation="sigmoid", init="default")
    residual = norms_of(depth=50, activation="sigmoid", init="default", residual=True)
    assert len(plain) == len(residual) == 50
    assert plain[0] < 1e-6 * plain[-1]
    assert residual[0] > 1e-3 * residual[-1]


def test_relu_gain_3_explodes_without_raising():
    norms = norms_of(depth=50, activation="relu", init=3.0)
    assert norms[0] > 1e6 or not math.isfinite(norms[0])


def test_overflow_comes_back_as_inf_or_nan(recwarn):
    norms = norms_of(depth=200, activation="relu", init=3.0)
    assert len(norms) == 200
    assert not all(math.isfinite(v) for v in norms)
    assert len(recwarn) == 0  # no warning spam


def test_kaiming_relu_stays_within_two_decades():
    norms = norms_of(depth=50, activation="relu", init="kaiming")
    assert max(norms) / min(norms) < 100


def test_same_seed_gives_identical_norms_and_another_seed_does_not():
    first = norms_of(depth=20, activation="tanh", init="xavier", seed=3)
    assert first == norms_of(depth=20, activation="tanh", init="xavier", seed=3)
    assert first != norms_of(depth=20, activation="tanh", init="xavier", seed=4)


def test_residual_only_adds_the_skip():
    torch.manual_seed(0)
    plain = deep_mlp(6, activation="relu", init="kaiming")
    torch.manual_seed(0)
    residual = deep_mlp(6, activation="relu", init="kaiming", residual=True)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in residual.parameters())
    for (name_a, a), (name_b, b) in zip(plain.state_dict().items(), residual.state_dict().items()):
        assert name_a == name_b and torch.equal(a, b)
    x, _ = batch()
    h_plain = plain.hidden[0](x)
    assert torch.allclose(residual.hidden[1](h_plain), h_plain + plain.hidden[1](h_plain))
    assert not residual.hidden[0].residual  # the first layer changes the width: no skip there


def test_init_scales_match_their_definitions():
    for init, expected_var in [("kaiming", 2 / 64), ("xavier", 2 / 128), (0.5, 0.25 / 64)]:
        torch.manual_seed(0)
        weight = deep_mlp(3, width=64, init=init).hidden[1].transform.weight
        assert weight.var().item() == pytest.approx(expected_var, rel=0.05)


def test_init_scales_use_the_fan_in_of_a_layer_that_changes_the_width():
    for init, expected_var in [("kaiming", 2 / 32), (0.5, 0.25 / 32)]:
        torch.manual_seed(0)
        weight = deep_mlp(3, width=256, in_features=32, init=init).hidden[0].transform.weight  # (256, 32)
        assert weight.var().item() == pytest.approx(expected_var, rel=0.05)


def test_batchnorm_lifts_a_vanishing_plain_net():
    without = norms_of(depth=30, activation="sigmoid")
    with_bn = norms_of(depth=30, activation="sigmoid", norm="batch")
    assert without[0] / without[-1] < 1e-10
    assert with_bn[0] / with_bn[-1] > 1e-2


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(depth=0), "depth must be a positive integer"),
        (dict(depth=2.5), "depth must be a positive integer"),
        (dict(depth=5, activation="gelu"), "'sigmoid', 'tanh', 'relu'"),
        (dict(depth=5, init="orthogonal"), "'default', 'xavier', 'kaiming'"),
        (dict(depth=5, init=-1.0), "positive finite"),
        (dict(depth=5, norm="layer"), "None or 'batch'"),
        (dict(depth=5, width=0), "width must be a positive integer"),
    ],
)
def test_invalid_arguments_name_the_valid_choices(options, message):
    with pytest.raises(ValueError, match=message):
        deep_mlp(**options)
    with pytest.raises(ValueError, match=message):
        deep_cnn(**options)


def test_cnn_shapes_and_norms():
    torch.manual_seed(0)
    net = deep_cnn(8, width=8, norm="batch", init="kaiming", residual=True)
    images, labels = torch.randn(4, 3, 16, 16), torch.randint(10, (4,))
    assert net(images).shape == (4, 10)
    norms = grad_norms(net, images, labels)
    assert len(norms) == 8 and all(v > 0 and math.isfinite(v) for v in norms)


def test_grad_norms_are_the_norms_of_the_weight_gradients_alone():
    torch.manual_seed(0)
    net = deep_mlp(4, activation="tanh", norm="batch")  # biases and BatchNorm parameters have gradients too
    x, y = batch(8)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    expected = [layer.transform.weight.grad.norm().item() for layer in net.hidden]
    assert grad_norms(net, x, y) == pytest.approx(expected, rel=1e-5)


def test_probe_layers_of_a_generic_model_are_its_layers_before_the_classifier():
    model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    assert probe_layers(model) == [model[0], model[2]]


def test_grad_norms_leave_no_gradients_behind_and_probe_generic_models():
    model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    assert len(probe_layers(model)) == 2  # the classifier is excluded
    norms = grad_norms(model, *batch())
    assert len(norms) == 2 and all(v > 0 for v in norms)
    assert all(p.grad is None for p in model.parameters())


def test_grad_norms_neither_count_nor_lose_gradients_already_accumulated():
    torch.manual_seed(0)
    net = deep_mlp(3)
    fresh = grad_norms(net, *batch())
    accumulated = {p: torch.full_like(p, 7.0) for p in net.parameters()}
    for p, grad in accumulated.items():
        p.grad = grad
    assert grad_norms(net, *batch()) == fresh  # this pass's gradients alone
    assert all(p.grad is accumulated[p] and torch.all(p.grad == 7.0) for p in net.parameters())


def test_grad_norms_leave_batchnorm_statistics_and_modes_as_they_were():
    torch.manual_seed(0)
    net = deep_cnn(4, norm="batch").train()
    net.hidden[1].eval()  # one module in another mode than the rest: kept too
    before = {key: value.clone() for key, value in net.state_dict().items()}
    grad_norms(net, torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    after = net.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # running statistics and counts untouched
    assert net.training and not net.hidden[1].training and net.hidden[2].training


def test_tiny_gradients_are_not_lost_to_float32_underflow_in_the_norm():
    layer = torch.nn.Linear(4, 4)
    layer.weight.grad = torch.full((4, 4), 1e-25)  # each square underflows in float32
    from resnet_lab.gradients import _weight_grad_norm

    assert _weight_grad_norm(layer) == pytest.approx(4e-25)


def test_resnets_are_probed_block_by_block():
    from resnet_lab.models import resnet20

    torch.manual_seed(0)
    model = resnet20()
    assert probe_layers(model) == model.blocks
    norms = grad_norms(model, torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))
    assert len(norms) == 9 and all(v > 0 and math.isfinite(v) for v in norms)
