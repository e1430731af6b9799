"""resnet_lab.runtime and the notebooks' setup cells, including the Colab branch (with a fake google.colab)."""

import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch

from resnet_lab import project, runtime

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_smoke_switch(monkeypatch, value, expected):
    monkeypatch.setenv(runtime.SMOKE_ENV, value)
    assert runtime.smoke_mode() is expected


def test_smoke_switch_unset_is_a_real_run(monkeypatch):
    monkeypatch.delenv(runtime.SMOKE_ENV, raising=False)
    assert runtime.smoke_mode() is False


def test_bad_smoke_value_says_what_is_valid(monkeypatch):
    monkeypatch.setenv(runtime.SMOKE_ENV, "maybe")
    with pytest.raises(ValueError, match="must be 1 .* or 0"):
        runtime.smoke_mode()


@pytest.mark.parametrize("capability, hip, expected", [
    ((7, 5), None, torch.float16),  # Turing (Colab's T4): bfloat16 would only be emulated
    ((7, 0), None, torch.float16),  # Volta
    ((8, 0), None, torch.bfloat16),  # Ampere and later have bfloat16 tensor cores
    ((9, 0), None, torch.bfloat16),
    ((7, 5), "6.2", torch.bfloat16),  # ROCm reports a capability of its own; its GPUs run bfloat16
], ids=["T4", "V100", "A100", "H100", "ROCm"])
def test_autocast_dtype_is_float16_only_on_gpus_without_bfloat16_tensor_cores(monkeypatch, capability, hip, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # what torch says on a T4
    monkeypatch.setattr(torch.version, "hip", hip)
    assert runtime.autocast_dtype(torch.device("cuda")) == expected
    assert runtime.autocast_dtype(torch.device("cpu")) == torch.bfloat16


def test_setup_notebook_seeds_and_reports(capsys):
    session = runtime.setup_notebook(seed=7, smoke=True, device="cpu")
    first = torch.rand(3)
    runtime.setup_notebook(seed=7, smoke=True, device="cpu")
    assert torch.equal(first, torch.rand(3))
    assert session.device == torch.device("cpu") and session.smoke and session.seed == 7
    assert "SMOKE mode" in capsys.readouterr().out


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_preference_order(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert runtime.pick_device().type == expected
    assert runtime.pick_device("cpu").type == "cpu"  # an explicit choice wins over what is available


def test_a_device_that_cannot_train_here_is_a_clear_error_in_the_api_too(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name, message in [("cuda", "device cuda: no CUDA GPU is usable here"), ("mps", "MPS is not available here"),
                          ("gpu", "device 'gpu' is not a device; use cpu, cuda, cuda:N or mps")]:
        with pytest.raises(ValueError, match=message):
            runtime.pick_device(name)
        with pytest.raises(ValueError, match=message):  # a notebook's DEVICE = "cuda" on a machine without one
            runtime.setup_notebook(seed=0, smoke=True, device=name)


def setup_cell(path: Path) -> str:
    cells = nbformat.read(path, as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code" and '"google.colab" in sys.modules' in c.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_the_package_on_colab_only(path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: calls.append(args))
    namespace = {"SMOKE": True, "SEED": 0, "DEVICE": "cpu"}
    exec(setup_cell(path), namespace)  # not on Colab: installs nothing
    assert calls == []

    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(setup_cell(path), namespace)
    (args,) = calls
    assert args[:4] == [sys.executable, "-m", "pip", "install"]
    assert args[-1] == project.install_spec()
    assert not any(arg.startswith(("torch", "ipywidgets", "--force")) for arg in args)  # never reinstall/pin them
    assert "Change runtime type" in capsys.readouterr().out  # no GPU here: the learner is told how to get one
