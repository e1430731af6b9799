"""The command line ``python -m resnet_lab.train``, run in-process through ``main(argv)``: help, clean errors
(exit status 2, one line, no traceback) for bad options, devices and an offline download, and the ImageNet nets.

Tiny settings throughout: the synthetic smoke stand-in, one epoch, one CPU thread.
"""

import urllib.error

import pytest
import torch

from resnet_lab.models import imagenet_resnet
from resnet_lab.train import main


@pytest.fixture(autouse=True)
def fixed_threads():
    """``--threads`` changes the whole process: restore it after every test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_failing(argv: list[str], capsys) -> str:
    """``main(argv)``'s error message; it must exit with status 2 and print no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_help_is_written_for_users_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "train_on_tensors" not in text  # no developer docstring
    for part in ("--recipe paper", "examples:", "--model plain56 --smoke --out /tmp/smoke", "--resume",
                 "torchrun --standalone", "cifar-10-batches-py", "exit status: 0 done, 1 the loss diverged",
                 "imagenet_resnet{18,34,50,101,152}"):
        assert part in text
    # --warmup is on by default only with the paper recipe (fit: recipe == "paper" and 54+ blocks)
    assert "on with --recipe paper for nets of 54+ blocks" in " ".join(text.split())


@pytest.mark.parametrize("option, value, message", [
    ("--epochs", "0", "--epochs: must be at least 1; got 0"),
    ("--epochs", "-2", "--epochs: must be at least 1; got -2"),
    ("--threads", "-1", "--threads: must be at least 1; got -1"),
    ("--batch-size", "0", "--batch-size: must be at least 1; got 0"),
    ("--subset", "0", "--subset: must be at least 1; got 0"),
    ("--val-split", "-1", "--val-split: must be at least 0; got -1"),
])
def test_counts_must_be_positive(tmp_path, capsys, option, value, message):
    assert message in run_failing(["--smoke", option, value, "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device, cuda_gpus, mps, message", [
    ("gpu", 0, False, "--device 'gpu' is not a device; use cpu, cuda, cuda:N or mps"),
    ("cuda", 0, False, "--device cuda: no CUDA GPU is usable here"),
    ("cuda:3", 2, False, "--device cuda:3: this machine has 2 CUDA GPU(s), cuda:0 to cuda:1"),
    ("mps", 0, False, "--device mps: Apple's MPS is not available here"),
    ("meta", 0, False, "--device 'meta': training runs on cpu, cuda, cuda:N or mps"),
])
def test_an_unusable_device_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch, device, cuda_gpus, mps,
                                                            message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert message in run_failing(["--smoke", "--device", device, "--out", str(tmp_path / "run"), "--no-progress"],
                                  capsys)
    assert not (tmp_path / "run").exists()


def test_an_offline_download_says_what_to_do_instead(tmp_path, capsys, monkeypatch):
    torchvision = pytest.importorskip("torchvision")

    def offline(root, train, download):  # what torchvision raises without a network
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
    err = run_failing(["--download", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
                       "--no-progress"], capsys)
    for part in ("could not download CIFAR-10", "Name or service not known", "Offline?", "--data DIR", "--smoke"):
        assert part in err


def test_unreadable_data_is_a_clean_error_without_download_advice(tmp_path, capsys, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError(f"[Errno 13] Permission denied: '{tmp_path}/cifar-10-batches-py/data_batch_1'")

    monkeypatch.setattr("resnet_lab.train.load_cifar10", unreadable)
    err = run_failing(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert "could not read CIFAR-10: [Errno 13] Permission denied" in err and "Offline" not in err


def test_an_imagenet_resnet_trains_with_one_output_per_class(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--model", "imagenet_resnet18", "--smoke", "--epochs", "1", "--batch-size", "100", "--threads", "1",
                 "--no-amp", "--out", str(out), "--no-progress"]) == 0
    assert "imagenet_resnet18: 11,181,642 parameters" in capsys.readouterr().out  # 11,689,512 with 1000 classes
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["model"]["fc.weight"].shape == (10, 512)
    imagenet_resnet(18, num_classes=10).load_state_dict(state["model"])


def test_a_training_set_too_small_for_one_step_is_a_clean_error(tmp_path, capsys):
    err = run_failing(["--smoke", "--subset", "1", "--model", "resnet8", "--epochs", "1", "--threads", "1",
                       "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert "1 training image(s) over 1 process(es) give no training step" in err
    assert "at least 2 images (--subset)" in err and not (tmp_path / "run").exists()


def test_a_diverging_run_exits_1_with_advice_for_the_command_line(tmp_path, capsys):
    assert main(["--smoke", "--model", "resnet8", "--epochs", "1", "--batch-size", "100", "--lr", "1e30",
                 "--threads", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "--lr 1e+29" in err and "Traceback" not in err


def test_an_interrupted_run_exits_130_and_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                                          capsys):
    import resnet_lab.train as train_module

    common = ["--smoke", "--model", "resnet8", "--epochs", "2", "--threads", "1", "--no-progress", "--no-amp"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    real_epoch = train_module.train_epoch

    def interrupted_in_epoch_2(*args, epoch: int, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of an epoch
        return real_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", interrupted_in_epoch_2)
    assert main([*common, "--out", str(tmp_path / "cut")]) == 130
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train_module, "train_epoch", real_epoch)
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    log = capsys.readouterr().out  # --no-progress: the log still says that the run continued, and from where
    assert f"resuming {tmp_path / 'cut' / 'checkpoint.pt'} after epoch 1 of 2" in log
    assert "epoch 1/2" not in log and "epoch 2/2" in log
    whole, cut = (torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "cut"))
    assert cut["epoch"] == 2 and whole["model"].keys() == cut["model"].keys()
    assert all(torch.equal(whole["model"][key], cut["model"][key]) for key in whole["model"])


def test_under_torchrun_a_gpu_index_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; refused before any process group is made
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    err = run_failing(["--smoke", "--device", "cuda:1", "--out", str(tmp_path / "run")], capsys)
    assert "cuda:LOCAL_RANK" in err and "--device cuda" in err
