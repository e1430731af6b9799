"""Automatic checks for the notebooks' exercises.

Convention (every checker): ``check_x(candidate, strict=False)`` prints ``PASS ...`` and returns ``True``,
or prints a specific hint and returns ``False``. A stub that still raises ``NotImplementedError`` prints
"not attempted yet" and returns ``False``, so Run All always completes. ``strict=True`` raises
``AssertionError`` instead of returning ``False`` (for tests). Reference solutions: ``resnet_lab.solutions``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.overrides import TorchFunctionMode

from .blocks import BasicBlock
from .models import cifar_resnet, count_parameters

__all__ = ["check_init_std", "check_input_gradient", "check_basic_block", "check_cifar_param_count",
           "check_batch_flip", "check_filter_normalize"]


class _Fail(Exception):
    """A check failed; the message is the hint shown to the learner."""


def _run_check(name: str, check: Callable[[], str], strict: bool) -> bool:
    """Run ``check`` (returns a pass message or raises ``_Fail``) and report by the convention above.

    The check runs on a copy of torch's global random state: the seeds it sets, and the random numbers it and the
    learner's code draw, leave the notebook's own random numbers as they were.
    """
    try:
        with torch.random.fork_rng(devices=[]):
            message = check()
    except NotImplementedError:
        message, ok = f"{name}: not attempted yet. Replace `raise NotImplementedError` with your code.", None
    except _Fail as failure:
        message, ok = f"{name}: not yet. {failure}", False
    except Exception as error:  # the learner's code crashed: show what, never crash the notebook
        message, ok = f"{name}: your function raised {type(error).__name__}: {error}", False
    else:
        print(f"PASS {name}: {message}")
        return True
    if strict:
        raise AssertionError(message)
    print(message)
    return bool(ok)


def _as_float(value: object) -> float:
    """``value`` as a float: any real number (NumPy's included) or a one-element tensor, not a bool."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise _Fail(f"return one number (a float), not a tensor of shape {tuple(value.shape)}")
        return float(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # NumPy registers its floats as Real
        return float(value)
    raise _Fail(f"return a float; got {type(value).__name__}")


def _as_int(value: object) -> int:
    """``value`` as an int: any integer (NumPy's and one-element integer tensors included), not a bool or a float."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise _Fail(f"return an int (a count of parameters); got {type(value).__name__}")


class _TorchCalls(TorchFunctionMode):
    """Records the torch functions and tensor methods called inside ``with`` (not those torch calls itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.functions: list[Callable[..., object]] = []

    def __torch_function__(self, func: Callable[..., object], types: object, args: tuple = (),
                           kwargs: dict | None = None) -> object:
        self.functions.append(func)
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------------------------------------- notebook 01


def check_init_std(init_std: Callable[[int, str], float], strict: bool = False) -> bool:
    """Check ``init_std(fan_in, activation)``: the weight std that keeps activation variance constant.

    Expected: ``sqrt(1 / fan_in)`` for ``"tanh"`` (LeCun/Glorot: tanh is linear near 0) and
    ``sqrt(2 / fan_in)`` for ``"relu"`` (He et al. 2015: ReLU zeroes half the units).
    """

    def check() -> str:
        for activation, factor in (("tanh", 1.0), ("relu", 2.0)):
            for fan_in in (16, 64, 576):
                got = _as_float(init_std(fan_in, activation))
                want = math.sqrt(factor / fan_in)
                if math.isclose(got, want, rel_tol=1e-6):
                    continue
                if math.isclose(got, want**2, rel_tol=1e-6):
                    raise _Fail(f"for fan_in={fan_in} you returned the variance {got:.4g}; return the standard "
                                "deviation, its square root.")
                if activation == "relu" and math.isclose(got, math.sqrt(1 / fan_in), rel_tol=1e-6):
                    raise _Fail("for ReLU, half of the pre-activations are set to 0, which halves the second "
                                "moment at every layer; the variance needs a factor 2 (He et al. 2015).")
                if activation == "tanh" and math.isclose(got, math.sqrt(2 / fan_in), rel_tol=1e-6):
                    raise _Fail("tanh is close to the identity near 0 and keeps both signs, so nothing is "
                                "zeroed: no factor 2 for tanh.")
                if activation == "tanh" and math.isclose(got, 5 / 3 / math.sqrt(fan_in), rel_tol=1e-6):
                    raise _Fail("5/3 is nn.init.calculate_gain('tanh'), PyTorch's suggested gain, not what the "
                                "variance argument gives. Treated as linear near 0 (tanh'(0) = 1), tanh passes "
                                "E[h^2] through unchanged, so the gain is 1: std = sqrt(1/fan_in). The 5/3 is an "
                                "empirical correction for tanh's saturation (tanh(z)^2 < z^2), which slowly shrinks "
                                "the signal at gain 1; it keeps the forward signal's size, but then the gradients "
                                "grow going backwards (about 100x over 50 tanh layers).")
                raise _Fail(f"init_std({fan_in}, {activation!r}) returned {got:.4g}, expected {want:.4g}. "
                            "Var(z) = fan_in * Var(w) * E[h_prev^2]. The next E[h^2] is Var(z) for tanh (linear "
                            "near 0) and Var(z) / 2 for ReLU (it zeroes half the units): set it equal to "
                            "E[h_prev^2], solve for Var(w) and return its square root.")
        return "the std is sqrt(1/fan_in) for tanh and sqrt(2/fan_in) for ReLU."

    return _run_check("check_init_std", check, strict)


def _reference_input_gradient(weights: list[torch.Tensor], x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """dL/dx by autograd, the oracle for :func:`check_input_gradient`."""
    x = x.detach().clone().requires_grad_(True)
    h = x
    for w in weights:
        h = torch.tanh(w @ h)
    (h * grad_output).sum().backward()
    return x.grad


class _AutogradWatch(TorchFunctionMode):
    """Notes whether any torch call inside ``with`` runs with autograd on or outside inference mode.

    Inside ``torch.inference_mode()`` both happen only when the code switches autograd back on: ``enable_grad``,
    ``inference_mode(False)``, ``torch.autograd.functional``, or a ``torch.func`` transform (``vjp``, ``grad``,
    ``jacrev``, ``jacfwd``), which leaves inference mode for the function it transforms.
    """

    def __init__(self) -> None:
        super().__init__()
        self.autograd_used = False

    def __torch_function__(self, func: Callable[..., object], types: object, args: tuple = (),
                           kwargs: dict | None = None) -> object:
        if torch.is_grad_enabled() or not torch.is_inference_mode_enabled():
            self.autograd_used = True
        return func(*args, **(kwargs or {}))


def _walk_back(weights: list[torch.Tensor], slopes: list[torch.Tensor | float], grad_output: torch.Tensor,
               transpose: bool = True, slope_after: bool = False) -> torch.Tensor:
    """g <- W_l^T (s_l * g) from the last layer to the first; each switch makes one of the typical mistakes."""
    g = grad_output
    for w, slope in zip(reversed(weights), reversed(slopes)):
        w = w.T if transpose else w
        g = slope * (w @ g) if slope_after else w @ (slope * g)
    return g


def _input_gradient_mistakes(
    weights: list[torch.Tensor], x: torch.Tensor, grad_output: torch.Tensor
) -> list[tuple[torch.Tensor, str]]:
    """What the typical mistakes of :func:`check_input_gradient` return, each with its hint.

    Those whose shapes do not fit the network are left out: a missing transpose only fits square weights.
    """
    hs, zs = [x], []  # h_0 = x, ..., h_L and z_1, ..., z_L
    for w in weights:
        zs.append(w @ hs[-1])
        hs.append(torch.tanh(zs[-1]))
    own = [1 - h**2 for h in hs[1:]]  # tanh'(z_l), written with the layer's own output h_l
    transpose = ("the transpose is missing. Going backwards, the gradient is multiplied by the transpose of each "
                 "layer's Jacobian, J_l^T = W_l^T diag(1 - h_l^2): W_l.T maps a gradient of the layer's output, "
                 "shape (out,), to one of its input, shape (in,).")
    shifted = ("your slopes are shifted by one layer. J_l = diag(tanh'(z_l)) W_l pairs W_l with the slope at its "
               "own output h_l = tanh(W_l h_{l-1}), on the output side of W_l; the slope at its input h_{l-1} "
               "belongs to the layer before.")
    precedence = ("you multiply by the right slope, 1 - h_l^2, but after W_l.T instead of before it. If you wrote "
                  "W.T @ g * s: @ and * have the same precedence and Python applies them left to right, so that is "
                  "(W.T @ g) * s. J_l^T = W_l^T diag(1 - h_l^2): the slope multiplies g first, on the output side "
                  "of W_l, so put parentheses around the product of the slope and g.")
    mistakes = [
        (dict(slopes=[1.0] * len(weights)),
         "you multiplied by the weights only. Each layer's Jacobian is diag(tanh'(z_l)) W_l, with tanh'(z) = "
         "1 - tanh(z)^2 evaluated at that layer's pre-activation z_l."),
        (dict(slopes=own, transpose=False), transpose),
        (dict(slopes=own, transpose=False, slope_after=True), transpose),
        (dict(slopes=[1.0] * len(weights), transpose=False), transpose),
        (dict(slopes=[1 - z**2 for z in zs]),
         "you took the slope as 1 - z_l^2, at the pre-activation z_l = W_l h_{l-1}. tanh'(z) = 1 - tanh(z)^2: "
         "the square is of tanh(z_l), the layer's output h_l."),
        (dict(slopes=[1 - h**2 for h in hs[:-1]]), shifted),
        (dict(slopes=[1 - h**2 for h in hs[:-1]], slope_after=True), shifted),
        (dict(slopes=own, slope_after=True), precedence),
        (dict(weights=weights[::-1], slopes=own[::-1]),
         "you walked the layers from the first to the last. The chain rule goes back from the output: start with "
         "grad_output at the last layer and end at the first."),
    ]
    for layer in range(len(weights)):
        which = {0: "the first layer's", len(weights) - 1: "the last layer's"}.get(layer, f"layer {layer + 1}'s")
        why = (" grad_output is dL/dh_L, taken after the last tanh, so that tanh's slope still applies."
               if layer == len(weights) - 1 else "")
        mistakes.append((dict(slopes=own[:layer] + [1.0] + own[layer + 1:]),
                         f"{which} slope is missing: every layer, the first and the last included, contributes "
                         f"diag(1 - h_l^2) to its Jacobian.{why}"))
    found = []
    for switches, hint in mistakes:
        try:
            found.append((_walk_back(**{"weights": weights, "grad_output": grad_output, **switches}), hint))
        except RuntimeError:  # its shapes do not fit this network
            pass
    return found


def _random_network(
    sizes: list[int], generator: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Weights ``(out, in)`` of a tanh network with layer widths ``sizes``, an input x and a grad_output."""
    weights = [torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in) for n_in, n_out in zip(sizes, sizes[1:])]
    return weights, torch.randn(sizes[0], generator=generator), torch.randn(sizes[-1], generator=generator)


def check_input_gradient(
    input_gradient: Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor], strict: bool = False
) -> bool:
    """Check ``input_gradient(weights, x, grad_output)`` against autograd, on tanh networks of 3, 1 and 5 layers.

    The network is ``h_0 = x``, ``h_l = tanh(W_l h_{l-1})`` with ``W_l`` of shape ``(out, in)``; the function
    must return dL/dx given ``grad_output`` = dL/dh_L, by multiplying transposed layer Jacobians, in any float
    dtype. It runs in inference mode, and any torch call made with autograd switched back on (``enable_grad``,
    ``inference_mode(False)``, ``torch.autograd.functional``, ``torch.func.vjp`` and the other transforms) fails
    the check, so asking autograd fails. A wrong answer is compared with the typical mistakes; after a shape error
    the function runs again on a network of equal widths, where a missing transpose gives a result to compare.
    """
    use_autograd = ("the checker switches autograd off, so backward(), torch.autograd, torch.func (vjp, grad, "
                    "jacrev, jacfwd) and switching autograd back on are refused here. Compute the Jacobian product "
                    "yourself: autograd is the checker's oracle.")

    def run(weights: list[torch.Tensor], x: torch.Tensor, grad_output: torch.Tensor) -> object:
        watch = _AutogradWatch()
        try:
            with torch.inference_mode(), watch:  # unlike no_grad, enable_grad() inside cannot switch autograd on
                got = input_gradient([w.clone() for w in weights], x.clone(), grad_output.clone())
        except Exception as error:
            if watch.autograd_used or "require grad" in str(error):
                raise _Fail(use_autograd) from None
            raise
        if watch.autograd_used:
            raise _Fail(use_autograd)
        return got

    def mistake(got: object, weights: list[torch.Tensor], x: torch.Tensor, grad_output: torch.Tensor) -> str | None:
        """The hint of the typical mistake ``got`` is the result of, if any."""
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            return None
        got = got.to(x.dtype)
        return next((hint for value, hint in _input_gradient_mistakes(weights, x, grad_output)
                     if torch.allclose(got, value, rtol=1e-4, atol=1e-6)), None)

    def check() -> str:
        generator = torch.Generator().manual_seed(1)
        weights, x, grad_output = _random_network([5, 8, 6, 4], generator)  # non-square: a missing W.T fails
        want = _reference_input_gradient(weights, x, grad_output)
        try:
            got = run(weights, x, grad_output)
        except RuntimeError as error:
            if not any(word in str(error) for word in ("shape", "size", "mat")):
                raise
            square = _random_network([5, 5, 5, 5], generator)  # every shape fits: compare the result instead
            try:
                hint = mistake(run(*square), *square)
            except Exception:
                hint = None
            if hint:
                raise _Fail(f"shape mismatch ({error}). On a network of equal widths your function runs, and its "
                            f"result says why: {hint}") from None
            raise _Fail(f"shape mismatch ({error}). Walk the layers from the last to the first, pair each W_l, of "
                        "shape (out, in), with that layer's own output h_l, and note that x and grad_output are 1-d "
                        f"vectors, of shapes {tuple(x.shape)} and {tuple(grad_output.shape)}.") from None
        if not isinstance(got, torch.Tensor):
            raise _Fail(f"return a tensor; got {type(got).__name__}")
        if got.shape != want.shape:
            raise _Fail(f"dL/dx must have the shape of x, {tuple(want.shape)}; got {tuple(got.shape)}")
        if not torch.allclose(got.to(want.dtype), want, rtol=1e-4, atol=1e-6):
            raise _Fail(mistake(got, weights, x, grad_output) or (
                "the values differ from autograd. Layer l computes h_l = tanh(z_l) with z_l = W_l h_{l-1}, so its "
                "Jacobian is J_l = diag(tanh'(z_l)) W_l and dL/dx = J_1^T J_2^T ... J_L^T grad_output. Check each "
                "factor: is it tanh's slope, and does it use the activation of its own layer?"))
        for sizes in ([3, 7], [4, 9, 3, 6, 2, 5]):  # 1 and 5 layers: code written for 3 layers fails
            network, layers, crash = _random_network(sizes, generator), len(sizes) - 1, ""
            try:
                got = run(*network)
            except _Fail:
                raise
            except Exception as error:
                got, crash = None, f" (it raised {type(error).__name__}: {error})"
            want = _reference_input_gradient(*network)
            if not (isinstance(got, torch.Tensor) and got.shape == want.shape
                    and torch.allclose(got.to(want.dtype), want, rtol=1e-4, atol=1e-6)):
                raise _Fail(f"right for a network of 3 layers, but not for one of {layers} "
                            f"layer{'' if layers == 1 else 's'}{crash}. Walk back through every layer in `weights`, "
                            "however many there are, rather than a number of layers written into the code.")
        return "your Jacobian product matches autograd, for networks of 1, 3 and 5 layers."

    return _run_check("check_input_gradient", check, strict)


# ---------------------------------------------------------------------------------------------- notebook 02


_Call = tuple[nn.Module, torch.Tensor, torch.Tensor]  # (module, its input, its output)

# (in_channels, out_channels, stride) of the blocks tested. The first keeps the shape; the next two change only the
# width or only the map, where a shortcut written for the usual stride-2 doubling breaks; the last doubles another
# width, where a shortcut written for 16 input channels breaks.
_BLOCK_CASES = ((16, 16, 1), (16, 32, 2), (16, 32, 1), (16, 16, 2), (32, 64, 2))
_SHORTCUT_TASKS = {  # what the shortcut must do where the shape changes
    (16, 32, 2): ("the map halves and the width doubles: keep every second pixel, x[:, :, ::2, ::2], and add 16 zero "
                  "channels (option A), or a 1x1 convolution with stride 2 + BatchNorm (option B)"),
    (16, 32, 1): ("the width changes without a stride, the article's 64 -> 128 case (§4): keep every pixel and add "
                  "16 zero channels (option A), or a 1x1 convolution with stride 1 + BatchNorm (option B)"),
    (16, 16, 2): ("the map halves while the width stays: keep every second pixel, x[:, :, ::2, ::2], and add no "
                  "channel (option A), or a 1x1 convolution with stride 2 + BatchNorm (option B)"),
    (32, 64, 2): ("the map halves and the width doubles from 32, as in stage 3: keep every second pixel and add "
                  "out_channels - in_channels = 32 zero channels, a number computed from the arguments, not one "
                  "written for 16 -> 32 (option A), or a 1x1 convolution with stride 2 + BatchNorm (option B)"),
}

_REASSIGNED_INPUT = ("the shortcut must take the block's input x, but yours receives a tensor of the branch: did you "
                     "reassign x in forward, e.g. x = relu(bn1(conv1(x)))? Keep the input under its own name "
                     "(identity = x) and name the branch's tensors differently (out).")


def _calls(block: nn.Module, x: torch.Tensor) -> list[_Call]:
    """Every Conv2d and BatchNorm2d call of ``block(x)``, in call order; the tensors are kept, so ``is`` compares."""
    calls: list[_Call] = []
    hooks = [m.register_forward_hook(lambda module, inputs, output: calls.append((module, inputs[0], output)))
             for m in block.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        block(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _shortcut_takes_a_branch_tensor(block_class: Callable[..., nn.Module]) -> bool:
    """Whether the learner's 16 -> 16 block adds a tensor of its branch instead of its input (x reassigned in forward).

    Its output is compared with relu(branch + t) for t the first convolution's output, that after its BatchNorm, and
    that after the ReLU; the branch is the second convolution's output after its BatchNorm.
    """
    outputs: list[torch.Tensor] = []
    try:
        block = block_class(16, 16, 1)
        block.register_forward_hook(lambda module, inputs, output: outputs.append(output))
        with torch.no_grad():
            calls = _calls(block, torch.randn(2, 16, 8, 8))
    except Exception:  # the caller reports the learner's error
        return False
    conv_outputs = [output for module, _, output in calls if _is_3x3(module)]
    if len(conv_outputs) != 2 or not isinstance(outputs[0], torch.Tensor):
        return False

    def normalised(conv_output: torch.Tensor) -> torch.Tensor:  # the BatchNorm's output if one follows the conv
        return next((output for module, bn_input, output in calls
                     if isinstance(module, nn.BatchNorm2d) and _shares_memory(bn_input, conv_output)), conv_output)

    first, branch = normalised(conv_outputs[0]), normalised(conv_outputs[1])
    return any(torch.allclose(outputs[0], F.relu(branch + t), atol=1e-5)
               for t in (conv_outputs[0], first, F.relu(first)) if t.shape == branch.shape)


def _unused_parameters(block: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Name -> parameter count of the submodules that ``block(x)`` never calls."""
    called: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda module, inputs, output: called.add(module)) for m in block.modules()]
    try:
        with torch.no_grad():
            block(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: sum(p.numel() for p in m.parameters(recurse=False)) for name, m in block.named_modules()
            if m not in called and any(True for _ in m.parameters(recurse=False))}


def _functional_layers(block: nn.Module, x: torch.Tensor, called: list[nn.Module]) -> list[str]:
    """The functions among F.conv2d and F.batch_norm that ``block(x)`` calls directly, not through a module."""
    with torch.no_grad(), _TorchCalls() as torch_calls:
        block(x)
    modules = {F.conv2d: nn.Conv2d, F.batch_norm: nn.BatchNorm2d}
    return [f"F.{function.__name__}" for function, module_type in modules.items()
            if torch_calls.functions.count(function) > sum(isinstance(m, module_type) for m in called)]


def _is_3x3(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3)


def _is_1x1(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)


def _shares_memory(view: torch.Tensor, tensor: torch.Tensor) -> bool:
    """Whether ``view`` is ``tensor`` or a view of it, e.g. a 1x1 convolution's output subsampled by slicing."""
    return view is tensor or view.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()


def _projection_normalised(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether a BatchNorm normalises the output of every 1x1 convolution that ``block(x)`` calls."""
    calls = _calls(block, x)
    return all(any(isinstance(bn, nn.BatchNorm2d) and _shares_memory(bn_input, output) for bn, bn_input, _ in calls)
               for conv, _, output in calls if _is_1x1(conv))


def _check_batchnorm_settings(bn: nn.BatchNorm2d) -> None:
    """Fail on the eps and momentum that code ported from Keras brings along."""
    if bn.eps != 1e-5:
        keras = " (Keras' default)" if math.isclose(bn.eps, 1e-3) else ""
        raise _Fail(f"a BatchNorm has eps={bn.eps:g}{keras}. PyTorch's default, which torchvision and the package "
                    "use, is 1e-5; eps is added to the variance, so your block's outputs differ slightly from the "
                    "reference's. Create it as nn.BatchNorm2d(channels).")
    if bn.momentum is not None and bn.momentum > 0.5:
        raise _Fail(f"a BatchNorm has momentum={bn.momentum:g}. In PyTorch, momentum is the weight of the *new* batch "
                    "in the running statistics, 1 minus Keras' momentum (Keras' 0.99 is PyTorch's 0.01): with "
                    f"{bn.momentum:g} the statistics used for evaluation are mostly the last batch's. Keep PyTorch's "
                    "default, 0.1: nn.BatchNorm2d(channels).")


class _PlacedPadding(nn.Module):
    """Option A with the input's channels at chosen output channels and zeros in the others."""

    def __init__(self, positions: list[int], out_channels: int, stride: int) -> None:
        super().__init__()
        self.positions, self.out_channels, self.stride = positions, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        out = x.new_zeros(x.shape[0], self.out_channels, *x.shape[2:])  # (N, C_out, H/s, W/s)
        out[:, self.positions] = x
        return out


def _input_channel_positions(
    block: nn.Module, last_bn: nn.BatchNorm2d, in_channels: int, stride: int
) -> list[int] | None:
    """Where ``block``'s zero-padding shortcut puts each input channel, or None if it does something else.

    With the branch's last BatchNorm scaling and shifting by 0, the branch outputs 0 in eval mode and the block
    computes relu(shortcut(x)): the shortcut itself for a positive ``x``. Each input channel, subsampled by the
    stride, must appear in exactly one output channel, and every other output channel must be zero. Where the zero
    channels go is a convention: any placement gives the same networks with their channels in another order.
    Changes ``last_bn``'s scale and shift.
    """
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
        x = 0.5 + torch.rand(2, in_channels, 8, 8, generator=torch.Generator().manual_seed(4))
        shortcut = block(x)  # (N, C_out, H/s, W/s)
    kept = x[:, :, ::stride, ::stride]  # (N, C_in, H/s, W/s)
    positions = []
    for channel in kept.unbind(1):
        copies = [c for c, out in enumerate(shortcut.unbind(1)) if torch.equal(out, channel)]
        if len(copies) != 1:
            return None
        positions += copies
    others = [c for c in range(shortcut.shape[1]) if c not in positions]
    if len(set(positions)) != in_channels or shortcut[:, others].any():
        return None
    return positions


def _outputs_with_reference(
    block: nn.Module, in_channels: int, out_channels: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Outputs of ``block`` and of ``resnet_lab.blocks.BasicBlock`` with its weights, both in eval mode.

    Every BatchNorm gets random scales, shifts and running statistics, copied to the reference's BatchNorm of the
    same convolution, so a BatchNorm in the wrong place changes the result; a BatchNorm that does not normalise a
    convolution's output fails with a hint. A zero-padding shortcut may put the zero channels anywhere: the
    reference then puts the input's channels where ``block`` does. The flag returned says whether they are first,
    as in the package's block.
    """
    block.eval()
    x = torch.randn(2, in_channels, 8, 8)
    calls = _calls(block, x)
    convs = [m for m, _, _ in calls if _is_3x3(m)]
    projections = [m for m, _, _ in calls if _is_1x1(m)]
    reference = BasicBlock(in_channels, out_channels, stride, shortcut="B" if projections else "A").eval()
    twins = {convs[0]: (reference.conv1, reference.bn1), convs[1]: (reference.conv2, reference.bn2)}
    if projections:
        twins[projections[0]] = (reference.downsample[0], reference.downsample[1])
    normalised = {}  # each BatchNorm -> the convolution whose output it normalises
    for bn, bn_input, _ in calls:
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        if (bn_input >= 0).all():  # tested first: after an in-place ReLU it is still the conv's output tensor
            raise _Fail("a BatchNorm comes after a ReLU. Normalise the convolution's output, then apply the "
                        "ReLU: relu(bn1(conv1(x))).")
        conv = next((m for m, _, output in calls if isinstance(m, nn.Conv2d) and _shares_memory(bn_input, output)),
                    None)
        if conv is None:
            raise _Fail("a BatchNorm normalises something other than a convolution's output (the sum?). Each "
                        "BatchNorm follows its convolution directly, before the ReLU and before the addition: "
                        "relu(bn2(conv2(...)) + shortcut(x)). BN after the addition alters the shortcut's signal "
                        "and trains worse (He et al., Identity Mappings, 2016, Fig. 2b).")
        normalised[bn] = conv
    positions = list(range(in_channels))
    last_bn = next((bn for bn, conv in normalised.items() if conv is convs[1]), None)
    if not projections and out_channels > in_channels and last_bn is not None:
        found = _input_channel_positions(block, last_bn, in_channels, stride)
        if found is not None and found != positions:
            positions = found
            reference.downsample = _PlacedPadding(positions, out_channels, stride)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for conv, (twin, _) in twins.items():
            twin.weight.copy_(conv.weight)
        for bn, conv in normalised.items():
            channels = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(channels, generator=generator))
            bn.bias.copy_(torch.randn(channels, generator=generator))
            bn.running_mean.copy_(torch.randn(channels, generator=generator))
            bn.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
            twins[conv][1].load_state_dict(bn.state_dict())
        return block(x), reference(x), positions == list(range(in_channels))


def _accepts(function: Callable, *args: object) -> bool:
    """Whether ``function``'s signature takes ``args`` (a TypeError raised inside its body is another matter)."""
    try:
        inspect.signature(function).bind(*args)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect: assume it takes them
        return True
    return True


def check_basic_block(block_class: Callable[..., nn.Module], strict: bool = False) -> bool:
    """Check a learner's ``BasicBlock(in_channels, out_channels, stride=1)`` with shortcut A or B.

    Its two 3x3 convolutions (nn.Conv2d modules, found by type like the BatchNorm2d modules) are taken as the
    residual branch. Five shapes are tested: 16 -> 16 channels at stride 1, 16 -> 32 at stride 2, the two a shortcut
    written only for that doubling breaks on, 16 -> 32 at stride 1 (the source article's 64 -> 128) and 16 -> 16 at
    stride 2, and 32 -> 64 at stride 2, which a shortcut written for 16 input channels breaks on. For each: the
    output shape, BatchNorm (PyTorch's eps and momentum convention), the stride on the first 3x3, the parameter
    count against ``resnet_lab.blocks.BasicBlock`` with the same shortcut, gradient through the shortcut when the
    3x3 weights are zero, and the computation itself against that block with the same weights and non-trivial
    BatchNorms: BatchNorm and ReLU placement and the shortcut. Option A may put its zero channels anywhere; a
    projection in every block (option C), a projection created but not called, and a shortcut fed a tensor of the
    branch (x reassigned in forward) get a hint.
    """

    def check() -> str:
        torch.manual_seed(0)
        built: dict[tuple[int, int, int], tuple[nn.Module, torch.Tensor]] = {}
        for case in _BLOCK_CASES:
            in_channels, out_channels, stride = case
            try:
                block = block_class(in_channels, out_channels, stride)
            except NotImplementedError:
                raise
            except Exception as error:
                name = getattr(block_class, "__name__", "your block")
                signature = (" The checker passes the stride as the third positional argument, as torchvision does: "
                             "define __init__(self, in_channels, out_channels, stride=1)."
                             if isinstance(error, TypeError) and not _accepts(block_class, *case) else "")
                raise _Fail(f"{name}({in_channels}, {out_channels}, {stride}) failed: "
                            f"{type(error).__name__}: {error}.{signature}") from None
            x = torch.randn(2, in_channels, 8, 8)
            try:
                out = block(x)
            except RuntimeError as error:
                if case in _SHORTCUT_TASKS and _shortcut_takes_a_branch_tensor(block_class):
                    raise _Fail(f"with {in_channels} -> {out_channels} channels and stride {stride} the forward pass "
                                f"fails ({error}): {_REASSIGNED_INPUT}") from None
                if case in _SHORTCUT_TASKS:
                    raise _Fail(f"with {in_channels} -> {out_channels} channels and stride {stride} the forward pass "
                                f"fails ({error}). When the shape changes the shortcut must change it too; here "
                                f"{_SHORTCUT_TASKS[case]}.") from None
                raise
            expected = (2, out_channels, 8 // stride, 8 // stride)
            if tuple(out.shape) != expected:
                raise _Fail(f"for in={in_channels}, out={out_channels}, stride={stride} the output has shape "
                            f"{tuple(out.shape)}, expected {expected}.")
            built[case] = (block, x)

        for (in_channels, out_channels, stride), (block, x) in built.items():
            called = [module for module, _, _ in _calls(block, x)]
            convs = [m for m in called if _is_3x3(m)]
            batchnorms = [m for m in called if isinstance(m, nn.BatchNorm2d)]
            functional = _functional_layers(block, x, called) if len(convs) < 2 or not batchnorms else []
            if functional:
                raise _Fail(f"your block calls {' and '.join(functional)} directly. The checker finds the layers by "
                            "their module type, so build the block from nn.Conv2d and nn.BatchNorm2d modules "
                            "(self.conv1 = nn.Conv2d(...), self.bn1 = nn.BatchNorm2d(...)), as torchvision does, not "
                            "from functions with parameters of your own.")
            if not batchnorms:
                raise _Fail("no BatchNorm: follow each 3x3 convolution with nn.BatchNorm2d (He et al. 2016 put BN "
                            "after every convolution, before the activation).")
            if any(not m.affine or not m.track_running_stats for m in batchnorms):
                raise _Fail("create each BatchNorm as nn.BatchNorm2d(channels), with its defaults: a learnable scale "
                            "and shift (affine=True) and running statistics for evaluation (track_running_stats=True).")
            for bn in batchnorms:
                _check_batchnorm_settings(bn)
            if len(convs) != 2:
                raise _Fail(f"the residual branch should have two 3x3 convolutions; yours calls {len(convs)}.")
            if stride == 2 and convs[0].stride != (2, 2):
                raise _Fail("put the stride on the first 3x3 convolution (as the paper and torchvision do), so the "
                            "second one already works on the smaller map.")
            projection = any(_is_1x1(m) for m in called)
            if projection and in_channels == out_channels and stride == 1:
                raise _Fail(f"your {in_channels} -> {out_channels}, stride 1 block has a 1x1 projection although the "
                            "shape stays the same. A projection in every block is option C of the paper's Table 3, "
                            "but this exercise asks for A or B: the shortcut is the identity where the shape stays "
                            "the same and changes only where the shape does, by zero-padding (A) or a projection "
                            "there alone (B).")
            reference = BasicBlock(in_channels, out_channels, stride, shortcut="B" if projection else "A")
            ours, theirs = count_parameters(reference), count_parameters(block)
            if theirs != ours and _shortcut_takes_a_branch_tensor(block_class):
                raise _Fail(_REASSIGNED_INPUT)
            unused = _unused_parameters(block, x) if theirs != ours else {}
            if unused:
                raise _Fail(f"{in_channels} -> {out_channels}, stride {stride}: your block holds "
                            f"{sum(unused.values()):,} parameters in modules its forward never calls "
                            f"({', '.join(unused)}): a projection created in every block but used only where the "
                            "shape changes? Create it only where the shape changes; parameters that are never used "
                            "are still counted, saved and handed to the optimizer.")
            if theirs != ours:
                if projection and not _projection_normalised(block, x):
                    raise _Fail(f"{in_channels} -> {out_channels}, stride {stride}: your projection has no BatchNorm "
                                f"({theirs:,} parameters; with it, {ours:,}). Option B is a 1x1 convolution followed "
                                "by nn.BatchNorm2d(out_channels), like every convolution of the block (the paper puts "
                                "BN right after each convolution, §3.4; torchvision's downsample is conv1x1 + BN).")
                biased = [m for m in called if isinstance(m, nn.Conv2d) and m.bias is not None]
                hint = (" Convolutions followed by BatchNorm need no bias (bias=False)"
                        + (", the 1x1 projection included." if any(_is_1x1(m) for m in biased) else ".")
                        if biased else "")
                raise _Fail(f"{in_channels} -> {out_channels}, stride {stride}: {theirs:,} parameters, but a basic "
                            f"block with shortcut {'B' if projection else 'A'} has {ours:,}.{hint}")

        for (in_channels, out_channels, stride), (block, x) in built.items():
            with torch.no_grad():
                for conv in (m for m in block.modules() if _is_3x3(m)):
                    conv.weight.zero_()
            x = x.clone().requires_grad_(True)
            block(x).sum().backward()
            if x.grad is None or not x.grad.abs().sum() > 0:
                raise _Fail(f"no gradient reaches the input of your {in_channels} -> {out_channels}, stride {stride} "
                            "block when the 3x3 weights are zero: it has no shortcut. Add the shortcut to the "
                            "branch's output before the final ReLU, out = relu(F(x) + shortcut(x)), in every block, "
                            "those that change the shape included.")

        torch.manual_seed(1)
        packages_placement = True
        for case in _BLOCK_CASES:
            in_channels, out_channels, stride = case
            got, want, input_first = _outputs_with_reference(block_class(*case), *case)
            packages_placement &= input_first
            if torch.allclose(got, want, atol=1e-5):
                continue
            if _shortcut_takes_a_branch_tensor(block_class):
                raise _Fail(_REASSIGNED_INPUT)
            if (got < 0).any() and torch.allclose(F.relu(got), want, atol=1e-5):
                raise _Fail("the ReLU after the addition is missing: the block returns the sum itself. Keep the ReLU "
                            "inside the branch and return relu(bn2(conv2(...)) + shortcut(x)).")
            if (got < 0).any():
                raise _Fail("the output has negative values: apply the ReLU after the addition, "
                            "out = relu(bn2(conv2(...)) + shortcut(x)), not to the branch before it.")
            if case in _SHORTCUT_TASKS:  # the first case, the same branch with an identity shortcut, was right
                raise _Fail(f"your {in_channels} -> {out_channels}, stride {stride} block computes something other "
                            "than the reference although your 16 -> 16, stride 1 block is right: check the shortcut. "
                            f"Here {_SHORTCUT_TASKS[case]}.")
            raise _Fail("same layers, different result. The block should compute relu(bn2(conv2(relu(bn1(conv1(x)))))"
                        " + shortcut(x)): one ReLU inside the branch, one after the addition, none before it.")
        projection = any(_is_1x1(m) for m in built[(16, 32, 2)][0].modules())
        kind = "B (projection)" if projection else "A (zero-padding)"
        placement = "" if packages_placement else (
            " Your shortcut places the input's channels differently from the package's, which keeps them first and "
            "appends the zeros: a convention, any placement gives the same networks with their channels in another "
            "order.")
        return (f"shapes, parameters, stride, shortcut, BatchNorm and ReLU placement all correct (shortcut {kind})."
                f"{placement}")

    return _run_check("check_basic_block", check, strict)


# ---------------------------------------------------------------------------------------------- notebook 03


class _ParameterWatch:
    """Counts the parameters that modules register inside ``with`` (any layer built, by anyone)."""

    def __enter__(self) -> _ParameterWatch:
        self.registered = 0
        self._handle = register_module_parameter_registration_hook(self._seen)
        return self

    def _seen(self, module: nn.Module, name: str, parameter: nn.Parameter | None) -> None:
        self.registered += parameter.numel() if parameter is not None else 0

    def __exit__(self, *exc_info: object) -> None:
        self._handle.remove()


class _ParamCount(NamedTuple):
    """The learner's count and the network's for one n, with the sizes the typical mistakes are made of."""

    n: int
    got: int
    want: int
    batchnorm: int  # parameters of all BatchNorms
    batchnorms: int  # how many BatchNorms
    conv_channels: int  # output channels of all convolutions, the number of their biases


def check_cifar_param_count(param_count: Callable[[int], int], strict: bool = False) -> bool:
    """Check ``param_count(n)``: parameters of the CIFAR ResNet with ``n`` blocks per stage (depth 6n+2, shortcut A).

    Compared with ``resnet_lab.models.cifar_resnet(6n + 2)`` for several ``n``; any integer type is accepted (NumPy's
    too). Typical mistakes (BatchNorm left out, counted as C or with its running statistics, conv biases, the
    classifier's bias, the stem or its BatchNorm, the first block of a stage changing the width) get their own hint,
    each only where it explains the difference for every n tested. A ``param_count`` that builds layers (a model,
    to count its parameters) is refused: the exercise asks for a formula.
    """

    def check() -> str:
        counts = []
        for n in (1, 2, 3, 9, 18):
            with _ParameterWatch() as watch:
                got = param_count(n)
            if watch.registered:
                raise _Fail(f"param_count({n}) builds layers ({watch.registered:,} parameters created): counting "
                            "a model's parameters is what the checker does to get the answer. The exercise asks for "
                            "a formula in n, without building a model: add up 9 * C_in * C_out per 3x3 conv, 2C per "
                            "BatchNorm, the stem and the classifier.")
            model = cifar_resnet(6 * n + 2)
            norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
            counts.append(_ParamCount(n, _as_int(got), count_parameters(model),
                                      sum(count_parameters(m) for m in norms), len(norms),
                                      sum(m.out_channels for m in convs)))
        wrong = [count for count in counts if count.got != count.want]
        if not wrong:
            return "your formula matches the networks for n = 1, 2, 3, 9, 18 (ResNet-8 to ResNet-110)."

        def always(missing: Callable[[_ParamCount], int]) -> bool:
            """Whether the count is short by ``missing(count)`` (too high if negative) for every n tested."""
            return all(count.want - count.got == missing(count) for count in counts)

        n, got, want, batchnorm = wrong[0][:4]
        if always(lambda count: count.batchnorm):
            raise _Fail(f"n={n}: {got:,} is short by exactly the BatchNorm parameters ({batchnorm:,}), for every n: "
                        "every BatchNorm2d(C) has a scale and a shift per channel, 2C parameters.")
        if always(lambda count: count.batchnorm // 2):
            raise _Fail(f"n={n}: {got:,} is short by half the BatchNorm parameters ({batchnorm // 2:,}), for every "
                        "n: a BatchNorm2d(C) has two parameters per channel, a scale and a shift, 2C in all.")
        # running mean and variance, without or with each BatchNorm's num_batches_tracked
        if always(lambda count: -count.batchnorm) or always(lambda count: -count.batchnorm - count.batchnorms):
            raise _Fail(f"n={n}: {got:,} is {got - want:,} too many, the size of the BatchNorms' running "
                        "statistics. A BatchNorm's running mean and variance are buffers, not parameters: "
                        "averages of the data, updated by the forward pass, not by the optimizer. A "
                        "BatchNorm2d(C) has 2C parameters, its scale and shift.")
        if always(lambda count: -count.conv_channels):
            raise _Fail(f"n={n}: {got:,} is {got - want:,} too many, one per output channel of every convolution, "
                        "for every n: conv biases. A convolution followed by BatchNorm has no bias (bias=False): the "
                        "BatchNorm subtracts the channel's mean, bias included, and adds its own shift.")
        constant = {10: "the classifier's bias (Linear(64, 10) has 64*10 + 10)",
                    650: "the classifier Linear(64, 10)",
                    32: "the stem's BatchNorm: BatchNorm2d(16) has 32 parameters",
                    432: "the stem's 3x3 conv from 3 to 16 channels: 9 * 3 * 16 = 432 weights",
                    464: "the stem: a 3x3 conv from 3 to 16 channels (432 weights) and its BatchNorm (32)"}
        for missing, what in constant.items():
            if always(lambda count, missing=missing: missing):
                raise _Fail(f"n={n}: {got:,} is short by {missing} — {what}.")
        if always(lambda count: -(9 * 16 * 32 + 9 * 32 * 64)):  # stage widths used for the first convs' inputs too
            raise _Fail(f"n={n}: {got:,} vs {want:,}: the first block of stages 2 and 3 maps the *previous* width "
                        "to the new one (16 -> 32, 32 -> 64) in its first conv; the others keep the width.")
        if always(lambda count: 9 * 32 * 32 - 9 * 16 * 32 + 9 * 64 * 64 - 9 * 32 * 64):  # both first-block convs
            raise _Fail(f"n={n}: {got:,} is {want - got:,} short, for every n: the first block of stages 2 and 3 "
                        "changes the width in its first conv only (16 -> 32, 32 -> 64); its second conv already works "
                        "at the new width (32 -> 32, 64 -> 64), as do all the other blocks' convs.")
        off = f"{want - got:,} short" if want > got else f"{got - want:,} too many"
        raise _Fail(f"n={n} (depth {6 * n + 2}): you count {got:,}, the network has {want:,}: you are {off}. "
                    "Count 3x3 conv weights (9 * C_in * C_out, no bias), 2C per BatchNorm, the stem and the "
                    "classifier; shortcut A adds none.")

    return _run_check("check_cifar_param_count", check, strict)


# ---------------------------------------------------------------------------------------------- notebook 04


def _square_images_hint(
    flip_batch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], flip: torch.Tensor
) -> str | None:
    """After a broadcasting error on 5 x 7 images: a hint if ``flip_batch`` runs on square ones (5 x 5).

    There height and width are interchangeable; None if it fails there too: then the mask is what does not broadcast.
    """
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (len(flip), 3, 5, 5), generator=generator, dtype=torch.uint8)
    try:
        got = flip_batch(images.clone(), flip.clone())
    except Exception:
        return None
    if isinstance(got, torch.Tensor) and torch.equal(
            got, torch.where(flip[:, None, None, None], images.transpose(-1, -2), images)):
        return ("on square images your function runs, and returns the flagged images transposed: that swaps their "
                "height and width. A mirror reverses the width only, images.flip(-1).")
    return ("on square images your function runs: something in it swaps or mixes the height and the width, which "
            "fails when they differ. A mirror reverses the width, the last dimension, only: images.flip(-1).")


def check_batch_flip(flip_batch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], strict: bool = False) -> bool:
    """Check ``flip_batch(images, flip)``: mirror left-right exactly the images of ``(N, C, H, W)`` where ``flip``.

    Compared with ``resnet_lab.loader.batch_flip`` on a batch with both flipped and unflipped images; the result
    must keep the images' dtype, and the number of torch calls must not grow with the batch (no Python loop). After
    a broadcasting error the function runs again on square images: if it runs there, height and width are mixed up
    (a transpose?), not the mask.
    """
    from .loader import batch_flip

    def check() -> str:
        generator = torch.Generator().manual_seed(2)
        images = torch.randint(0, 256, (6, 3, 5, 7), generator=generator, dtype=torch.uint8)
        flip = torch.tensor([True, False, True, True, False, False])
        given = images.clone()
        mask_hint = ("give the mask one dimension per image dimension, flip[:, None, None, None] or "
                     "flip.view(-1, 1, 1, 1), shape (N, 1, 1, 1): broadcasting lines shapes up from the last "
                     "dimension, so a mask of shape (N,) or (N, 1) meets the width and the height, not the batch.")
        try:
            with _TorchCalls() as small:
                got = flip_batch(given, flip.clone())
        except ValueError as error:
            if "step must be greater than zero" not in str(error):
                raise
            raise _Fail(f"{error}: PyTorch has no negative slicing steps (images[..., ::-1] is NumPy's way). "
                        "Reverse the width with images.flip(-1).") from None
        except RuntimeError as error:
            if not any(word in str(error) for word in ("must match the size", "broadcast", "expanded size")):
                raise
            hint = _square_images_hint(flip_batch, flip) or mask_hint
            raise _Fail(f"a broadcasting error ({error}): {hint}") from None
        if not isinstance(got, torch.Tensor) or got.shape != images.shape:
            raise _Fail(f"return a tensor of the input's shape {tuple(images.shape)}")
        if got.dtype != images.dtype:
            raise _Fail(f"return the images' dtype, {images.dtype}, not {got.dtype}: arithmetic with a float mask "
                        "converts the images, while torch.where(mask, flipped, images) picks values and keeps it.")
        want = batch_flip(images, flip)
        if torch.equal(got, want):
            if got.data_ptr() == given.data_ptr() or not torch.equal(given, images):
                raise _Fail("you changed the input in place; return a new tensor (the loader reuses its images)")
            many, many_flips = images.repeat(10, 1, 1, 1), flip.repeat(10)
            with _TorchCalls() as large:
                flip_batch(many, many_flips)
            if len(large.functions) > len(small.functions):
                raise _Fail(f"the values are right, but a batch 10 times larger takes {len(large.functions)} torch "
                            f"calls instead of {len(small.functions)}: no Python loop over the batch. Use one tensor "
                            "expression, torch.where with a (N, 1, 1, 1) mask.")
            return "per-sample horizontal flips, batched."
        if torch.equal(got, images.flip(-1)):
            raise _Fail("you flipped every image; flip only those where `flip` is True (torch.where broadcasts "
                        "a (N, 1, 1, 1) mask over the batch).")
        if torch.equal(got, torch.where(flip[:, None, None, None], images.flip(-2), images)):
            raise _Fail("that is an upside-down (vertical) flip: mirror the width, the last dimension.")
        reversed_dims = {0: "dim 0, the order of the images in the batch",
                         1: "dim 1, the channels (torch.fliplr reverses dim 1: left-right for a (H, W) image, but the "
                            "channels of an (N, C, H, W) batch)"}
        for dim, what in reversed_dims.items():
            if torch.equal(got, images.flip(dim)) or torch.equal(
                    got, torch.where(flip[:, None, None, None], images.flip(dim), images)):
                raise _Fail(f"you reversed {what}. In (N, C, H, W) the width is the last dimension: mirror it with "
                            "images.flip(-1).")
        if torch.equal(got, torch.where(~flip[:, None, None, None], images.flip(-1), images)):
            raise _Fail("you flipped exactly the images that should stay as they are: check the mask.")
        raise _Fail("some images differ from a left-right mirror of the flagged images (and copies of the rest).")

    return _run_check("check_batch_flip", check, strict)


# ---------------------------------------------------------------------------------------------- notebook 05


_MATRIX_NORMS = {  # what a norm over a filter's 3 dims raises -> why
    "dim must be a 2-tuple": "Tensor.norm with a tuple of dims computes a matrix norm, which takes exactly 2 dims",
    "must be of length 1 or 2": "torch.linalg.norm with dim computes a vector norm over 1 dim or a matrix norm over 2",
}


def _filter_norms(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(1).norm(dim=1)  # (filters,): one norm per slice along dim 0


def check_filter_normalize(
    filter_normalize_fn: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]], strict: bool = False
) -> bool:
    """Check ``filter_normalize(direction, model)`` (Li et al. 2018, Sec. 4) against ``resnet_lab.landscape``.

    On a small conv + BatchNorm + linear net whose filters have different norms: every filter (slice along dim 0)
    of the result must be the direction's filter rescaled to the norm of the weight's filter, and every 1-d
    parameter (BatchNorm scale and shift, bias) must get zeros, in any float dtype. The direction passed in must be
    left unchanged.
    """
    from .landscape import filter_normalize

    def check() -> str:
        generator = torch.Generator().manual_seed(5)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(4, 5))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
            model[0].weight.mul_(torch.tensor([0.5, 1.0, 2.0, 4.0]).view(-1, 1, 1, 1))  # unequal filter norms
        direction = {name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()}
        want = filter_normalize(direction, model)
        given = {name: d.clone() for name, d in direction.items()}
        try:
            got = filter_normalize_fn(given, model)
        except RuntimeError as error:
            what = next((what for message, what in _MATRIX_NORMS.items() if message in str(error)), None)
            if what is None:
                raise
            hint = (f"{error}. {what}; a conv weight's filters span 3 (dims 1, 2, 3). Flatten each filter first, "
                    "d.flatten(1).norm(dim=1), shape (filters,), or use torch.linalg.vector_norm (not linalg.norm): "
                    "vector_norm(d, dim=(1, 2, 3), keepdim=True), shape (filters, 1, 1, 1).")
            raise _Fail(hint) from None
        if not isinstance(got, dict):
            raise _Fail(f"return a dict {{parameter name: tensor}} like the direction; got {type(got).__name__}")
        if got is given or given.keys() != direction.keys() or not all(
                isinstance(given[name], torch.Tensor) and torch.equal(given[name], d) for name, d in direction.items()):
            raise _Fail("you changed the direction you were given (its tensors in place, e.g. with mul_ or zero_, or "
                        "its entries). Leave it as it is and return a new dictionary of new tensors.")
        missing = sorted(want.keys() - got.keys())
        if missing:
            raise _Fail(f"the result has no entry for {missing}: return one tensor per parameter of "
                        "model.named_parameters(), zeros for the 1-d ones.")
        for name, weight in model.named_parameters():
            if not isinstance(got[name], torch.Tensor) or got[name].shape != weight.shape:
                raise _Fail(f"result[{name!r}] must be a tensor of the parameter's shape {tuple(weight.shape)}")
        weights = {name: weight.detach() for name, weight in model.named_parameters() if weight.dim() > 1}
        for name, weight in weights.items():
            d, g = direction[name], got[name].detach().to(want[name].dtype)
            if torch.allclose(g, want[name], rtol=1e-4, atol=1e-6):
                continue
            if torch.allclose(g, weight, rtol=1e-4, atol=1e-6):
                raise _Fail(f"result[{name!r}] is the weight itself: the direction was ignored. Keep the direction's "
                            "filters and only change their length: d_i * ||w_i|| / ||d_i||.")
            if torch.allclose(g, d * weight.norm() / d.norm(), rtol=1e-4, atol=1e-6):
                raise _Fail(f"result[{name!r}] was normalised as a whole tensor. Normalise each filter separately "
                            "(each slice along dim 0, one output channel), so that every filter of the direction has "
                            "the norm of the same filter of the weight: filters of very different sizes stay "
                            "comparable.")
            if torch.allclose(F.cosine_similarity(g.flatten(1), weight.flatten(1), dim=1), torch.ones(len(g)),
                              atol=1e-4):
                raise _Fail(f"the filters of result[{name!r}] point along the weight's filters w_i, not along the "
                            "direction's: did you swap the two? Keep the direction's filters and give them the "
                            "weight's norms: d_i * ||w_i|| / ||d_i||.")
            if torch.allclose(_filter_norms(g), torch.ones(len(g)), rtol=1e-4):
                raise _Fail(f"every filter of result[{name!r}] has norm 1; it should have the norm of the weight's "
                            "filter, ||w_i||, so that a step alpha moves each filter in proportion to its own size.")
            if torch.allclose(F.cosine_similarity(g.flatten(1), d.flatten(1), dim=1), torch.ones(len(g)), atol=1e-4):
                raise _Fail(f"the filters of result[{name!r}] point along the direction's, but their norms "
                            f"{[round(v, 3) for v in _filter_norms(g).tolist()]} should be the weight's filter norms "
                            f"{[round(v, 3) for v in _filter_norms(weight).tolist()]}: scale by ||w_i|| / ||d_i||.")
            raise _Fail(f"result[{name!r}] differs from the filter-normalised direction: filter i should be "
                        "d_i * ||w_i|| / ||d_i||, with ||.|| the norm of the whole slice along dim 0.")
        for name, weight in model.named_parameters():
            if weight.dim() <= 1 and got[name].count_nonzero():
                raise _Fail(f"result[{name!r}] is not zero. 1-d parameters (BatchNorm scales and shifts, biases) get "
                            "a zero direction (Li et al. Sec. 4): they are left where training put them.")
        return "every filter has its weight filter's norm and the BatchNorm and bias entries are zero."

    return _run_check("check_filter_normalize", check, strict)
