"""resnet_lab.checks: every checker accepts its reference solution and rejects typical mistakes with a hint."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab import checks, solutions
from resnet_lab.blocks import BasicBlock


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
        (lambda fan_in, activation: 2 / math.sqrt(fan_in), "zeroes half the units"),  # the fallback: the ReLU half
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


def test_cifar_param_count_reference_and_stub(capsys):
    assert checks.check_cifar_param_count(solutions.cifar_param_count, strict=True)
    assert checks.check_cifar_param_count(not_attempted) is False
    assert "not attempted" in capsys.readouterr().out


def test_cifar_param_count_compares_every_depth_not_only_the_first(capsys):
    def ignores_n(n):
        return solutions.cifar_param_count(1)  # right for ResNet-8 alone

    assert checks.check_cifar_param_count(ignores_n) is False
    assert "n=2" in capsys.readouterr().out


def test_batch_flip_reference():
    assert checks.check_batch_flip(solutions.flip_batch, strict=True)


def test_batch_flip_in_place_is_refused(capsys):
    def in_place(images, flip):
        images[flip] = images[flip].flip(-1)
        return images

    assert checks.check_batch_flip(in_place) is False
    assert "in place" in capsys.readouterr().out


# ------------------------------------------------------------------------------ fixes found in review


def input_gradient_in_float64(weights, x, grad_output):
    activations, h = [], x.double()
    for w in weights:
        h = torch.tanh(w.double() @ h)
        activations.append(h)
    g = grad_output.double()
    for w, h in zip(reversed(weights), reversed(activations)):
        g = w.double().T @ ((1 - h**2) * g)
    return g


def tanh_network(weights, x):
    h = x
    for w in weights:
        h = torch.tanh(w @ h)
    return h


def autograd_grad(weights, x, grad_output):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(tanh_network(weights, x), x, grad_output)[0]


def autograd_backward(weights, x, grad_output):
    x = x.clone().requires_grad_(True)
    tanh_network(weights, x).backward(grad_output)
    return x.grad


def autograd_enabled_again(weights, x, grad_output):
    with torch.enable_grad():
        return autograd_grad(weights, x, grad_output)


def test_input_gradient_accepts_float64(capsys):
    assert checks.check_input_gradient(input_gradient_in_float64, strict=True) is True
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [autograd_grad, autograd_backward, autograd_enabled_again])
def test_input_gradient_refuses_autograd(wrong, capsys):
    assert checks.check_input_gradient(wrong) is False
    assert "Compute the Jacobian product yourself" in capsys.readouterr().out


class BlockLayers(nn.Module):
    """The layers of a shortcut-A basic block; subclasses write the forward pass."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra = stride, out_channels - in_channels

    def shortcut(self, x):
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))


class SkipOnlyWithoutShapeChange(BlockLayers):
    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if out.shape == x.shape else torch.zeros_like(out)
        return F.relu(out + identity)


class BatchNormAfterAddition(BlockLayers):
    def forward(self, x):
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        return F.relu(self.bn2(out + self.shortcut(x)))


class BatchNormAfterReLU(BlockLayers):
    def forward(self, x):
        out = self.bn1(F.relu(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class BatchNormAfterInPlaceReLU(BlockLayers):
    def forward(self, x):
        out = self.bn1(F.relu(self.conv1(x), inplace=True))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ShortcutOnOddPixels(BlockLayers):
    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = self.stride
        return F.relu(out + F.pad(x[:, :, s - 1 :: s, s - 1 :: s], (0, 0, 0, 0, 0, self.extra)))


class BatchNormWithoutRunningStatistics(BlockLayers):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels, track_running_stats=False)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ProjectionFirst(nn.Module):
    """Correct, written differently: shortcut B computed first, Sequential branch, in-place ReLU and addition."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        identity = self.shortcut(x)
        out = self.branch(x)
        out += identity
        return F.relu(out, inplace=True)


class SumFirst(BlockLayers):
    def forward(self, x):
        return F.relu(self.shortcut(x) + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


@pytest.mark.parametrize("candidate", [ProjectionFirst, SumFirst])
def test_basic_block_accepts_other_correct_writings(candidate):
    assert checks.check_basic_block(candidate, strict=True) is True


def flip_with_a_loop(images, flip):
    out = images.clone()
    for i in range(len(images)):
        if flip[i]:
            out[i] = images[i].flip(-1)
    return out


def flip_by_float_mask(images, flip):
    mask = flip[:, None, None, None].float()
    return images * (1 - mask) + images.flip(-1) * mask


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (flip_with_a_loop, "no Python loop over the batch"),
        (lambda images, flip: torch.stack([im.flip(-1) if f else im for im, f in zip(images, flip)]), "no Python loop"),
        (flip_by_float_mask, "return the images' dtype, torch.uint8, not torch.float32"),
    ],
)
def test_batch_flip_refuses_loops_and_float_results(wrong, hint, capsys):
    assert checks.check_batch_flip(wrong) is False
    assert hint in capsys.readouterr().out


def flip_by_indexing(images, flip):
    out = images.clone()
    out[flip] = images[flip].flip(-1)
    return out


@pytest.mark.parametrize(
    "candidate",
    [flip_by_indexing, lambda images, flip: flip_by_float_mask(images, flip).round().to(images.dtype)],
)
def test_batch_flip_accepts_other_batched_answers(candidate):
    assert checks.check_batch_flip(candidate, strict=True) is True


def filter_normalize_in_float64(direction, model):
    result = {}
    for name, weight in model.named_parameters():
        d, w = direction[name].double(), weight.detach().double()
        if w.dim() == 1:
            result[name] = torch.zeros_like(d)
        else:
            scale = w.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
            result[name] = d * scale.view(-1, *[1] * (d.dim() - 1))
    return result


def filter_normalize_in_place(direction, model):
    for name, weight in model.named_parameters():
        d = direction[name]
        if weight.dim() == 1:
            d.zero_()
        else:
            d.mul_((weight.detach().flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)).view(-1, *[1] * (d.dim() - 1)))
    return direction


def filter_normalize_into_the_input(direction, model):
    direction.update(solutions.filter_normalize(direction, model))
    return direction


def test_filter_normalize_accepts_float64(capsys):
    assert checks.check_filter_normalize(filter_normalize_in_float64, strict=True) is True
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [filter_normalize_in_place, filter_normalize_into_the_input])
def test_filter_normalize_refuses_changing_its_input(wrong, capsys):
    assert checks.check_filter_normalize(wrong) is False
    assert "you changed the direction you were given" in capsys.readouterr().out


# ------------------------------------------------------------------------------ second review


def init_std_with_pytorch_tanh_gain(fan_in, activation):
    return nn.init.calculate_gain(activation) / math.sqrt(fan_in)


def test_init_std_pytorch_tanh_gain_gets_its_hint(capsys):
    assert checks.check_init_std(init_std_with_pytorch_tanh_gain) is False
    out = capsys.readouterr().out
    assert "calculate_gain('tanh')" in out and "linear near 0" in out


def test_init_std_accepts_numpy_floats():
    import numpy as np

    assert checks.check_init_std(lambda fan_in, activation: np.float32(solutions.init_std(fan_in, activation)),
                                 strict=True)
    assert checks.check_init_std(lambda fan_in, activation: np.sqrt((2 if activation == "relu" else 1) / fan_in),
                                 strict=True)


def input_gradient_by_func_vjp(weights, x, grad_output):
    return torch.func.vjp(lambda x: tanh_network(weights, x), x)[1](grad_output)[0]


def input_gradient_by_func_jacrev(weights, x, grad_output):
    return torch.func.jacrev(lambda x: tanh_network(weights, x))(x).T @ grad_output


def input_gradient_by_func_jacfwd(weights, x, grad_output):
    return torch.func.jacfwd(lambda x: tanh_network(weights, x))(x).T @ grad_output


def input_gradient_leaving_inference_mode(weights, x, grad_output):
    with torch.inference_mode(False):
        return autograd_backward([w.clone() for w in weights], x.clone(), grad_output.clone())


def input_gradient_by_autograd_functional(weights, x, grad_output):
    return torch.autograd.functional.jacobian(lambda x: tanh_network(weights, x), x).T @ grad_output


@pytest.mark.parametrize("wrong", [input_gradient_by_func_vjp, input_gradient_by_func_jacrev,
                                   input_gradient_by_func_jacfwd, input_gradient_leaving_inference_mode,
                                   input_gradient_by_autograd_functional])
def test_input_gradient_refuses_func_transforms_and_leaving_inference_mode(wrong, capsys):
    assert checks.check_input_gradient(wrong) is False
    assert "Compute the Jacobian product yourself" in capsys.readouterr().out


def test_cifar_param_count_accepts_numpy_integers():
    import numpy as np

    assert checks.check_cifar_param_count(lambda n: np.int64(solutions.cifar_param_count(n)), strict=True)
    assert checks.check_cifar_param_count(lambda n: np.sum([solutions.cifar_param_count(n)]), strict=True)


def cifar_count_with_running_statistics(n):
    batchnorm_channels = 16 + 2 * n * (16 + 32 + 64)
    return solutions.cifar_param_count(n) + 2 * batchnorm_channels  # running mean and variance: 2C more per BN


def cifar_count_with_every_buffer(n):
    return cifar_count_with_running_statistics(n) + 1 + 6 * n  # and each BatchNorm's num_batches_tracked


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
        (lambda n: solutions.cifar_param_count(n) - 32, "the stem's BatchNorm"),
        (lambda n: solutions.cifar_param_count(n) - 432, "the stem's 3x3 conv"),
        (cifar_count_with_running_statistics, "running mean and variance are buffers"),
        (cifar_count_with_every_buffer, "running mean and variance are buffers"),
        (lambda n: solutions.cifar_param_count(n) - 7, "7 short"),
        (lambda n: solutions.cifar_param_count(n) + 7, "7 too many"),
        (lambda n: float(solutions.cifar_param_count(n)), "return an int"),
        (lambda n: True, "return an int"),
    ],
)
def test_cifar_param_count_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_cifar_param_count(wrong) is False
    assert hint in capsys.readouterr().out


class BlockLayersForward(BlockLayers):
    """A correct shortcut-A block; subclasses change its shortcut or a BatchNorm."""

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class ShortcutOnlyWithStride(BlockLayersForward):
    """The source article's bug: the shortcut changes the width only together with a stride."""

    def shortcut(self, x):
        return super().shortcut(x) if self.stride != 1 else x


class ShortcutAlwaysHalves(BlockLayersForward):
    """Hard-codes the stride-2 subsampling whenever the shape changes."""

    def shortcut(self, x):
        if self.stride == 1 and self.extra == 0:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))


class ShortcutSubsamplesOnlyWithWidthChange(BlockLayersForward):
    """A stride-2 block that keeps the width gets the unchanged input as its shortcut."""

    def shortcut(self, x):
        return super().shortcut(x) if self.extra else x


class ProjectionEverywhere(BlockLayersForward):
    """A correct option-C block: a 1x1 projection + BatchNorm in every block."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                        nn.BatchNorm2d(out_channels))

    def shortcut(self, x):
        return self.projection(x)


class KerasBatchNormEps(BlockLayersForward):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=1e-3)


class KerasBatchNormMomentum(BlockLayersForward):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=0.99)


class ShortcutDuplicatesChannels(BlockLayersForward):
    """Fills the new channels with a copy of the input instead of zeros."""

    def shortcut(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return torch.cat([x, x[:, : self.extra]], 1)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (BatchNormWithoutRunningStatistics, "track_running_stats=True"),
        (SkipOnlyWithoutShapeChange, "16 -> 32, stride 2 block when the 3x3 weights are zero: it has no shortcut"),
        (BatchNormAfterAddition, "before the addition"),
        (BatchNormAfterReLU, "BatchNorm comes after a ReLU"),
        (BatchNormAfterInPlaceReLU, "BatchNorm comes after a ReLU"),
        (ShortcutOnOddPixels, "check the shortcut"),
        (ShortcutOnlyWithStride, "16 -> 32 channels and stride 1"),
        (ShortcutOnlyWithStride, "the article's 64 -> 128 case"),
        (ShortcutAlwaysHalves, "the width changes without a stride"),
        (ShortcutSubsamplesOnlyWithWidthChange, "the map halves while the width stays"),
        (ProjectionEverywhere, "option C"),
        (KerasBatchNormEps, "eps=0.001"),
        (KerasBatchNormEps, "Keras"),
        (KerasBatchNormMomentum, "1 minus Keras'"),
        (ShortcutDuplicatesChannels, "check the shortcut"),
    ],
)
def test_basic_block_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_basic_block(wrong) is False
    assert hint in capsys.readouterr().out


class ZeroChannelsFirst(BlockLayersForward):
    def shortcut(self, x):
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.extra, 0))


class ZeroChannelsOnBothSides(BlockLayersForward):
    """Like akamaster/pytorch_resnet_cifar10's option A, but with the block's own stride and width change."""

    def shortcut(self, x):
        front = self.extra // 2
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, front, self.extra - front))


class ProjectionThenSubsample(BlockLayersForward):
    """Option B as bn(conv1x1(x)[:, :, ::2, ::2]): the same as a stride-2 1x1 convolution."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.projection = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.projection_bn = nn.BatchNorm2d(out_channels)

    def shortcut(self, x):
        if self.projection is None:
            return x
        return self.projection_bn(self.projection(x)[:, :, :: self.stride, :: self.stride])


@pytest.mark.parametrize("candidate", [ZeroChannelsFirst, ZeroChannelsOnBothSides, ProjectionThenSubsample,
                                       lambda i, o, s=1: BasicBlock(i, o, s, "A"), solutions.BasicBlockA])
def test_basic_block_accepts_equivalent_shortcuts(candidate, capsys):
    assert checks.check_basic_block(candidate, strict=True) is True


def test_basic_block_pass_message_calls_the_zero_channel_placement_a_convention(capsys):
    assert checks.check_basic_block(ZeroChannelsOnBothSides, strict=True)
    assert "convention" in capsys.readouterr().out


# ------------------------------------------------------------------------------ learner review


class ShortcutPadsSixteen(BlockLayersForward):
    """Zero-padding written for 16 -> 32 only: always 16 new channels."""

    def shortcut(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, 16)) if self.extra else x


class FunctionalLayers(nn.Module):
    """A correct shortcut-A block written with F.conv2d and F.batch_norm and parameters of its own."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3) * (2 / (9 * in_channels)) ** 0.5)
        self.w2 = nn.Parameter(torch.randn(out_channels, out_channels, 3, 3) * (2 / (9 * out_channels)) ** 0.5)
        self.g1, self.b1 = nn.Parameter(torch.ones(out_channels)), nn.Parameter(torch.zeros(out_channels))
        self.g2, self.b2 = nn.Parameter(torch.ones(out_channels)), nn.Parameter(torch.zeros(out_channels))
        for i in (1, 2):
            self.register_buffer(f"mean{i}", torch.zeros(out_channels))
            self.register_buffer(f"var{i}", torch.ones(out_channels))
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x):
        out = F.conv2d(x, self.w1, stride=self.stride, padding=1)
        out = F.relu(F.batch_norm(out, self.mean1, self.var1, self.g1, self.b1, self.training))
        out = F.batch_norm(F.conv2d(out, self.w2, padding=1), self.mean2, self.var2, self.g2, self.b2, self.training)
        return F.relu(out + F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra)))


class FunctionalBatchNorm(BlockLayers):
    """nn.Conv2d modules, but F.batch_norm with bn1's and bn2's tensors."""

    def forward(self, x):
        def norm(bn, t):
            return F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, self.training)

        out = norm(self.bn2, self.conv2(F.relu(norm(self.bn1, self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ReassignsInput(BlockLayers):
    """Shortcut A fed the branch's tensor: x is reassigned in forward."""

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(x))
        return F.relu(out + self.shortcut(x))


class ProjectionBlock(nn.Module):
    """Shortcut B: a projection where the shape changes, the identity elsewhere."""

    def __init__(self, in_channels, out_channels, stride=1, always_project=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Identity()
        if self.changes_shape or always_project:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))


class ReassignsInputB(ProjectionBlock):
    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)) + x)


class ProjectionCreatedEverywhereUsedWhereNeeded(ProjectionBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride, always_project=True)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.shortcut(x) if self.changes_shape else x))


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (ShortcutPadsSixteen, "32 -> 64 channels and stride 2 the forward pass fails"),
        (ShortcutPadsSixteen, "a number computed from the arguments"),
        (FunctionalLayers, "finds the layers by their module type"),
        (FunctionalLayers, "F.conv2d and F.batch_norm"),
        (FunctionalBatchNorm, "build the block from nn.Conv2d and nn.BatchNorm2d modules"),
        (ReassignsInput, "did you reassign x in forward"),
        (ReassignsInputB, "did you reassign x in forward"),
        (ProjectionCreatedEverywhereUsedWhereNeeded, "288 parameters in modules its forward never calls"),
    ],
)
def test_basic_block_learner_review_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_basic_block(wrong) is False
    assert hint in capsys.readouterr().out


def forward_activations(weights, x):
    hs = [x]
    for w in weights:
        hs.append(torch.tanh(w @ hs[-1]))
    return hs


def slope_at_layer_input(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for layer in reversed(range(len(weights))):
        g = weights[layer].T @ ((1 - hs[layer] ** 2) * g)
    return g


def slope_after_transpose(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for layer in reversed(range(len(weights))):
        g = (weights[layer].T @ g) * (1 - hs[layer] ** 2)
    return g


def layers_in_forward_order(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for layer in range(len(weights)):
        g = weights[layer].T @ ((1 - hs[layer + 1] ** 2) * g)
    return g


def column_vectors_with_mm(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for w, h in zip(reversed(weights), reversed(hs[1:])):
        g = torch.mm(w.T, (1 - h**2) * g)
    return g


def slope_at_pre_activation(weights, x, grad_output):
    zs, h = [], x
    for w in weights:
        zs.append(w @ h)
        h = torch.tanh(zs[-1])
    g = grad_output
    for w, z in zip(reversed(weights), reversed(zs)):
        g = w.T @ ((1 - z**2) * g)
    return g


def without_slope_of_layer(skipped):
    def input_gradient(weights, x, grad_output):
        hs, g = forward_activations(weights, x), grad_output
        for layer in reversed(range(len(weights))):
            slope = 1 if layer == skipped else 1 - hs[layer + 1] ** 2
            g = weights[layer].T @ (slope * g)
        return g

    return input_gradient


def slope_without_transpose(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for w, h in zip(reversed(weights), reversed(hs[1:])):
        g = w @ ((1 - h**2) * g)
    return g


def sigmoid_slope(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for w, h in zip(reversed(weights), reversed(hs[1:])):
        g = w.T @ (h * (1 - h) * g)
    return g


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (slope_at_layer_input, "shifted by one layer"),
        (slope_after_transpose, "shifted by one layer"),
        (layers_in_forward_order, "from the first to the last"),
        (column_vectors_with_mm, "x and grad_output are 1-d vectors"),
        (slope_at_pre_activation, "at the pre-activation z_l"),
        (without_slope_of_layer(0), "the first layer's slope is missing"),
        (without_slope_of_layer(2), "the last layer's slope is missing"),
        (slope_without_transpose, "the transpose is missing"),
    ],
)
def test_input_gradient_learner_review_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_input_gradient(wrong) is False
    out = capsys.readouterr().out
    assert hint in out
    if wrong is not slope_without_transpose:  # a shape error used to be blamed on a missing transpose, always
        assert "transpose" not in out


def test_input_gradient_fallback_hint_does_not_give_the_solution_away(capsys):
    assert checks.check_input_gradient(sigmoid_slope) is False
    out = capsys.readouterr().out
    assert "differ from autograd" in out and "tanh's slope" in out
    assert "W_l.T @" not in out


def channels_by_fliplr(images, flip):
    return torch.where(flip[:, None, None, None], torch.fliplr(images), images)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda images, flip: images.flip(-1), "you flipped every image"),
        (lambda images, flip: torch.where(flip[:, None, None, None], images.flip(-2), images), "vertical"),
        (lambda images, flip: torch.where(~flip[:, None, None, None], images.flip(-1), images), "check the mask"),
        (lambda images, flip: images, "some images differ"),
        (lambda images, flip: images[0], "input's shape"),
        (channels_by_fliplr, "torch.fliplr reverses dim 1"),
        (lambda images, flip: torch.where(flip[:, None, None, None], images.flip(1), images), "dim 1, the channels"),
        (lambda images, flip: torch.where(flip[:, None, None, None], images.flip(0), images), "dim 0, the order"),
        (lambda images, flip: torch.where(flip[:, None, None, None], images[..., ::-1], images),
         "no negative slicing steps"),
        (lambda images, flip: torch.where(flip[:, None], images.flip(-1), images), "a broadcasting error"),
    ],
)
def test_batch_flip_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_batch_flip(wrong) is False
    assert hint in capsys.readouterr().out


def filter_normalize_by_tensor_norm(direction, model):
    result = {}
    for name, weight in model.named_parameters():
        d, w = direction[name], weight.detach()
        dims = tuple(range(1, d.dim()))
        result[name] = d / d.norm(dim=dims, keepdim=True) * w.norm(dim=dims, keepdim=True) if dims else 0 * d
    return result


def filter_normalize_swapped(direction, model):
    result = {}
    for name, weight in model.named_parameters():
        d, w = direction[name], weight.detach()
        shape = (-1, *[1] * (d.dim() - 1))
        result[name] = (w / w.flatten(1).norm(dim=1).view(shape) * d.flatten(1).norm(dim=1).view(shape)
                        if d.dim() > 1 else torch.zeros_like(d))
    return result


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (filter_normalize_by_tensor_norm, "d.flatten(1).norm(dim=1)"),
        (filter_normalize_swapped, "did you swap the two"),
    ],
)
def test_filter_normalize_learner_review_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_filter_normalize(wrong) is False
    assert hint in capsys.readouterr().out


def cifar_count_with_conv_biases(n):
    return solutions.cifar_param_count(n) + 16 + 2 * n * (16 + 32 + 64)


def cifar_count_with_one_parameter_per_batchnorm_channel(n):
    return solutions.cifar_param_count(n) - (16 + 2 * n * (16 + 32 + 64))


def cifar_count_with_classifier_from_16_channels(n):
    return solutions.cifar_param_count(n) - 650 + 16 * 10 + 10  # 480 short: the BatchNorms' size at n = 1 only


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (cifar_count_with_conv_biases, "conv biases"),
        (cifar_count_with_one_parameter_per_batchnorm_channel, "half the BatchNorm parameters"),
        (cifar_count_with_classifier_from_16_channels, "you are 480 short"),
    ],
)
def test_cifar_param_count_diagnoses_hold_for_every_n(wrong, hint, capsys):
    assert checks.check_cifar_param_count(wrong) is False
    out = capsys.readouterr().out
    assert hint in out and "exactly the BatchNorm parameters" not in out


# ------------------------------------------------------- mistakes found by driving the checkers with wrong answers


def slope_after_by_precedence(weights, x, grad_output):
    hs, g = forward_activations(weights, x), grad_output
    for layer in reversed(range(len(weights))):
        g = weights[layer].T @ g * (1 - hs[layer + 1] ** 2)  # read as (W.T @ g) * s
    return g


def unrolled_for_three_layers(weights, x, grad_output):
    w1, w2, w3 = weights
    h1 = torch.tanh(w1 @ x)
    h2 = torch.tanh(w2 @ h1)
    h3 = torch.tanh(w3 @ h2)
    g = w3.T @ ((1 - h3**2) * grad_output)
    g = w2.T @ ((1 - h2**2) * g)
    return w1.T @ ((1 - h1**2) * g)


def first_three_layers_only(weights, x, grad_output):
    return solutions.input_gradient(weights[:3], x, grad_output)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (slope_after_by_precedence, "the same precedence"),
        (unrolled_for_three_layers, "not for one of 1 layer (it raised ValueError"),
        (first_three_layers_only, "right for a network of 3 layers, but not for one of"),
    ],
)
def test_input_gradient_precedence_and_fixed_depth_get_their_hint(wrong, hint, capsys):
    assert checks.check_input_gradient(wrong) is False
    out = capsys.readouterr().out
    assert hint in out and "shifted by one layer" not in out


class NoFinalReLU(BlockLayersForward):
    def forward(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x)


class ProjectionWithoutBatchNorm(ProjectionBlock):
    """Option B as the paper's Eq. 2, W_s x: a 1x1 convolution and no BatchNorm."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if self.changes_shape:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class ProjectionWithBias(ProjectionWithoutBatchNorm):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if self.changes_shape:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride),
                                          nn.BatchNorm2d(out_channels))


class KeywordOnlyStride(BlockLayersForward):
    def __init__(self, in_channels, out_channels, *, stride=1):
        super().__init__(in_channels, out_channels, stride)


class BatchNormWithoutChannels(BlockLayersForward):
    """The right signature, and a TypeError from inside __init__: nn.BatchNorm2d() without its channel count."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d()


def test_a_type_error_inside_init_is_not_blamed_on_the_signature(capsys):
    assert checks.check_basic_block(BatchNormWithoutChannels) is False
    out = capsys.readouterr().out
    assert "num_features" in out and "third positional argument" not in out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (NoFinalReLU, "the ReLU after the addition is missing"),
        (ProjectionWithoutBatchNorm, "your projection has no BatchNorm"),
        (ProjectionWithBias, "need no bias (bias=False), the 1x1 projection included"),
        (KeywordOnlyStride, "KeywordOnlyStride(16, 16, 1) failed: TypeError"),
        (KeywordOnlyStride, "the stride as the third positional argument"),
    ],
)
def test_basic_block_relu_projection_and_signature_mistakes_get_their_hint(wrong, hint, capsys):
    assert checks.check_basic_block(wrong) is False
    out = capsys.readouterr().out
    assert hint in out and "not to the branch before it" not in out


def cifar_count_both_first_block_convs_change_width(n):
    return solutions.cifar_param_count(n) - 9 * (32 * 32 - 16 * 32) - 9 * (64 * 64 - 32 * 64)


def cifar_count_by_building_the_model(n):
    from resnet_lab.models import cifar_resnet

    return sum(p.numel() for p in cifar_resnet(6 * n + 2).parameters())


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (cifar_count_both_first_block_convs_change_width, "its second conv already works at the new width"),
        (cifar_count_by_building_the_model, "without building a model"),
    ],
)
def test_cifar_param_count_first_block_slip_and_building_the_model_get_their_hint(wrong, hint, capsys):
    assert checks.check_cifar_param_count(wrong) is False
    assert hint in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda images, flip: torch.where(flip[:, None, None, None], images.transpose(-1, -2), images),
         "swaps their height and width"),
        (lambda images, flip: torch.where(flip[:, None, None], images.flip(-1), images), "(N, 1, 1, 1)"),
    ],
)
def test_batch_flip_broadcasting_errors_are_told_apart(wrong, hint, capsys):
    assert checks.check_batch_flip(wrong) is False
    assert hint in capsys.readouterr().out


def filter_normalize_by_linalg_norm(direction, model):
    result = {}
    for name, weight in model.named_parameters():
        d, w = direction[name], weight.detach()
        dims = tuple(range(1, d.dim()))
        result[name] = (d / torch.linalg.norm(d, dim=dims, keepdim=True) * torch.linalg.norm(w, dim=dims, keepdim=True)
                        if dims else torch.zeros_like(d))
    return result


def test_filter_normalize_linalg_norm_over_three_dims_gets_the_vector_norm_hint(capsys):
    assert checks.check_filter_normalize(filter_normalize_by_linalg_norm) is False
    out = capsys.readouterr().out
    assert "torch.linalg.norm with dim computes" in out and "vector_norm(d, dim=(1, 2, 3)" in out


@pytest.mark.parametrize("run", [
    lambda: checks.check_basic_block(solutions.BasicBlockA),
    lambda: checks.check_cifar_param_count(solutions.cifar_param_count),
    lambda: checks.check_basic_block(lambda *args: torch.nn.Linear(*args[:2])),  # a failing attempt
], ids=["basic_block", "cifar_param_count", "failing"])
def test_a_check_leaves_the_notebooks_random_numbers_as_they_were(run, capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run()  # seeds, builds models and draws weights of its own
    assert torch.equal(torch.rand(3), expected)
