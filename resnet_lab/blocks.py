"""Residual blocks (He et al. 2016, "Deep Residual Learning"; "Identity Mappings in Deep Residual Networks").

Every block takes ``(in_channels, out_channels, stride=1, shortcut, zero_init_residual=False)``, where
``out_channels`` is always the block's output width; ``shortcut`` defaults to ``"A"``, except for ``Bottleneck``
(``"B"``, as the ImageNet nets it is built for). Attribute names follow torchvision's ``models/resnet.py``
(``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``, ``bn3``, ``downsample``), so its weights load into ours.

Shortcuts, where the block's output shape differs from its input's or everywhere:

* ``"A"`` — parameter-free: subsample with the stride and zero-pad the new channels (the paper's CIFAR nets);
* ``"B"`` — a 1x1 convolution + BatchNorm projection only where the shape changes (torchvision's choice);
* ``"C"`` — a projection in every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SHORTCUTS",
    "conv3x3",
    "conv1x1",
    "he_init_",
    "PaddingShortcut",
    "PlainBlock",
    "BasicBlock",
    "PlainBottleneck",
    "Bottleneck",
    "PreActBlock",
    "branch_layers",
    "BLOCKS",
    "BlockStack",
]

SHORTCUTS = ("A", "B", "C")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (the BatchNorm after it has one)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def he_init_(module: nn.Module) -> nn.Module:
    """He et al. 2015 init of every Conv2d in ``module``, in place: weights ~ N(0, 2 / fan_out), as torchvision.

    Keeps the signal's variance through ReLUs ("Delving Deep into Rectifiers"); fan_out is the backward pass's fan.
    BatchNorm and Linear layers keep PyTorch's init; a convolution a block zero-initialised (``zero_init``, the last
    one of ``PreActBlock(zero_init_residual=True)``) stays zero. Returns ``module``.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and not getattr(layer, "zero_init", False):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return module


class PaddingShortcut(nn.Module):
    """Option A: keep every ``stride``-th pixel and append zero channels up to ``out_channels``. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (N, C_out, H/s, W/s), new channels all zero

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def _check_block_args(in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2; got {stride!r}")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of 'A' (zero-padding), 'B' (projection where the shape changes) "
                         f"or 'C' (projection everywhere); got {shortcut!r}")


def _make_shortcut(in_channels: int, out_channels: int, stride: int, shortcut: str) -> nn.Module | None:
    """The ``downsample`` module of a block, or None when the skip is the plain identity."""
    shape_changes = stride != 1 or in_channels != out_channels
    if shortcut == "C" or (shortcut == "B" and shape_changes):
        # torchvision's layout (downsample.0 = conv, downsample.1 = BN), so its weights load unchanged
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    if shortcut == "A" and shape_changes:
        if out_channels < in_channels:
            raise ValueError(f"shortcut 'A' can only add channels by zero-padding ({in_channels} -> {out_channels} "
                             "removes some); use shortcut 'B' or 'C'")
        return PaddingShortcut(in_channels, out_channels, stride)
    return None


class _TwoConvBlock(nn.Module):
    """The layers a basic block and its plain twin share: two 3x3 convolutions with BatchNorm, and a ReLU.

    Not a block by itself (no ``forward``): :class:`BasicBlock` adds the skip, :class:`PlainBlock` does not. Being
    siblings, not parent and child, ``isinstance(m, BasicBlock)`` (torchvision's zero-init loop) skips plain blocks.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, shortcut)
        self.conv1 = conv3x3(in_channels, out_channels, stride)  # the stride sits on the first 3x3
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()


class BasicBlock(_TwoConvBlock):
    """Two 3x3 convolutions with BatchNorm; ``relu(F(x) + shortcut(x))`` (He et al. 2016, Fig. 2)."""

    has_skip = True

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, shortcut)
        self.downsample = _make_shortcut(in_channels, out_channels, stride, shortcut)
        if zero_init_residual:  # the branch starts at 0, so the block starts as (ReLU of) its shortcut
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity  # the residual connection
        return self.relu(out)  # ReLU after the addition


class PlainBlock(_TwoConvBlock):
    """:class:`BasicBlock`'s layers and parameters without the skip: ``relu(F(x))``.

    ``shortcut`` is accepted for a uniform signature and ignored (``downsample`` is always None); a plain block has
    no residual branch to zero, so ``zero_init_residual=True`` is refused.
    """

    has_skip = False

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        if zero_init_residual:
            raise ValueError("zero_init_residual would zero a plain block's output; it only makes sense with a skip")
        super().__init__(in_channels, out_channels, stride, shortcut)
        self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


class _BottleneckLayers(nn.Module):
    """The layers a bottleneck block and its plain twin share: 1x1 (reduce to ``out_channels // 4``) -> 3x3 -> 1x1
    (expand), each with BatchNorm, and a ReLU. Not a block by itself, as :class:`_TwoConvBlock`.

    Like torchvision ("ResNet v1.5") the stride sits on the 3x3 convolution; the paper put it on the first
    1x1 (``stride_in_1x1=True``), which costs fewer multiply-adds and a little accuracy.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str, stride_in_1x1: bool) -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, shortcut)
        if out_channels % 4:
            raise ValueError(f"a bottleneck's out_channels must be divisible by 4 (its inner width is out_channels/4); "
                             f"got {out_channels}")
        width = out_channels // 4
        self.conv1 = conv1x1(in_channels, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), before the addition and the last ReLU."""
        out = self.relu(self.bn1(self.conv1(x)))  # (N, out/4, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (N, out/4, H/s, W/s)
        return self.bn3(self.conv3(out))  # (N, out, H/s, W/s)


class Bottleneck(_BottleneckLayers):
    """A bottleneck branch (see :class:`_BottleneckLayers`) and a skip: ``relu(F(x) + shortcut(x))``."""

    has_skip = True

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "B",
        zero_init_residual: bool = False, *, stride_in_1x1: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, shortcut, stride_in_1x1)
        self.downsample = _make_shortcut(in_channels, out_channels, stride, shortcut)
        if zero_init_residual:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.branch(x) + identity)


class PlainBottleneck(_BottleneckLayers):
    """:class:`Bottleneck`'s layers and parameters without the skip: ``relu(F(x))``; ``shortcut`` is ignored and
    ``zero_init_residual=True`` refused, as in :class:`PlainBlock`."""

    has_skip = False

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "B",
        zero_init_residual: bool = False, *, stride_in_1x1: bool = False,
    ) -> None:
        if zero_init_residual:
            raise ValueError("zero_init_residual would zero a plain block's output; it only makes sense with a skip")
        super().__init__(in_channels, out_channels, stride, shortcut, stride_in_1x1)
        self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x))


class PreActBlock(nn.Module):
    """Pre-activation block (He et al. 2016, "Identity Mappings"): ``x + conv(relu(bn(conv(relu(bn(x))))))``.

    Nothing follows the addition, so the skip path from any block to any later one is a clean identity.
    Where the block has a shortcut module it takes the pre-activated input, as in the paper's code.
    ``zero_init_residual`` zeroes the branch's last layer, ``conv2``, which makes the block exactly the identity at
    init. Not ``bn2``'s scale, as in the post-activation blocks: a ReLU follows ``bn2`` here, and its zero slope at 0
    would leave every parameter of the branch without a gradient for good.
    """

    has_skip = True

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, shortcut)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.relu = nn.ReLU()
        self.downsample = _make_shortcut(in_channels, out_channels, stride, shortcut)
        if zero_init_residual:
            nn.init.zeros_(self.conv2.weight)
            self.conv2.zero_init = True  # he_init_ of the whole network keeps it at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity  # no ReLU after the addition


def branch_layers(block: nn.Module) -> list[nn.Module]:
    """The convolutions and BatchNorms of ``block``'s residual branch F, in forward order; all of a plain block.

    Not the shortcut (``downsample``), nor the ReLU module, which has no parameters and, in the post-activation
    blocks, also acts after the addition. A ``PreActBlock``'s branch starts at ``bn1``, whose output also feeds its
    shortcut module where it has one.
    """
    if isinstance(block, (PlainBlock, BasicBlock)):
        return [block.conv1, block.bn1, block.conv2, block.bn2]
    if isinstance(block, (PlainBottleneck, Bottleneck)):
        return [block.conv1, block.bn1, block.conv2, block.bn2, block.conv3, block.bn3]
    if isinstance(block, PreActBlock):
        return [block.bn1, block.conv1, block.bn2, block.conv2]
    raise TypeError(f"no residual branch known for a {type(block).__name__}; supported blocks: PlainBlock, "
                    "BasicBlock, PlainBottleneck, Bottleneck, PreActBlock (resnet_lab.blocks)")


BLOCKS: dict[str, type[nn.Module]] = {
    "plain": PlainBlock,
    "basic": BasicBlock,
    "plain_bottleneck": PlainBottleneck,
    "bottleneck": Bottleneck,
    "preact": PreActBlock,
}


class BlockStack(nn.Module):
    """``n_blocks`` identical same-width blocks between a 3x3 conv stem and a pooled linear classifier.

    A probe network for gradient experiments (the blocks are ``self.hidden``, which ``grad_norms`` reads);
    the full CIFAR/ImageNet ResNets live in ``resnet_lab.models``. Input ``(N, 3, H, W)``.
    """

    def __init__(self, block: str, n_blocks: int, width: int = 16, shortcut: str = "A",
                 zero_init_residual: bool = False, num_classes: int = 10) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(map(repr, BLOCKS))}; got {block!r}")
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
            raise ValueError(f"n_blocks must be a positive integer; got {n_blocks!r}")
        self.stem = nn.Sequential(conv3x3(3, width), nn.BatchNorm2d(width), nn.ReLU())
        self.hidden = nn.ModuleList(
            BLOCKS[block](width, width, 1, shortcut, zero_init_residual) for _ in range(n_blocks)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.hidden:
            x = block(x)
        return self.head(x)
