"""What every notebook's setup cell needs: the smoke switch, the device, seeds, Colab hints.

Smoke mode (``RESNET_LAB_SMOKE=1``) shrinks depths, steps and data so a notebook runs in seconds,
offline, through the same code paths as a real run. The test suite runs every notebook that way.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SMOKE_ENV", "smoke_mode", "pick_device", "device_problem", "cpu_has_amx", "autocast_dtype",
           "seed_everything", "in_colab", "Session", "setup_notebook"]

SMOKE_ENV = "RESNET_LAB_SMOKE"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def smoke_mode() -> bool:
    """True when ``RESNET_LAB_SMOKE`` asks for smoke mode (``1``); unset or ``0`` means a real run."""
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{SMOKE_ENV} must be 1 (smoke mode) or 0 (real run); got {value!r}")


def pick_device(preferred: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU (or ``preferred`` if given).

    A ``preferred`` device that cannot train here raises ValueError saying why (:func:`device_problem`).
    """
    if preferred is not None:
        if problem := device_problem(preferred, option="device"):
            raise ValueError(problem)
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_problem(name: str, option: str = "--device") -> str | None:
    """Why the device ``name`` cannot train on this machine, or None if it can; ``option`` names the setting."""
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"{option} {name!r} is not a device; use cpu, cuda, cuda:N or mps (or leave {option} out)"
    if device.type not in ("cpu", "cuda", "mps"):
        return f"{option} {name!r}: training runs on cpu, cuda, cuda:N or mps"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            return (f"{option} {name}: no CUDA GPU is usable here (torch {torch.__version__}, {build}); "
                    f"use {option} cpu, or leave {option} out to take the best available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            return (f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                    f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        return (f"{option} mps: Apple's MPS is not available here (it needs an Apple-silicon Mac and a torch build "
                f"with MPS); use {option} cpu, or leave {option} out to take the best available")
    return None


def cpu_has_amx() -> bool:
    """True when the CPU multiplies bfloat16 matrices in hardware (Intel AMX, Xeon 4th generation and later).

    There, bfloat16 autocast trains ResNet-20 about twice as fast as float32 (measured on a 2-core Xeon with
    AMX), so :func:`resnet_lab.train.fit` turns it on by default; on other CPUs it stays in float32. CPUs with
    AVX512-BF16 but no AMX (AMD Zen 4) gain less: 1.35x for a 20-epoch run on a 2-core AMD EPYC, at the same
    accuracy (measured over three seeds on one split: 87.6 ± 0.3 % in bf16, 87.7 ± 0.4 % in float32), so there it
    stays opt-in (``amp=True``, ``--amp``).
    """
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own test; private, hence the guard
    return bool(check is not None and check())


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision type for ``device``: bfloat16, except on GPUs without bfloat16 tensor cores.

    CUDA GPUs before compute capability 8.0 (Volta, Turing: Colab's T4) get float16, which their tensor cores
    run and which needs loss scaling. ``torch.cuda.is_bf16_supported()`` is not the test: by default it also says
    yes where bfloat16 is only emulated. ROCm GPUs and CPUs get bfloat16.
    """
    if device.type == "cuda" and torch.version.hip is None and torch.cuda.get_device_capability(device)[0] < 8:
        return torch.float16
    return torch.bfloat16


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- the legacy global generator is the one third-party code draws from
    torch.manual_seed(seed)  # also seeds every CUDA device


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


@dataclass(frozen=True)
class Session:
    """The settings a notebook runs under, as chosen by :func:`setup_notebook`."""

    device: torch.device
    smoke: bool
    seed: int

    def __str__(self) -> str:
        mode = "SMOKE mode (tiny settings, for tests)" if self.smoke else "real run"
        return f"device: {self.device} | {mode} | seed {self.seed} | torch {torch.__version__}"


def setup_notebook(seed: int = 0, smoke: bool | None = None, device: str | None = None) -> Session:
    """Seed everything, pick the device, read the smoke switch and print what was chosen.

    ``smoke=None`` reads ``RESNET_LAB_SMOKE``; ``device=None`` picks CUDA > MPS > CPU.
    """
    session = Session(device=pick_device(device), smoke=smoke_mode() if smoke is None else smoke, seed=seed)
    seed_everything(seed)
    print(session)
    if in_colab() and session.device.type == "cpu":
        print("No GPU attached. For the GPU parts: Runtime > Change runtime type > T4 GPU, then run all cells again.")
    return session
