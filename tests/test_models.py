"""resnet_lab.models against its oracles: the paper's parameter counts (Table 6) and torchvision's ResNets."""

import importlib
import importlib.metadata
import math

import pytest
import torch
import torchvision
from torch import nn

import resnet_lab
from resnet_lab import models
from resnet_lab.blocks import BasicBlock, Bottleneck, PlainBlock, PreActBlock
from resnet_lab.gradients import grad_norms
from resnet_lab.models import (
    ResNet,
    blocks_of,
    build_model,
    check_block_indices,
    cifar_resnet,
    count_parameters,
    imagenet_resnet,
)

CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
IMAGENET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
PAPER_DEPTHS = (20, 32, 44, 56, 110)


def batch(n: int = 2, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator), torch.randint(10, (n,), generator=generator)


@pytest.mark.parametrize("depth", CIFAR_PARAMS)
def test_cifar_parameter_counts_are_exact(depth):
    assert count_parameters(cifar_resnet(depth)) == CIFAR_PARAMS[depth]


@pytest.mark.parametrize("depth", PAPER_DEPTHS)
def test_factories_and_plain_twins_match_the_residual_nets(depth):
    residual, plain = getattr(models, f"resnet{depth}")(), getattr(models, f"plain{depth}")()
    assert count_parameters(residual) == count_parameters(plain) == CIFAR_PARAMS[depth]
    assert len(residual.blocks) == len(plain.blocks) == 3 * (depth - 2) // 6
    assert [name for name, _ in residual.named_parameters()] == [name for name, _ in plain.named_parameters()]
    assert all(type(block) is BasicBlock for block in residual.blocks)
    assert all(type(block) is PlainBlock for block in plain.blocks)


def test_factories_pass_options_through():
    net = models.resnet20(num_classes=100, shortcut="B")
    assert net.fc.out_features == 100
    assert isinstance(net.layer2[0].downsample, nn.Sequential)  # a 1x1 projection, not zero-padding


@pytest.mark.parametrize("depth", IMAGENET_PARAMS)
def test_imagenet_parameter_counts_are_exact(depth):
    assert count_parameters(imagenet_resnet(depth)) == IMAGENET_PARAMS[depth]


def randomize_batchnorm_(model: nn.Module, seed: int = 0) -> None:
    """Random running statistics and affine parameters in every BatchNorm, in place.

    A fresh BatchNorm in eval mode is ``x / sqrt(1 + eps)``, a positive scale that commutes with ReLU and passes
    through convolutions: a comparison of fresh models cannot tell where the BatchNorms sit.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                channels = module.num_features
                module.running_mean.copy_(0.5 * torch.randn(channels, generator=generator))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(channels, generator=generator))
                module.weight.copy_(0.5 + torch.rand(channels, generator=generator))
                module.bias.copy_(0.5 * torch.randn(channels, generator=generator))


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_load_and_give_the_same_outputs(depth):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, f"resnet{depth}")()  # random init, nothing downloaded
    randomize_batchnorm_(theirs)
    ours = imagenet_resnet(depth)
    their_state, our_state = theirs.state_dict(), ours.state_dict()
    assert list(our_state) == list(their_state)
    assert all(our_state[key].shape == their_state[key].shape for key in their_state)
    ours.load_state_dict(their_state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    for mode in ("eval", "train"):  # running statistics, then batch statistics with the affine parameters
        with torch.no_grad():
            expected, actual = getattr(theirs, mode)()(x), getattr(ours, mode)()(x)
        assert actual.shape == (2, 1000)
        torch.testing.assert_close(actual, expected, msg=lambda message, mode=mode: f"{mode} mode: {message}")


def test_cifar_stem_is_as_wide_as_the_first_stage():
    # the "ResNet-18 for CIFAR" of kuangliu/pytorch-cifar: torchvision's ResNet-18 with a 3x3 stem and no max pool
    ours = ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), stem="cifar", shortcut="B", num_classes=10)
    assert ours.conv1.out_channels == 64 and ours.layer1[0].downsample is None  # not 16 -> 64 with a projection
    assert count_parameters(ours) == 11_173_962  # = 11,689,512 - 9,408 (7x7 stem) + 1,728 (3x3) - 513,000 + 5,130 (fc)
    theirs = torchvision.models.resnet18(num_classes=10)
    theirs.conv1, theirs.maxpool = nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.Identity()
    randomize_batchnorm_(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = batch()[0]
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))
    assert cifar_resnet(20).conv1.out_channels == 16  # the paper's nets: first stage 16 wide, as before


def test_stride_in_1x1_moves_the_stride_and_keeps_the_parameters():
    paper, v15 = imagenet_resnet(50, stride_in_1x1=True), imagenet_resnet(50)
    assert count_parameters(paper) == count_parameters(v15)
    assert paper.layer2[0].conv1.stride == (2, 2) and paper.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    with pytest.raises(ValueError, match="only applies to bottleneck"):
        imagenet_resnet(18, stride_in_1x1=True)


@pytest.mark.parametrize(
    "depth, parts",
    [
        (21, ["6n+2", "got 21", "nearest valid: 20, 26"]),
        (57, ["got 57", "nearest valid: 56, 62"]),
        (5, ["got 5", "nearest valid: 8"]),
        (20.0, ["integer", "got 20.0"]),
    ],
)
def test_invalid_cifar_depth_names_the_nearest_valid_ones(depth, parts):
    with pytest.raises(ValueError) as info:
        cifar_resnet(depth)
    for part in parts:
        assert part in str(info.value)


def test_invalid_imagenet_depth_and_options_are_refused():
    with pytest.raises(ValueError, match=r"18, 34, 50, 101, 152.*got 20"):
        imagenet_resnet(20)
    with pytest.raises(ValueError, match="preact=True needs residual=True"):
        cifar_resnet(20, residual=False, preact=True)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        cifar_resnet(20, residual=False, shortcut="D")
    with pytest.raises(ValueError, match="zero_init_residual"):
        cifar_resnet(20, residual=False, zero_init_residual=True)


@pytest.mark.parametrize(
    "name, parts",
    [
        ("resnet21", ["'resnet21'", "6n+2", "nearest valid: resnet20, resnet26"]),
        ("plain51", ["nearest valid: plain50, plain56"]),
        ("resnet51", ["nearest valid: resnet56"]),  # not resnet50, refused below
        ("preact_resnet3", ["nearest valid: preact_resnet8"]),
        ("imagenet_resnet20", ["'imagenet_resnet20'", "18, 34, 50, 101, 152"]),
        ("vgg16", ["'vgg16'", "resnet{6n+2}", "plain{6n+2}", "preact_resnet{6n+2}", "imagenet_resnet{18,34,50"]),
        ("resnet", ["valid names"]),
    ],
)
def test_build_model_rejects_unknown_names_with_the_valid_forms(name, parts):
    with pytest.raises(ValueError) as info:
        build_model(name)
    for part in parts:
        assert part in str(info.value)


@pytest.mark.parametrize("depth", IMAGENET_PARAMS)
def test_build_model_refuses_torchvisions_imagenet_names(depth):
    # resnet50 and resnet152 used to build 6n+2 CIFAR nets without a word; resnet18 named only resnet14 and 20
    with pytest.raises(ValueError) as info:
        build_model(f"resnet{depth}")
    message = str(info.value)
    assert f"'imagenet_resnet{depth}'" in message and f"ImageNet ResNet-{depth}" in message
    if depth in (50, 152):  # also 6n+2: say how to build the CIFAR net of that depth
        assert f"'cifar_resnet{depth}'" in message
        assert count_parameters(build_model(f"plain{depth}")) == count_parameters(cifar_resnet(depth))  # no clash
        assert count_parameters(build_model(f"cifar_resnet{depth}")) == count_parameters(cifar_resnet(depth))
    else:
        assert "6n+2" in message and "nearest: resnet" in message


@pytest.mark.parametrize(
    "kind, depth", [("resnet", d) for d in PAPER_DEPTHS] + [("plain", 20), ("preact_resnet", 20)]
)
def test_forward_gives_one_logit_per_class(kind, depth):
    torch.manual_seed(0)
    net = build_model(f"{kind}{depth}")
    out = net(batch()[0])
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_modules_are_registered_in_forward_order():
    names = [name for name, _ in models.resnet20().named_children()]
    assert names == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]
    state = list(models.resnet20().state_dict())
    assert state[0] == "conv1.weight" and state[1] == "bn1.weight" and state[-2:] == ["fc.weight", "fc.bias"]
    preact = cifar_resnet(20, preact=True)  # stem is the conv alone; BN-ReLU after the last block
    names = [name for name, _ in preact.named_children()]
    assert names == ["conv1", "layer1", "layer2", "layer3", "final_bn", "relu", "avgpool", "fc"]
    assert list(preact.state_dict())[:2] == ["conv1.weight", "layer1.0.bn1.weight"]
    assert all(type(block) is PreActBlock for block in preact.blocks)


def test_preact_net_ends_with_batchnorm_and_relu_before_the_pool():
    # "Identity Mappings", Fig. 1b: the last block's sum is normalised and rectified before the classifier
    torch.manual_seed(0)
    net = cifar_resnet(8, preact=True).eval()
    with torch.no_grad():
        net.final_bn.weight.zero_()
        net.final_bn.bias.fill_(-1.0)  # the BatchNorm gives -1 everywhere and the ReLU 0: only fc's bias is left
        torch.testing.assert_close(net(batch(4)[0]), net.fc.bias.expand(4, 10))


@pytest.mark.parametrize("name", ["resnet20", "plain20", "preact_resnet20"])
def test_blocks_feed_the_gradient_probe(name):
    torch.manual_seed(0)
    net = build_model(name)
    assert len(net.blocks) == 9  # 3n with n = 3
    assert [net.blocks.index(block) for block in net.layer2] == [3, 4, 5]  # forward order
    norms = grad_norms(net, *batch(8), layers=net.blocks)
    assert len(norms) == 9
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in norms)


def test_blocks_of_and_block_indices_name_what_is_valid():
    net = build_model("resnet8")
    assert blocks_of(net) == net.blocks
    with pytest.raises(ValueError, match=r"Linear has no `\.blocks`: pass a ResNet .*build_model\('resnet20'\)"):
        blocks_of(nn.Linear(2, 2))
    assert check_block_indices([2, torch.tensor(0), 2], 3) == [0, 2]  # distinct and sorted; 0-d tensors count
    for bad in (3, -1):
        with pytest.raises(IndexError, match=rf"block index {bad} is out of range: the model has 3 blocks, "
                                             r"numbered 0\.\.2"):
            check_block_indices([bad], 3)
    with pytest.raises(TypeError, match=r"integers 0\.\.2; got 1\.5"):
        check_block_indices([1.5], 3)


def test_imagenet_blocks_and_shapes():
    net = imagenet_resnet(50)
    assert len(net.blocks) == 16 and all(type(block) is Bottleneck for block in net.blocks)
    assert [stage[0].conv3.out_channels for stage in net.stages] == [256, 512, 1024, 2048]
    assert len(imagenet_resnet(18).blocks) == 8


def test_init_is_kaiming_fan_out_and_bn_starts_at_identity():
    torch.manual_seed(0)
    net = models.resnet56()
    conv = net.layer2[0].conv1  # 16 -> 32, 3x3: fan_out = 32 * 9 (fan_in = 16 * 9 would be sqrt(2) wider)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    zeroed = models.resnet20(zero_init_residual=True)
    assert all(torch.all(block.bn2.weight == 0) and torch.all(block.bn1.weight == 1) for block in zeroed.blocks)


def test_build_model_round_trips():
    assert count_parameters(build_model("resnet56")) == 853_018
    plain = build_model("plain20")
    assert all(type(block) is PlainBlock and block.downsample is None for block in plain.blocks)
    assert count_parameters(build_model("imagenet_resnet18")) == count_parameters(imagenet_resnet(18))
    assert count_parameters(build_model("imagenet_resnet18")) == IMAGENET_PARAMS[18]
    assert all(type(block) is PreActBlock for block in build_model("preact_resnet32").blocks)
    assert build_model("resnet20").fc.out_features == 10 and build_model("imagenet_resnet18").fc.out_features == 1000
    assert build_model("plain20", num_classes=3).fc.out_features == 3
    assert build_model("imagenet_resnet34", num_classes=10).fc.out_features == 10


def test_version_is_the_installed_distributions(monkeypatch):
    assert resnet_lab.__version__ == importlib.metadata.version("resnet-lab")  # pyproject.toml's, not a copy

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    try:
        monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")  # another installed version
        assert importlib.reload(resnet_lab).__version__ == "9.9.9"
        monkeypatch.setattr(importlib.metadata, "version", not_installed)  # a source tree, never pip-installed
        assert importlib.reload(resnet_lab).__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(resnet_lab)
