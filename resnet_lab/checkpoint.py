"""Saving without losing work: atomic writes, training checkpoints and ``metrics.json``.

Every file is written to a temporary file in its own folder, flushed to the disk (``fsync``) and moved into place
with ``os.replace``, which is atomic: an interrupt, a crash, a power cut or a full disk leaves the previous version
whole. Checkpoints hold only tensors and plain Python containers, so ``torch.load(path, weights_only=True)`` reads
them without running pickled code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "METRICS_FIELDS", "atomic_write", "atomic_save", "load_checkpoint",
           "rng_state", "set_rng_state", "write_metrics", "find_trained"]

CHECKPOINT_NAME, METRICS_NAME = "checkpoint.pt", "metrics.json"
# The per-epoch fields of metrics.json, in order (accuracies as fractions, None -> null where not measured).
METRICS_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                  "images_per_s", "seconds")

# The process's umask, for the permissions of the files written here. os.umask can only be read by setting it, so it
# is read once, at import, rather than flipped at every save (other threads would then create files with mode 0666).
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, flush it to the disk, then move it onto ``path`` in one step (``os.replace``).

    Without the flush a power cut can leave an empty file under ``path`` on file systems that write data after
    metadata (ext4 in some modes, XFS, btrfs); the folder is flushed too, so that the rename itself lasts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as file:
        temporary = Path(file.name)
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # temporary files are private (0600); give the usual permissions
        os.replace(temporary, path)
        _fsync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)  # only left behind when ``write`` failed or was interrupted


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to the disk; a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(descriptor)


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda temporary: torch.save(obj, temporary))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by :func:`resnet_lab.train.fit`, read with ``weights_only=True``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"cannot read checkpoint {path} ({type(error).__name__}: {error}); it may be from an "
                         "unrelated program — start a new run in another out_dir") from error


def rng_state() -> dict[str, object]:
    """torch's CPU generator state and every CUDA device's (an empty list without CUDA)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, object]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where the devices exist)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_metrics(path: str | os.PathLike, *, model: str, recipe: str, seed: int, device: str, data: str,
                  history: list[dict]) -> None:
    """``metrics.json``: the run's identity and one entry per epoch with :data:`METRICS_FIELDS`, atomically."""
    record = {"model": model, "recipe": recipe, "seed": seed, "device": device, "data": data,
              "epochs": [{field: entry.get(field) for field in METRICS_FIELDS} for entry in history]}
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text))


def find_trained(runs: str | os.PathLike, model: str, pattern: str = "*") -> Path | None:
    """The checkpoint of the longest finished training of ``model`` in the run folders ``runs/<pattern>``.

    Finished means the last epoch of its schedule is done; longest means the most images seen (epochs x training
    images). ``pattern`` (a glob, e.g. ``"degradation_*"``) picks runs made under one protocol, so that models
    compared with each other were trained alike. ``None`` when there is none, e.g. before notebook 04 has run.
    """
    best, best_images = None, 0
    for path in sorted(Path(runs).glob(f"{pattern}/{CHECKPOINT_NAME}")):
        try:
            state = load_checkpoint(path)
        except ValueError:  # unreadable: not a run of ours
            continue
        config = state.get("config", {})
        images = state.get("epoch", 0) * config.get("train_size", 0)
        if config.get("model") == model and state.get("epoch") == config.get("epochs") and images > best_images:
            best, best_images = path, images
    return best
