"""Training loops. ``train_on_tensors``: a few hundred SGD steps on an in-memory toy task (notebook 01)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["train_on_tensors"]


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
