"""The benchmark scripts (benchmarks/): their quick and dry-run paths end to end, on synthetic data, in seconds."""

import itertools
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import bn_growth, gpu, gpu_session, notebooks, reference, run_cpu, score_run, throughput, widget_latency
from resnet_lab.data import load_cifar10
from resnet_lab.loader import TensorLoader, normalize
from resnet_lab.models import cifar_resnet, imagenet_resnet
from resnet_lab.train import evaluate, fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread_no_data(monkeypatch):
    """The scripts set torch's thread count: put it back. No real data: every script must fall back to synthetic."""
    threads = torch.get_num_threads()
    monkeypatch.delenv("RESNET_LAB_DATA", raising=False)
    yield
    torch.set_num_threads(threads)


def result_rows(a, b, c_nchw, c_cl):
    return [throughput.Result("a", "(a) standard", a), throughput.Result("b", "(b) resnet_lab", b),
            throughput.Result("c-nchw", "(c) NCHW", c_nchw), throughput.Result("c-cl", "(c) channels_last", c_cl)]


# ---------------------------------------------------------------------------------------------- throughput
def test_targets_compare_b_with_the_best_limit_and_the_standard_pipeline():
    met = throughput.targets(result_rows(a=100, b=190, c_nchw=150, c_cl=210))
    assert [m for _, _, m in met] == [True, True]  # 190 / 210 = 90.5 %, 190 / 100 = 1.90x
    assert [value for _, value, _ in met] == ["90%", "1.90×"]
    missed = throughput.targets(result_rows(a=100, b=150, c_nchw=200, c_cl=170))
    assert [m for _, _, m in missed] == [False, False]  # 75 % of the limit, 1.5x


def test_markdown_table_gives_ratios_to_a_and_to_the_best_limit():
    table = throughput.markdown_table(result_rows(a=100, b=190, c_nchw=150, c_cl=200))
    assert "| (b) resnet_lab | 190 | 1.90× | 95% |" in table
    assert "| (c) channels_last | 200 | 2.00× | 100% |" in table
    with_bf16 = throughput.markdown_table(result_rows(a=100, b=190, c_nchw=150, c_cl=200) + [
        throughput.Result("b-fit", "(b, fit) bf16", 300, True), throughput.Result("c-cl-bf16", "(c) bf16", 400, True)])
    assert "| (b, fit) bf16 | 300 | 3.00× | 75% |" in with_bf16  # against the bfloat16 limit, not float32's
    assert "| (b) resnet_lab | 190 | 1.90× | 95% |" in with_bf16
    assert "| (b) ≈ 1.9× the standard pipeline (a) (met at ≥ 1.9×) | 1.90× | yes |" in table


def test_images_per_second_times_only_the_steps_after_the_warm_up(monkeypatch):
    calls = []
    batches = iter([(torch.zeros(4), torch.zeros(4))] * 2 + [(torch.zeros(8), torch.zeros(8))] * 3)
    clock = iter([10.0, 12.0])  # start, end
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    speed = throughput.images_per_second(lambda x, y: calls.append(len(y)), batches, steps=3, warmup=2)
    assert calls == [4, 4, 8, 8, 8]
    assert speed == pytest.approx(24 / 2.0)  # the warm-up's 8 images are not counted


def test_standard_loader_reads_the_synthetic_folder_like_load_cifar10(tmp_path):
    folder = throughput.make_image_folder(tmp_path, 30)
    loader = throughput.standard_loader(folder, 8, workers=0)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert images.mean().abs() < 3 and images.min() < 0  # normalised, not 0..1
    assert len(loader.dataset) == 30 and len(loader.dataset.classes) == 10
    data = throughput.load_cifar10(folder, cache=False)
    assert len(data.train_labels) == 30 and data.classes == tuple(loader.dataset.classes)


@pytest.mark.parametrize("amx", [False, True], ids=["float32 CPU", "CPU with AMX"])
def test_throughput_quick_runs_every_configuration_on_a_synthetic_folder(monkeypatch, capsys, amx):
    monkeypatch.setattr("resnet_lab.train.cpu_has_amx", lambda: amx)  # fit's default precision
    monkeypatch.setattr(throughput, "cpu_has_amx", lambda: amx)
    results = throughput.main(["--quick", "--batch-size", "4", "--threads", "1"])
    assert [r.key for r in results] == ["a", "b", "b-fit", "c-nchw", "c-cl"] + ["c-cl-bf16"] * amx
    assert [r.bf16 for r in results] == [False, False, amx, False, False] + [True] * amx
    assert all(r.images_per_s > 0 for r in results)
    out = capsys.readouterr().out
    assert "synthetic folder of PNG stripes" in out and "Quick mode" in out
    assert "| (c) limit: bare step on one batch, channels_last |" in out
    assert ("fit's CPU defaults (bf16 autocast: this CPU has AMX)" if amx else "fit's CPU defaults (float32)") in out
    assert "(b) ≥ 90% of the best limit (c)" in out
    assert torch.get_num_threads() == 1


def test_standard_loader_keeps_the_given_images_and_skips_augmentation_for_evaluation(tmp_path):
    folder = throughput.make_image_folder(tmp_path, 30)
    loader = throughput.standard_loader(folder, 8, workers=0, train=False, indices=[3, 0, 7])
    images, labels = next(iter(loader))
    data = throughput.load_cifar10(folder, cache=False)
    expected = normalize(data.train_images[[3, 0, 7]], torch.tensor(throughput.CIFAR10_MEAN),
                         torch.tensor(throughput.CIFAR10_STD))  # what TensorLoader feeds the network
    assert torch.allclose(images, expected, atol=1e-6)  # same order, no crop, no flip
    assert labels.tolist() == data.train_labels[[3, 0, 7]].tolist()


# ---------------------------------------------------------------------------------------------- reference
def test_reference_resnet20_computes_what_resnet_lab_computes_with_the_same_weights():
    from resnet_lab.models import resnet20

    torch.manual_seed(0)
    ours, theirs = resnet20(), reference.ReferenceResNet()
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters()) == 269_722
    for module in ours.modules():  # BatchNorm away from its initial identity, so its statistics matter too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
            module.weight.data.normal_()
    theirs.load_state_dict(dict(zip(theirs.state_dict(), ours.state_dict().values())))  # same order and shapes
    x = torch.randn(4, 3, 32, 32)
    for mode in (False, True):
        ours.train(mode)
        theirs.train(mode)
        assert torch.allclose(theirs(x), ours(x), atol=1e-5)


def test_reference_holds_out_the_images_load_cifar10_holds_out(tmp_path):
    folder = throughput.make_image_folder(tmp_path, 60)
    train, val = reference.split_indices(folder, 20, seed=3)
    dataset = throughput.standard_dataset(folder, train=False)
    data = throughput.load_cifar10(folder, val_split=20, seed=3, cache=False)

    def pixels(indices):
        return torch.stack([torch.from_numpy(np.array(Image.open(dataset.samples[i][0]))).permute(2, 0, 1)
                            for i in indices])

    assert torch.equal(pixels(val), data.val_images) and torch.equal(pixels(train), data.train_images)
    with pytest.raises(ValueError, match="val_split must be between 1 and 59"):
        reference.split_indices(folder, 60)


def test_reference_trains_with_the_step_schedule_and_writes_its_metrics(tmp_path, capsys):
    folder = throughput.make_image_folder(tmp_path / "data", 100)
    metrics = reference.main(["--data", str(folder), "--epochs", "4", "--val-split", "20", "--workers", "0",
                              "--threads", "1", "--out", str(tmp_path / "run")])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["epochs"] == metrics["epochs"] and (saved["train"], saved["val"]) == (80, 20)
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2, 3, 4]
    assert all(0 <= e["train_acc"] <= 1 and 0 <= e["val_acc"] <= 1 for e in saved["epochs"])
    assert saved["epochs"][-1]["train_loss"] < saved["epochs"][0]["train_loss"]
    assert "epoch 4/4: train loss" in capsys.readouterr().out


def test_reference_needs_real_data():
    with pytest.raises(SystemExit):
        reference.main([])


# ---------------------------------------------------------------------------------------------- widget latency
def test_widget_latency_moves_the_explorers_depth_slider(monkeypatch):
    import resnet_lab.widgets

    drawn = []
    original = resnet_lab.widgets.draw_gradient_norms

    def recording(depth, *args, **kwargs):
        drawn.append(depth)
        return original(depth, *args, **kwargs)

    monkeypatch.setattr(resnet_lab.widgets, "draw_gradient_norms", recording)
    results = widget_latency.measure((3, 5), repeats=2)
    assert drawn == [3, 4, 3, 5, 3, 5]  # warm-up at 3, a step away (the slider already said 3), then timed
    assert [(r.depth, len(r.times_ms)) for r in results] == [(3, 2), (5, 2)]
    assert all(t > 0 for r in results for t in r.times_ms)
    table = widget_latency.markdown_table(results)
    assert "| depth | median | max | redraws | target (median) | met |" in table and "| 5 |" in table


def test_latency_is_met_on_the_median_and_reports_the_max():
    slow_once = widget_latency.Latency(200, (100.0, 400.0, 200.0))
    assert slow_once.median_ms == 200 and slow_once.max_ms == 400 and slow_once.met
    assert not widget_latency.Latency(200, (310.0, 320.0)).met


# ---------------------------------------------------------------------------------------------- run_cpu
@pytest.fixture
def tiny_suite(monkeypatch, tmp_path):
    """run_cpu with tiny sizes and fake notebook runs: ``(notebook paths, calls made to run_notebook)``."""
    monkeypatch.setitem(throughput.QUICK, "batch_size", 4)
    monkeypatch.setattr(widget_latency, "DEPTHS", (3, 4))
    calls = []

    def fake_run(notebook, path, smoke):
        calls.append((path.name, smoke))
        monkeypatch.setenv("RESNET_LAB_SMOKE", "1" if smoke else "0")  # as the real one does
        return 12.0, 2000.0 if path.name == "big.ipynb" else 800.0

    monkeypatch.setattr(notebooks, "run_notebook", fake_run)
    paths = []
    for name in ("small.ipynb", "big.ipynb"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / name)
        paths.append(str(tmp_path / name))
    monkeypatch.setenv("RESNET_LAB_SMOKE", "1")
    return paths, calls


def test_run_cpu_writes_one_markdown_file_with_every_table(tiny_suite, tmp_path):
    paths, calls = tiny_suite
    out = run_cpu.main(["--quick", "--threads", "1", "--notebooks-mode", "both", "--out", str(tmp_path / "R.md"),
                        *paths])
    text = out.read_text()
    assert text.startswith("# resnet-lab CPU benchmarks")
    assert "- CPU: " in text and " cores, " in text and "RAM" in text and "1 torch threads" in text
    assert "Quick mode" in text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Training throughput (ResNet-20)", "## Notebook 01: gradient explorer redraw",
                        "## Notebooks: Run All in a fresh kernel"]
    assert "| (a) standard: ImageFolder + DataLoader(2 workers), NCHW |" in text
    assert "| target | measured | met |" in text
    assert "| 3 |" in text and "| 4 |" in text and "< 300 ms" in text
    assert calls == [("baseline.ipynb", True), ("small.ipynb", False), ("small.ipynb", True),
                     ("big.ipynb", False), ("big.ipynb", True)]
    assert "| small.ipynb | real | 12 s | 800 MiB | ≤ 1,536 MiB (Binder) | yes |" in text
    assert "| big.ipynb | smoke | 12 s | 2,000 MiB | ≤ 1,536 MiB (Binder) | no |" in text
    assert "| (imports only) | – | – | 800 MiB |" in text


def test_run_cpu_defaults_to_smoke_notebooks_and_can_skip_them(tiny_suite, tmp_path, monkeypatch):
    paths, calls = tiny_suite
    monkeypatch.setattr(run_cpu, "throughput_section", lambda data, quick: "## Training throughput")
    monkeypatch.setattr(run_cpu, "widget_section", lambda quick: "## Notebook 01")
    text = run_cpu.main(["--out", str(tmp_path / "S.md"), *paths]).read_text()
    assert calls == [("baseline.ipynb", True), ("small.ipynb", True), ("big.ipynb", True)]
    assert "| small.ipynb | smoke |" in text and "| real |" not in text
    assert run_cpu.os.environ["RESNET_LAB_SMOKE"] == "1"  # put back as it was before the notebooks ran
    calls.clear()
    text = run_cpu.main(["--skip-notebooks", "--out", str(tmp_path / "S.md")]).read_text()
    assert calls == [] and "## Notebooks" not in text and "## Training throughput" in text


# ---------------------------------------------------------------------------------------------- gpu (dry run)
def test_gpu_dry_run_times_every_configuration_and_stops_fit_at_the_target(tmp_path):
    text = gpu.main(["--dry-run", "--out", str(tmp_path / "G.md")]).read_text()
    assert "GPU: none: dry run on the CPU" in text
    for setup in gpu.SETUPS:
        assert f"| resnet8 | {setup.name} | " in text
    assert "failed" not in text
    assert "| resnet8 | fast, fit's defaults | 0% | " in text and "(1 epochs)" in text  # target 0: epoch 1 stops


def test_gpu_epoch_table_marks_a_failed_configuration():
    rows = [("resnet20", gpu.SETUPS[0], 4.0, 400), ("resnet20", gpu.SETUPS[-1], float("nan"), 0),
            ("resnet20", gpu.SETUPS[2], 2.0, 400)]
    table = "\n".join(gpu._epoch_table(rows))
    assert f"| resnet20 | {gpu.SETUPS[-1].name} | failed | – | – |" in table
    assert f"| resnet20 | {gpu.SETUPS[2].name} | 2.00 s | 200 | 2.00× |" in table


def test_gpu_script_shows_its_help_without_a_gpu():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--help"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT / "tests")
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout and "time to 91 %" in result.stdout


def test_time_to_accuracy_reports_not_reached_with_the_best_epoch(monkeypatch):
    def fake_fit(model, data, *, on_epoch_end, **options):
        for epoch, accuracy in zip(itertools.count(1), (0.5, 0.8, 0.7)):
            on_epoch_end({"epoch": epoch, "val_acc": accuracy})

    monkeypatch.setattr("resnet_lab.train.fit", fake_fit)
    result = gpu.time_to_accuracy(None, target=0.91, device=torch.device("cpu"), model_name="resnet8")
    assert not result["reached"] and result["epochs"] == 3 and result["best"] == 0.8
    assert "not reached in 3 epochs (best 80.00%)" in "\n".join(gpu._accuracy_table(result))


def test_gpu_benchmark_refuses_a_wrong_data_path_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on the GPU machine: the data check comes next
    with pytest.raises(SystemExit) as exit_info:
        gpu.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "G.md")])
    assert exit_info.value.code == 2 and "--data" in capsys.readouterr().err
    assert not (tmp_path / "G.md").exists()


# ---------------------------------------------------------------------------------- gpu_session and score_run
def test_gpu_session_dry_run_runs_every_step_and_scores_every_seed(tmp_path):
    text = gpu_session.main(["--dry-run", "--out", str(tmp_path)]).read_text()
    steps = ["tests/test_gpu.py", "fast recipe", "fast recipe, seed 1", "fast recipe, seed 2",
             "epoch times (benchmarks.gpu)"]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "exit 0" in line]
    assert [row.split(" | ")[0][2:] for row in rows] == steps  # in this order, each finished
    assert "* **fast recipe**: 1 of 1 epochs" in text and "* **fast recipe, seed 2**: 1 of 1 epochs" in text
    assert text.count("val single-view") == 4 and "not scored" not in text and "running" not in text
    assert "* **fast recipe, all seeds**: val single-view " in text and "(mean ± std of 3 seeds)" in text
    seed2 = json.loads((tmp_path / "runs" / "fast_seed2" / "metrics.json").read_text())
    assert seed2["recipe"] == "fast" and seed2["seed"] == 2
    returned = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    assert returned == ["RESULTS_GPU.md", "SESSION.md", "runs/fast/checkpoint.pt", "runs/fast/metrics.json",
                        "runs/fast_seed1/metrics.json", "runs/fast_seed2/metrics.json",
                        "steps.log"]  # a lent machine returns 8 files at most
    assert "SKIPPED" in (tmp_path / "steps.log").read_text()  # the CUDA tests, without a GPU (-rs names them)
    assert "| resnet8 | TensorLoader, fp32, NCHW | " in (tmp_path / "RESULTS_GPU.md").read_text()


def test_gpu_session_runs_the_papers_recipe_on_request_and_continues_a_returned_run(tmp_path):
    first = gpu_session.main(["--dry-run", "--paper", "--out", str(tmp_path / "first")]).read_text()
    assert "* **paper recipe**: 2 of 2 epochs" in first and "seed 1" not in first and "epoch times" not in first
    returned = sorted(str(path.relative_to(tmp_path / "first")) for path in (tmp_path / "first").rglob("*.*"))
    assert "runs/paper/checkpoint.pt" in returned and len(returned) <= 8
    again = gpu_session.main(["--dry-run", "--paper-from", str(tmp_path / "first" / "runs" / "paper"), "--out",
                              str(tmp_path / "again")]).read_text()
    assert "* **paper recipe**: 2 of 2 epochs" in again  # continued, not started afresh
    paper_log = (tmp_path / "again" / "steps.log").read_text().split("===== paper recipe")[1]
    assert "--resume" in paper_log and "epoch 1/2" not in paper_log and "epoch 2/2" not in paper_log  # none trained
    with pytest.raises(SystemExit):
        gpu_session.main(["--dry-run", "--paper-from", str(tmp_path), "--out", str(tmp_path / "none")])


def test_gpu_session_ends_its_steps_early_enough_and_starts_no_seed_that_cannot_finish(tmp_path, monkeypatch):
    calls = []

    def fake_step(name, command, log, deadline, *, min_seconds, env=None):
        calls.append((name, deadline - time.monotonic(), min_seconds))
        return gpu_session.Step(name, "exit 0", {"fast recipe": 100.0, "fast recipe, seed 1": 80.0}.get(name, 1.0))

    monkeypatch.setattr(gpu_session, "run_step", fake_step)
    gpu_session.main(["--dry-run", "--out", str(tmp_path), "--budget", "400"])
    assert [name for name, _, _ in calls] == ["tests/test_gpu.py", "fast recipe", "fast recipe, seed 1",
                                              "fast recipe, seed 2", "epoch times (benchmarks.gpu)"]
    left = {name: seconds for name, seconds, _ in calls}
    needs = {name: seconds for name, _, seconds in calls}
    assert left["tests/test_gpu.py"] <= gpu_session.CAPPED and left["epoch times (benchmarks.gpu)"] <= 150
    assert 400 - gpu_session.RESERVE - 30 < left["fast recipe, seed 2"] <= 400 - gpu_session.RESERVE
    assert needs["fast recipe, seed 1"] == 100 and needs["fast recipe, seed 2"] == 80  # what the run before took
    assert needs["fast recipe"] == needs["tests/test_gpu.py"] == 60  # --min-step's default


def test_a_session_step_past_the_deadline_is_interrupted_and_one_without_time_is_skipped(tmp_path):
    log = tmp_path / "steps.log"
    sleeper = [sys.executable, "-c",
               "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('stopped cleanly')"]
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job of a shell without job control
    try:
        step = gpu_session.run_step("sleep", sleeper, log, time.monotonic() + 2, min_seconds=0)
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert step.status == "interrupted at the deadline" and step.seconds < 30  # not killed after 30 s of grace
    assert "stopped cleanly" in log.read_text()  # SIGINT, as Ctrl-C: a training run ends on a whole checkpoint
    late = gpu_session.run_step("late", sleeper, log, time.monotonic() + 5, min_seconds=60)
    assert late.status.startswith("skipped") and late.seconds == 0 and "late" not in log.read_text()


def test_gpu_session_refuses_a_missing_data_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit) as exit_info:
        gpu_session.main(["--data", str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "no such file" in capsys.readouterr().err


def test_gpu_session_unpacks_an_archived_copy_and_takes_a_folder_as_it_is(tmp_path):
    image = tmp_path / "copy" / "train" / "cat" / "0001.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(image)
    archive = tmp_path / "copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "copy" / "train", arcname="train")
    unpacked = gpu_session._data_dir(archive, tmp_path / "unpacked")
    assert (unpacked / "train" / "cat" / "0001.png").read_bytes() == image.read_bytes()
    assert gpu_session._data_dir(tmp_path / "copy", tmp_path / "unused") == tmp_path / "copy"


def test_an_unfinished_run_is_described_from_its_checkpoint(tmp_path):
    data = load_cifar10(val_split=100, smoke=True)
    run = tmp_path / "paper"

    def stop(record: dict) -> None:
        raise KeyboardInterrupt  # after epoch 1's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(cifar_resnet(8), data, recipe="paper", epochs=2, batch_size=100, device="cpu", progress=False,
            out_dir=run, model_name="resnet8", on_epoch_end=stop)
    (run / "metrics.json").unlink()  # as if stopped between the checkpoint and the metrics: the checkpoint counts
    scores = score_run.score_run(run, data)
    line = gpu_session.describe_run(run, scores)
    assert line.startswith("1 of 2 epochs") and f"val single-view {100 * scores['val_single']:.2f} %" in line
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["history"][-1]["val_acc"] == pytest.approx(scores["val_single"])  # the paper scores single-view


def test_score_run_scores_as_fit_did_and_refuses_another_split(tmp_path, capsys):
    data = load_cifar10(val_split=100, smoke=True)
    history = fit(cifar_resnet(8), data, epochs=1, batch_size=100, device="cpu", progress=False, out_dir=tmp_path,
                  model_name="resnet8")
    scores = score_run.main([str(tmp_path), "--smoke", "--val-split", "100", "--device", "cpu"])
    assert scores["val_flip"] == pytest.approx(history[-1]["val_acc"])  # the fast recipe scores with flips
    assert scores["test_flip"] == pytest.approx(history[-1]["test_acc"])
    assert scores["val_single"] != scores["val_flip"] or scores["test_single"] != scores["test_flip"]
    out = capsys.readouterr().out
    assert "resnet8 after 1 epochs" in out and "  test single-view " in out and ", with flips and shifts " in out
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    model, channels_last = cifar_resnet(8), state["config"]["channels_last"]  # in the precision and format fit used
    model.load_state_dict(state["model"])
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    loader = TensorLoader(data.val_images, data.val_labels, 100, train=False, channels_last=channels_last)
    amp_dtype = getattr(torch, state["config"]["amp"]) if state["config"]["amp"] else None
    shifted = evaluate(model, loader, amp_dtype=amp_dtype, flip=True, shift=True).accuracy
    assert scores["val_flip_shift"] == pytest.approx(shifted)
    for other in (load_cifar10(val_split=50, smoke=True),  # another training set
                  load_cifar10(val_split=50, subset=400, smoke=True),  # as many training images, drawn otherwise
                  load_cifar10(val_split=100, seed=1, smoke=True)):  # another draw
        with pytest.raises(ValueError, match="pass the run's --val-split"):
            score_run.score_run(tmp_path, other)


def test_score_run_rebuilds_a_replaced_head_and_asks_for_the_name_of_an_unnamed_run(tmp_path):
    data = load_cifar10(val_split=100, subset=200, smoke=True)
    settings = {"epochs": 1, "batch_size": 100, "device": "cpu", "progress": False}
    # the command line's ImageNet net: a new head with one output per class
    fit(imagenet_resnet(18, num_classes=10), data, out_dir=tmp_path / "imagenet", model_name="imagenet_resnet18",
        **settings)
    assert score_run.score_run(tmp_path / "imagenet", data)["model"] == "imagenet_resnet18"
    fit(cifar_resnet(8), data, out_dir=tmp_path / "unnamed", **settings)  # saved as "resnet", which no name builds
    with pytest.raises(ValueError, match="pass --model NAME"):
        score_run.score_run(tmp_path / "unnamed", data)
    named = score_run.score_run(tmp_path / "unnamed", data, model_name="resnet8")
    assert named["model"] == "resnet8" and 0 <= named["val_single"] <= 1


def test_bn_growth_records_only_the_asked_epochs_of_a_longer_schedule(capsys):
    settings = ["--smoke", "--model", "plain8", "--subset", "200", "--val-split", "100", "--epochs", "6"]
    one = bn_growth.main(settings)  # 200 images at batch 64: 4 steps an epoch
    two = bn_growth.main([*settings, "--record-epochs", "2"])
    assert len(one) == 4 and len(two) == 8 and torch.equal(two[:4], one)  # same run, stopped later
    assert (one > 0).all() and torch.isfinite(one).all()
    out = capsys.readouterr().out
    assert "scheduled for 6 epochs" in out and "first step below 2:" in out
