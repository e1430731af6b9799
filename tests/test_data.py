"""resnet_lab.data (CIFAR-10 readers, cache, splits, smoke stand-in) and resnet_lab.loader (batched augmentation).

Every dataset here is written by the test into tmp_path, in the official pickle layout or as an image folder.
"""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_lab import data as data_module
from resnet_lab.data import CIFAR10_CLASSES, load_cifar10, make_smoke_cifar, stratified_split
from resnet_lab.loader import TensorLoader, batch_crop, batch_flip, normalize


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Caches go to tmp_path/cache; RESNET_LAB_DATA never leaks in from the machine."""
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RESNET_LAB_DATA", raising=False)
    return tmp_path / "cache"


def tagged_images(n: int, offset: int = 0) -> torch.Tensor:
    """uint8 (n, 3, 32, 32); pixel (0, 0) encodes the image's id ``offset + i``: red = id % 256, green = id // 256."""
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(offset), dtype=torch.uint8)
    ids = torch.arange(offset, offset + n)
    images[:, 0, 0, 0], images[:, 1, 0, 0] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
    return images


def ids_of(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() + 256 * images[:, 1, 0, 0].long()).tolist()


def write_official(root, per_batch: int = 20, test: int = 20):
    """cifar-10-batches-py with the official keys; labels cycle 0..9. Returns the images in file order."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)  # exist_ok: a download may restore an incomplete folder
    written = []
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                              "test_batch"]):
        n = test if name == "test_batch" else per_batch
        images = tagged_images(n, offset=1000 * i)
        batch = {b"batch_label": name.encode(), b"labels": [j % 10 for j in range(n)],
                 b"data": images.reshape(n, 3072).numpy(), b"filenames": [b"x.png"] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
        written.append(images)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder, torch.cat(written[:5]), written[5]


def save_image(image: torch.Tensor, path, format: str = "PNG") -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format=format)


def write_imagefolder(root, classes=("cat", "dog", "ship"), per_class: int = 4, test: bool = True):
    """root/train/<class>/*.png|jpg (alternating) and root/test/<class>/*.png. Returns the PNG train images."""
    pngs = {}
    for split, count in (("train", per_class), ("test", 2 if test else 0)):
        for c, name in enumerate(classes):
            if not count:
                continue
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = tagged_images(1, offset=100 * c + i + (50 if split == "test" else 0))[0]
                if i % 2:  # JPEG is lossy: only its shape is checked
                    save_image(image, root / split / name / f"{i:04d}.JPG", "JPEG")
                else:
                    save_image(image, root / split / name / f"{i:04d}.png")
                    pngs[(split, name, i)] = image
    return pngs


# ---------------------------------------------------------------------------------------------- readers and cache
def test_official_batches_load_with_channel_planes_intact_and_are_not_cached(tmp_path, isolated_cache, monkeypatch):
    folder, train, test = write_official(tmp_path / "data")
    data = load_cifar10(tmp_path / "data")
    assert data.source == "cifar10" and data.classes == CIFAR10_CLASSES
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (100, 3, 32, 32)
    assert torch.equal(data.train_images, train) and torch.equal(data.test_images, test)
    assert data.train_labels.dtype == torch.int64 and data.train_labels.tolist() == [j % 10 for j in range(20)] * 5
    assert data.val_images is None
    assert not isolated_cache.exists()  # the pickles decode in a fraction of a second: no copy of them is kept
    again = load_cifar10(folder)  # the batches folder itself works too, via RESNET_LAB_DATA
    assert torch.equal(again.train_images, train)
    monkeypatch.setenv("RESNET_LAB_DATA", str(tmp_path / "data"))
    assert torch.equal(load_cifar10().test_images, test)
    assert not isolated_cache.exists()


def test_cache_files_of_earlier_versions_are_removed(tmp_path, isolated_cache):
    write_official(tmp_path / "data")
    isolated_cache.mkdir(parents=True)
    legacy = [isolated_cache / f"{kind}-{'ab12' * 6}.pt" for kind in ("cifar10", "imagefolder")]  # 176 MiB each
    current = isolated_cache / f"imagefolder-{'cd34' * 3}-{'ef56' * 6}.pt"  # another folder's cache
    for path in (*legacy, current, isolated_cache / "notes.pt"):
        path.write_bytes(b"x")
    load_cifar10(tmp_path / "data")
    assert sorted(p.name for p in isolated_cache.iterdir()) == sorted([current.name, "notes.pt"])


def test_an_incomplete_official_folder_is_refused_with_what_is_missing(tmp_path):
    folder, _, _ = write_official(tmp_path / "data")
    (folder / "data_batch_3").unlink()  # an interrupted copy
    with pytest.raises(ValueError, match=r"lacks data_batch_3 .*download=True") as error:
        load_cifar10(tmp_path / "data")
    assert str(folder) in str(error.value)
    (folder / "data_batch_1").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(ValueError, match="lacks data_batch_1, data_batch_3, test_batch"):
        load_cifar10(folder)


def test_image_folder_loads_sorted_classes_and_cache_follows_the_files(tmp_path, isolated_cache, monkeypatch):
    pngs = write_imagefolder(tmp_path / "imgs", classes=("ship", "cat", "dog"))
    data = load_cifar10(tmp_path / "imgs")
    assert data.source == "imagefolder" and data.classes == ("cat", "dog", "ship")
    assert data.train_images.shape == (12, 3, 32, 32) and data.test_images.shape == (6, 3, 32, 32)
    assert data.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and data.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(data.train_images[4], pngs[("train", "dog", 0)])  # PNG is lossless
    assert len(list(isolated_cache.glob("imagefolder-*.pt"))) == 1
    decode = data_module._decode_imagefolder
    monkeypatch.setattr(data_module, "_decode_imagefolder", lambda files: pytest.fail("the cache was not reused"))
    assert torch.equal(load_cifar10(tmp_path / "imgs").train_images, data.train_images)
    # a new file changes the fingerprint: decoded again, and the new cache file replaces the old one
    monkeypatch.setattr(data_module, "_decode_imagefolder", decode)
    first_cache = list(isolated_cache.glob("imagefolder-*.pt"))
    save_image(tagged_images(1)[0], tmp_path / "imgs" / "train" / "cat" / "extra.png")
    assert len(load_cifar10(tmp_path / "imgs").train_labels) == 13
    replaced = list(isolated_cache.glob("imagefolder-*.pt"))
    assert len(replaced) == 1 and replaced != first_cache
    # another folder gets a cache file of its own and leaves this one alone
    write_imagefolder(tmp_path / "other")
    assert len(load_cifar10(tmp_path / "other").train_labels) == 12
    assert set(replaced) < set(isolated_cache.glob("imagefolder-*.pt")) and len(list(isolated_cache.iterdir())) == 3
    assert load_cifar10(tmp_path / "imgs", cache=False).test_images is not None


def test_a_moved_image_folder_leaves_no_cache_behind(tmp_path, isolated_cache):
    write_imagefolder(tmp_path / "imgs")
    write_imagefolder(tmp_path / "other", classes=("bird", "frog"))
    load_cifar10(tmp_path / "imgs")
    imgs_cache = set(isolated_cache.glob("imagefolder-*.pt"))
    load_cifar10(tmp_path / "other")
    other_cache = set(isolated_cache.glob("imagefolder-*.pt")) - imgs_cache
    (tmp_path / "imgs").rename(tmp_path / "moved")
    assert len(load_cifar10(tmp_path / "moved").train_labels) == 12  # decoded again under its new path
    caches = set(isolated_cache.glob("imagefolder-*.pt"))
    assert len(caches) == 2 and other_cache < caches and not imgs_cache & caches  # the old path's cache is gone
    index = json.loads((isolated_cache / "imagefolders.json").read_text())
    assert sorted(index.values()) == sorted(str((tmp_path / name).resolve()) for name in ("moved", "other"))
    (isolated_cache / "imagefolders.json").write_text("{not json")  # a damaged index starts afresh, no error
    write_imagefolder(tmp_path / "third")
    load_cifar10(tmp_path / "third")
    index = json.loads((isolated_cache / "imagefolders.json").read_text())
    assert list(index.values()) == [str((tmp_path / "third").resolve())]


def test_cache_notices_a_file_replaced_under_the_same_name(tmp_path):
    write_imagefolder(tmp_path / "imgs")
    first = load_cifar10(tmp_path / "imgs")
    path = tmp_path / "imgs" / "train" / "cat" / "0000.png"  # the first training image
    replacement = tagged_images(1, offset=999)[0]
    save_image(replacement, path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime, whatever the clock's resolution
    again = load_cifar10(tmp_path / "imgs")
    assert not torch.equal(first.train_images[0], replacement) and torch.equal(again.train_images[0], replacement)


def test_missing_data_says_where_it_goes_and_how_to_get_it(tmp_path):
    for call in (lambda: load_cifar10(), lambda: load_cifar10(tmp_path / "empty")):
        with pytest.raises(FileNotFoundError) as error:
            call()
        message = str(error.value)
        for hint in ("RESNET_LAB_DATA", "data_dir", "cifar-10-batches-py", "train/<class>", "download=True", "smoke"):
            assert hint in message


def test_download_goes_through_torchvision_into_the_cache_folder(tmp_path, isolated_cache, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    calls = []

    class FakeCIFAR10:  # torchvision's checksummed download, without the network: writes the official batches
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_official(tmp_path / "downloaded" if root == str(tmp_path / "downloaded") else isolated_cache / "data")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_cifar10(download=True)  # no data_dir and no RESNET_LAB_DATA: into the cache folder
    assert calls == [(str(isolated_cache / "data"), True, True)]
    assert data.source == "cifar10" and len(data.train_labels) == 100 and len(data.test_labels) == 20
    load_cifar10(download=True)  # present now: no second download
    assert len(calls) == 1
    load_cifar10(tmp_path / "downloaded", download=True)  # an explicit data_dir is where it goes
    assert calls[-1] == (str(tmp_path / "downloaded"), True, True)
    (tmp_path / "downloaded" / "cifar-10-batches-py" / "data_batch_4").unlink()  # an interrupted copy: fetched again
    assert len(load_cifar10(tmp_path / "downloaded", download=True).train_labels) == 100 and len(calls) == 3

    def offline(root, train, download):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(OSError, match="name resolution"):  # notebook 04 catches OSError and says so
        load_cifar10(tmp_path / "nowhere", download=True)


def test_corrupt_data_names_the_file(tmp_path):
    folder, _, _ = write_official(tmp_path / "bad")
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar10(tmp_path / "bad")
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar10(tmp_path / "bad")
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(ValueError, match="data_batch_3: labels from 0 to 10, but CIFAR-10's are 0..9"):
        load_cifar10(tmp_path / "bad")
    (folder / "data_batch_3").write_bytes(pickle.dumps(print))  # pickles that run code are refused
    with pytest.raises(ValueError, match="data_batch_3.*print"):
        load_cifar10(tmp_path / "bad")

    write_imagefolder(tmp_path / "garbage")
    (tmp_path / "garbage" / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="broken.png"):
        load_cifar10(tmp_path / "garbage")
    write_imagefolder(tmp_path / "size")
    big = torch.zeros(3, 28, 28, dtype=torch.uint8)
    save_image(big, tmp_path / "size" / "train" / "dog" / "small.png")
    with pytest.raises(ValueError, match="small.png.*32x32"):
        load_cifar10(tmp_path / "size")
    write_imagefolder(tmp_path / "classes")
    (tmp_path / "classes" / "test" / "ship").rename(tmp_path / "classes" / "test" / "truck")
    with pytest.raises(ValueError, match="same class folders"):
        load_cifar10(tmp_path / "classes")


# ---------------------------------------------------------------------------------------------- splits, smoke
def test_val_split_and_subset_are_stratified_seeded_and_disjoint(tmp_path):
    write_official(tmp_path / "data", per_batch=40)  # 200 training images, 20 per class
    data = load_cifar10(tmp_path / "data", val_split=50, subset=100, seed=3)
    assert torch.bincount(data.val_labels).tolist() == [5] * 10
    assert torch.bincount(data.train_labels).tolist() == [10] * 10
    val, train = set(ids_of(data.val_images)), set(ids_of(data.train_images))
    assert len(val) == 50 and len(train) == 100 and not val & train
    same = load_cifar10(tmp_path / "data", val_split=50, subset=100, seed=3)
    assert ids_of(same.val_images) == ids_of(data.val_images) and ids_of(same.train_images) == ids_of(data.train_images)
    other = load_cifar10(tmp_path / "data", val_split=50, subset=100, seed=4)
    assert set(ids_of(other.val_images)) != val
    assert (data.split_seed, other.split_seed) == (3, 4)  # fit records it, so a resume cannot switch splits
    assert set(ids_of(load_cifar10(tmp_path / "data", val_split=50, seed=3).val_images)) == val  # subset-independent
    with pytest.raises(ValueError, match="subset must be between 1 and 150"):
        load_cifar10(tmp_path / "data", val_split=50, subset=151)
    with pytest.raises(ValueError, match="val_split must be"):
        load_cifar10(tmp_path / "data", val_split=200)


def test_stratified_split_follows_class_proportions():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    chosen, rest = stratified_split(labels, 10, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(labels[chosen]).tolist() == [6, 3, 1]
    assert sorted(chosen.tolist() + rest.tolist()) == list(range(100))


def test_stratified_split_gives_the_leftover_samples_to_the_largest_remainders():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    chosen, _ = stratified_split(labels, 4, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(labels[chosen]).tolist() == [2, 1, 1]  # quotas 2.4, 1.2, 0.4: class 2 is not left out


def test_smoke_stand_in_is_labelled_shaped_and_seeded():
    data = load_cifar10(smoke=True, val_split=100)
    assert data.source == "smoke" and "synthetic smoke-test stand-in" in data.description
    assert data.train_images.shape == (400, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (200, 3, 32, 32) and torch.bincount(data.val_labels).tolist() == [10] * 10
    assert torch.equal(make_smoke_cifar().train_images, make_smoke_cifar().train_images)
    assert "smoke" in str(data) and "val 100" in str(data)


# ---------------------------------------------------------------------------------------------- augmentation
def coordinate_images(n: int) -> torch.Tensor:
    """Every image: red = row + 1, green = column + 1 (1..32), blue = 255, so a crop's offset can be read back."""
    rows = torch.arange(1, 33)[:, None].expand(32, 32)
    image = torch.stack([rows, rows.T, torch.full((32, 32), 255)]).to(torch.uint8)
    return image.expand(n, 3, 32, 32).clone()


def raw(images: torch.Tensor) -> torch.Tensor:
    """Undo a loader's normalisation with mean 0, std 1/255: back to 0..255 integers."""
    return images.round().long()


def read_offsets(batch: torch.Tensor) -> tuple[list[int], list[int], list[bool]]:
    """(dy, dx, flipped) of each image of a coordinate_images batch: pixel (16, 16) of the crop is (dy+13, dx+13)."""
    pixels = raw(batch)
    flipped = (pixels[:, 1, 16, 15] > pixels[:, 1, 16, 16]).tolist()
    dx = [int(pixels[i, 1, 16, 15 if f else 16]) - 13 for i, f in enumerate(flipped)]
    return (pixels[:, 0, 16, 16] - 13).tolist(), dx, flipped


IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1 / 255,) * 3}


def test_batch_crop_and_flip_match_pad_and_slice():
    images = tagged_images(5)
    dx, dy = torch.tensor([0, 4, 8, 2, 7]), torch.tensor([8, 4, 0, 5, 1])
    cropped = batch_crop(images, dx, dy, padding=4)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(5):
        assert torch.equal(cropped[i], padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32])
    assert torch.equal(cropped[1], images[1])  # offset (4, 4) is no shift
    flip = torch.tensor([True, False, True, False, False])
    flipped = batch_flip(images, flip)
    assert torch.equal(flipped[0], images[0].flip(-1)) and torch.equal(flipped[1], images[1])


def test_training_crops_stay_in_bounds_cover_every_offset_and_flip_per_sample():
    loader = TensorLoader(coordinate_images(2000), torch.arange(2000), 500, train=True, seed=0, **IDENTITY)
    offsets, flips = set(), []
    for batch, _ in loader:
        pixels = raw(batch)
        assert pixels.min() >= 0 and pixels.max() <= 255 and batch.shape == (500, 3, 32, 32)
        dy, dx, flipped = read_offsets(batch)
        assert all(0 <= d <= 8 for d in dy + dx)
        offsets |= set(zip(dy, dx))
        flips.append(flipped)
    assert offsets == {(y, x) for y in range(9) for x in range(9)}
    assert all(0.4 < sum(f) / len(f) < 0.6 for f in flips)  # per sample: some flipped, some not, in every batch


def test_loader_is_seeded_and_set_epoch_replays_an_epoch():
    images, labels = tagged_images(64), torch.arange(64)

    def epoch_batches(loader):
        return [(x.clone(), y.clone()) for x, y in loader]

    loader = TensorLoader(images, labels, 16, train=True, seed=1)
    assert len(loader) == 4
    epochs = [epoch_batches(loader) for _ in range(3)]
    twin = TensorLoader(images, labels, 16, train=True, seed=1)
    first = epoch_batches(twin)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, epochs[0]))
    assert not torch.equal(epochs[0][0][1], epochs[1][0][1])  # a fresh permutation each epoch
    loader.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch_batches(loader), epochs[1]))
    other = epoch_batches(TensorLoader(images, labels, 16, train=True, seed=2))
    assert not torch.equal(other[0][1], first[0][1])
    assert sorted(torch.cat([y for _, y in epochs[2]]).tolist()) == list(range(64))


def test_training_leaves_out_a_last_batch_of_one_image_and_evaluation_keeps_it():
    images = tagged_images(9)
    train = [len(y) for _, y in TensorLoader(images, torch.arange(9), 4, train=True, seed=0)]
    assert train == [4, 4]  # not [4, 4, 1]: BatchNorm cannot train on one image with 1x1 maps
    assert [len(y) for _, y in TensorLoader(images[:6], torch.arange(6), 4, train=True, seed=0)] == [4, 2]
    assert [len(y) for _, y in TensorLoader(images, torch.arange(9), 4, train=False)] == [4, 4, 1]
    assert [len(y) for _, y in TensorLoader(images[:3], torch.arange(3), 1, train=True, seed=0)] == [1, 1, 1]


def test_eval_loader_is_ordered_unaugmented_and_normalised():
    images = tagged_images(10)
    loader = TensorLoader(images, torch.arange(10), 4, train=False, channels_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x = torch.cat([b for b, _ in batches])
    mean, std = torch.tensor((0.4914, 0.4822, 0.4465)), torch.tensor((0.2470, 0.2435, 0.2616))
    assert torch.allclose(x, (images.float() / 255 - mean[:, None, None]) / std[:, None, None], atol=1e-6)
    assert torch.equal(x, normalize(images, mean, std))
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, loader))


def test_ddp_shards_are_disjoint_cover_the_epoch_and_keep_each_image_augmentation():
    images = coordinate_images(40)
    x, y = next(iter(TensorLoader(images, torch.arange(40), 40, train=True, seed=5, **IDENTITY)))
    single = dict(zip(y.tolist(), x))  # image id -> its augmented version in a one-process epoch
    shards = []
    for rank in range(2):
        loader = TensorLoader(images, torch.arange(40), 8, train=True, seed=5, rank=rank, world_size=2, **IDENTITY)
        assert len(loader) == 3  # 20 images per rank
        batches = list(loader)
        shards.append(torch.cat([y for _, y in batches]).tolist())
        for x, y in batches:
            assert all(torch.equal(x[i], single[int(label)]) for i, label in enumerate(y))
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(40))
    # an odd count wraps around so both ranks take the same number of steps; evaluation shards without padding
    odd = [list(TensorLoader(images[:7], torch.arange(7), 2, train=True, rank=r, world_size=2)) for r in range(2)]
    assert len(odd[0]) == len(odd[1]) == 2
    assert set(torch.cat([y for _, y in odd[0] + odd[1]]).tolist()) == set(range(7))
    evals = [torch.cat([y for _, y in TensorLoader(images[:7], torch.arange(7), 2, train=False, rank=r,
                                                   world_size=2)]).tolist() for r in range(2)]
    assert sorted(evals[0] + evals[1]) == list(range(7))


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(torch.zeros(4, 3, 32, 32), torch.zeros(4), 2, train=True)
    with pytest.raises(ValueError, match="rank must be"):
        TensorLoader(tagged_images(4), torch.arange(4), 2, train=True, rank=2, world_size=2)


def test_official_class_names_come_from_batches_meta(tmp_path):
    folder, _, _ = write_official(tmp_path)
    names = [f"class{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}))
    assert load_cifar10(tmp_path).classes == tuple(names)


def test_grayscale_and_rgba_images_load_as_rgb(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "imgs" / "train" / "cat").mkdir(parents=True)
    Image.new("L", (32, 32), 77).save(tmp_path / "imgs" / "train" / "cat" / "gray.png")
    Image.new("RGBA", (32, 32), (1, 2, 3, 4)).save(tmp_path / "imgs" / "train" / "cat" / "rgba.png")
    data = load_cifar10(tmp_path / "imgs")
    assert data.train_images.shape == (2, 3, 32, 32)
    assert data.train_images[0, :, 0, 0].tolist() == [77, 77, 77]  # grey: the same value in every channel
    assert data.train_images[1, :, 0, 0].tolist() == [1, 2, 3]  # RGBA: the alpha channel dropped


def test_drop_last_drops_the_partial_batch():
    images = torch.zeros(9, 3, 4, 4, dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(9), 4, train=False, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]


def test_an_unreadable_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "imgs" / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32), (9, 8, 7)).save(tmp_path / "imgs" / "train" / "cat" / "a.png")
    first = load_cifar10(tmp_path / "imgs")
    (cache,) = (tmp_path / "cache").glob("imagefolder-*.pt")
    cache.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        again = load_cifar10(tmp_path / "imgs")
    assert torch.equal(again.train_images, first.train_images)
    assert torch.equal(torch.load(cache, weights_only=True)["train_images"], first.train_images)


def test_hidden_folders_are_not_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
    write_imagefolder(tmp_path / "imgs", test=False)
    (tmp_path / "imgs" / "train" / ".ipynb_checkpoints").mkdir()  # what JupyterLab leaves in a folder it opened
    save_image(tagged_images(1)[0], tmp_path / "imgs" / "train" / ".ipynb_checkpoints" / "0000.png")
    data = load_cifar10(tmp_path / "imgs")
    assert data.classes == ("cat", "dog", "ship") and len(data.train_labels) == 12
