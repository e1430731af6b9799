"""Deep plain/residual test networks and probes of their gradients (notebook 01).

``deep_mlp`` and ``deep_cnn`` build a stack of identical hidden layers whose activation, initialisation,
normalisation and skip connection are switches, so the effect of each one on the gradient can be isolated.
``grad_norms`` runs one backward pass and returns the L2 norm of each hidden layer's weight gradient in
forward order.
Non-finite values are results, not errors: an exploding network returns ``inf``/``nan`` entries.
``BlockGradientRecorder`` follows each block's gradient norm through a whole training run and ``WeightSnapshots``
keeps copies of the weights at chosen steps of it (notebook 05).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "NORMS",
    "HiddenLayer",
    "DeepNet",
    "deep_mlp",
    "deep_cnn",
    "probe_layers",
    "preserved_state",
    "grad_norms",
    "BlockGradientRecorder",
    "WeightSnapshots",
]

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
INITS = ("default", "xavier", "kaiming")  # or a positive float gain: weights ~ N(0, gain^2 / fan_in)
NORMS = (None, "batch")


class HiddenLayer(nn.Module):
    """``h -> act(norm(transform(h)))``, plus ``h`` itself when ``residual`` (the only difference)."""

    def __init__(self, transform: nn.Module, norm: nn.Module | None, activation: nn.Module, residual: bool) -> None:
        super().__init__()
        self.transform = transform  # nn.Linear or 3x3 nn.Conv2d
        self.norm = norm if norm is not None else nn.Identity()
        self.activation = activation
        self.residual = residual

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.norm(self.transform(h)))
        return h + out if self.residual else out


class DeepNet(nn.Module):
    """A stack of :class:`HiddenLayer` modules (``self.hidden``) followed by a classifier ``self.head``."""

    def __init__(self, hidden: Sequence[HiddenLayer], head: nn.Module) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(hidden)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)


def _check_options(depth: int, width: int, activation: str, init: str | float, norm: str | None) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer (the number of hidden layers, e.g. 10); got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer (units or channels per hidden layer); got {width!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {activation!r}")
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(
                f"init must be one of {', '.join(map(repr, INITS))} or a positive float gain; got {init!r}"
            )
    elif isinstance(init, bool) or not isinstance(init, (int, float)) or not (0 < init < math.inf):
        raise ValueError(f"a numeric init is a gain and must be a positive finite number; got {init!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be None or 'batch'; got {norm!r}")


def _init_weights(net: nn.Module, init: str | float) -> None:
    """Initialise every Linear/Conv2d weight; ``default`` keeps PyTorch's own init (biases included).

    ``xavier``: N(0, 2 / (fan_in + fan_out)) (Glorot & Bengio 2010). ``kaiming``: N(0, 2 / fan_in)
    (He et al. 2015, derived for ReLU). A float ``gain``: N(0, gain^2 / fan_in). Biases start at 0.
    """
    if init == "default":
        return
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if init == "xavier":
                nn.init.xavier_normal_(module.weight)
            elif init == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            else:
                fan_in = module.weight[0].numel()
                nn.init.normal_(module.weight, std=float(init) / math.sqrt(fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def deep_mlp(
    depth: int,
    *,
    width: int = 64,
    in_features: int = 32,
    num_classes: int = 10,
    activation: str = "sigmoid",
    init: str | float = "default",
    residual: bool = False,
    norm: str | None = None,
) -> DeepNet:
    """``depth`` fully connected hidden layers of ``width`` units, then a linear head.

    The first hidden layer maps ``in_features -> width``; with ``residual=True`` every later hidden
    layer adds its input to its output. Input ``(N, in_features)``, output logits ``(N, num_classes)``.
    """
    _check_options(depth, width, activation, init, norm)
    hidden = [
        HiddenLayer(
            nn.Linear(in_features if i == 0 else width, width),
            nn.BatchNorm1d(width) if norm == "batch" else None,
            ACTIVATIONS[activation](),
            residual=residual and i > 0,
        )
        for i in range(depth)
    ]
    net = DeepNet(hidden, head=nn.Linear(width, num_classes))
    _init_weights(net, init)
    return net


def deep_cnn(
    depth: int,
    *,
    width: int = 16,
    in_channels: int = 3,
    num_classes: int = 10,
    activation: str = "relu",
    init: str | float = "default",
    residual: bool = False,
    norm: str | None = None,
) -> DeepNet:
    """The convolutional counterpart of :func:`deep_mlp`: ``depth`` 3x3 conv layers of ``width`` channels.

    Same options; the head is global average pooling plus a linear layer. Input ``(N, in_channels, H, W)``.
    """
    _check_options(depth, width, activation, init, norm)
    hidden = [
        HiddenLayer(
            nn.Conv2d(in_channels if i == 0 else width, width, kernel_size=3, padding=1, bias=norm is None),
            nn.BatchNorm2d(width) if norm == "batch" else None,
            ACTIVATIONS[activation](),
            residual=residual and i > 0,
        )
        for i in range(depth)
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    net = DeepNet(hidden, head)
    _init_weights(net, init)
    return net


def probe_layers(model: nn.Module) -> list[nn.Module]:
    """The modules whose gradients the probes report, in forward order.

    ``model.hidden`` (the probe networks here) or ``model.blocks`` (the ResNets of ``resnet_lab.models``)
    when the model has one; otherwise every Linear/Conv2d except the final classifier, in registration order.
    """
    for name in ("hidden", "blocks"):
        layers = getattr(model, name, None)
        if isinstance(layers, (nn.ModuleList, list)) and layers:
            return list(layers)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(layers) < 2:
        raise ValueError("the model needs at least one hidden Linear/Conv2d layer before its classifier")
    return layers[:-1]


def _weight_grad_norm(layer: nn.Module) -> float:
    """L2 norm of the gradients of all weight matrices/kernels in ``layer`` (BN and biases excluded)."""
    grads = [p.grad for p in layer.parameters() if p.dim() > 1 and p.grad is not None]
    if not grads:
        return 0.0
    # float64 so that squaring tiny (vanished) gradients does not underflow to 0 in the norm itself
    return math.sqrt(sum(float(g.to("cpu", torch.float64).pow(2).sum()) for g in grads))  # MPS has no float64


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """``with preserved_state(model):`` run ``model`` as a probe needs; on exit its modes and buffers are restored.

    Every module's training mode, and every buffer: BatchNorm's running statistics, which each forward pass in
    training mode updates.
    """
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def grad_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: Sequence[nn.Module] | None = None
) -> list[float]:
    """Weight-gradient L2 norm of each hidden layer, in forward order (input side first, head excluded).

    One forward and backward pass of the cross-entropy of ``model(x)`` against integer targets ``y``, in the mode
    the model is in. The parameters' ``.grad`` are left as they were (gradients already accumulated there neither
    count nor get lost), and so are BatchNorm's running statistics. Overflow is data: entries may be ``inf`` or
    ``nan``.
    """
    layers = probe_layers(model) if layers is None else list(layers)
    parameters = list(model.parameters())
    saved = [p.grad for p in parameters]
    model.zero_grad(set_to_none=True)  # this pass's gradients alone
    try:
        with preserved_state(model):
            F.cross_entropy(model(x), y).backward()
        norms = [_weight_grad_norm(layer) for layer in layers]
    finally:
        for p, grad in zip(parameters, saved):
            p.grad = grad
    return norms


class BlockGradientRecorder:
    """Records, during training, the gradient norm of each block's parameters after every backward pass.

    ``recorder = BlockGradientRecorder(model)`` (or ``with BlockGradientRecorder(model) as recorder:``) before
    training; any loop works unchanged, e.g. :func:`resnet_lab.train.fit`. A hook on every parameter receives the
    gradient of the current backward pass before it is added to ``.grad``, so gradients left from an earlier pass
    do not count. ``norms`` is ``(steps, blocks)``: row ``t``, column ``i`` is the L2 norm of the gradient of all
    parameters of block ``i`` (weights, BatchNorm and biases) in backward pass ``t``. With float16 autocast the
    gradients are the ones the GradScaler scaled up.
    """

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module] | None = None) -> None:
        self.layers = probe_layers(model) if layers is None else list(layers)
        parameters = [(i, p) for i, layer in enumerate(self.layers) for p in layer.parameters() if p.requires_grad]
        self._layer_of = torch.tensor([i for i, _ in parameters])  # (parameters,) block index of each
        self._rows: list[torch.Tensor] = []  # per backward pass: (parameters,) gradient norms, on the device
        self._reached: set[int] = set()  # parameters the current backward pass has reached
        self._handles = [p.register_hook(self._hook(slot)) for slot, (_, p) in enumerate(parameters)]

    def _hook(self, slot: int) -> Callable[[torch.Tensor], None]:
        def record(grad: torch.Tensor) -> None:
            if not self._rows or slot in self._reached:  # a parameter reached twice: a new backward pass began
                self._rows.append(torch.zeros(len(self._layer_of), device=grad.device))
                self._reached = set()
            self._reached.add(slot)
            self._rows[-1][slot] = torch.linalg.vector_norm(grad.detach().float())  # stays on the device: no sync

        return record

    @property
    def norms(self) -> torch.Tensor:
        """``(steps, blocks)`` float32 on the CPU: per backward pass, the gradient norm of each block's parameters."""
        if not self._rows:
            return torch.zeros(0, len(self.layers))
        squares = torch.stack(self._rows).cpu().double().pow(2)  # (steps, parameters)
        per_block = torch.zeros(len(squares), len(self.layers), dtype=torch.float64)
        per_block.index_add_(1, self._layer_of, squares)
        return per_block.sqrt().float()

    def remove(self) -> None:
        """Detach the hooks; the norms recorded so far stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> BlockGradientRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


class WeightSnapshots:
    """Copies of a model's ``state_dict`` at chosen training steps, taken while any training loop runs.

    ``with WeightSnapshots(model, steps=(0, 10, 100)) as snapshots: fit(model, ...)``. A hook before each forward
    pass in training mode counts the passes: the weights it sees at pass ``t`` (counted from 0) are those after ``t``
    optimiser steps, so ``states[t]`` holds them for every ``t`` in ``steps`` that the run reaches. ``remove()`` (the
    end of the ``with``) adds the final weights under the number of passes seen. Copies are kept on the CPU.
    """

    def __init__(self, model: nn.Module, steps: Sequence[int]) -> None:
        if any(step < 0 for step in steps):
            raise ValueError(f"steps count optimiser steps from 0; got {sorted(steps)}")
        self.model, self.steps = model, set(steps)
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.passes = 0
        self._handle = model.register_forward_pre_hook(self._before_forward)

    def _copy(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().to("cpu", copy=True) for name, value in self.model.state_dict().items()}

    def _before_forward(self, module: nn.Module, inputs: object) -> None:
        if module.training:
            if self.passes in self.steps:
                self.states[self.passes] = self._copy()
            self.passes += 1

    def remove(self) -> None:
        """Detach the hook and keep the final weights (under the number of training passes seen)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
            self.states[self.passes] = self._copy()

    def __enter__(self) -> WeightSnapshots:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
