"""The GPU checks of issue 5 as one prepared command, for a session lent a CUDA GPU (only ``--out`` comes back).

    python3 -m benchmarks.gpu_session --data gpu_data/cifar10-jpeg-train.tar.gz --out "$OUT"
    python3 -m benchmarks.gpu_session --dry-run --out /tmp/session   # the same steps on the CPU, tiny, in a minute

With the device tool, after ``mkdir -p gpu_data && cp ../shared/data/cifar10-jpeg-train.tar.gz gpu_data/``: one
call of the first command with ``carry=["gpu_data"]`` and ``timeout_s=600`` (the default budget, 480 s, leaves time
to unpack the data and to start Python); the GPU session's 15 minutes hold one such call and the machine's start.

Steps, in order, each given what is left of ``--budget`` seconds; one that would start with less than
``--min-step`` seconds left is skipped, and a training step still running at the deadline is interrupted as by
Ctrl-C, keeping its last complete epoch:

1. ``tests/test_gpu.py``, the CUDA paths: mixed precision, channels_last, float16 loss scaling, resume, the CLI;
2. the fast recipe for ResNet-20 (30 epochs, 45,000 training and 5,000 validation images), scored single-view and
   with test-time flips (:mod:`benchmarks.score_run`);
3. the paper's recipe (182 epochs), the same way, for as long as the budget lasts;
4. :mod:`benchmarks.gpu`'s epoch-time table for ResNet-20, if time is left.

``--out`` receives ``SESSION.md`` (GPU, torch, each step's exit status and minutes, each run's scores; rewritten
after every step), ``steps.log`` (every step's output), ``RESULTS_GPU.md``, each run's metrics as
``fast-metrics.json`` and ``paper-metrics.json``, and the checkpoint of a run left unfinished as
``<recipe>-checkpoint.pt`` (git-ignored, never committed): carried back as ``<runs>/<recipe>/checkpoint.pt``,
``--runs <runs>`` continues it in a later call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu import machine_header  # noqa: E402
from benchmarks.score_run import score_run  # noqa: E402
from resnet_lab.checkpoint import CHECKPOINT_NAME, METRICS_NAME, load_checkpoint  # noqa: E402
from resnet_lab.data import CifarData, load_cifar10  # noqa: E402

__all__ = ["Step", "run_step", "collect_run", "main"]

ROOT = Path(__file__).resolve().parents[1]
VAL_SPLIT = 5000
RECIPES = ("fast", "paper")  # in this order; each run's folder is named after its recipe


@dataclass
class Step:
    name: str
    status: str  # "exit 0", "exit 1", "interrupted at the deadline", "skipped: ..."
    seconds: float = 0.0


def run_step(name: str, command: Sequence[str], log: Path, deadline: float, *, min_seconds: float) -> Step:
    """Run ``command`` in the repository root, appending its output to ``log``, until it ends or ``deadline``
    (``time.monotonic()``); then SIGINT (a training run keeps its last complete epoch), then SIGKILL after 30 s."""
    left = deadline - time.monotonic()
    if left < min_seconds:
        return Step(name, f"skipped: {max(0, left):.0f} s left of the budget")
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n===== {name}: {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            status = f"exit {process.wait(timeout=left)}"
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            status = "interrupted at the deadline"
    return Step(name, status, time.monotonic() - start)


def _data_dir(data: str, work: Path) -> str:
    """``data`` itself, or the folder a ``.tar.gz`` of it unpacks into."""
    if not data.endswith((".tar.gz", ".tgz")):
        return data
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12: no paths outside work
    with tarfile.open(data) as archive:
        archive.extractall(work, **safe)
    return str(work)


def collect_run(run_dir: Path, data: CifarData, out: Path) -> str:
    """Copy the run's metrics (and its checkpoint, if it is unfinished) into ``out``; a line on its progress,
    speed and validation accuracy, single-view and with flips."""
    metrics = json.loads((run_dir / METRICS_NAME).read_text())
    epochs = metrics["epochs"]
    config = load_checkpoint(run_dir / CHECKPOINT_NAME)["config"]
    shutil.copy(run_dir / METRICS_NAME, out / f"{run_dir.name}-metrics.json")
    if len(epochs) < config["epochs"]:  # to be carried back and continued with --runs
        shutil.copy(run_dir / CHECKPOINT_NAME, out / f"{run_dir.name}-checkpoint.pt")
    minutes = sum(e["seconds"] for e in epochs) / 60
    speed = sum(e["images_per_s"] for e in epochs) / len(epochs)
    scores = score_run(run_dir, data)
    return (f"{len(epochs)} of {config['epochs']} epochs, {minutes:.1f} min of training and evaluation, "
            f"{speed:,.0f} training images/s, amp {config['amp']}; val single-view "
            f"{100 * scores['val_single']:.2f} %, with flips {100 * scores['val_flip']:.2f} %")


def _write_report(out: Path, header: str, steps: list[Step], runs: dict[str, str]) -> None:
    lines = ["# GPU session (benchmarks/gpu_session.py)", "", header, "", "| step | status | minutes |",
             "|---|---|---|", *(f"| {s.name} | {s.status} | {s.seconds / 60:.1f} |" for s in steps), ""]
    lines += [f"* **{name}**: {summary}" for name, summary in runs.items()]
    (out / "SESSION.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a CIFAR-10 copy, or a .tar.gz of one (unpacked into a temporary folder)")
    parser.add_argument("--out", type=Path, required=True, help="where the results go ($OUT on a lent machine)")
    parser.add_argument("--runs", type=Path, help="run folders; default a new temporary one")
    parser.add_argument("--budget", type=float, default=480, help="seconds for all steps (default 480)")
    parser.add_argument("--min-step", type=float, default=60, help="skip a step with less left (default 60 s)")
    parser.add_argument("--dry-run", action="store_true", help="the CPU, the smoke stand-in, tiny runs")
    args = parser.parse_args(argv)
    if not args.dry_run and (args.data is None or not torch.cuda.is_available()):
        parser.error("needs --data and a CUDA GPU (or --dry-run)")
    if not args.dry_run and not Path(args.data).exists():
        parser.error(f"--data {args.data}: no such file or folder")
    deadline = time.monotonic() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_session_"))
    runs = args.runs or work / "runs"
    log = args.out / "steps.log"
    python = sys.executable
    if args.dry_run:
        source = ["--smoke", "--device", "cpu", "--model", "resnet8"]
        data = load_cifar10(val_split=VAL_SPLIT // 50, smoke=True)
        epochs = {"fast": ["--epochs", "1", "--val-split", str(VAL_SPLIT // 50)],
                  "paper": ["--epochs", "2", "--val-split", str(VAL_SPLIT // 50)]}
        bench = [python, "-m", "benchmarks.gpu", "--dry-run", "--skip-accuracy", "--out",
                 str(args.out / "RESULTS_GPU.md")]
    else:
        data_dir = _data_dir(args.data, work / "data")
        source = ["--data", data_dir, "--device", "cuda", "--model", "resnet20"]
        data = None  # loaded for scoring once the first run has decoded and cached it
        epochs = {recipe: ["--val-split", str(VAL_SPLIT)] for recipe in RECIPES}
        bench = [python, "-m", "benchmarks.gpu", "--data", data_dir, "--models", "resnet20", "--skip-accuracy",
                 "--out", str(args.out / "RESULTS_GPU.md")]
    header = "\n".join(machine_header(torch.device("cpu" if args.dry_run else "cuda")))
    steps: list[Step] = []
    summaries: dict[str, str] = {}

    steps.append(run_step("tests/test_gpu.py", [python, "-m", "pytest", "-q", "-o", "addopts=", "-p",
                                                "no:cacheprovider", "tests/test_gpu.py"],
                          log, deadline, min_seconds=args.min_step))
    _write_report(args.out, header, steps, summaries)
    for recipe in RECIPES:
        run_dir = runs / recipe
        command = [python, "-m", "resnet_lab.train", *source, "--recipe", recipe, *epochs[recipe], "--out",
                   str(run_dir), "--no-progress", "--resume"]
        steps.append(run_step(f"{recipe} recipe", command, log, deadline, min_seconds=args.min_step))
        if (run_dir / METRICS_NAME).exists():
            try:
                if data is None:
                    data = load_cifar10(data_dir, val_split=VAL_SPLIT)
                summaries[f"{recipe} recipe"] = collect_run(run_dir, data, args.out)
            except Exception as error:  # report it and go on: the remaining steps still run
                summaries[f"{recipe} recipe"] = f"not scored: {type(error).__name__}: {error}"
        _write_report(args.out, header, steps, summaries)
    steps.append(run_step("epoch times (benchmarks.gpu)", bench, log, deadline, min_seconds=args.min_step))
    _write_report(args.out, header, steps, summaries)
    print((args.out / "SESSION.md").read_text())
    return args.out / "SESSION.md"


if __name__ == "__main__":
    main()
