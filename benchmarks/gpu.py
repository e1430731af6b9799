"""GPU benchmarks: epoch time of ResNet-20/56 per speed-up, and time to 91 % validation accuracy (fast recipe).

    python -m benchmarks.gpu --data /path/to/cifar               # writes benchmarks/RESULTS_GPU.md
    python -m benchmarks.gpu --data DIR --out "$OUT/RESULTS_GPU.md"  # on a lent machine: only $OUT comes back
    python -m benchmarks.gpu --dry-run                           # every code path on the CPU with tiny sizes

Epoch time: one pass over the training images (full batches of 128, ``drop_last``), after ``--warmup`` untimed
steps (which include ``torch.compile``'s compilation), timed on the host around a ``cuda.synchronize()``. The step
is cross-entropy + SGD (lr 0.1, momentum 0.9, Nesterov, wd 5e-4); no evaluation. Configurations, per model:
the standard pipeline (torchvision ``ImageFolder`` + ``DataLoader(num_workers=2, pin_memory=True)``, PIL
transforms) in fp32 NCHW and with bf16 + channels_last; resnet_lab's ``TensorLoader`` (the dataset on the GPU,
batched augmentation) in fp32 NCHW, + channels_last, + bf16 autocast, + ``torch.compile``.

Time to accuracy: ``resnet_lab.train.fit(resnet20(), recipe="fast")`` on ``load_cifar10(data, val_split=5000)``
with fit's GPU defaults (bf16, channels_last), stopped by ``on_epoch_end`` at the first epoch whose validation
accuracy (with test-time flip) reaches ``--target``. The clock runs from the call to ``fit`` (data already decoded)
to that epoch's end, so it counts per-epoch evaluation. Without real data it is skipped, and epoch times run on a
synthetic image folder (said so in the output).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.throughput import make_image_folder, standard_loader, train_step  # noqa: E402
from resnet_lab.data import DATA_ENV, CifarData, load_cifar10  # noqa: E402
from resnet_lab.loader import TensorLoader  # noqa: E402
from resnet_lab.measure import synchronize  # noqa: E402
from resnet_lab.models import build_model  # noqa: E402

__all__ = ["Setup", "SETUPS", "epoch_seconds", "time_to_accuracy", "machine_header", "main"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"models": ("resnet20", "resnet56"), "batch_size": 128, "warmup": 20, "workers": 2,
            "synthetic_images": 20_000, "target": 0.91}
# --dry-run: the CPU, a 3-block ResNet, a few tiny batches, compile without a code generator, one fit epoch
DRY_RUN = {"models": ("resnet8",), "batch_size": 16, "warmup": 1, "workers": 2, "synthetic_images": 64,
           "target": 0.0}


@dataclass(frozen=True)
class Setup:
    name: str
    loader: str  # "standard" (DataLoader + PIL transforms) or "tensor" (resnet_lab's TensorLoader on the GPU)
    channels_last: bool
    amp: bool  # bf16 autocast
    compile: bool


SETUPS = (
    Setup("standard DataLoader, fp32, NCHW", "standard", False, False, False),
    Setup("standard DataLoader, bf16, channels_last", "standard", True, True, False),
    Setup("TensorLoader, fp32, NCHW", "tensor", False, False, False),
    Setup("TensorLoader, fp32, channels_last", "tensor", True, False, False),
    Setup("TensorLoader, bf16, channels_last", "tensor", True, True, False),
    Setup("TensorLoader, bf16, channels_last, torch.compile", "tensor", True, True, True),
)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, setup: Setup) -> Callable:
    """The training step of ``setup``: the batch to the device (and memory format), then ``train_step``."""
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format
    train = train_step(model, optimizer, bf16=setup.amp, device_type=device.type)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        train(images.to(device, non_blocking=True).contiguous(memory_format=memory_format),
              labels.to(device, non_blocking=True))

    return step


def epoch_seconds(model_name: str, setup: Setup, *, folder: Path, data: CifarData, device: torch.device,
                  batch_size: int, warmup: int, workers: int, seed: int = 0,
                  compile_backend: str = "inductor") -> tuple[float, int]:
    """``(seconds, images)`` of one training epoch of ``model_name`` under ``setup``, after ``warmup`` steps."""
    torch.manual_seed(seed)
    net = build_model(model_name).to(device, memory_format=torch.channels_last if setup.channels_last
                                     else torch.contiguous_format).train()
    model = torch.compile(net, backend=compile_backend) if setup.compile else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = _step(model, optimizer, device, setup)
    if setup.loader == "standard":
        loader = standard_loader(folder, batch_size, workers=workers, seed=seed, drop_last=True,
                                 pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    else:
        loader = TensorLoader(data.train_images, data.train_labels, batch_size, train=True, device=device,
                              seed=seed, channels_last=setup.channels_last, drop_last=True)
    for i, (images, labels) in enumerate(loader):  # warm-up: worker start, cuDNN plans, compilation
        step(images, labels)
        if i + 1 >= warmup:
            break
    synchronize(device)
    count, start = 0, time.perf_counter()
    for images, labels in loader:
        step(images, labels)
        count += len(labels)
    synchronize(device)
    return time.perf_counter() - start, count


class _Reached(Exception):
    """Raised from ``on_epoch_end`` to stop ``fit`` once the target accuracy is reached."""


def time_to_accuracy(data: CifarData, *, target: float, device: torch.device, model_name: str = "resnet20",
                     epochs: int | None = None, batch_size: int | None = None, compile: bool = False,
                     seed: int = 0) -> dict:
    """Train with ``fit(recipe="fast")`` until ``val_acc >= target``: seconds, epochs and accuracy per epoch."""
    from resnet_lab.runtime import seed_everything
    from resnet_lab.train import fit

    seed_everything(seed)
    model = build_model(model_name)
    log: list[tuple[int, float, float]] = []  # (epoch, val_acc, seconds since the start)
    start = time.perf_counter()

    def on_epoch_end(record: dict) -> None:
        synchronize(device)
        log.append((record["epoch"], record["val_acc"], time.perf_counter() - start))
        print(f"  epoch {record['epoch']}: val acc {record['val_acc']:.4f} at {log[-1][2]:.1f} s", flush=True)
        if record["val_acc"] >= target:
            raise _Reached

    try:
        fit(model, data, recipe="fast", epochs=epochs, batch_size=batch_size, device=device, compile=compile,
            seed=seed, progress=False, model_name=model_name, on_epoch_end=on_epoch_end)
    except _Reached:
        pass
    reached = bool(log) and log[-1][1] >= target
    return {"model": model_name, "target": target, "reached": reached, "seconds": log[-1][2] if log else None,
            "epochs": len(log), "best": max((acc for _, acc, _ in log), default=None), "log": log}


def machine_header(device: torch.device) -> list[str]:
    """The GPU (or the CPU of a dry run), torch, CUDA and cuDNN versions, host cores and the date."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        versions = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    else:
        gpu, versions = "none: dry run on the CPU (tiny sizes; the numbers mean nothing)", "CPU"
    return [f"- GPU: {gpu}", f"- torch {torch.__version__} ({versions}); {os.cpu_count()} host CPU cores",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}"]


def _epoch_table(rows: list[tuple[str, Setup, float, int]]) -> list[str]:
    lines = ["| model | configuration | epoch | img/s | × standard fp32 |", "|---|---|---|---|---|"]
    baseline = {model: seconds for model, setup, seconds, images in rows if setup == SETUPS[0] and images}
    for model, setup, seconds, images in rows:
        if not images:
            lines.append(f"| {model} | {setup.name} | failed | – | – |")
            continue
        ratio = f"{baseline[model] / seconds:.2f}×" if model in baseline else "–"
        lines.append(f"| {model} | {setup.name} | {seconds:.2f} s | {images / seconds:,.0f} | {ratio} |")
    return lines


def _accuracy_table(result: dict) -> list[str]:
    if result["reached"]:
        outcome = f"{result['seconds']:.0f} s ({result['epochs']} epochs)"
    else:
        best = "–" if result["best"] is None else f"{result['best']:.2%}"
        outcome = f"not reached in {result['epochs']} epochs (best {best})"
    lines = ["| model | recipe | target val acc | time to target |", "|---|---|---|---|",
             f"| {result['model']} | fast, fit's defaults | {result['target']:.0%} | {outcome} |", "",
             "| epoch | val acc | seconds |", "|---|---|---|"]
    return lines + [f"| {epoch} | {acc:.2%} | {seconds:.1f} |" for epoch, acc, seconds in result["log"]]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help=f"CIFAR-10 image folder or batches (default ${DATA_ENV}; else synthetic)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_GPU.md")
    parser.add_argument("--models", nargs="+", help="default resnet20 resnet56")
    parser.add_argument("--batch-size", type=int, help="epoch-time batch (default 128)")
    parser.add_argument("--warmup", type=int, help="untimed steps before each timed epoch (default 20)")
    parser.add_argument("--workers", type=int, help="DataLoader workers of the standard pipeline (default 2)")
    parser.add_argument("--target", type=float, help="validation accuracy to reach (default 0.91)")
    parser.add_argument("--fit-epochs", type=int, help="the fast recipe's epochs (default: the recipe's, 30)")
    parser.add_argument("--compile-fit", action="store_true", help="torch.compile in the time-to-accuracy run")
    parser.add_argument("--skip-epochs", action="store_true", help="skip the epoch-time table")
    parser.add_argument("--skip-accuracy", action="store_true", help="skip the time-to-accuracy run")
    parser.add_argument("--dry-run", action="store_true", help="the CPU and tiny sizes: checks the code paths")
    args = parser.parse_args(argv)
    settings = dict(DRY_RUN if args.dry_run else DEFAULTS)
    settings.update({key: value for key, value in vars(args).items() if key in settings and value is not None})
    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        parser.error("no CUDA GPU found; this benchmark needs one (use --dry-run to check the code on the CPU)")
    given = None if args.dry_run else args.data or os.environ.get(DATA_ENV) or None
    given_data = None
    if given:  # read the data first: a wrong path fails before any GPU time is spent
        try:
            given_data = load_cifar10(given)
        except (OSError, ValueError) as error:
            parser.error(f"--data {given}: {error}")
    sections = [["# resnet-lab GPU benchmarks", "", *machine_header(device),
                 f"- Command: `python -m benchmarks.gpu {' '.join(sys.argv[1:] if argv is None else argv)}`"]]

    def write() -> None:  # after every measurement, so a run cut short still leaves its numbers
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n\n".join("\n".join(lines) for lines in sections) + "\n")

    write()
    with tempfile.TemporaryDirectory(prefix="resnet_lab_gpu_") as temp:
        folder = Path(given) if given else make_image_folder(Path(temp), settings["synthetic_images"])
        data = given_data if given else load_cifar10(folder, cache=False)
        if not args.skip_epochs:
            source = folder if given else f"a synthetic folder of {settings['synthetic_images']} PNGs (not CIFAR-10)"
            section = ["## Epoch time", "", f"Training images: {source}; batch {settings['batch_size']}, full "
                       f"batches only; standard pipeline with {settings['workers']} workers. "
                       f"{settings['warmup']} untimed steps first (compilation included there)."]
            rows: list[tuple[str, Setup, float, int]] = []
            sections.append(section)
            for model_name in settings["models"]:
                for setup in SETUPS:
                    try:
                        seconds, images = epoch_seconds(
                            model_name, setup, folder=folder, data=data, device=device,
                            batch_size=settings["batch_size"], warmup=settings["warmup"],
                            workers=settings["workers"], compile_backend="eager" if args.dry_run else "inductor")
                    except Exception as error:  # one failing configuration (a compiler, say) must not lose the rest
                        traceback.print_exc()
                        seconds, images = float("nan"), 0
                        section.append(f"- {model_name}, {setup.name} failed: {type(error).__name__}: "
                                       f"{str(error).splitlines()[0] if str(error) else ''}")
                    print(f"{model_name}, {setup.name}: {seconds:.2f} s/epoch", flush=True)
                    rows.append((model_name, setup, seconds, images))
                    sections[-1] = section + [""] + _epoch_table(rows)
                    write()
        if args.skip_accuracy:
            pass
        elif not given and not args.dry_run:
            sections.append(["## Time to accuracy", "", "Skipped: no CIFAR-10 given (--data or $RESNET_LAB_DATA)."])
        else:
            split = load_cifar10(smoke=True, val_split=50) if args.dry_run else load_cifar10(folder, val_split=5000)
            result = time_to_accuracy(split, target=settings["target"], device=device,
                                      model_name=settings["models"][0] if args.dry_run else "resnet20",
                                      epochs=1 if args.dry_run else args.fit_epochs, compile=args.compile_fit)
            sections.append(["## Time to accuracy", "", f"`fit(recipe='fast')` on {split}; validation accuracy "
                             "with test-time flip, checked after every epoch.", "", *_accuracy_table(result)])
        write()
    print(args.out.read_text(), end="")  # the tables in the log too
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
