"""Automatic checks for the notebooks' exercises.

Convention (every checker): ``check_x(candidate, strict=False)`` prints ``PASS ...`` and returns ``True``,
or prints a specific hint and returns ``False``. A stub that still raises ``NotImplementedError`` prints
"not attempted yet" and returns ``False``, so Run All always completes. ``strict=True`` raises
``AssertionError`` instead of returning ``False`` (for tests). Reference solutions: ``resnet_lab.solutions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["check_init_std", "check_input_gradient"]


class _Fail(Exception):
    """A check failed; the message is the hint shown to the learner."""


def _run_check(name: str, check: Callable[[], str], strict: bool) -> bool:
    """Run ``check`` (returns a pass message or raises ``_Fail``) and report by the convention above."""
    try:
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
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise _Fail(f"return one number (a float), not a tensor of shape {tuple(value.shape)}")
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _Fail(f"return a float; got {type(value).__name__}")


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
                raise _Fail(f"init_std({fan_in}, {activation!r}) returned {got:.4g}, expected {want:.4g}. "
                            "Var(sum of fan_in terms w*x) = fan_in * Var(w) * E[x^2]; set it equal to E[x^2].")
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


def check_input_gradient(
    input_gradient: Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor], strict: bool = False
) -> bool:
    """Check ``input_gradient(weights, x, grad_output)`` against autograd.

    The network is ``h_0 = x``, ``h_l = tanh(W_l h_{l-1})`` with ``W_l`` of shape ``(out, in)``; the function
    must return dL/dx given ``grad_output`` = dL/dh_L, by multiplying transposed layer Jacobians.
    """

    def check() -> str:
        generator = torch.Generator().manual_seed(1)
        sizes = [5, 8, 6, 4]  # non-square on purpose, so a missing transpose cannot go unnoticed
        weights = [torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in)
                   for n_in, n_out in zip(sizes, sizes[1:])]
        x = torch.randn(sizes[0], generator=generator)
        grad_output = torch.randn(sizes[-1], generator=generator)
        want = _reference_input_gradient(weights, x, grad_output)
        try:
            got = input_gradient([w.clone() for w in weights], x.clone(), grad_output.clone())
        except RuntimeError as error:
            if "shape" in str(error) or "size" in str(error) or "mat" in str(error):
                raise _Fail(f"shape mismatch ({error}). Going backwards, the gradient is multiplied by the "
                            "transpose W_l.T of each layer's weights.") from None
            raise
        if not isinstance(got, torch.Tensor):
            raise _Fail(f"return a tensor; got {type(got).__name__}")
        if got.shape != want.shape:
            raise _Fail(f"dL/dx must have the shape of x, {tuple(want.shape)}; got {tuple(got.shape)}")
        if torch.allclose(got, want, rtol=1e-4, atol=1e-6):
            return "your Jacobian product matches autograd."
        no_derivative = grad_output.clone()
        for w in reversed(weights):
            no_derivative = w.T @ no_derivative
        if torch.allclose(got, no_derivative, rtol=1e-4, atol=1e-6):
            raise _Fail("you multiplied by the weights only. Each layer's Jacobian is diag(tanh'(z_l)) W_l, "
                        "with tanh'(z) = 1 - tanh(z)^2 evaluated at that layer's pre-activation z_l.")
        raise _Fail("the values differ from autograd. Run the forward pass first and keep every h_l; then, "
                    "from the output back, g <- W_l.T @ ((1 - h_l**2) * g).")

    return _run_check("check_input_gradient", check, strict)
