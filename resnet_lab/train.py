"""Training loops: ``train_on_tensors`` (notebook 01's toy SGD loop) and ``fit``, the resumable CIFAR-10 engine.

Run ``python -m resnet_lab.train --model resnet20 --data DIR --epochs 30 --recipe fast --out runs/resnet20``
(``--smoke`` trains on a synthetic stand-in, no data needed; ``--resume`` continues a stopped run). The same
command under ``torchrun --standalone --nproc_per_node N -m resnet_lab.train ...`` trains with
DistributedDataParallel. Recipes live in :mod:`resnet_lab.recipes`, the inner loops in :mod:`resnet_lab.engine`,
the loader in :mod:`resnet_lab.loader`, checkpoints in :mod:`resnet_lab.checkpoint`.

DDP notes: each rank trains on its shard ``perm[rank::world_size]`` of every epoch with ``batch_size / world_size``
images per step; BatchNorm is per rank (batch statistics of the rank's own images, as in the paper's multi-GPU
training), and the running averages are averaged across ranks after each epoch, so every rank holds the same
weights. Metrics are summed across ranks; only rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
    write_metrics,
)
from .data import CifarData, load_cifar10
from .engine import Evaluation, TrainingDiverged, average_buffers, evaluate, train_epoch
from .engine import world as world_info
from .loader import TensorLoader
from .models import build_model, count_parameters
from .recipes import RECIPES, make_optimizer, make_scheduler
from .runtime import autocast_dtype, cpu_has_amx, device_problem, pick_device, seed_everything

__all__ = ["train_on_tensors", "fit", "prepare_model", "evaluate", "Evaluation", "TrainingDiverged", "main"]

# Settings that must match to resume a run: anything else would not continue the same run.
_RESUME_KEYS = ("model", "architecture", "recipe", "epochs", "batch_size", "lr", "momentum", "nesterov",
                "weight_decay", "label_smoothing", "crop_padding", "warmup", "seed", "data", "train_size", "val_size",
                "split_seed", "train_data")


def train_on_tensors(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 300,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 128,
    seed: int = 0,
    desc: str = "training",
) -> dict[str, list[float]]:
    """Minimise cross-entropy with SGD + momentum on random mini-batches of ``(x, y)``.

    Returns per-step ``loss`` and mini-batch ``accuracy`` (a fraction). A non-finite loss is recorded
    and training stops there, so a diverging network shows up as a truncated curve, not an exception.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive; got steps={steps}, batch_size={batch_size}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    model.train()
    progress = tqdm(range(steps), desc=desc, leave=False)
    for _ in progress:
        batch = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator)
        logits = model(x[batch])
        loss = F.cross_entropy(logits, y[batch])
        history["loss"].append(loss.item())
        history["accuracy"].append((logits.argmax(1) == y[batch]).float().mean().item())
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['accuracy'][-1]:.2f}")
    model.eval()
    return history


def _resolve(recipe: str, **overrides) -> dict:
    """The recipe's settings with every non-None override applied; lr scales with a changed batch size."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}; got {recipe!r}")
    config = dict(RECIPES[recipe], recipe=recipe)
    if overrides.get("batch_size") is not None and overrides.get("lr") is None:  # linear scaling rule
        config["lr"] = config["lr"] * overrides["batch_size"] / config["batch_size"]
    config.update({key: value for key, value in overrides.items() if value is not None})
    return config


def _architecture(model: nn.Module) -> str:
    """A short fingerprint of ``model``'s layers: its module types in order and the shapes of its state.

    Stable across torch versions; it tells plain8 from resnet8 (the same weight shapes in other blocks).
    """
    layers = [type(module).__name__ for module in model.modules()]
    shapes = [f"{key} {tuple(value.shape)}" for key, value in model.state_dict().items()]
    return hashlib.sha256("\n".join(layers + shapes).encode()).hexdigest()[:12]


def _training_set(data: CifarData) -> str:
    """A short fingerprint of the training images and labels, in order: another folder, subset or split differs."""
    digest = hashlib.blake2b(data.train_labels.cpu().numpy().tobytes(), digest_size=6)
    digest.update(data.train_images.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def prepare_model(model: nn.Module, device: torch.device, *, amp: bool | None, channels_last: bool | None,
                  compile: bool) -> tuple[nn.Module, torch.dtype | None, bool]:
    """Move ``model`` (in place) to ``device`` with ``fit``'s precision, memory-format and compilation choices.

    The one place those are decided (``None`` picks ``fit``'s default). Returns ``(runnable, amp_dtype,
    channels_last)``: ``runnable`` is what the training step calls (``torch.compile(model)`` or ``model`` itself;
    ``model`` still holds the weights: save and evaluate it), ``amp_dtype`` is the autocast dtype or None for
    float32.
    """
    cuda = device.type == "cuda"
    amp = (cuda or (device.type == "cpu" and cpu_has_amx())) if amp is None else amp
    amp_dtype = None
    if amp:  # bfloat16 needs no loss scaling; float16 (GPUs before Ampere) does, through the GradScaler
        amp_dtype = autocast_dtype(device)
    # channels_last: faster convolutions on CUDA and on CPU (ResNet-20 step +15 % on a 2-core x86 CPU, measured)
    channels_last = device.type in ("cuda", "cpu") if channels_last is None else channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return torch.compile(model) if compile else model, amp_dtype, channels_last


def fit(
    model: nn.Module, data: CifarData, *, epochs: int | None = None, recipe: str = "fast",
    batch_size: int | None = None, lr: float | None = None, momentum: float | None = None,
    nesterov: bool | None = None, weight_decay: float | None = None, label_smoothing: float | None = None,
    warmup: bool | None = None, device: str | torch.device | None = None, amp: bool | None = None,
    channels_last: bool | None = None, compile: bool = False, out_dir: str | os.PathLike | None = None,
    resume: bool = False, seed: int = 0, progress: bool = True, model_name: str | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` on ``data`` with ``recipe`` ("fast" or "paper", see :mod:`resnet_lab.recipes`).

    Every setting left at ``None`` comes from the recipe (``epochs`` too); with ``recipe="paper"``, ``warmup=None``
    turns the paper's warm-up on for nets of 54+ blocks (ResNet-110; the fast recipe has its own gradual one).
    ``amp`` (bfloat16 autocast; float16 on GPUs before Ampere, :func:`resnet_lab.runtime.autocast_dtype`) defaults
    to on for CUDA and for CPUs with AMX (:func:`resnet_lab.runtime.cpu_has_amx`), ``channels_last`` to on for
    CUDA and CPU.
    With ``out_dir``, each epoch ends with an atomic ``checkpoint.pt`` and ``metrics.json``; ``resume=True``
    continues from the checkpoint, with the same network and settings (bit-identical on CPU with a fixed thread
    count), and says so even with ``progress=False`` (which drops the bar and the per-epoch lines). Returns the
    history: one dict per epoch with ``epoch, train_loss, train_acc, val_loss, val_acc, test_loss, test_acc,
    images_per_s, seconds, lr, images`` (losses are plain cross-entropy, accuracies fractions, None where not
    measured; ``seconds`` is the whole epoch, ``images_per_s`` training only); ``model`` is left in evaluation mode.
    ``seed`` seeds the batch order and augmentation and, like :func:`resnet_lab.runtime.seed_everything`, torch's
    global generator (a resumed run restores the generator's saved state instead).
    Raises TrainingDiverged on a NaN/inf loss, ValueError on settings that cannot train (or resume).
    """
    rank, world = world_info()
    device = pick_device(None if device is None else str(device))
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    name = model_name or type(model).__name__.lower()
    config = _resolve(recipe, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, nesterov=nesterov,
                      weight_decay=weight_decay, label_smoothing=label_smoothing)
    for key in ("epochs", "batch_size"):
        if config[key] < 1:
            raise ValueError(f"{key} must be at least 1; got {config[key]}")
    if config["batch_size"] % world:
        raise ValueError(f"batch_size {config['batch_size']} must be divisible by the {world} processes; "
                         f"try {config['batch_size'] // world * world or world}")
    if warmup is None:
        warmup = recipe == "paper" and len(getattr(model, "blocks", ())) >= 54
    config.update(model=name, architecture=_architecture(model), warmup=warmup, seed=seed, data=data.source,
                  train_size=len(data.train_labels), val_size=0 if data.val_labels is None else len(data.val_labels),
                  split_seed=data.split_seed, train_data=_training_set(data))
    runnable, amp_dtype, channels_last = prepare_model(model, device, amp=amp, channels_last=channels_last,
                                                       compile=compile)
    with torch.no_grad():  # a wrong head fails here with a clear message, not deep in cross_entropy
        outputs = model.eval()(torch.zeros(1, *data.train_images.shape[1:], device=device)).shape[-1]
    if outputs != len(data.classes):
        raise ValueError(f"the model has {outputs} outputs but the data has {len(data.classes)} classes; "
                         f"build it with num_classes={len(data.classes)}")
    config.update(amp=str(amp_dtype).removeprefix("torch.") if amp_dtype else None, channels_last=channels_last,
                  world_size=world, device=device.type)

    # data: the whole set on the device; eval loaders shard too, their sums are reduced in evaluate()
    loader_options = {"device": device, "channels_last": channels_last, "rank": rank, "world_size": world}
    train_loader = TensorLoader(data.train_images, data.train_labels, config["batch_size"] // world, train=True,
                                seed=seed, padding=config["crop_padding"], **loader_options)
    if len(train_loader) == 0:  # one image per process: an epoch never ends on a batch of one image
        raise ValueError(f"{len(data.train_labels)} training image(s) over {world} process(es) give no training "
                         f"step (BatchNorm cannot train on a batch of one image); train on at least {world + 1} "
                         "images (--subset)")
    eval_loaders = {split: TensorLoader(images, labels, min(1024, 2 * config["batch_size"]), train=False,
                                        **loader_options)
                    for split, images, labels in (("val", data.val_images, data.val_labels),
                                                  ("test", data.test_images, data.test_labels)) if images is not None}
    optimizer = make_optimizer(model, lr=config["lr"], momentum=config["momentum"], nesterov=config["nesterov"],
                               weight_decay=config["weight_decay"], decay_norm_and_bias=config["decay_norm_and_bias"])
    scheduler = make_scheduler(optimizer, config, config["epochs"] * len(train_loader), warmup=warmup)  # per step
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    # resume, or refuse to overwrite a run that exists
    torch.manual_seed(seed)
    history: list[dict] = []
    path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if path is not None and path.exists():
        state = load_checkpoint(path)
        if not resume:
            raise FileExistsError(f"{path} already holds epoch {state['epoch']} of a run; pass resume=True "
                                  "(--resume) to continue it, or choose another out_dir (--out) for a new run")
        saved = dict(state["config"])
        saved.setdefault("split_seed", saved.get("seed"))  # runs saved before it was recorded drew it with the seed
        saved.setdefault("crop_padding", 4)  # and every recipe padded by 4 before it was a setting
        for key in ("architecture", "val_size", "train_data"):  # not checked in runs saved before they were recorded
            saved.setdefault(key, config[key])
        changed = {key: (saved.get(key), config[key]) for key in _RESUME_KEYS if saved.get(key) != config[key]}
        if changed:
            advice = ("the run trained another network: build the same one (layers and sizes)"
                      if "architecture" in changed else
                      "the run trained on other images: load the same data (folder, subset, validation split and "
                      "split seed; --data, --subset, --val-split, --split-seed)" if "train_data" in changed else
                      "use the saved settings")
            raise ValueError(f"cannot resume {path}: settings differ (saved, now): {changed}; {advice}, or another "
                             "out_dir for a new run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without loss scaling: a CPU or bf16 run resumed in fp16 starts afresh
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        history = state["history"]
        if rank == 0:  # said with or without progress bars: a log must show that the run continued
            print(f"resuming {path} after epoch {state['epoch']} of {config['epochs']}", flush=True)
    train_model = runnable
    if world > 1:  # parameters start equal (DDP broadcasts rank 0's); gradients are averaged every step
        # per-rank BatchNorm: no buffer sync in forward (the default copies rank 0's every step); see average_buffers
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                   inspect.signature(nn.parallel.DistributedDataParallel).parameters else {"broadcast_buffers": False})
        train_model = nn.parallel.DistributedDataParallel(
            runnable, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)

    # one bar for the whole run (a notebook keeps it), one printed line per epoch
    bar = tqdm(total=(config["epochs"] - len(history)) * len(train_loader), unit="step", desc=name,
               disable=not (progress and rank == 0))
    saved_epoch = len(history)  # what the checkpoint on disk holds
    epoch = saved_epoch + 1
    try:
        for epoch in range(len(history) + 1, config["epochs"] + 1):
            start = time.perf_counter()
            train_loader.set_epoch(epoch)
            bar.set_description(f"epoch {epoch}/{config['epochs']}")
            try:
                totals = train_epoch(train_model, train_loader, optimizer, scheduler, scaler, epoch=epoch,
                                     label_smoothing=config["label_smoothing"],
                                     amp_dtype=amp_dtype, bar=bar)
            except TrainingDiverged as error:
                raise TrainingDiverged(f"training diverged: {error}; "
                                       f"{_divergence_advice(config, path if history else None, len(history))}"
                                       ) from None
            train_seconds = time.perf_counter() - start
            if world > 1:
                average_buffers(model, world)
            record = {"epoch": epoch, "train_loss": totals["loss_sum"] / totals["images"],
                      "train_acc": totals["correct"] / totals["images"], "val_loss": None, "val_acc": None,
                      "test_loss": None, "test_acc": None}
            for split, loader in eval_loaders.items():
                result = evaluate(runnable, loader, num_classes=len(data.classes), amp_dtype=amp_dtype,
                                  flip=config["eval_flip"])
                record.update({f"{split}_loss": result.loss, f"{split}_acc": result.accuracy})
            record.update(images_per_s=totals["images"] / train_seconds, seconds=time.perf_counter() - start,
                          lr=optimizer.param_groups[0]["lr"], images=totals["images"])
            history.append(record)
            if path is not None and rank == 0:  # checkpoint, then metrics: both atomic
                atomic_save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
                             "config": config, "history": history}, path)
                saved_epoch = epoch
                write_metrics(path.parent / METRICS_NAME, model=name, recipe=recipe, seed=seed, device=device.type,
                              data=data.source, history=history)
            if progress and rank == 0:
                bar.write(_summary(record, config["epochs"]))
            if on_epoch_end is not None:
                on_epoch_end(record)
    except KeyboardInterrupt:
        if rank == 0:
            where = f"{path} holds epoch {saved_epoch}; rerun with resume=True (--resume)" if path else "no out_dir"
            print(f"\ninterrupted in epoch {epoch} of {config['epochs']}: {where}", file=sys.stderr)
        raise
    finally:
        bar.close()
        model.eval()  # trained or not, interrupted or not: ready to classify, whatever path fit took
    return history


def _divergence_advice(config: dict, saved: Path | None, epoch: int) -> str:
    """What to do after a NaN/inf loss: a new run with a lower lr or warm-up (a resumed run keeps the saved ones)."""
    lower = config["lr"] / 10
    changes = [f"a lower lr (e.g. lr={lower:.3g}, --lr {lower:.3g})"]
    if not config["warmup"]:
        changes.append("the paper's warm-up (warmup=True, --warmup)")
    if config["recipe"] == "paper":
        changes.append("the fast recipe's gradual warm-up (recipe='fast')")
    if saved is None:
        start = "nothing was saved. Start again"
    else:  # resume=True refuses changed settings: the same run would diverge again at the same step
        start = (f"the last good checkpoint ({saved}, epoch {epoch}) is kept, but resuming it repeats its lr and "
                 "warm-up. Start a new run in another out_dir (--out)")
    return (f"{start} with {' or '.join(changes)}, and check the data normalisation (uint8 images, CIFAR "
            "mean/std)")


def _summary(record: dict, epochs: int) -> str:
    """One line per epoch: ``epoch 3/30 | train loss 0.812 acc 71.2% | val ... | test ... | 1234 img/s | 40.1 s``."""
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for split in ("train", "val", "test"):
        if record[f"{split}_loss"] is not None:
            parts.append(f"{split} loss {record[f'{split}_loss']:.3f} acc {100 * record[f'{split}_acc']:.1f}%")
    parts.append(f"{record['images_per_s']:.0f} img/s | {record['seconds']:.1f} s")
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------- command line
_DESCRIPTION = """\
Train a network on CIFAR-10 with the paper's recipe (--recipe paper: 182 epochs, lr 0.1 divided by 10 twice) or
the fast one-cycle recipe (--recipe fast, the default: 30 epochs). After every epoch OUT/checkpoint.pt and
OUT/metrics.json are rewritten; --resume continues a stopped run exactly where it stopped."""

_EPILOG = """\
examples:
  python -m resnet_lab.train --model resnet20 --data DIR --epochs 30 --recipe fast --out runs/resnet20
  python -m resnet_lab.train --model resnet20 --data DIR --recipe paper --out runs/paper --resume  # continue a run
  python -m resnet_lab.train --model plain56 --smoke --out /tmp/smoke                             # no data needed
  torchrun --standalone --nproc_per_node 4 -m resnet_lab.train --model resnet110 --data DIR --recipe paper \\
      --out runs/r110                                                           # DDP, one process per GPU

data: DIR (or $RESNET_LAB_DATA) holds the official python version (DIR/cifar-10-batches-py/) or an image folder
(DIR/train/<class>/*.png, optionally DIR/test/<class>/...); --download fetches the official archive (online only).

exit status: 0 done, 1 the loss diverged (the last good checkpoint is kept), 2 bad arguments or missing data,
130 interrupted (rerun with --resume)."""


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; got {value}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnet_lab.train", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20",
                        help="resnet{6n+2}, plain{6n+2}, preact_resnet{6n+2} (e.g. resnet20, resnet110, plain56; "
                             "cifar_resnet{6n+2} for resnet50 and resnet152, torchvision's ImageNet names) or "
                             "imagenet_resnet{18,34,50,101,152} (with one output per class of the data); "
                             "default: resnet20")
    parser.add_argument("--data", metavar="DIR", help="CIFAR-10 folder (cifar-10-batches-py or train/<class>/...); "
                                       "default $RESNET_LAB_DATA")
    parser.add_argument("--smoke", action="store_true", help="train on a synthetic stand-in (no data needed)")
    parser.add_argument("--download", action="store_true", help="fetch CIFAR-10 with torchvision if missing")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder for checkpoint.pt and metrics.json")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--recipe", default="fast", choices=sorted(RECIPES),
                        help="fast: one-cycle lr, 30 epochs (default); paper: the paper's step schedule, 182 epochs")
    parser.add_argument("--epochs", type=_int_at_least(1), metavar="N",
                        help="default: the recipe's (fast 30, paper 182)")
    parser.add_argument("--batch-size", type=_int_at_least(1), metavar="N",
                        help="global batch; default: the recipe's (128 for both)")
    parser.add_argument("--lr", type=float, help="default: the recipe's, scaled linearly with --batch-size")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="the paper's lr/10 warm-up until the training error is below 80%% (default: on with "
                             "--recipe paper for nets of 54+ blocks, i.e. ResNet-110 and deeper; the fast recipe "
                             "has its own gradual warm-up)")
    parser.add_argument("--val-split", type=_int_at_least(0), default=0, metavar="N",
                        help="training images held out for validation")
    parser.add_argument("--subset", type=_int_at_least(1), metavar="N", help="train on this many images (stratified)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, batch order and augmentation")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="draws --val-split and --subset (default 0: every --seed holds out the same images)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--threads", type=_int_at_least(1), metavar="N",
                        help="torch CPU threads (fix it for bit-identical resumes)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision: bfloat16 autocast, float16 on GPUs before Ampere (default: on for "
                             "CUDA and for CPUs with AMX; --no-amp: float32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs: one line per epoch)")
    return parser


def _load_data(args: argparse.Namespace) -> tuple[CifarData | None, str | None]:
    """The command line's data, or None and what to tell the user."""
    try:
        return load_cifar10(args.data, download=args.download, val_split=args.val_split, subset=args.subset,
                            seed=args.split_seed, smoke=args.smoke), None
    except (ValueError, FileNotFoundError) as error:
        return None, str(error)
    except OSError as error:  # unreadable data, or the download: no network (URLError) or an unwritable folder
        if not args.download:
            return None, f"could not read CIFAR-10: {error}"
        return None, (f"could not download CIFAR-10 ({error}). Offline? Copy an existing cifar-10-batches-py folder "
                      "or image folder to DIR and pass --data DIR (or set RESNET_LAB_DATA), or use --smoke for a "
                      "synthetic stand-in")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 for bad arguments or missing data, 1 on divergence)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.device is not None and (problem := device_problem(args.device)):
        parser.error(problem)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and args.device is not None and torch.device(args.device).index is not None:
        parser.error(f"--device {args.device}: under torchrun every process takes its own GPU, cuda:LOCAL_RANK; "
                     "pass --device cuda (or leave it out)")
    if world > 1 and not dist.is_initialized():  # started by torchrun: RANK, WORLD_SIZE, MASTER_ADDR/PORT are set
        if torch.cuda.is_available() and args.device != "cpu":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # before NCCL picks a device
        dist.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    try:
        seed_everything(args.seed)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)
        try:
            model = build_model(args.model)
        except ValueError as error:
            parser.error(str(error))
        # rank 0 reads the data first (downloads it, caches an image folder), the others then read its files; its
        # failure is sent to every rank, so that all stop at once instead of waiting for it
        data, problem = _load_data(args) if rank == 0 else (None, None)
        if world > 1:
            shared = [problem]
            dist.broadcast_object_list(shared, src=0)
            problem = shared[0]
            if problem is None and rank > 0:
                data, problem = _load_data(args)
        if problem is not None:
            if rank > 0 and world > 1:
                raise SystemExit(2)  # rank 0 reports it
            parser.error(problem)
        if model.fc.out_features != len(data.classes):  # the ImageNet nets: a new head, one output per class
            model.fc = nn.Linear(model.fc.in_features, len(data.classes))
        if rank == 0:
            device = args.device or pick_device().type
            print(f"{args.model}: {count_parameters(model):,} parameters | {data} | recipe {args.recipe} | "
                  f"device {device} | {world} process(es)", flush=True)
        epochs = args.epochs or RECIPES[args.recipe]["epochs"]
        # without the progress bar, one line per epoch still goes to the log
        log = (lambda record: print(_summary(record, epochs), flush=True)) if args.no_progress and rank == 0 else None
        try:
            fit(model, data, epochs=args.epochs, recipe=args.recipe, batch_size=args.batch_size, lr=args.lr,
                warmup=args.warmup, device=args.device, amp=args.amp, compile=args.compile, out_dir=args.out,
                resume=args.resume, seed=args.seed, progress=not args.no_progress, model_name=args.model,
                on_epoch_end=log)
        except (FileExistsError, ValueError) as error:
            parser.error(str(error))
        except TrainingDiverged as error:
            if rank == 0:  # every rank stops at the same step, with the same message
                print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        if rank == 0:
            print(f"wrote {Path(args.out) / CHECKPOINT_NAME} and {Path(args.out) / METRICS_NAME}")
        if world > 1:
            dist.barrier()  # every rank finished (rank 0 wrote its files) before the process group is torn down
        return 0
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
