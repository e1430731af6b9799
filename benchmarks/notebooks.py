"""Wall time and peak memory of every notebook, run top to bottom in a fresh kernel.

    python benchmarks/notebooks.py                 # real (CPU) mode and smoke mode, markdown table on stdout
    python benchmarks/notebooks.py --mode smoke    # one mode only

Peak memory is the largest resident set size of the kernel process (sampled every 50 ms), which is what
mybinder.org's 1-2 GB limit applies to. Outputs are discarded; the notebooks are not modified.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from pathlib import Path

import nbformat
import psutil
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


BASELINE = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
    "import matplotlib.pyplot, torch, torchvision\nimport resnet_lab.widgets, resnet_lab.models")])


def run_notebook(notebook: nbformat.NotebookNode, path: Path, smoke: bool) -> tuple[float, float]:
    """(seconds, peak kernel RSS in MiB) of one Run All of ``notebook`` (read from ``path``)."""
    os.environ["RESNET_LAB_SMOKE"] = "1" if smoke else "0"
    client = NotebookClient(notebook, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            manager = client.km
            pid = getattr(getattr(manager, "provisioner", None), "pid", None) if manager else None
            if pid:
                try:
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(True))
                    peak = max(peak, rss / 2**20)
                except psutil.Error:
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        done.set()
        sampler.join()
    return time.perf_counter() - start, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["both", "real", "smoke"], default="both")
    parser.add_argument("notebooks", nargs="*", help="notebook files (default: notebooks/*.ipynb)")
    args = parser.parse_args()
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    modes = {"both": [False, True], "real": [False], "smoke": [True]}[args.mode]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}\n")
    print("| notebook | mode | wall time | peak kernel memory |")
    print("|---|---|---|---|")
    _, baseline = run_notebook(BASELINE, ROOT / "notebooks" / "baseline.ipynb", smoke=True)
    print(f"| (imports only: torch, torchvision, matplotlib, resnet_lab) | – | – | {baseline:.0f} MiB |", flush=True)
    for path in paths:
        for smoke in modes:
            seconds, peak = run_notebook(nbformat.read(path, as_version=4), path, smoke)
            mode = "smoke" if smoke else "real (CPU)"
            print(f"| {path.name} | {mode} | {seconds:.0f} s | {peak:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
