"""Data for the notebooks: small offline toy problems and CIFAR-10 as uint8 tensors.

``load_cifar10()`` reads CIFAR-10 from the official pickled batches (``cifar-10-batches-py``, what torchvision's
checksummed download unpacks) or from an image-folder tree ``train/<class>/*.png|jpg`` (optional ``test/<class>/``).
An image folder is decoded once and its tensors cached outside the repository (``~/.cache/resnet_lab``, or
``RESNET_LAB_CACHE``); the official batches are read directly, as they load in a fraction of a second.
``smoke=True`` returns a synthetic stand-in made on the fly, so tests and smoke-mode notebooks never download.
Batching and augmentation live in :mod:`resnet_lab.loader`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .checkpoint import atomic_save, atomic_write

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DATA_ENV", "CACHE_ENV", "CifarData",
    "make_toy_classification", "load_cifar10", "make_smoke_cifar", "stratified_split", "cache_dir",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and standard deviation of the 50k training images, on the 0..1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
DATA_ENV, CACHE_ENV = "RESNET_LAB_DATA", "RESNET_LAB_CACHE"
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_OFFICIAL_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
_CACHE_VERSION = 1


def make_toy_classification(
    n: int = 2048, *, in_features: int = 32, num_classes: int = 10, clusters_per_class: int = 3, spread: float = 0.7,
    seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A balanced Gaussian-mixture classification task, generated on the fly (no download).

    Each class is a mixture of ``clusters_per_class`` unit-variance blobs whose centres are drawn from
    N(0, spread^2), so the classes interleave and a network must learn a non-linear boundary. With the
    defaults a trainable MLP reaches over 90 % training accuracy in a few hundred SGD steps; chance is
    ``1 / num_classes``.

    Returns ``x`` of shape ``(n, in_features)`` (float32) and integer labels ``y`` of shape ``(n,)``.
    """
    if n < num_classes:
        raise ValueError(f"n must be at least num_classes ({num_classes}) so every class appears; got {n}")
    generator = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(num_classes, clusters_per_class, in_features, generator=generator)
    y = torch.arange(n) % num_classes
    cluster = torch.randint(clusters_per_class, (n,), generator=generator)
    x = centres[y, cluster] + torch.randn(n, in_features, generator=generator)
    order = torch.randperm(n, generator=generator)
    return x[order], y[order]


@dataclass
class CifarData:
    """CIFAR-10 (or a stand-in) as uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``.

    ``val_*`` is ``None`` unless ``val_split`` held images out of the training set; ``test_*`` is ``None`` when
    the source has no test split. ``source`` is ``"cifar10"``, ``"imagefolder"`` or ``"smoke"``.
    Every split keeps its source's order: the official batches are shuffled, but an image folder is stored class by
    class, so ``images[:n]`` may be a single class. Take a random sample (``torch.randperm``) for a quick evaluation.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor | None
    val_labels: torch.Tensor | None
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    classes: tuple[str, ...]
    source: str
    description: str = ""
    split_seed: int = 0  # the seed that drew the validation split and the subset (load_cifar10's ``seed``)

    def __str__(self) -> str:
        sizes = ", ".join(f"{split} {'-' if images is None else len(images)}" for split, images in
                          (("train", self.train_images), ("val", self.val_images), ("test", self.test_images)))
        return f"{self.description} | {sizes} | {len(self.classes)} classes"


def cache_dir() -> Path:
    """``$RESNET_LAB_CACHE``, else ``~/.cache/resnet_lab`` (never the repo): decoded image folders and downloads."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "resnet_lab").expanduser()


def _missing_data_message(where: str) -> str:
    return (
        f"no CIFAR-10 found {where}.\n"
        f"Put it in a folder and pass data_dir=... (command line: --data DIR) or set {DATA_ENV}=DIR. "
        "Accepted layouts:\n"
        "  (a) DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, the official python version;\n"
        "  (b) DIR/train/<class>/*.png|jpg|jpeg, with optional DIR/test/<class>/...\n"
        "Online: load_cifar10(data_dir, download=True) (command line: --download) fetches the official archive with "
        "torchvision and checks its checksum. Offline: copy an existing cifar-10-batches-py folder or image folder "
        "to DIR, or use smoke=True (--smoke) for a synthetic stand-in."
    )


# ---------------------------------------------------------------------------------------------- reading sources
class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts, lists, bytes and NumPy arrays) and refuses anything else."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy.core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One official batch file: ``data`` (N, 3072) uint8 rows of R, G, B planes, and ``labels``."""
    try:
        with open(path, "rb") as file:
            batch = _BatchUnpickler(file, encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
        images = torch.as_tensor(data, dtype=torch.uint8).reshape(-1, 3, 32, 32)  # (N, 3, 32, 32)
        labels = torch.as_tensor(labels, dtype=torch.int64)
    except Exception as error:  # bad pickle, missing key, wrong size: name the file either way
        raise ValueError(f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {error}); "
                         "re-download it (download=True) or restore the original file") from error
    if len(images) != len(labels):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels; "
                         "re-download it (download=True) or restore the original file")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
        raise ValueError(f"{path}: labels from {int(labels.min())} to {int(labels.max())}, but CIFAR-10's are 0..9; "
                         "re-download it (download=True) or restore the original file")
    return images, labels


def _missing_official(folder: Path) -> list[str]:
    """The official batch files (``data_batch_1..5``, ``test_batch``) that ``folder`` lacks."""
    return [name for name in _OFFICIAL_FILES if not (folder / name).exists()]


def _read_official(folder: Path) -> dict:
    missing = _missing_official(folder)
    if missing:  # an interrupted copy or unpack would otherwise train on a fraction of CIFAR-10
        raise ValueError(f"{folder} lacks {', '.join(missing)} (an interrupted copy or unpack?); restore the missing "
                         "files from your copy, or re-download with load_cifar10(data_dir, download=True) "
                         "(command line: --download)")
    train = [_read_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _read_batch(folder / "test_batch")
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").exists():
        try:
            with open(folder / "batches.meta", "rb") as file:
                names = _BatchUnpickler(file, encoding="bytes").load()[b"label_names"]
            classes = tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)
        except Exception as error:
            raise ValueError(f"{folder / 'batches.meta'} is not a readable CIFAR-10 meta file ({error}); "
                             "restore it or delete it (the standard class names are then used)") from error
    return {"train_images": torch.cat([images for images, _ in train]),
            "train_labels": torch.cat([labels for _, labels in train]),
            "test_images": test[0], "test_labels": test[1],
            "classes": list(classes)}


def _image_files(split_dir: Path) -> dict[str, list[Path]]:
    """``{class: sorted image paths}`` for the class folders under ``split_dir``, classes sorted by name."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: sorted(p for p in (split_dir / c).iterdir() if p.suffix.lower() in _IMAGE_EXTENSIONS) for c in classes}
    empty = [c for c, paths in files.items() if not paths]
    if not classes or empty:
        raise ValueError(f"{split_dir} must hold one folder per class with .png/.jpg/.jpeg images; "
                         f"found classes {classes} (empty: {empty})")
    return files


def _decode_imagefolder(files: dict[str, list[Path]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image with PIL (once: the result is cached) into uint8 ``(N, 3, 32, 32)`` and labels."""
    paths = [(label, path) for label, c in enumerate(files) for path in files[c]]
    split = paths[0][1].parents[1].name  # "train" or "test"
    images = torch.empty(len(paths), 3, 32, 32, dtype=torch.uint8)
    for i, (_, path) in enumerate(tqdm(paths, desc=f"decoding {split}", leave=False, disable=len(paths) < 5000)):
        try:
            with Image.open(path) as file:
                pixels = np.array(file.convert("RGB"))  # (H, W, 3) uint8, a writable copy
        except Exception as error:
            raise ValueError(f"cannot decode image {path} ({error}); delete or replace the file") from error
        if pixels.shape != (32, 32, 3):
            raise ValueError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; CIFAR-10 images are 32x32 "
                             "(resize your images to 32x32 first)")
        images[i] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images, torch.tensor([label for label, _ in paths], dtype=torch.int64)


def _read_imagefolder(root: Path) -> dict:
    train_files = _image_files(root / "train")
    test_files = _image_files(root / "test") if (root / "test").is_dir() else None
    if test_files is not None and list(test_files) != list(train_files):
        raise ValueError(f"{root / 'test'} has classes {list(test_files)} but {root / 'train'} has "
                         f"{list(train_files)}; both splits need the same class folders")
    train_images, train_labels = _decode_imagefolder(train_files)
    test_images, test_labels = _decode_imagefolder(test_files) if test_files is not None else (None, None)
    return {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
            "test_labels": test_labels, "classes": list(train_files)}


def _locate(root: Path) -> tuple[str, Path] | None:
    """``("cifar10", batches folder)`` or ``("imagefolder", root)`` for the layouts ``root`` may hold."""
    for folder in (root / "cifar-10-batches-py", root):
        if any((folder / name).exists() for name in _OFFICIAL_FILES):  # complete or not: _read_official checks
            return "cifar10", folder
    if (root / "train").is_dir():
        return "imagefolder", root
    return None


def _fingerprint(folder: Path) -> str:
    """Hash of every image's path (relative to ``folder``), size and mtime: a changed file is a new key."""
    paths = sorted(p for split in ("train", "test") if (folder / split).is_dir()
                   for p in (folder / split).rglob("*") if p.suffix.lower() in _IMAGE_EXTENSIONS)
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{len(paths)}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"|{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _remove_legacy_cache(cache: Path) -> None:
    """Delete cache files no version reads any more: the official batches' (176 MiB each) and unnamed folders'."""
    for path in cache.glob("*.pt"):
        if re.fullmatch(r"(cifar10|imagefolder)-[0-9a-f]{24}\.pt", path.name):  # before 2026-11-30
            path.unlink(missing_ok=True)


def _index_and_prune(cache: Path, prefix: str, folder: Path) -> None:
    """Record which folder the cache files ``<prefix>-*.pt`` belong to, in ``imagefolders.json``, and delete the
    cache files of recorded folders that no longer exist (moved or deleted: each would keep 150 MB for nothing)."""
    index_path = cache / "imagefolders.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: start a new one
        index = {}
    index[prefix] = str(folder.resolve())
    for gone in [key for key, source in index.items() if not Path(source).is_dir()]:
        for path in cache.glob(f"{gone}-*.pt"):
            path.unlink(missing_ok=True)
        del index[gone]
    atomic_write(index_path, lambda temporary: temporary.write_text(json.dumps(index, indent=1)))


def _read_imagefolder_cached(folder: Path, cache: Path | None) -> dict:
    """The decoded image folder, from ``cache`` when its files are unchanged, else decoded now and cached.

    The cache file is ``imagefolder-<folder>-<contents>.pt`` (two hashes): writing a new one removes the folder's
    older versions, so each image folder keeps one cache file, and the caches of folders that were moved or deleted.
    """
    if cache is None:
        return _read_imagefolder(folder)
    prefix = f"imagefolder-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]}"
    path = cache / f"{prefix}-{_fingerprint(folder)}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # a damaged cache is only a cache: rebuild it
            warnings.warn(f"ignoring unreadable cache {path} ({error}); decoding again", stacklevel=3)
    arrays = _read_imagefolder(folder)
    try:
        atomic_save(arrays, path)
        for stale in cache.glob(f"{prefix}-*.pt"):  # the same folder before its files changed
            if stale != path:
                stale.unlink(missing_ok=True)
        _index_and_prune(cache, prefix, folder)
    except OSError as error:
        warnings.warn(f"could not update the cache {path} ({error}); set {CACHE_ENV} to a writable folder",
                      stacklevel=3)
    return arrays


# ---------------------------------------------------------------------------------------------- smoke stand-in
def make_smoke_cifar(train_per_class: int = 50, test_per_class: int = 20, *, seed: int = 0) -> CifarData:
    """A synthetic smoke-test stand-in for CIFAR-10, made on the fly: 10 classes of 32x32 uint8 images.

    Class ``c`` has its own colour and stripe orientation; noise, phase and brightness vary per image, so a
    small CNN learns it in a few epochs. It is not CIFAR-10: accuracies on it mean nothing for the paper.
    """
    generator = torch.Generator().manual_seed(seed)
    colours = torch.rand(10, 3, 1, 1, generator=generator) * 0.6 + 0.2  # (10, 3, 1, 1) in 0.2..0.8
    angles = torch.arange(10) * torch.pi / 10
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

    def images(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(10).repeat_interleave(per_class)
        n = len(labels)
        phase = torch.rand(n, 1, 1, generator=generator) * 2 * torch.pi
        along = xs * angles[labels].cos()[:, None, None] + ys * angles[labels].sin()[:, None, None]  # (n, 32, 32)
        stripes = torch.sin(2 * torch.pi * along / 6 + phase)[:, None]  # (n, 1, 32, 32)
        brightness = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator)
        pixels = colours[labels] * brightness + 0.15 * stripes + 0.1 * torch.randn(n, 3, 32, 32, generator=generator)
        return (pixels.clamp(0, 1) * 255).round().to(torch.uint8), labels

    (train_images, train_labels), (test_images, test_labels) = images(train_per_class), images(test_per_class)
    description = (f"synthetic smoke-test stand-in (not CIFAR-10): 10 classes x {train_per_class} train / "
                   f"{test_per_class} test images of coloured stripes")
    return CifarData(train_images, train_labels, None, None, test_images, test_labels, CIFAR10_CLASSES, "smoke",
                     description)


# ---------------------------------------------------------------------------------------------- splits
def stratified_split(labels: torch.Tensor, count: int, *, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Indices ``(chosen, rest)`` where ``chosen`` holds ``count`` samples, each class in proportion to its size.

    Per class the quota is rounded by largest remainder, so a balanced set gives equal counts (up to one).
    Both index tensors are sorted, so the kept samples keep their original order.
    """
    if not 0 <= count <= len(labels):
        raise ValueError(f"cannot take {count} of {len(labels)} samples; choose 0..{len(labels)}")
    classes, sizes = labels.unique(return_counts=True)
    exact = sizes.double() * count / len(labels)
    quota = exact.floor().long()
    extra = count - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:extra]] += 1
    chosen = []
    for c, k in zip(classes.tolist(), quota.tolist()):
        members = (labels == c).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[torch.cat(chosen)] = True
    return mask.nonzero().flatten(), (~mask).nonzero().flatten()


def load_cifar10(
    data_dir: str | os.PathLike | None = None, *, download: bool = False, val_split: int = 0,
    subset: int | None = None, seed: int = 0, smoke: bool = False, cache: str | os.PathLike | bool | None = None,
) -> CifarData:
    """CIFAR-10 as uint8 tensors, from ``data_dir`` (else ``$RESNET_LAB_DATA``); image folders are decoded once, cached.

    Args:
        download: fetch the official archive with torchvision (checksummed) into ``data_dir`` (or the cache
            folder) when no data is there or the official batches are incomplete.
        val_split: images held out of the training set for validation, stratified per class and seeded.
        subset: keep only this many training images (stratified, seeded), taken after the validation split.
        seed: draws the validation split and the subset (and the smoke stand-in); recorded as ``split_seed``.
            Keep it fixed to compare training seeds on the same held-out images.
        smoke: ignore ``data_dir`` and return :func:`make_smoke_cifar`'s synthetic stand-in.
        cache: folder for an image folder's decoded tensors; ``None`` uses :func:`cache_dir`, ``False`` disables
            caching. The official batches are never cached.

    Raises FileNotFoundError (saying where data goes) when nothing is found, ValueError naming a corrupt or
    missing file.
    """
    if smoke:
        data = make_smoke_cifar(seed=seed)
    else:
        given = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
        root = Path(given).expanduser() if given is not None else None
        if root is None and download:
            root = cache_dir() / "data"
        if root is None:
            raise FileNotFoundError(_missing_data_message(f"(no data_dir given and {DATA_ENV} is not set)"))
        found = _locate(root)
        if download and (found is None or (found[0] == "cifar10" and _missing_official(found[1]))):
            import torchvision  # it fetches the archive again when a batch is missing or fails its checksum

            torchvision.datasets.CIFAR10(str(root), train=True, download=True)  # also fetches test_batch
            found = _locate(root)
        if found is None:
            raise FileNotFoundError(_missing_data_message(f"in {root}"))
        source, folder = found
        cache_path = None if cache is False else cache_dir() if cache in (None, True) else Path(cache)
        if cache_path is not None:
            _remove_legacy_cache(cache_path)
        if source == "cifar10":
            arrays = _read_official(folder)
        else:
            arrays = _read_imagefolder_cached(folder, cache_path)
        kind = "official batches" if source == "cifar10" else "image folder"
        data = CifarData(arrays["train_images"], arrays["train_labels"], None, None, arrays["test_images"],
                         arrays["test_labels"], tuple(arrays["classes"]), source, f"CIFAR-10 ({kind} {folder})")
    generator = torch.Generator().manual_seed(seed)
    if val_split:
        if not 0 < val_split < len(data.train_labels):
            raise ValueError(f"val_split must be between 0 and {len(data.train_labels) - 1} (the training set has "
                             f"{len(data.train_labels)} images); got {val_split}")
        held, kept = stratified_split(data.train_labels, val_split, generator=generator)
        data.val_images, data.val_labels = data.train_images[held], data.train_labels[held]
        data.train_images, data.train_labels = data.train_images[kept], data.train_labels[kept]
    if subset is not None:
        if not 0 < subset <= len(data.train_labels):
            raise ValueError(f"subset must be between 1 and {len(data.train_labels)} (training images left after "
                             f"val_split={val_split}); got {subset}")
        chosen, _ = stratified_split(data.train_labels, subset, generator=generator)
        data.train_images, data.train_labels = data.train_images[chosen], data.train_labels[chosen]
    data.split_seed = seed
    return data
