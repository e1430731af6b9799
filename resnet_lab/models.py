"""Whole networks: the CIFAR-10 plain and residual nets and the ImageNet ResNets (He et al. 2016).

``cifar_resnet(depth)`` builds the 6n+2-layer CIFAR-10 networks of "Deep Residual Learning", Sec. 4.2
(``residual=False`` gives their plain twins, ``preact=True`` the pre-activation nets of "Identity Mappings in
Deep Residual Networks"); ``imagenet_resnet(depth)`` builds ResNet-18/34/50/101/152 of Sec. 3.4 and Table 1,
with torchvision's state_dict, so ``torchvision.models.resnet50`` weights load unchanged. ``build_model(name)``
takes a string such as ``"resnet56"`` (not ``"resnet50"``: torchvision's name for ImageNet's ResNet-50);
``resnet20()`` ... ``plain110()`` name the paper's CIFAR models.
The blocks themselves live in :mod:`resnet_lab.blocks`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck, PlainBlock, PreActBlock, conv3x3, he_init_

__all__ = [
    "IMAGENET_DEPTHS", "ResNet", "count_parameters", "blocks_of", "check_block_indices",
    "cifar_resnet", "imagenet_resnet", "build_model",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "plain20", "plain32", "plain44", "plain56", "plain110",
]

# depth -> (block, blocks per stage), Table 1
IMAGENET_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (BatchNorm's running statistics are buffers, not parameters)."""
    return sum(p.numel() for p in model.parameters())


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """``model.blocks`` as a list: the blocks of a :class:`ResNet` in forward order; ValueError for other models.

    What the block-level experiments (``resnet_lab.lesion``, ``resnet_lab.paths``) index into.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"{type(model).__name__} has no `.blocks`: pass a ResNet from resnet_lab.models "
                         "(e.g. build_model('resnet20'))")
    blocks = list(blocks)
    if not blocks:
        raise ValueError(f"{type(model).__name__}.blocks is empty: the model needs at least one block")
    return blocks


def check_block_indices(indices: Iterable[int], n_blocks: int) -> list[int]:
    """The distinct indices into a model's ``n_blocks`` blocks, sorted.

    TypeError for a non-integer, IndexError naming the valid range for an index outside it (negative indices
    are refused rather than counted from the end).
    """
    checked = []
    for index in indices:
        try:
            checked.append(operator.index(index))  # int, NumPy or 0-d torch integers
        except TypeError:
            raise TypeError(f"block indices must be integers 0..{n_blocks - 1}; got {index!r}") from None
        if not 0 <= checked[-1] < n_blocks:
            raise IndexError(f"block index {index!r} is out of range: the model has {n_blocks} blocks, "
                             f"numbered 0..{n_blocks - 1} in forward order")
    return sorted(set(checked))


def _nearest_cifar_depths(depth: int) -> list[int]:
    """The valid depths 6n+2 (n >= 1) just below and above ``depth``."""
    below = depth - (depth - 2) % 6
    return [d for d in (below, below + 6) if d >= 8] or [8]


def _check_cifar_depth(depth: int) -> int:
    """``n``, the number of blocks per stage, for ``depth = 6n + 2``; ValueError naming the nearest valid depths."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer 6n+2 (e.g. 20, 32, 44, 56, 110); got {depth!r}")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 (e.g. 20, 32, 44, 56, 110); got {depth} — "
                         f"nearest valid: {', '.join(map(str, _nearest_cifar_depths(depth)))}")
    return (depth - 2) // 6


def _make_stage(
    block: type[nn.Module], in_channels: int, out_channels: int, num_blocks: int, stride: int, **block_options
) -> nn.Sequential:
    """``num_blocks`` blocks; only the first changes the width and (with ``stride=2``) halves H and W."""
    return nn.Sequential(*(
        block(in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1, **block_options)
        for i in range(num_blocks)
    ))


class ResNet(nn.Module):
    """Stem, stages ``layer1``, ``layer2``, ... of blocks, global average pool, linear classifier ``fc``.

    ``stem="cifar"``: one 3x3 conv with as many filters as the first stage (16 in Sec. 4.2; 64 in the common "ResNet-18
    for CIFAR" of ``(64, 128, 256, 512)`` widths). ``stem="imagenet"``: 7x7 conv with 64 filters and stride 2, then a
    3x3 max pool with stride 2 (Table 1). The first block of every stage after the first has stride 2.
    With ``PlainBlock`` it is the plain network; with ``PreActBlock`` the stem is the conv alone and a final
    BN-ReLU precedes the pooling ("Identity Mappings", Fig. 1b). Modules are registered in forward order.
    """

    def __init__(
        self, block: type[nn.Module], stage_depths: Sequence[int], stage_widths: Sequence[int], *,
        stem: str = "imagenet", shortcut: str = "B", num_classes: int = 1000, zero_init_residual: bool = False,
        **block_options: bool,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' (3x3 conv) or 'imagenet' (7x7/2 conv + max pool); "
                             f"got {stem!r}")
        if len(stage_depths) != len(stage_widths) or not stage_depths:
            raise ValueError(f"need one width per stage; got depths {list(stage_depths)}, widths {list(stage_widths)}")
        self.preact = block is PreActBlock
        stem_width = stage_widths[0] if stem == "cifar" else 64
        if stem == "cifar":
            self.conv1 = conv3x3(3, stem_width)
        else:
            self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        if self.preact:  # the first block's own BN-ReLU pre-activates the stem's output
            self.bn1 = None
        else:
            self.bn1 = nn.BatchNorm2d(stem_width)
            self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else None

        in_channels = stem_width
        for i, (num_blocks, width) in enumerate(zip(stage_depths, stage_widths)):
            stage = _make_stage(block, in_channels, width, num_blocks, 1 if i == 0 else 2, shortcut=shortcut,
                                zero_init_residual=zero_init_residual, **block_options)
            setattr(self, f"layer{i + 1}", stage)  # torchvision's names, so its weights load
            in_channels = width
        self.num_stages = len(stage_depths)

        if self.preact:  # nothing has normalised the last block's sum yet
            self.final_bn = nn.BatchNorm2d(in_channels)
            self.relu = nn.ReLU()
        else:
            self.final_bn = None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

        # BatchNorm keeps PyTorch's weight 1, bias 0; with zero_init_residual the blocks zero their branch's last
        # layer (the last BN's scale; a pre-activation block's last conv, which he_init_ leaves at zero)
        he_init_(self)

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, layer2, ...]``."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    @property
    def blocks(self) -> list[nn.Module]:
        """Every residual (or plain) block in forward order, e.g. for ``grad_norms(..., layers=model.blocks)``."""
        return [block for stage in self.stages for block in stage]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # CIFAR: (N, stage_widths[0], H, W), e.g. (N, 16, 32, 32); ImageNet: (N, 64, H/2, W/2)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)  # (N, 64, H/4, W/4)
        for stage in self.stages:
            x = stage(x)  # every stage after the first halves H and W; CIFAR ends at (N, 64, 8, 8)
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        x = torch.flatten(self.avgpool(x), 1)  # (N, C)
        return self.fc(x)  # (N, num_classes)


def cifar_resnet(
    depth: int, *, residual: bool = True, shortcut: str = "A", preact: bool = False, num_classes: int = 10,
    zero_init_residual: bool = False,
) -> ResNet:
    """The CIFAR-10 network of Sec. 4.2: depth = 6n+2, three stages of n blocks at 16/32/64 filters on 32/16/8 maps.

    ``residual=False`` gives the plain twin (same layers and, with shortcut "A", the same parameters);
    ``preact=True`` uses pre-activation blocks ("Identity Mappings"). ``shortcut`` is "A", "B" or "C" (Sec. 3.3).
    Input ``(N, 3, 32, 32)``; other sizes work too, as the pooling is global.
    """
    n = _check_cifar_depth(depth)
    if preact and not residual:
        raise ValueError("preact=True needs residual=True: a pre-activation block is defined by its skip")
    block = PreActBlock if preact else BasicBlock if residual else PlainBlock
    return ResNet(block, (n, n, n), (16, 32, 64), stem="cifar", shortcut=shortcut, num_classes=num_classes,
                  zero_init_residual=zero_init_residual)


def imagenet_resnet(
    depth: int, *, num_classes: int = 1000, zero_init_residual: bool = False, stride_in_1x1: bool = False
) -> ResNet:
    """ResNet-18/34/50/101/152 (Sec. 3.4, Table 1), option-B shortcuts; state_dict identical to torchvision's.

    Like torchvision ("v1.5"), a bottleneck downsamples in its 3x3 conv; ``stride_in_1x1=True`` puts the stride
    on the first 1x1 as in the paper (same parameters, fewer multiply-adds). Input ``(N, 3, 224, 224)``.
    """
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"depth must be one of {', '.join(map(str, IMAGENET_DEPTHS))} (Table 1); got {depth!r}")
    block, stage_depths = IMAGENET_DEPTHS[depth]
    if block is Bottleneck:  # output widths; the bottleneck's inner 3x3 works at a quarter of them
        widths, options = (256, 512, 1024, 2048), {"stride_in_1x1": stride_in_1x1}
    elif stride_in_1x1:
        raise ValueError(f"stride_in_1x1 only applies to bottleneck nets (depth 50, 101, 152); got depth {depth}")
    else:
        widths, options = (64, 128, 256, 512), {}
    return ResNet(block, stage_depths, widths, stem="imagenet", shortcut="B", num_classes=num_classes,
                  zero_init_residual=zero_init_residual, **options)


_CIFAR_NAMES = {"resnet": {}, "cifar_resnet": {}, "plain": {"residual": False}, "preact_resnet": {"preact": True}}


def build_model(name: str, num_classes: int | None = None) -> ResNet:
    """A network from its name: ``resnet{d}``, ``plain{d}``, ``preact_resnet{d}`` (CIFAR-10, d = 6n+2) or
    ``imagenet_resnet{18,34,50,101,152}``, with ``num_classes`` outputs (default: 10 for the CIFAR nets, 1000 for
    the ImageNet nets).

    ``resnet{18,34,50,101,152}`` are refused: torchvision gives these names to the ImageNet nets, and 50 and 152 are
    also 6n+2, so the name alone cannot say which network is meant. ``cifar_resnet{d}`` names the CIFAR net of any
    depth 6n+2 unambiguously (``cifar_resnet50``).
    """
    forms = ("resnet{6n+2} (or cifar_resnet{6n+2}), plain{6n+2}, preact_resnet{6n+2} (CIFAR-10, e.g. 'resnet56') or "
             f"imagenet_resnet{{{','.join(map(str, IMAGENET_DEPTHS))}}}")
    match = re.fullmatch(r"(imagenet_resnet|preact_resnet|cifar_resnet|resnet|plain)(\d+)", str(name))
    if match is None:
        raise ValueError(f"unknown model {name!r}; valid names: {forms}")
    family, depth = match.group(1), int(match.group(2))
    if family == "imagenet_resnet":
        if depth not in IMAGENET_DEPTHS:
            raise ValueError(f"unknown model {name!r}: ImageNet depths are {', '.join(map(str, IMAGENET_DEPTHS))}")
        return imagenet_resnet(depth, num_classes=1000 if num_classes is None else num_classes)
    is_cifar_depth = depth >= 8 and (depth - 2) % 6 == 0
    # suggest no name that is refused below
    nearest = ", ".join(f"{family}{d}" for d in _nearest_cifar_depths(depth)
                        if not (family == "resnet" and d in IMAGENET_DEPTHS))
    if family == "resnet" and depth in IMAGENET_DEPTHS:
        cifar = (f"for the {depth}-layer CIFAR-10 net (6n+2, n = {(depth - 2) // 6}) use 'cifar_resnet{depth}'"
                 if is_cifar_depth
                 else f"CIFAR-10 depths are 6n+2, nearest: {nearest}")
        raise ValueError(f"{name!r} is torchvision's name for the ImageNet ResNet-{depth}: build that one as "
                         f"'imagenet_resnet{depth}'; {cifar}")
    if not is_cifar_depth:
        raise ValueError(f"unknown model {name!r}: CIFAR depth must be 6n+2; nearest valid: {nearest}")
    return cifar_resnet(depth, **_CIFAR_NAMES[family], num_classes=10 if num_classes is None else num_classes)


# The paper's CIFAR-10 models (Table 6, Fig. 6); keyword arguments go to cifar_resnet (shortcut, num_classes, ...).
def resnet20(**kwargs: Any) -> ResNet:
    return cifar_resnet(20, **kwargs)


def resnet32(**kwargs: Any) -> ResNet:
    return cifar_resnet(32, **kwargs)


def resnet44(**kwargs: Any) -> ResNet:
    return cifar_resnet(44, **kwargs)


def resnet56(**kwargs: Any) -> ResNet:
    return cifar_resnet(56, **kwargs)


def resnet110(**kwargs: Any) -> ResNet:
    return cifar_resnet(110, **kwargs)


def plain20(**kwargs: Any) -> ResNet:
    return cifar_resnet(20, residual=False, **kwargs)


def plain32(**kwargs: Any) -> ResNet:
    return cifar_resnet(32, residual=False, **kwargs)


def plain44(**kwargs: Any) -> ResNet:
    return cifar_resnet(44, residual=False, **kwargs)


def plain56(**kwargs: Any) -> ResNet:
    return cifar_resnet(56, residual=False, **kwargs)


def plain110(**kwargs: Any) -> ResNet:
    return cifar_resnet(110, residual=False, **kwargs)
