"""The GPU checks of issue 5 as one prepared command, for a session lent a CUDA GPU (only ``--out`` comes back).

    python3 -m benchmarks.gpu_session --data gpu_data/cifar10-jpeg-train.tar.gz --out "$OUT"
    python3 -m benchmarks.gpu_session --dry-run --out /tmp/session   # the same steps on the CPU, tiny, in a minute

With the device tool, after ``mkdir -p gpu_data && cp ../shared/data/cifar10-jpeg-train.tar.gz gpu_data/``
(``gpu_data/`` is git-ignored): one call of the first command with ``carry=["gpu_data"]`` and ``timeout_s`` at least
``--budget`` + 60 (default budget 480 s: ``timeout_s=540``); a session's 15 minutes of device time hold one such
call and the machine's start.

The whole command ends within ``--budget`` seconds: the steps run in this order until ``RESERVE`` seconds before
it, which leave time to stop a run and score it. A step that would start with less than ``--min-step`` seconds is
skipped, and so is a training run with less time left than the run before it took; a step still running at its
deadline is interrupted as by Ctrl-C (a training run keeps its last complete epoch).

1. ``tests/test_gpu.py`` (at most 150 s), the CUDA paths: mixed precision, channels_last, float16 loss scaling,
   resume, the command line; with ``RESNET_LAB_REQUIRE_CUDA=1``, so that a GPU the tests cannot see fails them;
2. the fast recipe for ResNet-20 (30 epochs, 45,000 training and 5,000 validation images), seed 0;
3. the same with seeds 1 and 2 (same validation images), for a mean and spread over seeds;
4. :mod:`benchmarks.gpu`'s epoch-time table for ResNet-20 (at most 150 s; measured once before, with torch 2.11).

The paper's recipe (182 epochs) needs about 8 minutes of training alone on an H200 (≈ 2.5 s per epoch of 45,000
images, from the epoch time measured before), more than a call has left after the fast recipe, and a run cut short
says nothing about the recipe's accuracy. ``--paper`` runs it instead of steps 3 and 4, for the rest of the budget;
``--paper-from DIR`` continues the ``runs/paper`` folder an earlier call returned (carried along) where it stopped.

Each run is scored single-view, with test-time flips, and with flips and 1-pixel shifts
(:mod:`benchmarks.score_run`). ``--out`` receives ``SESSION.md`` (the GPU, torch, each step's exit status and
minutes, each run's progress and scores; rewritten before and after every step), ``steps.log`` (every step's
output), ``RESULTS_GPU.md``, and the runs themselves (git-ignored, never committed): ``runs/fast`` (``metrics.json``
and ``checkpoint.pt``), ``runs/fast_seed1`` and ``runs/fast_seed2`` (``metrics.json``; their checkpoints stay on the
machine), or with ``--paper`` ``runs/paper`` (both files). At most 8 files, none deeper than two folders, so all of
them come back from a lent machine even when the call is cut short.
"""

from __future__ import annotations

import argparse
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
from resnet_lab.checkpoint import CHECKPOINT_NAME, load_checkpoint  # noqa: E402
from resnet_lab.data import load_cifar10  # noqa: E402

__all__ = ["Step", "run_step", "describe_run", "describe_seeds", "main"]

ROOT = Path(__file__).resolve().parents[1]
VAL_SPLIT = 5000
RESERVE = 45  # seconds after the steps: up to 30 s for a run to stop at Ctrl-C, then scoring it
CAPPED = 150  # seconds at most for the tests and for the epoch-time table


@dataclass
class Step:
    name: str
    status: str  # "exit 0", "exit 1", "interrupted at the deadline", "skipped: ...", "running"
    seconds: float = 0.0


def _default_sigint() -> None:
    """In the child, before it starts: SIGINT's default action. A shell without job control starts background
    commands with SIGINT ignored, and a child inherits that; the deadline's Ctrl-C would then do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_step(name: str, command: Sequence[str], log: Path, deadline: float, *, min_seconds: float,
             env: dict[str, str] | None = None) -> Step:
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
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                   preexec_fn=_default_sigint if os.name == "posix" else None)
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


def _data_dir(data: Path, work: Path) -> Path:
    """``data`` itself, or the folder a ``.tar.gz`` of it unpacks into."""
    if not data.name.endswith((".tar.gz", ".tgz")):
        return data
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12: no paths outside work
    with tarfile.open(data) as archive:
        archive.extractall(work, **safe)
    return work


def describe_run(run_dir: Path, scores: dict[str, object]) -> str:
    """A line on a run's progress (from its checkpoint), speed and validation accuracy ``scores`` (``score_run``'s)."""
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    history, config = state["history"], state["config"]
    minutes = sum(record["seconds"] for record in history) / 60
    settled = history[1:] or history  # the first epoch includes cuDNN's algorithm search and lazy set-up
    speed = sum(record["images_per_s"] for record in settled) / len(settled)
    return (f"{len(history)} of {config['epochs']} epochs, {minutes:.1f} min of training and evaluation, "
            f"{speed:,.0f} training images/s after the first epoch, amp {config['amp']}; val single-view "
            f"{100 * scores['val_single']:.2f} %, with flips {100 * scores['val_flip']:.2f} %, with flips and shifts "
            f"{100 * scores['val_flip_shift']:.2f} %")


def describe_seeds(scores: list[dict[str, object]]) -> str:
    """Mean ± standard deviation over runs of the validation accuracy, in each of ``score_run``'s three ways."""
    line = []
    for way in ("single", "flip", "flip_shift"):
        values = torch.tensor([100 * float(score[f"val_{way}"]) for score in scores], dtype=torch.float64)
        line.append(f"{values.mean():.2f} ± {values.std():.2f} %")
    return (f"val single-view {line[0]}, with flips {line[1]}, with flips and shifts {line[2]} (mean ± std of "
            f"{len(scores)} seeds)")


def _write_report(out: Path, header: str, steps: list[Step], runs: dict[str, str]) -> None:
    lines = ["# GPU session (benchmarks/gpu_session.py)", "", header, "", "| step | status | minutes |",
             "|---|---|---|", *(f"| {s.name} | {s.status} | {s.seconds / 60:.1f} |" for s in steps), ""]
    lines += [f"* **{name}**: {summary}" for name, summary in runs.items()]
    (out / "SESSION.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> Path:
    start = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a CIFAR-10 copy, or a .tar.gz of one (unpacked into /tmp)")
    parser.add_argument("--out", type=Path, required=True, help="where the results go ($OUT on a lent machine)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole command (default 480)")
    parser.add_argument("--min-step", type=float, default=60, help="skip a step with less left (default 60 s)")
    parser.add_argument("--dry-run", action="store_true", help="the CPU, the smoke stand-in, tiny runs")
    parser.add_argument("--paper", action="store_true",
                        help="after the fast recipe's seed 0, the paper's recipe for the rest of the budget (instead "
                             "of seeds 1 and 2 and the epoch times)")
    parser.add_argument("--paper-from", type=Path, metavar="DIR",
                        help="implies --paper: continue the runs/paper folder an earlier call returned")
    args = parser.parse_args(argv)
    if not args.dry_run:
        if args.data is None or not torch.cuda.is_available():
            parser.error("needs --data and a CUDA GPU (or --dry-run)")
        if not args.data.exists():
            parser.error(f"--data {args.data}: no such file or folder")
    if args.paper_from is not None and not (args.paper_from / CHECKPOINT_NAME).is_file():
        parser.error(f"--paper-from {args.paper_from}: no {CHECKPOINT_NAME} there (give a returned runs/paper)")
    deadline = start + args.budget - RESERVE
    out = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if args.paper_from is not None:
        shutil.copytree(args.paper_from, out / "runs" / "paper", dirs_exist_ok=True)
    kept = Path(tempfile.mkdtemp(prefix="gpu_session_runs_"))  # checkpoints that do not come back (8 files at most)
    log = out / "steps.log"
    python = sys.executable
    results = ["--out", str(out / "RESULTS_GPU.md")]
    if args.dry_run:
        source = ["--smoke", "--device", "cpu", "--model", "resnet8", "--val-split", str(VAL_SPLIT // 50)]
        data = load_cifar10(val_split=VAL_SPLIT // 50, smoke=True)
        epochs = {"fast": ["--epochs", "1"], "paper": ["--epochs", "2"]}
        bench = [python, "-m", "benchmarks.gpu", "--dry-run", "--skip-accuracy", *results]
        data_dir, test_env = None, {}
    else:
        data_dir = _data_dir(args.data.resolve(), Path(tempfile.mkdtemp(prefix="gpu_session_data_")))
        source = ["--data", str(data_dir), "--device", "cuda", "--model", "resnet20", "--val-split", str(VAL_SPLIT)]
        data = None  # loaded for scoring after the first run has decoded and cached it
        epochs = {"fast": [], "paper": []}  # each recipe's own
        bench = [python, "-m", "benchmarks.gpu", "--data", str(data_dir), "--models", "resnet20", "--skip-accuracy",
                 *results]
        test_env = {"RESNET_LAB_REQUIRE_CUDA": "1"}
    header = "\n".join(machine_header(torch.device("cpu" if args.dry_run else "cuda")))
    steps: list[Step] = []
    runs: dict[str, str] = {}
    fast_scores: list[dict[str, object]] = []

    def step(name: str, command: Sequence[str], cap: float | None = None, env: dict[str, str] | None = None,
             min_seconds: float = 0) -> None:
        _write_report(out, header, [*steps, Step(name, "running")], runs)
        end = deadline if cap is None else min(deadline, time.monotonic() + cap)
        steps.append(run_step(name, command, log, end, min_seconds=max(args.min_step, min_seconds), env=env))
        _write_report(out, header, steps, runs)

    def train(recipe: str, seed: int = 0) -> None:
        nonlocal data
        name = f"{recipe} recipe" + (f", seed {seed}" if seed else "")
        folder = recipe + (f"_seed{seed}" if seed else "")
        run_dir = out / "runs" / folder if seed == 0 else kept / folder
        finished = [s.seconds for s in steps if s.name.startswith("fast recipe") and s.status == "exit 0"]
        step(name, [python, "-m", "resnet_lab.train", *source, "--recipe", recipe, *epochs[recipe], "--seed",
                    str(seed), "--out", str(run_dir), "--no-progress", "--resume"],
             min_seconds=finished[-1] if seed and finished else 0)  # no seed run that cannot finish
        if seed and (run_dir / "metrics.json").exists():
            (out / "runs" / folder).mkdir(exist_ok=True)
            shutil.copy(run_dir / "metrics.json", out / "runs" / folder / "metrics.json")
        if (run_dir / CHECKPOINT_NAME).exists():
            try:
                if data is None:
                    data = load_cifar10(data_dir, val_split=VAL_SPLIT)
                scores = score_run(run_dir, data)
                runs[name] = describe_run(run_dir, scores)
                if recipe == "fast" and steps[-1].status == "exit 0":
                    fast_scores.append(scores)
                    if len(fast_scores) > 1:
                        runs["fast recipe, all seeds"] = describe_seeds(fast_scores)
            except Exception as error:  # report it and go on: the remaining steps still run
                runs[name] = f"not scored: {type(error).__name__}: {error}"
            _write_report(out, header, steps, runs)

    step("tests/test_gpu.py", [python, "-m", "pytest", "-q", "-rs", "--tb=short", "-o", "addopts=", "-p",
                               "no:cacheprovider", "tests/test_gpu.py"], cap=CAPPED, env=test_env)
    train("fast")
    if args.paper or args.paper_from is not None:
        train("paper")
    else:
        train("fast", seed=1)
        train("fast", seed=2)
        step("epoch times (benchmarks.gpu)", bench, cap=CAPPED)
    print((out / "SESSION.md").read_text())
    return out / "SESSION.md"


if __name__ == "__main__":
    main()
