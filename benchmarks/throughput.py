"""Training throughput of ResNet-20 on the CPU: the standard pipeline, resnet_lab's loader, and the bare step.

    python -m benchmarks.throughput --data /path/to/cifar       # or set RESNET_LAB_DATA
    python -m benchmarks.throughput --quick                     # a few steps on a synthetic image folder

Every configuration trains a freshly seeded ResNet-20 with the same step: cross-entropy, SGD (lr 0.1, momentum 0.9,
Nesterov, weight decay 5e-4), batch 128. Throughput is the total over ``--steps`` steps after ``--warmup`` untimed
steps: images / seconds, loading and augmentation included wherever a loader is involved.

(a) standard: torchvision ``ImageFolder`` + ``DataLoader(num_workers=2, shuffle=True)`` with ``RandomCrop(32,
    padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``; model in NCHW (what a learner would write).
(b) resnet_lab: ``load_cifar10`` (decoded uint8 cache) + ``TensorLoader(train=True, channels_last=True)``, model in
    channels_last; (b, fit) is the same through ``engine.train_epoch`` with ``fit``'s CPU defaults (its logging too).
(c) limit: the bare step on one pre-made batch, NCHW and channels_last: no loading at all; on a CPU with AMX also
    channels_last with bfloat16 autocast, the limit for (b, fit), which then trains in bfloat16 (fit's default there).
Targets (issue 8): (b) at least 90 % of the best limit, about 1.9x the standard pipeline.
Without ``--data`` (and ``RESNET_LAB_DATA``) a synthetic folder of PNGs is written to a temporary directory.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from resnet_lab.data import CIFAR10_MEAN, CIFAR10_STD, DATA_ENV, load_cifar10, make_smoke_cifar
from resnet_lab.loader import TensorLoader
from resnet_lab.models import resnet20
from resnet_lab.runtime import cpu_has_amx

__all__ = ["Result", "machine_info", "make_image_folder", "standard_dataset", "standard_loader", "train_step",
           "images_per_second", "run", "benchmark", "targets", "markdown_table", "main"]

DEFAULTS = {"batch_size": 128, "steps": 40, "warmup": 5, "workers": 2, "seed": 0}
QUICK = {"batch_size": 32, "steps": 2, "warmup": 1}  # --quick: checks the code paths, measures nothing
LIMIT_SHARE, SPEEDUP = 0.90, 1.9  # issue 8's targets for (b): share of the best limit, ratio to (a)
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Result:
    key: str  # "a", "b", "b-fit", "c-nchw", "c-cl", "c-cl-bf16"
    name: str
    images_per_s: float
    bf16: bool = False  # bfloat16 autocast: compared with the bfloat16 limit


def machine_info() -> dict[str, str]:
    """CPU model, cores, RAM, torch version and threads: the header every benchmark result carries."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        ram = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = "unknown"
    return {"cpu": f"{cpu} ({platform.machine()})", "cores": str(os.cpu_count()), "ram": ram,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "threads": str(torch.get_num_threads()),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


# ---------------------------------------------------------------------------------------------- data
def make_image_folder(root: Path, images: int, *, seed: int = 0) -> Path:
    """Write ``images`` synthetic 32x32 PNGs (the smoke stand-in's stripes) as ``root/train/<class>/NNNN.png``."""
    from PIL import Image

    data = make_smoke_cifar(train_per_class=-(-images // 10), test_per_class=1, seed=seed)
    counts = dict.fromkeys(range(10), 0)
    for image, label in zip(data.train_images, data.train_labels.tolist()):
        folder = root / "train" / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{counts[label]:04d}.png")
        counts[label] += 1
    return root


def standard_dataset(root: Path, *, train: bool = True) -> torch.utils.data.Dataset:
    """torchvision's dataset for ``root`` (``ImageFolder``, or ``CIFAR10`` for the official batches) with the
    textbook transforms: ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip`` when ``train``, then
    ``ToTensor`` and ``Normalize``. Always the training images: a validation split is a subset of them."""
    from torchvision import transforms as T

    augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    transform = T.Compose([*augment, T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    if (root / "train").is_dir():
        return torchvision.datasets.ImageFolder(str(root / "train"), transform)
    parent = root.parent if (root / "data_batch_1").exists() else root  # CIFAR10 wants the folder above the batches
    return torchvision.datasets.CIFAR10(str(parent), train=True, transform=transform)


def standard_loader(root: Path, batch_size: int, *, workers: int = 2, seed: int = 0, train: bool = True,
                    indices: Sequence[int] | None = None, **options) -> torch.utils.data.DataLoader:
    """The textbook pipeline: PIL decode and per-image transforms in ``workers`` processes, NCHW float batches.

    ``train`` augments and shuffles; ``indices`` keep only those training images; ``options`` go to the
    ``DataLoader`` (``pin_memory``, ``drop_last``).
    """
    dataset = standard_dataset(root, train=train)
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, list(indices))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=workers,
                                       generator=torch.Generator().manual_seed(seed), **options)


def _forever(loader) -> Iterator[Batch]:
    """Batches from ``loader``, epoch after epoch."""
    while True:
        yield from loader


# ---------------------------------------------------------------------------------------------- the step
def _model(channels_last: bool, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = resnet20().train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, *, bf16: bool = False,
               device_type: str = "cpu") -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step as a function of a batch already on the device: forward (in bfloat16 autocast if
    ``bf16``), cross-entropy, backward, SGD update."""

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def images_per_second(step: Callable[[torch.Tensor, torch.Tensor], None], batches: Iterator[Batch], *,
                      steps: int, warmup: int) -> float:
    """Images per second over ``steps`` steps after ``warmup`` untimed ones; fetching each batch is timed too."""
    for images, labels in itertools.islice(batches, warmup):
        step(images, labels)
    count, start = 0, time.perf_counter()
    for images, labels in itertools.islice(batches, steps):
        step(images, labels)
        count += len(labels)
    return count / (time.perf_counter() - start)


def _fit_style(data, batch_size: int, *, steps: int, warmup: int, seed: int) -> tuple[float, bool]:
    """(b, fit): ``engine.train_epoch`` over ``steps`` batches, with ``fit``'s CPU defaults (``train.prepare_model``).

    Returns images/s and whether those defaults chose bfloat16."""
    from resnet_lab.engine import train_epoch
    from resnet_lab.recipes import RECIPES, make_scheduler
    from resnet_lab.train import prepare_model

    torch.manual_seed(seed)
    model = resnet20()
    runnable, amp_dtype, channels_last = prepare_model(model, torch.device("cpu"), amp=None, channels_last=None,
                                                       compile=False)
    optimizer = _sgd(model)
    scheduler = make_scheduler(optimizer, RECIPES["fast"], warmup + steps)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    images, labels = data.train_images, data.train_labels
    seconds = []
    for count in (warmup, steps):  # one short "epoch" to warm up, one timed
        chosen = torch.arange(count * batch_size) % len(labels)
        loader = TensorLoader(images[chosen], labels[chosen], batch_size, train=True, seed=seed,
                              channels_last=channels_last)
        start = time.perf_counter()
        totals = train_epoch(runnable, loader, optimizer, scheduler, scaler, epoch=1,
                             label_smoothing=RECIPES["fast"]["label_smoothing"], amp_dtype=amp_dtype)
        seconds.append(time.perf_counter() - start)
    return totals["images"] / seconds[-1], amp_dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------------- the benchmark
def run(data_dir: Path, *, batch_size: int = 128, steps: int = 40, warmup: int = 5, workers: int = 2,
        seed: int = 0, fit_style: bool = True, cache: bool = True) -> list[Result]:
    """Measure (a), (b), optionally (b, fit), and (c) on ``data_dir``; see the module docstring."""
    results = []

    def measure(key: str, name: str, channels_last: bool, batches: Iterator[Batch], bf16: bool = False) -> None:
        model = _model(channels_last, seed)
        speed = images_per_second(train_step(model, _sgd(model), bf16=bf16), batches, steps=steps, warmup=warmup)
        if hasattr(batches, "close"):
            batches.close()  # stops the DataLoader's workers before the next configuration runs
        results.append(Result(key, name, speed, bf16))
        print(f"  {name}: {speed:.0f} img/s", flush=True)

    torch.manual_seed(seed)
    standard = standard_loader(data_dir, batch_size, workers=workers, seed=seed)
    kind = type(standard.dataset).__name__  # ImageFolder, or CIFAR10 for the official batches
    measure("a", f"(a) standard: {kind} + DataLoader({workers} workers), NCHW", False, _forever(standard))
    data = load_cifar10(data_dir, cache=None if cache else False)
    loader = TensorLoader(data.train_images, data.train_labels, batch_size, train=True, seed=seed,
                          channels_last=True)
    measure("b", "(b) resnet_lab: TensorLoader, channels_last", True, _forever(loader))
    if fit_style:
        speed, bf16 = _fit_style(data, batch_size, steps=steps, warmup=warmup, seed=seed)
        precision = "bf16 autocast: this CPU has AMX" if bf16 else "float32"
        results.append(Result("b-fit", f"(b, fit) resnet_lab: engine.train_epoch, fit's CPU defaults ({precision})",
                              speed, bf16))
        print(f"  {results[-1].name}: {speed:.0f} img/s", flush=True)
    images, labels = next(iter(TensorLoader(data.train_images, data.train_labels, batch_size, train=True,
                                            seed=seed)))
    measure("c-nchw", "(c) limit: bare step on one batch, NCHW", False, itertools.repeat((images, labels)))
    cl = images.contiguous(memory_format=torch.channels_last)
    measure("c-cl", "(c) limit: bare step on one batch, channels_last", True, itertools.repeat((cl, labels)))
    if cpu_has_amx() or any(r.bf16 for r in results):
        measure("c-cl-bf16", "(c) limit: bare step on one batch, channels_last, bf16 autocast", True,
                itertools.repeat((cl, labels)), bf16=True)
    return results


def _by_key(results: list[Result]) -> dict[str, float]:
    return {r.key: r.images_per_s for r in results}


def targets(results: list[Result]) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` for issue 8's two targets on (b)."""
    speed = _by_key(results)
    limit = max(speed["c-nchw"], speed["c-cl"])
    share, ratio = speed["b"] / limit, speed["b"] / speed["a"]
    return [(f"(b) ≥ {LIMIT_SHARE:.0%} of the best limit (c)", f"{share:.0%}", share >= LIMIT_SHARE),
            (f"(b) ≈ {SPEEDUP}× the standard pipeline (a) (met at ≥ {SPEEDUP}×)", f"{ratio:.2f}×",
             ratio >= SPEEDUP)]


def markdown_table(results: list[Result]) -> str:
    """The results as a markdown table: img/s, ratio to (a), share of the best (c) of the same precision; then
    the targets."""
    speed = _by_key(results)
    limits = {bf16: max((r.images_per_s for r in results if r.key.startswith("c-") and r.bf16 == bf16), default=None)
              for bf16 in (False, True)}
    lines = ["| configuration | img/s | × (a) standard | of best limit (c), same precision |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.images_per_s:.0f} | {r.images_per_s / speed['a']:.2f}× | "
              f"{f'{r.images_per_s / limits[r.bf16]:.0%}' if limits[r.bf16] else 'n/a'} |" for r in results]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {target} | {value} | {'yes' if met else 'no'} |" for target, value, met in targets(results)]
    return "\n".join(lines)


def describe(data_dir: Path, synthetic: bool, settings: dict, quick: bool = False) -> str:
    """One paragraph saying what was measured on what."""
    data = (f"a synthetic folder of PNG stripes written to {data_dir} (not CIFAR-10: no --data or ${DATA_ENV})"
            if synthetic else str(data_dir))
    return (f"ResNet-20, batch {settings['batch_size']}, SGD momentum 0.9 Nesterov wd 5e-4, cross-entropy, "
            f"{torch.get_num_threads()} torch threads, seed {settings['seed']}; (a) uses {settings['workers']} "
            f"DataLoader worker processes (1 torch thread each) besides the training process. "
            f"img/s = images / seconds over {settings['steps']} steps after {settings['warmup']} warm-up steps "
            f"(the total, not a per-step median), batch loading included. Data: {data}."
            + (" Quick mode: too few steps to mean anything; it only checks that everything runs." if quick else ""))


def benchmark(data: str | None = None, *, quick: bool = False, fit_style: bool = True,
              **overrides) -> tuple[list[Result], str]:
    """Run the benchmark on ``data`` (else ``$RESNET_LAB_DATA``, else a synthetic folder): results and description.

    ``overrides`` replace the ``DEFAULTS`` (``batch_size``, ``steps``, ``warmup``, ``workers``, ``seed``);
    ``quick`` starts from ``QUICK`` instead.
    """
    settings = dict(DEFAULTS, **(QUICK if quick else {}))
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; choose from {sorted(settings)}")
    settings.update({key: value for key, value in overrides.items() if value is not None})
    given = data or os.environ.get(DATA_ENV) or None
    with tempfile.TemporaryDirectory(prefix="resnet_lab_bench_") as temp:
        images = (settings["warmup"] + settings["steps"] + 1) * settings["batch_size"]  # one epoch is enough
        data_dir = Path(given) if given else make_image_folder(Path(temp), images, seed=settings["seed"])
        text = describe(data_dir, not given, settings, quick)
        print(text, flush=True)
        results = run(data_dir, fit_style=fit_style, cache=bool(given), **settings)
    return results, text


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help=f"CIFAR-10 image folder or batches (default ${DATA_ENV}; else synthetic)")
    parser.add_argument("--batch-size", type=int,
                        help=f"default {DEFAULTS['batch_size']} ({QUICK['batch_size']} with --quick)")
    parser.add_argument("--steps", type=int, help=f"timed steps per configuration (default {DEFAULTS['steps']})")
    parser.add_argument("--warmup", type=int, help=f"untimed steps first (default {DEFAULTS['warmup']})")
    parser.add_argument("--workers", type=int, help=f"DataLoader workers of (a) (default {DEFAULTS['workers']})")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-fit", action="store_true", help="skip the (b, fit) configuration")
    parser.add_argument("--quick", action="store_true", help="a few small steps: checks that everything runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, {info['ram']} RAM, torch {info['torch']}")
    results, _ = benchmark(args.data, quick=args.quick, fit_style=not args.no_fit, batch_size=args.batch_size,
                           steps=args.steps, warmup=args.warmup, workers=args.workers, seed=args.seed)
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
