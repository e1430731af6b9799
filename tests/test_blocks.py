"""resnet_lab.blocks and the notebook 02 checker."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab import checks, solutions
from resnet_lab.blocks import (
    BLOCKS,
    SHORTCUTS,
    BasicBlock,
    Bottleneck,
    PaddingShortcut,
    PlainBlock,
    PlainBottleneck,
    PreActBlock,
    branch_layers,
    he_init_,
)
from resnet_lab.models import cifar_resnet


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_he_init_sets_every_convolution_from_its_fan_out_and_nothing_else():
    torch.manual_seed(0)
    block = BasicBlock(32, 64, stride=2, shortcut="B", zero_init_residual=True)
    convolutions = ("conv1.weight", "conv2.weight", "downsample.0.weight")
    defaults = {name: p.clone() for name, p in block.named_parameters() if name not in convolutions}
    assert he_init_(block) is block
    for conv, fan_out in [(block.conv1, 64 * 9), (block.conv2, 64 * 9), (block.downsample[0], 64)]:
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.08)
    assert all(torch.equal(p, defaults[name]) for name, p in block.named_parameters() if name in defaults)
    assert torch.all(block.bn2.weight == 0)  # zero_init_residual survives


def branch_parameters(in_channels: int, out_channels: int) -> int:
    """Two 3x3 convs without bias and two BNs (weight + bias)."""
    return 9 * in_channels * out_channels + 9 * out_channels**2 + 4 * out_channels


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("in_channels, out_channels, stride", [(16, 16, 1), (16, 32, 2), (64, 128, 1)])
def test_output_shapes_and_gradients(name, shortcut, in_channels, out_channels, stride):
    block = BLOCKS[name](in_channels, out_channels, stride, shortcut)
    x = torch.randn(2, in_channels, 8, 8, requires_grad=True)
    out = block(x)
    assert out.shape == (2, out_channels, 8 // stride, 8 // stride)
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0


def test_parameter_counts_by_shortcut():
    projection = 16 * 32 + 2 * 32  # 1x1 conv + BN
    assert count(BasicBlock(16, 32, 2, "A")) == branch_parameters(16, 32)  # A adds nothing
    assert count(BasicBlock(16, 32, 2, "B")) == branch_parameters(16, 32) + projection
    assert count(BasicBlock(16, 16, 1, "B")) == branch_parameters(16, 16)  # B: only where the shape changes
    assert count(BasicBlock(16, 16, 1, "C")) == branch_parameters(16, 16) + 16 * 16 + 2 * 16  # C: everywhere
    assert count(PlainBlock(16, 32, 2, "C")) == count(BasicBlock(16, 32, 2, "A"))  # plain ignores the shortcut
    assert count(PaddingShortcut(16, 32, 2)) == 0


def test_bottleneck_at_the_papers_256_channel_example():
    block = Bottleneck(256, 256)
    assert (block.conv1.out_channels, block.conv2.out_channels, block.conv3.out_channels) == (64, 64, 256)
    assert count(block) == 256 * 64 + 9 * 64 * 64 + 64 * 256 + 2 * (64 + 64 + 256)
    assert block.conv2.stride == (1, 1)
    strided = Bottleneck(256, 512, 2)
    assert strided.conv2.stride == (2, 2) and strided.conv1.stride == (1, 1)  # torchvision v1.5
    paper = Bottleneck(256, 512, 2, stride_in_1x1=True)
    assert paper.conv1.stride == (2, 2) and paper.conv2.stride == (1, 1)


def test_shortcut_a_pads_zeros_and_subsamples():
    x = torch.randn(1, 4, 6, 6)
    out = PaddingShortcut(4, 6, 2)(x)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2]) and torch.count_nonzero(out[:, 4:]) == 0


def test_zero_init_basic_block_is_identity_on_non_negative_input():
    block = BasicBlock(16, 16, zero_init_residual=True).eval()
    x = torch.relu(torch.randn(2, 16, 8, 8))  # the output of the previous block's ReLU
    assert torch.equal(block(x), x)
    assert not torch.equal(BasicBlock(16, 16).eval()(x), x)


def test_zero_init_preact_block_is_identity_on_any_input():
    block = PreActBlock(16, 16, zero_init_residual=True).eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_preact_shortcut_takes_the_pre_activated_input(shortcut):
    # as in the "Identity Mappings" code: where the shape changes, the shortcut sees relu(bn1(x)), like the branch
    torch.manual_seed(0)
    block = PreActBlock(16, 32, 2, shortcut).eval()
    nn.init.zeros_(block.conv2.weight)  # the branch adds 0: the output is the shortcut's alone
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), block.downsample(torch.relu(block.bn1(x))))


def test_zero_init_preact_branch_still_learns_inside_a_network():
    # zeroing the last BN's scale instead would give every branch parameter a zero gradient, for good
    net = cifar_resnet(8, preact=True, zero_init_residual=True)
    blocks = [m for m in net.modules() if isinstance(m, PreActBlock)]
    assert all(torch.count_nonzero(b.conv2.weight) == 0 for b in blocks)  # the network's he_init_ kept them at 0
    F.cross_entropy(net(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(b.conv2.weight.grad.abs().sum() > 0 for b in blocks)


def test_zero_init_bottleneck_zeroes_its_last_bn():
    assert torch.count_nonzero(Bottleneck(64, 64, zero_init_residual=True).bn3.weight) == 0


def test_downsampling_block_cannot_be_the_identity():
    block = BasicBlock(16, 32, 2, zero_init_residual=True).eval()
    assert block(torch.relu(torch.randn(1, 16, 8, 8))).shape != (1, 16, 8, 8)


def test_torchvision_attribute_names():
    keys = set(BasicBlock(64, 128, 2, "B").state_dict())
    assert {"conv1.weight", "bn1.weight", "conv2.weight", "bn2.weight", "downsample.0.weight",
            "downsample.1.weight"} <= keys
    assert "conv3.weight" in Bottleneck(64, 256, 1, "B").state_dict()


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((16, 32, 3), "stride must be 1 or 2"),
        ((16, 32, 1, "D"), "shortcut must be one of"),
        ((32, 16, 1, "A"), "shortcut 'A' can only add channels"),
        ((0, 16), "in_channels must be a positive integer"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        BasicBlock(*arguments)


def test_plain_and_basic_blocks_are_siblings_with_the_same_layers():
    # torchvision's zero_init_residual loop; with PlainBlock a subclass of BasicBlock it zeroed every plain block
    plain = cifar_resnet(20, residual=False)
    for module in plain.modules():
        if isinstance(module, BasicBlock):
            nn.init.constant_(module.bn2.weight, 0)
    assert not isinstance(PlainBlock(16, 16), BasicBlock)
    assert all(torch.all(block.bn2.weight == 1) for block in plain.blocks)
    assert plain(torch.randn(4, 3, 16, 16)).std(0).sum() > 0  # zeroed, every image would give the same output
    for shortcut in SHORTCUTS:  # the twin's layers, names and signature are the basic block's (without its shortcut)
        keys = [key for key in BasicBlock(16, 32, 2, shortcut).state_dict() if not key.startswith("downsample")]
        assert list(PlainBlock(16, 32, 2, shortcut).state_dict()) == keys
    assert PlainBlock(16, 32, 2, "C").downsample is None


def test_plain_blocks_refuse_zero_init_and_bottlenecks_need_multiple_of_4():
    for plain in (PlainBlock, PlainBottleneck):
        with pytest.raises(ValueError, match="plain block"):
            plain(16, 16, zero_init_residual=True)
    for bottleneck in (Bottleneck, PlainBottleneck):
        with pytest.raises(ValueError, match="divisible by 4"):
            bottleneck(16, 18)


@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_plain_bottleneck_is_the_bottleneck_without_its_skip(stride_in_1x1):
    for shortcut in SHORTCUTS:  # the same layers and names as the bottleneck, without its shortcut
        keys = [key for key in Bottleneck(64, 128, 2, shortcut, stride_in_1x1=stride_in_1x1).state_dict()
                if not key.startswith("downsample")]
        assert list(PlainBottleneck(64, 128, 2, shortcut, stride_in_1x1=stride_in_1x1).state_dict()) == keys
    block = PlainBottleneck(64, 64, stride_in_1x1=stride_in_1x1).eval()
    with torch.no_grad():
        for bn in (block.bn1, block.bn2, block.bn3):  # statistics away from the identity
            bn.running_mean.uniform_(-1, 1)
            bn.bias.uniform_(-1, 1)
        layers = [block.conv1, block.bn1, nn.ReLU(), block.conv2, block.bn2, nn.ReLU(), block.conv3, block.bn3,
                  nn.ReLU()]
        x = torch.randn(2, 64, 8, 8)
        assert torch.equal(block(x), nn.Sequential(*layers)(x))
    assert count(block) == count(Bottleneck(64, 64, shortcut="A"))


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("shortcut", SHORTCUTS)
def test_branch_layers_are_every_parametrised_layer_but_the_shortcut_in_forward_order(name, shortcut):
    block = BLOCKS[name](64, 128, 2, shortcut)
    branch = branch_layers(block)
    in_shortcut = set() if block.downsample is None else set(block.downsample.parameters())
    in_branch = [p for layer in branch for p in layer.parameters()]
    assert len(set(in_branch)) == len(in_branch)  # no layer twice
    assert set(in_branch) | in_shortcut == set(block.parameters())
    assert not set(in_branch) & in_shortcut
    called = []  # the order forward runs them in
    for layer in branch:
        layer.register_forward_hook(lambda module, _inputs, _output: called.append(module))
    block(torch.randn(1, 64, 8, 8))
    assert called == branch


def test_branch_layers_refuse_an_unknown_block():
    with pytest.raises(TypeError, match="no residual branch known for a Linear"):
        branch_layers(nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------- check_basic_block


class Mistake(nn.Module):
    """A basic block with one switchable mistake; every switch off is a correct shortcut-A/B block."""

    def __init__(self, in_channels, out_channels, stride=1, *, projection=False, relu_before_add=False, no_bn=False,
                 stride_on_second=False, no_shape_change_in_shortcut=False, no_shortcut=False, bias=False):
        super().__init__()
        s1, s2 = (1, stride) if stride_on_second else (stride, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, s1, 1, bias=bias)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, s2, 1, bias=bias)
        self.bn1 = nn.Identity() if no_bn else nn.BatchNorm2d(out_channels)
        self.bn2 = nn.Identity() if no_bn else nn.BatchNorm2d(out_channels)
        self.projection = None
        if projection and (stride != 1 or in_channels != out_channels):
            self.projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.stride, self.extra = stride, out_channels - in_channels
        self.flags = dict(relu_before_add=relu_before_add, keep_shape=no_shape_change_in_shortcut,
                          no_shortcut=no_shortcut)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.flags["no_shortcut"]:
            return F.relu(out)
        if self.projection is not None:
            identity = self.projection(x)
        elif self.flags["keep_shape"]:
            identity = x
        else:
            identity = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
        if self.flags["relu_before_add"]:
            return F.relu(out) + identity
        return F.relu(out + identity)


def block_with(**flags):
    def make(in_channels, out_channels, stride=1):
        return Mistake(in_channels, out_channels, stride, **flags)

    make.__name__ = "MyBasicBlock"
    return make


@pytest.mark.parametrize("candidate", [solutions.BasicBlockA, block_with(), block_with(projection=True),
                                       lambda i, o, s=1: BasicBlock(i, o, s, "B")])
def test_checker_accepts_correct_blocks(candidate):
    assert checks.check_basic_block(candidate, strict=True)


@pytest.mark.parametrize(
    "flags, hint",
    [
        (dict(relu_before_add=True), "ReLU after the addition"),
        (dict(no_bn=True), "no BatchNorm"),
        (dict(stride_on_second=True), "first 3x3"),
        (dict(no_shape_change_in_shortcut=True), "When the shape changes the shortcut must change it too"),
        (dict(no_shortcut=True), "no shortcut"),
        (dict(bias=True), "bias=False"),
    ],
)
def test_checker_rejects_each_mistake_with_its_own_hint(flags, hint, capsys):
    assert checks.check_basic_block(block_with(**flags)) is False
    assert hint in capsys.readouterr().out


def test_checker_convention_for_stubs():
    def stub(*args):
        raise NotImplementedError

    assert checks.check_basic_block(stub) is False
    with pytest.raises(AssertionError, match="not attempted"):
        checks.check_basic_block(stub, strict=True)
