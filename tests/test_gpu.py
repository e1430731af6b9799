"""The CUDA paths of training, on a real GPU: skipped where there is none (CI, the development machine).

The first step of ``benchmarks/gpu_session.py`` on a machine lent a GPU, where nbval is not installed:

    python3 -m pytest -o addopts="" -p no:cacheprovider tests/test_gpu.py

ResNet-8 on the synthetic smoke stand-in, seconds in all. The CPU versions of these tests are in test_train.py.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from resnet_lab.checkpoint import load_checkpoint
from resnet_lab.data import make_smoke_cifar
from resnet_lab.loader import TensorLoader
from resnet_lab.models import cifar_resnet
from resnet_lab.train import evaluate, fit

# RESNET_LAB_REQUIRE_CUDA=1 (benchmarks/gpu_session.py sets it): no GPU is a failure, not a skip
pytestmark = pytest.mark.skipif(not torch.cuda.is_available() and os.environ.get("RESNET_LAB_REQUIRE_CUDA") != "1",
                                reason="needs a CUDA GPU")

ROOT = Path(__file__).resolve().parents[1]
TINY = {"batch_size": 50, "device": "cuda", "progress": False, "model_name": "resnet8"}


@pytest.fixture(scope="module")
def smoke():
    return make_smoke_cifar(train_per_class=30, test_per_class=10)


@pytest.fixture
def exact_float32():
    """Convolutions and matrix products in full float32 (not TF32, cuDNN's default on Ampere and newer)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic = saved


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cifar_resnet(8)


def test_the_loader_gives_the_cpus_batches_on_the_gpu(smoke):
    """Every random draw comes from a CPU generator, so an epoch is the same on every device."""
    options = {"batch_size": 64, "train": True, "seed": 3, "channels_last": True}
    cpu = TensorLoader(smoke.train_images, smoke.train_labels, device="cpu", **options)
    gpu = TensorLoader(smoke.train_images, smoke.train_labels, device="cuda", **options)
    for epoch in range(2):
        cpu.set_epoch(epoch)
        gpu.set_epoch(epoch)
        for (cpu_images, cpu_labels), (gpu_images, gpu_labels) in zip(cpu, gpu, strict=True):
            assert gpu_images.is_cuda and gpu_images.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(gpu_images.cpu(), cpu_images, rtol=0, atol=1e-6)
            assert torch.equal(gpu_labels.cpu(), cpu_labels)


def test_fit_trains_on_the_gpu_in_mixed_precision_and_channels_last(smoke, tmp_path):
    model = tiny_model()
    history = fit(model, smoke, epochs=4, out_dir=tmp_path, **TINY)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"] and history[-1]["test_acc"] > 0.5
    assert model.conv1.weight.is_cuda and model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    state = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True, onto the CPU
    expected = "bfloat16" if torch.cuda.get_device_capability() >= (8, 0) else "float16"
    assert (state["config"]["amp"], state["config"]["channels_last"], state["config"]["device"]) == (
        expected, True, "cuda")
    assert len(state["rng"]["cuda"]) == torch.cuda.device_count()  # the GPUs' generators travel with the run
    assert state["model"]["conv1.weight"].device.type == "cpu"
    assert json.loads((tmp_path / "metrics.json").read_text())["device"] == "cuda"


def test_float16_with_loss_scaling_trains_on_the_gpu(smoke, tmp_path, monkeypatch):
    """The T4's path (GPUs before Ampere have no fast bfloat16) on whatever GPU is here."""
    monkeypatch.setattr("resnet_lab.train.autocast_dtype", lambda device: torch.float16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(tiny_model(), smoke, epochs=4, out_dir=tmp_path, **TINY)
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["config"]["amp"] == "float16" and state["scaler"]["scale"] > 0


def test_evaluate_on_the_gpu_agrees_with_the_cpu(smoke, exact_float32):
    model = tiny_model()
    fit(model, smoke, epochs=1, amp=False, **TINY)  # running statistics away from their initial values
    for flip in (False, True):
        results = {}
        for device in ("cuda", "cpu"):
            loader = TensorLoader(smoke.test_images, smoke.test_labels, 40, train=False, device=device)
            results[device] = evaluate(model.to(device), loader, flip=flip)
        # the same predictions, but for at most one image whose two top logits are within rounding of each other
        assert (results["cuda"].confusion - results["cpu"].confusion).abs().sum() <= 2, flip
        assert results["cuda"].loss == pytest.approx(results["cpu"].loss, rel=1e-4), flip


def test_an_interrupted_gpu_run_resumes_where_it_stopped(smoke, tmp_path, exact_float32):
    reference = tiny_model()
    full = fit(reference, smoke, epochs=3, amp=False, out_dir=tmp_path / "full", **TINY)

    stopped = []

    def stop_after_epoch_2(record: dict) -> None:
        if record["epoch"] == 2:
            stopped.append(record)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), smoke, epochs=3, amp=False, out_dir=tmp_path / "resumed", on_epoch_end=stop_after_epoch_2,
            **TINY)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2 and stopped
    resumed_model = tiny_model(seed=123)  # other initial weights: all must come from the checkpoint
    resumed = fit(resumed_model, smoke, epochs=3, amp=False, out_dir=tmp_path / "resumed", resume=True, **TINY)
    assert [record["epoch"] for record in resumed] == [1, 2, 3]
    assert [r["train_loss"] for r in resumed] == pytest.approx([r["train_loss"] for r in full], rel=1e-4)
    # the same draws and, with deterministic cuDNN in float32, the same arithmetic up to the GPU's summation order
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(resumed_model.get_parameter(name), parameter, rtol=1e-3, atol=1e-4, msg=name)


def test_the_command_line_trains_on_the_gpu(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "resnet_lab.train", "--model", "resnet8", "--smoke", "--device", "cuda",
         "--epochs", "2", "--out", str(tmp_path), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"] == "cuda" and len(metrics["epochs"]) == 2
    assert all(0 <= epoch["test_acc"] <= 1 and epoch["images_per_s"] > 0 for epoch in metrics["epochs"])
