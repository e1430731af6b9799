"""resnet_lab.train.fit and its command line: learning, checkpoints, divergence, interrupts, exact resume, DDP.

Tiny settings throughout: ResNet-8 on the synthetic smoke stand-in, on the CPU with a fixed thread count.
"""

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from resnet_lab import engine, models
from resnet_lab.checkpoint import METRICS_FIELDS, atomic_save, atomic_write, find_trained, load_checkpoint
from resnet_lab.data import load_cifar10, make_smoke_cifar
from resnet_lab.loader import TensorLoader
from resnet_lab.models import build_model, cifar_resnet
from resnet_lab.plots import LiveCurves
from resnet_lab.recipes import RECIPES, LRFactor, make_optimizer, make_scheduler
from resnet_lab.train import TrainingDiverged, evaluate, fit, main, prepare_model

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 3, "batch_size": 50, "device": "cpu", "progress": False}
TIMING = ("images_per_s", "seconds")


@pytest.fixture(autouse=True)
def fixed_threads():
    """Bit-identical CPU results need the same thread count in every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke():
    return make_smoke_cifar(train_per_class=20, test_per_class=5)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cifar_resnet(8)


def without_timing(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key not in TIMING} for record in history]


def stop_after_epoch(record: dict) -> None:
    raise KeyboardInterrupt  # as if Ctrl-C came right after the epoch's checkpoint


class FailAt:
    """A forward hook that, at the ``step``-th training forward, returns NaN or raises KeyboardInterrupt."""

    def __init__(self, step: int, error: type[BaseException] | None = None) -> None:
        self.step, self.error, self.calls = step, error, 0

    def __call__(self, module, inputs, output):
        if not module.training:
            return None
        self.calls += 1
        if self.calls == self.step:
            if self.error is not None:
                raise self.error
            return output * float("nan")
        return None


def test_fit_lowers_the_loss_and_writes_checkpoint_and_metrics(tmp_path):
    data = make_smoke_cifar(train_per_class=30, test_per_class=10)
    seen = []
    history = fit(tiny_model(), data, **dict(TINY, epochs=4), out_dir=tmp_path, model_name="resnet8",
                  on_epoch_end=seen.append)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and seen == history
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.5 and history[-1]["val_acc"] is None
    assert all(h["images"] == 300 and h["images_per_s"] > 0 for h in history)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == ["model", "recipe", "seed", "device", "data", "epochs"]
    assert (metrics["model"], metrics["recipe"], metrics["seed"], metrics["device"], metrics["data"]) == (
        "resnet8", "fast", 0, "cpu", "smoke")
    assert [list(e) for e in metrics["epochs"]] == [list(METRICS_FIELDS)] * 4
    assert metrics["epochs"][-1]["test_acc"] == pytest.approx(history[-1]["test_acc"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 4 and set(state) >= {"model", "optimizer", "scheduler", "scaler", "rng", "config"}
    with pytest.raises(FileExistsError, match="resume=True"):  # never overwrite a run by accident
        fit(tiny_model(), data, **TINY, out_dir=tmp_path)
    with pytest.raises(ValueError, match="settings differ.*batch_size"):
        fit(tiny_model(), data, **dict(TINY, batch_size=25), out_dir=tmp_path, model_name="resnet8", resume=True)
    finished = tiny_model()
    assert fit(finished, data, **dict(TINY, epochs=4), out_dir=tmp_path, model_name="resnet8",
               resume=True) == history  # already complete: nothing to do
    trained = tiny_model().train()
    fit(trained, data, **dict(TINY, epochs=1))
    assert not finished.training and not trained.training  # either way, ready to classify


def test_a_run_resumes_only_on_the_validation_split_it_started_with(smoke, tmp_path):
    settings = dict(TINY, epochs=1, out_dir=tmp_path, model_name="resnet8")
    history = fit(tiny_model(), smoke, **settings)
    path = tmp_path / "checkpoint.pt"
    assert torch.load(path, weights_only=True)["config"]["split_seed"] == smoke.split_seed == 0
    other_split = dataclasses.replace(smoke, split_seed=1)
    with pytest.raises(ValueError, match="settings differ.*split_seed"):
        fit(tiny_model(), other_split, **settings, resume=True)
    state = torch.load(path, weights_only=True)  # a run saved before split_seed was recorded: the seed drew it
    del state["config"]["split_seed"]
    torch.save(state, path)
    assert fit(tiny_model(), smoke, **settings, resume=True) == history
    with pytest.raises(ValueError, match="settings differ.*split_seed"):
        fit(tiny_model(), other_split, **settings, resume=True)


def test_a_run_resumes_only_on_the_images_it_trained_on(smoke, tmp_path):
    settings = dict(TINY, epochs=1, out_dir=tmp_path, model_name="resnet8")
    history = fit(tiny_model(), smoke, **settings)
    images = smoke.train_images.clone()
    images[0] = 255 - images[0]  # another copy of the data: the same size, split and labels, one image differs
    with pytest.raises(ValueError, match="settings differ.*train_data.*other images: load the same data"):
        fit(tiny_model(), dataclasses.replace(smoke, train_images=images), **settings, resume=True)
    held_out = dataclasses.replace(smoke, val_images=smoke.test_images, val_labels=smoke.test_labels)
    with pytest.raises(ValueError, match="settings differ.*val_size"):
        fit(tiny_model(), held_out, **settings, resume=True)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # a run saved before either was recorded
    del state["config"]["train_data"], state["config"]["val_size"]
    torch.save(state, tmp_path / "checkpoint.pt")
    assert fit(tiny_model(), smoke, **settings, resume=True) == history


def test_a_run_resumes_only_with_the_network_it_trained(smoke, tmp_path):
    settings = dict(TINY, epochs=2)  # no model_name: fit records every net of resnet_lab.models as "resnet"

    def plain8():
        torch.manual_seed(0)
        return build_model("plain8")

    full = fit(plain8(), smoke, **settings, out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(plain8(), smoke, **settings, out_dir=tmp_path / "cut", on_epoch_end=stop_after_epoch)
    # resnet8 has plain8's weight names and shapes (option A shortcuts have no weights): refused all the same
    for other in (build_model("resnet8"), build_model("plain14")):
        with pytest.raises(ValueError, match=r"settings differ.*'architecture'.*another network"):
            fit(other, smoke, **settings, out_dir=tmp_path / "cut", resume=True)
    path = tmp_path / "cut" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)  # a run saved before the architecture was recorded still resumes
    del state["config"]["architecture"]
    torch.save(state, path)
    resumed = fit(plain8(), smoke, **settings, out_dir=tmp_path / "cut", resume=True)
    assert without_timing(resumed) == without_timing(full)


def test_a_training_set_too_small_for_one_step_is_a_clear_error(smoke, tmp_path):
    one_image = dataclasses.replace(smoke, train_images=smoke.train_images[:1], train_labels=smoke.train_labels[:1])
    with pytest.raises(ValueError, match=r"1 training image\(s\) over 1 process\(es\) give no training step.*"
                                         r"at least 2 images"):
        fit(tiny_model(), one_image, **TINY, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_saved_before_crop_padding_was_recorded_counts_as_padded_by_4(smoke, tmp_path):
    for recipe in ("paper", "fast"):  # the paper pads by 4: it resumes; the fast recipe now pads by 2: it refuses
        settings = dict(TINY, recipe=recipe, epochs=1, out_dir=tmp_path / recipe, model_name="resnet8")
        history = fit(tiny_model(), smoke, **settings)
        path = tmp_path / recipe / "checkpoint.pt"
        state = torch.load(path, weights_only=True)
        del state["config"]["crop_padding"]
        torch.save(state, path)
        if recipe == "paper":
            assert fit(tiny_model(), smoke, **settings, resume=True) == history
        else:
            with pytest.raises(ValueError, match=r"settings differ.*'crop_padding': \(4, 2\)"):
                fit(tiny_model(), smoke, **settings, resume=True)


def test_evaluate_returns_loss_accuracy_and_confusion_matrix(smoke):
    model = tiny_model().eval()
    loader = TensorLoader(smoke.test_images, smoke.test_labels, 16, train=False)
    result = evaluate(model, loader)
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in loader])
    predictions = logits.argmax(1)
    assert result.confusion.shape == (10, 10) and result.confusion.dtype == torch.int64
    assert result.confusion.sum() == 50 and result.confusion[3].sum() == 5
    counted = torch.zeros(10, 10, dtype=torch.int64)
    for true, predicted in zip(smoke.test_labels.tolist(), predictions.tolist()):
        counted[true, predicted] += 1
    assert torch.equal(result.confusion, counted)
    assert result.accuracy == pytest.approx((predictions == smoke.test_labels).float().mean().item())
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, smoke.test_labels).item(), rel=1e-5)


def test_evaluate_uses_the_running_statistics_and_restores_training_mode(smoke):
    model = tiny_model()
    loader = TensorLoader(smoke.test_images, smoke.test_labels, 16, train=False)
    with torch.no_grad():
        model.train()(next(iter(loader))[0])  # running statistics away from their initial values
    buffers = {key: value.clone() for key, value in model.named_buffers()}
    expected = evaluate(model.eval(), loader)
    result = evaluate(model.train(), loader)  # fit evaluates right after a training epoch
    assert model.training and (result.loss, result.accuracy) == (expected.loss, expected.accuracy)
    assert all(torch.equal(value, buffers[key]) for key, value in model.named_buffers())  # BatchNorm untouched

    def interrupted(*args):
        raise KeyboardInterrupt

    handle = model.fc.register_forward_hook(interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model.train(), loader)
    handle.remove()
    assert model.training  # an interrupted evaluation too leaves the mode it was given


def test_evaluate_with_flip_averages_the_logits_of_each_image_and_its_mirror(smoke):
    model = tiny_model().eval()
    loader = TensorLoader(smoke.test_images, smoke.test_labels, 16, train=False)
    with torch.no_grad():
        logits = torch.cat([(model(x) + model(x.flip(-1))) / 2 for x, _ in loader])
    result = evaluate(model, loader, flip=True)
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, smoke.test_labels).item(), rel=1e-5)
    assert result.accuracy == pytest.approx((logits.argmax(1) == smoke.test_labels).float().mean().item())
    assert result.loss != pytest.approx(evaluate(model, loader).loss, rel=1e-4)  # the mirror images do count


def test_shifted_views_are_one_pixel_each_way_with_reflected_edges_and_weigh_half():
    def probe(x):  # one logit: the pixel at row 1, column 1 of channel 0
        return x[:, 0, 1, 1:2]

    image = torch.arange(25.0).reshape(1, 1, 5, 5)  # pixel (r, c) holds 5 r + c
    # the image (weight 1/2) shows (1, 1); moved down-right (1/4) it shows (0, 0), moved up-left (1/4) (2, 2)
    assert engine.tta_logits(probe, image, shift=True).item() == pytest.approx(6 / 2 + 0 / 4 + 12 / 4)
    # with flips each view is averaged with its mirror image, whose (1, 1) is the view's (1, 3):
    # (6 + 8) / 2 for the image; (0 + 2) / 2 moved down-right; (12 + 14) / 2 moved up-left
    both = engine.tta_logits(probe, image, flip=True, shift=True).item()
    assert both == pytest.approx(7 / 2 + 1 / 4 + 13 / 4)

    def corner(x):
        return x[:, 0, 0, 0:1]

    # edges reflect: moved either way, pixel (0, 0) shows (1, 1)
    assert engine.tta_logits(corner, image, shift=True).item() == pytest.approx(0 / 2 + 6 / 4 + 6 / 4)


def test_evaluate_with_shifts_scores_the_shifted_views(smoke):
    model = tiny_model().eval()
    loader = TensorLoader(smoke.test_images, smoke.test_labels, 16, train=False)
    with torch.no_grad():
        logits = torch.cat([engine.tta_logits(model, x, flip=True, shift=True) for x, _ in loader])
    result = evaluate(model, loader, flip=True, shift=True)
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, smoke.test_labels).item(), rel=1e-5)
    assert result.loss != pytest.approx(evaluate(model, loader, flip=True).loss, rel=1e-4)


@pytest.mark.parametrize("recipe, flip", [("fast", True), ("paper", False)])
def test_fit_scores_with_the_test_time_flip_only_where_the_recipe_asks(smoke, recipe, flip):
    model = tiny_model()
    history = fit(model, smoke, **dict(TINY, epochs=1), recipe=recipe, amp=False)
    loader = TensorLoader(smoke.test_images, smoke.test_labels, 100, train=False)
    assert history[0]["test_loss"] == pytest.approx(evaluate(model, loader, flip=flip).loss, rel=1e-5)
    assert history[0]["test_loss"] != pytest.approx(evaluate(model, loader, flip=not flip).loss, rel=1e-5)


def test_find_trained_picks_the_longest_finished_run_of_a_model(smoke, tmp_path):
    assert find_trained(tmp_path, "resnet8") is None  # nothing trained yet (e.g. notebook 04 not run)
    fit(tiny_model(), smoke, **dict(TINY, epochs=1), out_dir=tmp_path / "short", model_name="resnet8")
    fit(tiny_model(), smoke, **dict(TINY, epochs=2), out_dir=tmp_path / "long", model_name="resnet8")
    fit(tiny_model(), smoke, **dict(TINY, epochs=3), out_dir=tmp_path / "other", model_name="plain8")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.pt").write_text("not a checkpoint")
    assert find_trained(tmp_path, "resnet8") == tmp_path / "long" / "checkpoint.pt"
    assert find_trained(tmp_path, "plain8") == tmp_path / "other" / "checkpoint.pt"
    assert find_trained(tmp_path, "resnet20") is None
    assert find_trained(tmp_path, "resnet8", pattern="sh*") == tmp_path / "short" / "checkpoint.pt"


def test_find_trained_skips_a_run_that_stopped_before_its_last_epoch(tmp_path):
    for run, epoch, epochs in (("finished", 1, 1), ("stopped", 2, 5)):  # the stopped one has seen more images
        (tmp_path / run).mkdir()
        torch.save({"epoch": epoch, "config": {"model": "resnet8", "epochs": epochs, "train_size": 200}},
                   tmp_path / run / "checkpoint.pt")
    assert find_trained(tmp_path, "resnet8") == tmp_path / "finished" / "checkpoint.pt"


def test_checkpoints_that_would_run_pickled_code_are_refused(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"epoch": 1, "config": {"model": "resnet8", "epochs": 1, "train_size": 200}, "hook": print},
               tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert find_trained(tmp_path, "resnet8") is None


def test_an_interrupted_write_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"epoch": 1}, path)

    def interrupted(temporary):
        temporary.write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert load_checkpoint(path) == {"epoch": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_write_reaches_the_disk_before_the_rename_and_the_rename_after_it(tmp_path, monkeypatch):
    import resnet_lab.checkpoint as checkpoint

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(checkpoint.os, "replace", lambda *paths: events.append("replace") or real_replace(*paths))
    atomic_save({"epoch": 1}, tmp_path / "checkpoint.pt")
    assert events == ["fsync", "replace", "fsync"]  # the file's bytes, the rename, then the folder's entry
    assert load_checkpoint(tmp_path / "checkpoint.pt") == {"epoch": 1}


def test_nan_loss_stops_with_advice_and_keeps_the_last_good_checkpoint(smoke, tmp_path):
    model = tiny_model()
    model.fc.register_forward_hook(FailAt(step=6))  # 4 steps per epoch: epoch 2, step 2
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 2 of 4") as error:
        fit(model, smoke, **TINY, out_dir=tmp_path)
    message = str(error.value)
    for advice in ("lower lr (e.g. lr=0.00781, --lr 0.00781)", "warm-up (warmup=True, --warmup)", "normalisation",
                   "epoch 1) is kept", "another out_dir (--out)"):
        assert advice in message
    assert "recipe='fast'" not in message  # the run is already the fast recipe
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert len(json.loads((tmp_path / "metrics.json").read_text())["epochs"]) == 1
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(TrainingDiverged, match="nothing was saved") as error:  # same without out_dir
        fit(tiny_model(), smoke, **TINY, lr=1e30)
    assert "out_dir" not in str(error.value)


HOST_READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero"}


class CountHostReads(TorchFunctionMode):
    """Counts the tensor calls that copy a value to the host (on a GPU, each waits for its queue to finish)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += getattr(func, "__name__", None) in HOST_READS
        return func(*args, **(kwargs or {}))


def epoch_parts(model: torch.nn.Module, scaler: torch.amp.GradScaler | None = None):
    """A loader, an SGD optimizer, a constant per-step schedule and a loss scaler (off unless given)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return (optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
            scaler or torch.amp.GradScaler("cpu", enabled=False))


def test_an_epoch_reads_from_the_device_once_per_check(smoke):
    model = tiny_model()
    loader = TensorLoader(smoke.train_images, smoke.train_labels, 50, train=True)
    with CountHostReads() as reads, engine.tqdm(disable=True) as bar:  # a notebook's progress=False
        totals = engine.train_epoch(model, loader, *epoch_parts(model), epoch=1, bar=bar)
    assert reads.count == len(loader) + 1  # a CPU checks every step, then the epoch's totals are read
    assert totals["images"] == 200 and 0 < totals["loss_sum"] / totals["images"] < 10


def test_the_paper_warmup_ends_at_the_same_step_on_every_device(smoke, monkeypatch):
    settings = dict(TINY, epochs=1, batch_size=10, recipe="paper", lr=0.5, warmup=True)  # 20 steps
    checked_every_step = fit(tiny_model(), smoke, **settings)  # as on a CPU
    monkeypatch.setattr(engine, "_check_every", lambda device: 20)  # as on a GPU: one check in this epoch
    assert without_timing(fit(tiny_model(), smoke, **settings)) == without_timing(checked_every_step)


def test_the_warmup_of_a_make_scheduler_schedule_ends_without_being_passed(smoke):
    model = tiny_model()
    loader = TensorLoader(smoke.train_images, smoke.train_labels, 10, train=True)  # 20 steps
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    scheduler = make_scheduler(optimizer, RECIPES["paper"], 10 * len(loader), warmup=True)  # drops at 50 %
    for epoch in (1, 2, 3):
        engine.train_epoch(model, loader, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False),
                           epoch=epoch)
    assert scheduler.lr_lambdas[0].warming_up is False  # the scheduler's own factor: no silent lr/10 for good
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)  # back on the paper's schedule, before its drops


def test_a_step_skipped_by_the_float16_loss_scaler_brings_no_scheduler_warning(smoke):
    model = tiny_model()
    loader = TensorLoader(smoke.train_images[:100], smoke.train_labels[:100], 50, train=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))  # every step overflows, as float16's first often do
    optimizer, scheduler, scaler = epoch_parts(model, scaler)
    weights = model.fc.weight.clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine.train_epoch(model, loader, optimizer, scheduler, scaler, epoch=1)
    assert torch.equal(model.fc.weight, weights) and scheduler.last_epoch == len(loader)  # skipped, yet lr advanced
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]


def test_nan_loss_at_the_last_step_of_an_epoch_stops_before_the_checkpoint(smoke, tmp_path):
    model = tiny_model()
    model.fc.register_forward_hook(FailAt(step=4))  # 4 steps per epoch: the last step of epoch 1
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 4 of 4"):
        fit(model, smoke, **TINY, out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()  # NaN weights are never saved


def test_the_advice_after_a_divergence_can_be_followed(smoke, tmp_path):
    model = tiny_model()
    model.fc.register_forward_hook(FailAt(step=6))  # diverges in epoch 2, after a checkpoint
    settings = dict(TINY, recipe="paper", out_dir=tmp_path / "diverged", model_name="resnet8")
    with pytest.raises(TrainingDiverged) as error:
        fit(model, smoke, **settings)
    message = str(error.value)
    assert "the fast recipe's gradual warm-up (recipe='fast')" in message and "warmup=True" in message
    # the advised route: the kept checkpoint cannot resume with another lr, a new run in another out_dir can
    lower = float(message.split("lr=")[1].split(",")[0])
    with pytest.raises(ValueError, match="settings differ.*'lr'"):
        fit(tiny_model(), smoke, **dict(settings, lr=lower), resume=True)
    assert len(fit(tiny_model(), smoke, **dict(settings, lr=lower, out_dir=tmp_path / "new"))) == 3
    model = tiny_model()  # with the warm-up already on, the advice no longer offers it
    model.fc.register_forward_hook(FailAt(step=2))
    with pytest.raises(TrainingDiverged) as error:
        fit(model, smoke, **dict(TINY, warmup=True))
    assert "warmup=True" not in str(error.value) and "lower lr" in str(error.value)


class RefuseFloat64(TorchFunctionMode):
    """Every float64 tensor is an error, as on Apple's MPS (\"Cannot convert a MPS Tensor to float64 dtype\")."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if isinstance(result, torch.Tensor) and result.dtype == torch.float64:
            raise TypeError(f"{getattr(func, '__name__', func)} made a float64 tensor on a device without float64")
        return result


def test_training_and_evaluation_make_no_float64_tensor_on_a_device_without_float64(smoke, monkeypatch):
    assert engine._sum_dtype(torch.device("mps")) == torch.float32  # Apple's GPUs have no float64
    assert engine._sum_dtype(torch.device("cpu")) == torch.float64  # elsewhere the sums keep float64
    monkeypatch.setattr(engine, "_NO_FLOAT64", ("cpu",))  # the CPU stands in for MPS
    with RefuseFloat64():
        history = fit(tiny_model(), smoke, **dict(TINY, epochs=1), amp=False, recipe="paper", warmup=True)
    reference = fit(tiny_model(), smoke, **dict(TINY, epochs=1), amp=False, recipe="paper", warmup=True)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert history[0][key] == pytest.approx(reference[0][key], rel=1e-5)


def test_a_resumed_run_draws_the_random_numbers_the_uninterrupted_run_draws(smoke, tmp_path):
    def with_dropout(seed: int = 0) -> torch.nn.Module:  # dropout draws from torch's global generator
        model = tiny_model(seed)
        model.fc = torch.nn.Sequential(torch.nn.Dropout(0.5), model.fc)
        return model

    reference = with_dropout()
    fit(reference, smoke, **TINY, amp=False, out_dir=tmp_path / "full")
    interrupted = with_dropout()
    interrupted.fc.register_forward_hook(FailAt(step=7, error=KeyboardInterrupt))  # during epoch 2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, smoke, **TINY, amp=False, out_dir=tmp_path / "resumed")
    resumed = with_dropout(seed=123)
    fit(resumed, smoke, **TINY, amp=False, out_dir=tmp_path / "resumed", resume=True)
    ours, theirs = resumed.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bfloat16"])
def test_interrupted_run_resumes_bit_identically(smoke, tmp_path, amp):
    reference = tiny_model()
    full = fit(reference, smoke, **TINY, amp=amp, out_dir=tmp_path / "full")

    interrupted = tiny_model()
    interrupted.fc.register_forward_hook(FailAt(step=7, error=KeyboardInterrupt))  # during epoch 2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, smoke, **TINY, amp=amp, out_dir=tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 1  # intact

    resumed_model = tiny_model(seed=123)  # different initial weights: everything must come from the checkpoint
    resumed = fit(resumed_model, smoke, **TINY, amp=amp, out_dir=tmp_path / "resumed", resume=True)
    ours, theirs = resumed_model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    timing = {"images_per_s", "seconds"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed] == [
        {k: v for k, v in h.items() if k not in timing} for h in full]
    final = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert final["optimizer"]["state"][0]["momentum_buffer"].equal(
        torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["optimizer"]["state"][0]["momentum_buffer"])


def test_an_interruption_says_which_epoch_the_checkpoint_holds(smoke, tmp_path, capsys, monkeypatch):
    def stop(record):
        raise KeyboardInterrupt  # Ctrl-C after epoch 1 was saved, e.g. while a notebook redraws its curves

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), smoke, **TINY, out_dir=tmp_path / "a", on_epoch_end=stop)
    assert f"interrupted in epoch 1 of 3: {tmp_path / 'a' / 'checkpoint.pt'} holds epoch 1;" in capsys.readouterr().err

    import resnet_lab.train as train_module

    real_save = train_module.atomic_save

    def interrupted_save(state, path):
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # Ctrl-C while epoch 2 is being written: the file still holds epoch 1
        real_save(state, path)

    monkeypatch.setattr(train_module, "atomic_save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), smoke, **TINY, out_dir=tmp_path / "b")
    assert f"interrupted in epoch 2 of 3: {tmp_path / 'b' / 'checkpoint.pt'} holds epoch 1;" in capsys.readouterr().err


@pytest.mark.parametrize("has_amx, amp, expected", [(True, None, "bfloat16"), (False, None, None),
                                                     (True, False, None), (False, True, "bfloat16")])
def test_cpu_trains_in_bfloat16_by_default_only_with_amx(smoke, tmp_path, monkeypatch, has_amx, amp, expected):
    monkeypatch.setattr("resnet_lab.train.cpu_has_amx", lambda: has_amx)
    history = fit(tiny_model(), smoke, **dict(TINY, epochs=1), amp=amp, out_dir=tmp_path, model_name="resnet8")
    config = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]
    assert (config["amp"], config["channels_last"]) == (expected, True)
    assert 0 < history[0]["train_loss"] < 10 and history[0]["test_acc"] is not None


def test_fit_evaluates_in_the_precision_it_trains_in(smoke, monkeypatch):
    import resnet_lab.train as train_module

    seen, real = [], train_module.evaluate

    def spy(*args, **kwargs):
        seen.append(kwargs["amp_dtype"])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", spy)
    for amp, expected in ((True, torch.bfloat16), (False, None)):
        seen.clear()
        fit(tiny_model(), smoke, **dict(TINY, epochs=1), amp=amp)
        assert seen and set(seen) == {expected}


@pytest.mark.parametrize("channels_last", [None, False])
def test_prepare_model_keeps_one_set_of_weights_in_the_chosen_memory_format(channels_last):
    model = tiny_model()
    runnable, amp_dtype, chosen = prepare_model(model, torch.device("cpu"), amp=True, channels_last=channels_last,
                                                compile=False)
    assert runnable is model and amp_dtype is torch.bfloat16 and chosen is (channels_last is None)
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) is chosen
    compiled, _, _ = prepare_model(model, torch.device("cpu"), amp=False, channels_last=None, compile=True)
    assert compiled is not model and compiled._orig_mod is model  # compiled lazily: weights shared, not copied


@pytest.mark.parametrize("recipe, padding", [("paper", 4), ("fast", 2)])
def test_each_recipe_crops_training_images_with_its_own_padding(smoke, monkeypatch, recipe, padding):
    seen = []

    def recording_loader(*args, **kwargs):
        loader = TensorLoader(*args, **kwargs)
        seen.append((loader.train, loader.padding))
        return loader

    monkeypatch.setattr("resnet_lab.train.TensorLoader", recording_loader)
    fit(tiny_model(), smoke, **dict(TINY, epochs=1), recipe=recipe)
    assert [pad for train, pad in seen if train] == [padding]  # evaluation loaders do not crop


def test_recipes_schedules_and_warmup(smoke, tmp_path):
    paper = LRFactor("step", 100, milestones=(0.5, 0.75))
    assert [paper(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cycle = LRFactor("onecycle", 100, warmup_fraction=0.2)
    assert cycle(0) == pytest.approx(0.05) and cycle(19) == 1 and cycle(60) == pytest.approx(0.5)
    assert cycle(99) == pytest.approx(1 / 80)
    cycle.warming_up = True
    assert cycle(19) == pytest.approx(0.1)
    # the paper's warm-up: lr/10 until the training error is below 80 %, then the schedule (saved in the checkpoint)
    fit(tiny_model(), smoke, **TINY, recipe="paper", lr=0.5, warmup=True, out_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["config"]["warmup"] and state["scheduler"]["lr_lambdas"][0]["warming_up"] is False
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [1e-4]  # paper: one group, all decayed
    fit(tiny_model(), smoke, **dict(TINY, epochs=1), out_dir=tmp_path / "fast")
    state = torch.load(tmp_path / "fast" / "checkpoint.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0] and groups[0]["nesterov"]  # no decay on BN, biases
    assert state["config"]["lr"] == pytest.approx(0.2 * 50 / 128) and not state["config"]["warmup"]  # linear scaling
    with pytest.raises(ValueError, match="recipe must be one of 'paper', 'fast'"):
        fit(tiny_model(), smoke, recipe="slow", **TINY)
    for setting in ("epochs", "batch_size"):  # nothing to train: an error, not an empty history and no files
        with pytest.raises(ValueError, match=f"{setting} must be at least 1; got 0"):
            fit(tiny_model(), smoke, **dict(TINY, **{setting: 0}), out_dir=tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_fit_steps_each_recipes_lr_schedule_once_per_step(smoke, tmp_path):
    # 200 images in batches of 50: 4 steps an epoch; the lr recorded after each epoch is the one of the next step
    lr = 0.1 * 50 / 128
    paper = fit(tiny_model(), smoke, **dict(TINY, epochs=4), recipe="paper", out_dir=tmp_path)
    assert [h["lr"] for h in paper] == pytest.approx([lr, lr / 10, lr / 100, lr / 100])  # /10 at 50 % and 75 %
    group = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, False, 1e-4)  # Sec. 4.2
    # one-cycle over 12 steps: the warm-up's floor of 100 steps is capped at half the run, 6 steps
    lr = 0.2 * 50 / 128
    fast = fit(tiny_model(), smoke, **TINY)
    assert [h["lr"] for h in fast] == pytest.approx([lr * 5 / 6, lr * 4 / 6, 0.0])


def test_the_papers_recipe_warms_resnet110_up_by_default(smoke, tmp_path):
    # 54 blocks; 20 images of 8x8 pixels keep the step cheap
    small = dataclasses.replace(smoke, train_images=smoke.train_images[:20, :, :8, :8],
                                train_labels=smoke.train_labels[:20], test_images=None, test_labels=None)
    fit(cifar_resnet(110), small, **dict(TINY, epochs=1), recipe="paper", out_dir=tmp_path / "resnet110")
    fit(tiny_model(), small, **dict(TINY, epochs=1), recipe="paper", out_dir=tmp_path / "resnet8")
    assert torch.load(tmp_path / "resnet110" / "checkpoint.pt", weights_only=True)["config"]["warmup"] is True
    assert torch.load(tmp_path / "resnet8" / "checkpoint.pt", weights_only=True)["config"]["warmup"] is False


def test_the_fast_recipe_decays_conv_and_linear_weights_only():
    model = tiny_model()
    decayed, free = make_optimizer(model, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                   decay_norm_and_bias=False).param_groups
    assert (decayed["weight_decay"], free["weight_decay"]) == (5e-4, 0.0)
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert {id(p) for p in decayed["params"]} == {id(p) for p in weights}
    assert {id(p) for p in free["params"]} == {id(p) for p in model.parameters()} - {id(p) for p in weights}


def test_label_smoothing_enters_the_objective(smoke):
    smoothed, plain = tiny_model(), tiny_model()
    fit(smoothed, smoke, **dict(TINY, epochs=1), amp=False)  # the fast recipe smooths by 0.1
    fit(plain, smoke, **dict(TINY, epochs=1), amp=False, label_smoothing=0.0)
    assert not torch.equal(smoothed.fc.weight, plain.fc.weight)


def test_the_reported_training_loss_is_plain_cross_entropy(smoke):
    model = tiny_model()
    history = fit(model, smoke, **dict(TINY, epochs=1), lr=0.0, amp=False)  # lr 0: the weights stay as they are
    loader = TensorLoader(smoke.train_images, smoke.train_labels, 50, train=True, padding=2)  # the fast recipe's
    loader.set_epoch(1)
    with torch.no_grad():
        loss_sum = sum(float(F.cross_entropy(model.train()(x), y, reduction="sum")) for x, y in loader)
    assert history[0]["train_loss"] == pytest.approx(loss_sum / 200, rel=1e-5)  # not the smoothed objective


# ---------------------------------------------------------------------------------------------- DDP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = tiny_model(seed=rank)  # different initial weights: DDP must broadcast rank 0's
        data = make_smoke_cifar(train_per_class=10, test_per_class=3)
        history = fit(model, data, epochs=2, batch_size=20, device="cpu", progress=False, out_dir=f"{out}/run")
        torch.save({"state": model.state_dict(), "history": history}, f"{out}/rank{rank}.pt")
        dist.barrier()  # both done before either tears gloo down (a rank leaving early can abort its peer)
    finally:
        dist.destroy_process_group()


def test_average_buffers_divides_the_sum_over_ranks_by_their_number(monkeypatch):
    model = tiny_model()
    model.train()(torch.randn(4, 3, 8, 8))  # running statistics away from their initial values
    before = {key: value.clone() for key, value in model.named_buffers()}
    monkeypatch.setattr(engine.dist, "all_reduce", lambda tensor: tensor.add_(tensor + 1))  # the other rank: + 1
    engine.average_buffers(model, 2)
    for key, value in model.named_buffers():
        expected = before[key] + 0.5 if value.is_floating_point() else before[key]  # num_batches_tracked stays
        torch.testing.assert_close(value, expected)


def test_two_process_gloo_ddp_ends_with_identical_weights(tmp_path):
    mp.spawn(ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])
    assert [h["images"] for h in ranks[0]["history"]] == [100, 100]  # the shards add up to the training set
    assert ranks[0]["history"] == ranks[1]["history"] or all(  # metrics are reduced: every rank reports the same
        a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
        for a, b in zip(ranks[0]["history"], ranks[1]["history"]))
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["config"]["world_size"] == 2
    assert all(torch.equal(saved["model"][k], ranks[0]["state"][k]) for k in saved["model"])


def ddp_diverging_main_worker(rank: int, world: int, port: int, out: str) -> None:
    """``main`` as torchrun starts it, with a NaN loss on rank 1 alone at its second step."""
    import resnet_lab.train as train_module

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    build = models.build_model

    def build_nan_on_rank_1(name: str) -> torch.nn.Module:
        model = build(name)
        if rank == 1:
            model.fc.register_forward_hook(FailAt(step=2))
        return model

    train_module.build_model = build_nan_on_rank_1  # the name main calls
    with open(f"{out}/stderr{rank}.txt", "w") as stderr, contextlib.redirect_stderr(stderr):
        code = main(["--smoke", "--subset", "40", "--model", "resnet8", "--epochs", "1", "--batch-size", "8",
                     "--device", "cpu", "--threads", "1", "--no-amp", "--no-progress", "--out", f"{out}/run"])
    Path(f"{out}/code{rank}").write_text(str(code))


def ddp_missing_data_worker(rank: int, world: int, port: int, out: str) -> None:
    """``main`` as torchrun starts it, pointed at a data folder that does not exist."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    with open(f"{out}/stderr{rank}.txt", "w") as stderr, contextlib.redirect_stderr(stderr):
        try:
            code = main(["--data", f"{out}/nowhere", "--device", "cpu", "--threads", "1", "--out", f"{out}/run"])
        except SystemExit as exit:
            code = exit.code
    Path(f"{out}/code{rank}").write_text(str(code))


def test_missing_data_under_ddp_stops_every_rank_with_one_message(tmp_path):
    mp.spawn(ddp_missing_data_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"code{rank}").read_text() for rank in range(2)] == ["2", "2"]  # bad input, on every rank
    errors = [(tmp_path / f"stderr{rank}.txt").read_text() for rank in range(2)]
    assert "nowhere" in errors[0] and "--download" in errors[0] and errors[1] == ""


def test_a_divergence_on_one_ddp_rank_stops_every_rank_and_is_reported_once(tmp_path):
    mp.spawn(ddp_diverging_main_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"code{rank}").read_text() for rank in range(2)] == ["1", "1"]
    errors = [(tmp_path / f"stderr{rank}.txt").read_text() for rank in range(2)]
    # rank 0's own loss was finite: the message names the step, not rank 0's value
    assert "error: training diverged: the loss became NaN or infinite at epoch 1, step 2 of 5" in errors[0]
    assert "error" not in errors[1]  # rank 0 alone prints


# ---------------------------------------------------------------------------------------------- command line
def test_command_line_smoke_run_end_to_end(tmp_path):
    env = dict(os.environ, RESNET_LAB_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "resnet_lab.train", "--model", "resnet8", "--smoke", "--epochs", "2",
               "--batch-size", "100", "--out", str(tmp_path / "run"), "--threads", "1", "--no-progress", "--no-amp",
               "--seed", "1", "--val-split", "100"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "device cpu" in done.stdout  # said once, at the start
    assert "epoch 1/2 |" in done.stdout and "epoch 2/2 |" in done.stdout  # --no-progress: still a line per epoch
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "resnet8" and metrics["data"] == "smoke" and len(metrics["epochs"]) == 2
    assert all(list(e) == list(METRICS_FIELDS) and 0 <= e["test_acc"] <= 1 for e in metrics["epochs"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and cifar_resnet(8).load_state_dict(state["model"])
    assert state["config"]["amp"] is None  # --no-amp: float32 even on a CPU with AMX
    assert (state["config"]["seed"], state["config"]["split_seed"]) == (1, 0)  # --seed leaves the split alone
    data = load_cifar10(val_split=100, smoke=True)  # what --smoke --val-split 100 loads
    model = cifar_resnet(8)
    model.load_state_dict(state["model"])
    loader = TensorLoader(data.val_images, data.val_labels, 100, train=False)
    assert metrics["epochs"][-1]["val_acc"] == pytest.approx(evaluate(model, loader, flip=True).accuracy)


def test_command_line_errors_are_clean(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RESNET_LAB_DATA", raising=False)
    for argv, message in ((["--model", "resnet21", "--smoke"], "nearest valid: resnet20, resnet26"),
                          (["--model", "resnet20", "--data", str(tmp_path / "nothing")],
                           f"no CIFAR-10 found in {tmp_path / 'nothing'}"),
                          (["--model", "resnet8"], "no data_dir given")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path / "run"), "--no-progress"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_live_curves_show_a_finished_run_that_fit_does_not_retrain(smoke, tmp_path, monkeypatch):
    shown = []

    class Handle:  # IPython's display handle: the latest figure replaces the shown one
        def update(self, fig):
            shown.append(fig)

    monkeypatch.setattr("IPython.display.display", lambda fig, display_id=None: shown.append(fig) or Handle())
    first = fit(tiny_model(), smoke, **dict(TINY, epochs=2), out_dir=tmp_path,
                on_epoch_end=LiveCurves("tiny", run_dir=tmp_path))
    assert len(shown) == 2  # one figure per epoch
    shown.clear()
    again = fit(tiny_model(), smoke, **dict(TINY, epochs=2), out_dir=tmp_path, resume=True,
                on_epoch_end=LiveCurves("tiny", run_dir=tmp_path))  # the cell re-run: nothing left to train
    assert again == first and len(shown) == 1
    assert list(shown[0].axes[0].get_lines()[0].get_ydata()) == [r["train_loss"] for r in first]


def test_a_run_saved_without_loss_scaling_resumes_in_float16(tmp_path, monkeypatch):
    # e.g. started on a CPU in float32, continued on a T4, where fit trains in float16 with a GradScaler
    smoke = make_smoke_cifar(train_per_class=10, test_per_class=2)  # 100 images, 2 steps an epoch: float16 is slow
    interrupted = tiny_model()
    interrupted.fc.register_forward_hook(FailAt(step=3, error=KeyboardInterrupt))  # during epoch 2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, smoke, **dict(TINY, epochs=2), amp=False, out_dir=tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"] == {}
    monkeypatch.setattr("resnet_lab.train.autocast_dtype", lambda device: torch.float16)
    history = fit(tiny_model(), smoke, **dict(TINY, epochs=2), amp=True, out_dir=tmp_path, resume=True)
    assert len(history) == 2 and 0 < history[-1]["train_loss"] < 10
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]["scale"] > 0  # now it scales


def test_saving_leaves_the_process_umask_alone(tmp_path, monkeypatch):
    mask = os.umask(0)
    os.umask(mask)
    calls = []
    monkeypatch.setattr(os, "umask", lambda new: calls.append(new) or mask)
    atomic_write(tmp_path / "metrics.json", lambda temporary: temporary.write_text("{}"))
    assert calls == []  # setting it to 0, even for an instant, gives other threads' new files mode 0666
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("change", [dict(seed=1), dict(epochs=4), dict(recipe="paper"), dict(momentum=0.5),
                                    dict(weight_decay=0.0), dict(label_smoothing=0.0), dict(nesterov=False)])
def test_resume_refuses_every_changed_setting(smoke, tmp_path, change):
    settings = dict(TINY, epochs=2, out_dir=tmp_path, model_name="resnet8")
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), smoke, **settings, on_epoch_end=stop_after_epoch)
    with pytest.raises(ValueError, match=f"settings differ.*'{next(iter(change))}'"):
        fit(tiny_model(), smoke, **{**settings, **change}, resume=True)


def test_the_seed_draws_batch_order_and_augmentation_and_train_acc_is_measured(smoke):
    model = tiny_model()
    history = fit(model, smoke, **dict(TINY, epochs=1), lr=0.0, amp=False, seed=1)  # lr 0: the weights stay
    loader = TensorLoader(smoke.train_images, smoke.train_labels, 50, train=True, padding=2, seed=1)
    loader.set_epoch(1)
    loss_sum = correct = 0
    with torch.no_grad():
        for x, y in loader:
            logits = model.train()(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    assert history[0]["train_loss"] == pytest.approx(loss_sum / 200, rel=1e-5)
    assert history[0]["train_acc"] == correct / 200


@pytest.mark.parametrize("recipe, smoothing", [("fast", 0.1), ("paper", 0.0)])
def test_each_recipe_trains_with_its_own_label_smoothing(smoke, monkeypatch, recipe, smoothing):
    seen, real = [], F.cross_entropy

    def spy(*args, **kwargs):
        if "label_smoothing" in kwargs:
            seen.append(kwargs["label_smoothing"])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.F, "cross_entropy", spy)
    fit(tiny_model(), smoke, **dict(TINY, epochs=1), recipe=recipe)
    assert seen and set(seen) == {smoothing}


def test_the_warmup_lasts_while_the_training_error_is_above_80_percent(smoke):
    model = tiny_model()
    with torch.no_grad():  # always predicts class 0: 10 % accuracy, 90 % error
        model.fc.weight.zero_()
        model.fc.bias.copy_((torch.arange(10) == 0).float())
    loader = TensorLoader(smoke.train_images, smoke.train_labels, 10, train=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = make_scheduler(optimizer, RECIPES["paper"], 10 * len(loader), warmup=True)
    engine.train_epoch(model, loader, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), epoch=1)
    assert scheduler.lr_lambdas[0].warming_up is True


def test_a_head_of_the_wrong_size_is_a_clear_error(smoke, tmp_path):
    with pytest.raises(ValueError, match=r"5 outputs but the data has 10 classes; build it with num_classes=10"):
        fit(cifar_resnet(8, num_classes=5), smoke, **TINY, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_find_trained_counts_images_not_epochs(tmp_path):
    for run, epochs, size in (("subset", 3, 100), ("full", 2, 200)):
        (tmp_path / run).mkdir()
        torch.save({"epoch": epochs, "config": {"model": "resnet8", "epochs": epochs, "train_size": size}},
                   tmp_path / run / "checkpoint.pt")
    assert find_trained(tmp_path, "resnet8") == tmp_path / "full" / "checkpoint.pt"
