"""Measuring networks: multiply-adds, per-stage architecture tables, and the time and memory of a training step.

``multiply_adds`` runs the model on the ``meta`` device under ``torch.utils.flop_counter`` (no computation, so
even ResNet-152 costs a fraction of a second) and halves its count: the counter reports 2 FLOPs per multiply-add.
``step_cost`` times real passes; ``synchronize`` makes the host wait for a GPU's queued work before the clock is read.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .gradients import preserved_state

__all__ = ["multiply_adds", "StageRow", "stage_table", "StepCost", "step_cost", "synchronize"]


def multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on an input of ``input_shape`` (e.g. ``(1, 3, 224, 224)``).

    Counts convolutions and matrix products (what the papers count); element-wise ops such as the skip's
    addition, BatchNorm and ReLU are not included. The model is copied to the meta device in eval mode (in training
    mode BatchNorm refuses a single value per channel, as an ImageNet ResNet's last 1x1 maps give at batch 1 on a
    32x32 image); ``model`` itself is not modified.
    """
    meta_model = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(torch.empty(input_shape, device="meta"))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class StageRow:
    """One row of an architecture table: a named part of the network, its output shape and parameters."""

    name: str
    output_shape: tuple[int, ...]
    blocks: int
    parameters: int


def stage_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[StageRow]:
    """Per top-level child of ``model`` (stem layers, ``layer1``..., pool, fc): output shape, blocks, parameters.

    Shapes come from forward hooks on a copy of the model run on the meta device (no computation), so the
    table describes the model as built. Children without parameters or a new shape (ReLU) are folded away.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    meta_model = copy.deepcopy(model).to("meta").eval()
    for name, child in meta_model.named_children():
        child.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
    with torch.no_grad():
        meta_model(torch.empty(input_shape, device="meta"))
    rows: list[StageRow] = []
    for name, child in model.named_children():
        if name not in shapes:
            continue
        parameters = sum(p.numel() for p in child.parameters())
        blocks = len(child) if isinstance(child, nn.Sequential) else 0
        if rows and parameters == 0 and shapes[name] == rows[-1].output_shape:
            continue  # ReLU and friends: nothing new to report
        rows.append(StageRow(name, shapes[name], blocks, parameters))
    return rows


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work: CUDA and MPS run kernels asynchronously to the host."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class StepCost:
    """Time of one forward+backward pass and the memory it needs, in MiB (2**20 bytes)."""

    milliseconds: float
    saved_mib: float  # activations autograd keeps for the backward pass (parameters excluded)
    peak_cuda_mib: float | None  # everything on the GPU at its peak (None on other devices)


def step_cost(model: nn.Module, batch_size: int, device: torch.device | str = "cpu", *, image_size: int = 32,
              repeats: int = 3) -> StepCost:
    """Median time of ``repeats`` forward+backward passes (after one warm-up) and their memory.

    ``saved_mib`` is the memory of the tensors saved for backward (found with ``saved_tensors_hooks``), each
    storage counted once — a ReLU's output that the next convolution saves too is kept only once. It is what
    grows with depth and batch size on any device. The passes run in training mode; ``model`` moves to ``device``,
    loses its gradients, and otherwise keeps its state (mode, BatchNorm statistics).
    """
    device = torch.device(device)
    model = model.to(device)
    with preserved_state(model):
        return _step_cost(model.train(), batch_size, device, image_size, repeats)


def _step_cost(model: nn.Module, batch_size: int, device: torch.device, image_size: int, repeats: int) -> StepCost:
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    saved_storages: dict[int, int] = {}  # address -> bytes
    parameter_storage = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storage:  # weights are saved too, but they are not activations
            saved_storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        synchronize(device)  # else the clock would time the kernels' launch, not their run

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    model.zero_grad(set_to_none=True)
    return StepCost(sorted(times)[len(times) // 2] * 1000, sum(saved_storages.values()) / 2**20, peak)
