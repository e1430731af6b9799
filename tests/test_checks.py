"""resnet_lab.checks: every checker accepts its reference solution and rejects typical mistakes with a hint."""

import math

import pytest
import torch

from resnet_lab import checks, solutions


def not_attempted(*args):
    raise NotImplementedError


def test_reference_solutions_pass(capsys):
    assert checks.check_init_std(solutions.init_std, strict=True) is True
    assert checks.check_input_gradient(solutions.input_gradient, strict=True) is True
    assert capsys.readouterr().out.count("PASS") == 2


@pytest.mark.parametrize("checker", [checks.check_init_std, checks.check_input_gradient])
def test_unattempted_stub_prints_and_returns_false(checker, capsys):
    assert checker(not_attempted) is False
    assert "not attempted yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="not attempted yet"):
        checker(not_attempted, strict=True)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda fan_in, activation: math.sqrt(1 / fan_in), "factor 2"),
        (lambda fan_in, activation: math.sqrt(2 / fan_in), "no factor 2 for tanh"),
        (lambda fan_in, activation: (2 if activation == "relu" else 1) / fan_in, "variance"),
        (lambda fan_in, activation: 1 / fan_in, "variance"),
        (lambda fan_in, activation: 0.01, "expected"),
        (lambda fan_in, activation: "0.1", "return a float"),
        (lambda fan_in: 0.1, "raised TypeError"),
    ],
)
def test_init_std_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_init_std(wrong) is False
    assert hint in capsys.readouterr().out
    with pytest.raises(AssertionError, match=hint):
        checks.check_init_std(wrong, strict=True)


def weights_only(weights, x, grad_output):
    g = grad_output
    for w in reversed(weights):
        g = w.T @ g
    return g


def no_transpose(weights, x, grad_output):
    g = grad_output
    for w in reversed(weights):
        g = w @ g
    return g


def tanh_instead_of_derivative(weights, x, grad_output):
    hs, h = [], x
    for w in weights:
        h = torch.tanh(w @ h)
        hs.append(h)
    g = grad_output
    for w, h in zip(reversed(weights), reversed(hs)):
        g = w.T @ (h * g)
    return g


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (weights_only, "weights only"),
        (no_transpose, "transpose"),
        (tanh_instead_of_derivative, "differ from autograd"),
        (lambda weights, x, grad_output: x, "differ from autograd"),
        (lambda weights, x, grad_output: grad_output, "shape of x"),
        (lambda weights, x, grad_output: [0.0], "return a tensor"),
    ],
)
def test_input_gradient_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_input_gradient(wrong) is False
    assert hint in capsys.readouterr().out


def cifar_count_without_batchnorm(n):
    return solutions.cifar_param_count(n) - (2 * 16 + n * 4 * (16 + 32 + 64))


def cifar_count_same_width_blocks(n):
    def block(c):
        return 18 * c * c + 4 * c

    return 464 + n * (block(16) + block(32) + block(64)) + 650


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (cifar_count_without_batchnorm, "BatchNorm parameters"),
        (lambda n: solutions.cifar_param_count(n) - 10, "classifier's bias"),
        (lambda n: solutions.cifar_param_count(n) - 650, "classifier Linear(64, 10)"),
        (lambda n: solutions.cifar_param_count(n) - 464, "the stem"),
        (cifar_count_same_width_blocks, "first block of stages 2 and 3"),
        (lambda n: 270_000, "the network has"),
        (lambda n: 2.5e5, "return an int"),
    ],
)
def test_cifar_param_count_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_cifar_param_count(wrong) is False
    assert hint in capsys.readouterr().out


def test_cifar_param_count_reference_and_stub(capsys):
    assert checks.check_cifar_param_count(solutions.cifar_param_count, strict=True)
    assert checks.check_cifar_param_count(not_attempted) is False
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda images, flip: images.flip(-1), "you flipped every image"),
        (lambda images, flip: torch.where(flip[:, None, None, None], images.flip(-2), images), "vertical"),
        (lambda images, flip: torch.where(~flip[:, None, None, None], images.flip(-1), images), "check the mask"),
        (lambda images, flip: images, "some images differ"),
        (lambda images, flip: images[0], "input's shape"),
    ],
)
def test_batch_flip_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_batch_flip(wrong) is False
    assert hint in capsys.readouterr().out


def test_batch_flip_reference():
    assert checks.check_batch_flip(solutions.flip_batch, strict=True)


def test_batch_flip_in_place_is_refused(capsys):
    def in_place(images, flip):
        images[flip] = images[flip].flip(-1)
        return images

    assert checks.check_batch_flip(in_place) is False
    assert "in place" in capsys.readouterr().out
