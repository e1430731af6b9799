"""A fast CIFAR loader in the spirit of airbench: the whole uint8 dataset on one device, augmented in batches.

No worker processes and no per-image PIL work: each batch is gathered from one device tensor, randomly cropped
(4-pixel zero padding) and flipped per sample with a few tensor ops, then normalised (uint8 -> float, minus mean,
over std) in one place. Every random draw of epoch ``k`` comes from a generator seeded by ``(seed, k)``, so
``set_epoch(k)`` replays epoch ``k`` exactly whatever ran before: what bit-identical resuming needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from .data import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["TensorLoader", "batch_crop", "batch_flip", "normalize", "epoch_generator"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, epoch)``, never on what was drawn before."""
    digest = hashlib.sha256(f"resnet_lab:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def batch_crop(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Per-sample crops: pad ``(N, C, H, W)`` by ``padding`` zeros, then take the H x W window at ``(dy, dx)``.

    ``dx`` and ``dy`` are ``(N,)`` integer offsets in ``0..2*padding``; ``padding`` in both means no shift.
    One gather for the whole batch (what ``RandomCrop(32, padding=4)`` does image by image).
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)  # (N, C, H + 2p, W + 2p), zeros = black before normalisation
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]  # (N, C, H, W)


def batch_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of ``(N, C, H, W)`` where the boolean ``flip`` ``(N,)`` is True."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` in 0..255 -> float32, minus ``mean``, over ``std`` (both ``(C,)`` on the 0..1 scale)."""
    return (images.float() / 255 - mean[:, None, None]) / std[:, None, None]


class TensorLoader:
    """Batches of ``(images, labels)`` from uint8 images ``(N, 3, H, W)`` held on ``device``.

    ``train=True``: a fresh seeded permutation every epoch, random crop and flip per sample. ``train=False``:
    dataset order, no augmentation. With ``world_size > 1`` rank ``r`` takes ``perm[r::world_size]`` of the same
    global permutation; in training the permutation first wraps around to a multiple of ``world_size`` so every
    rank runs the same number of steps (as ``DistributedSampler`` does). ``batch_size`` is per rank. A last partial
    batch is kept (``drop_last=False``), except a single image in training, which is left out of that epoch.
    Each pass uses epoch ``self.epoch`` and then advances it; ``set_epoch(k)`` makes the next pass epoch ``k``.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool,
        device: torch.device | str = "cpu", seed: int = 0, mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD, channels_last: bool = False, drop_last: bool = False, padding: int = 4,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"images must be uint8 (N, C, H, W) with one label each; got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1 = 0..{world_size - 1}; got rank {rank}")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)  # the whole set, on the device
        self.mean = torch.tensor(mean, device=self.device)
        self.std = torch.tensor(std, device=self.device)
        self.batch_size, self.train, self.seed, self.padding = batch_size, train, seed, padding
        self.channels_last, self.drop_last = channels_last, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its shuffle and augmentation depend on ``(seed, epoch)`` only)."""
        self.epoch = epoch

    def _positions(self) -> torch.Tensor:
        """This rank's positions in the epoch's global order (``0..N-1``, wrapped around when padded)."""
        n = len(self.labels)
        total = -(-n // self.world_size) * self.world_size if self.train else n
        return (torch.arange(total) % n)[self.rank::self.world_size]

    def __len__(self) -> int:
        full, rest = divmod(len(self._positions()), self.batch_size)
        # Training never ends an epoch on a batch of one image: BatchNorm in training mode cannot normalise one
        # image whose maps are 1x1 (an ImageNet ResNet's last stage on 32x32 images), and its step would be noise.
        single = self.train and rest == 1 and self.batch_size > 1
        return full + (rest > 0 and not self.drop_last and not single)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        n = len(self.labels)
        if self.train:  # every draw of the epoch at once, for the global order, so sharding cannot change them
            generator = epoch_generator(self.seed, epoch)
            order = torch.randperm(n, generator=generator)
            dx, dy = torch.randint(2 * self.padding + 1, (2, n), generator=generator)
            flip = torch.rand(n, generator=generator) < 0.5
            order, dx, dy, flip = (t.to(self.device) for t in (order, dx, dy, flip))
        positions = self._positions().to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            where = positions[start:start + self.batch_size]
            if self.train:
                index = order[where]
                images = batch_flip(batch_crop(self.images[index], dx[where], dy[where], self.padding), flip[where])
            else:
                index = where
                images = self.images[index]
            images = normalize(images, self.mean, self.std)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[index]
