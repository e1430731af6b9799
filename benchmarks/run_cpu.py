"""Every CPU benchmark in one command, written as one markdown file (default ``benchmarks/RESULTS.md``).

    python -m benchmarks.run_cpu --data /path/to/cifar          # throughput, widget latency, notebooks (smoke)
    python -m benchmarks.run_cpu --notebooks-mode real           # notebook 04's real CPU run alone takes ~30 min
    python -m benchmarks.run_cpu --quick --skip-notebooks        # seconds: checks that everything runs

Runs :mod:`benchmarks.throughput`, :mod:`benchmarks.widget_latency` and :mod:`benchmarks.notebooks` (each notebook
Run All in a fresh kernel) and writes a header naming the machine, then one table per benchmark with its targets
and whether each was met. Run it on an otherwise idle machine: anything else running skews every number.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import throughput, widget_latency  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"
MEMORY_TARGET_MIB = 1536  # mybinder.org gives a kernel 1-2 GB; the README's target is 1.5 GiB


def header(command: str) -> str:
    """The machine the numbers belong to."""
    info = throughput.machine_info()
    return "\n".join([
        "# resnet-lab CPU benchmarks", "",
        f"- Date: {info['date']}",
        f"- CPU: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM",
        f"- torch {info['torch']}, torchvision {info['torchvision']}, Python {info['python']}; "
        f"{info['threads']} torch threads",
        f"- Command: `{command}`",
    ])


def throughput_section(data: str | None, quick: bool) -> str:
    results, description = throughput.benchmark(data, quick=quick)
    return "\n".join(["## Training throughput (ResNet-20)", "", description, "",
                      throughput.markdown_table(results)])


def widget_section(quick: bool) -> str:
    depths = widget_latency.DEPTHS[:2] if quick else widget_latency.DEPTHS
    results = widget_latency.measure(depths, 2 if quick else 5)
    return "\n".join(["## Notebook 01: gradient explorer redraw", "",
                      "Time from a change of the depth slider to the new PNG (two networks built, two backward "
                      "passes, the plot drawn with Agg), after one untimed redraw.", "",
                      widget_latency.markdown_table(results)])


def notebook_rows(paths: Sequence[Path], modes: Sequence[str]) -> list[tuple[str, str, float | None, float]]:
    """``(notebook, mode, seconds, peak MiB)``: the imports-only kernel first, then every notebook in each mode."""
    import nbformat

    from benchmarks import notebooks

    saved = os.environ.get("RESNET_LAB_SMOKE")  # run_notebook sets it for the kernel; put it back afterwards
    try:
        _, peak = notebooks.run_notebook(notebooks.BASELINE, ROOT / "notebooks" / "baseline.ipynb", smoke=True)
        rows: list[tuple[str, str, float | None, float]] = [("(imports only)", "–", None, peak)]
        for path in paths:
            for mode in modes:
                print(f"  running {path.name} ({mode})", flush=True)
                seconds, peak = notebooks.run_notebook(nbformat.read(path, as_version=4), path,
                                                       smoke=mode == "smoke")
                rows.append((path.name, mode, seconds, peak))
    finally:
        if saved is None:
            os.environ.pop("RESNET_LAB_SMOKE", None)
        else:
            os.environ["RESNET_LAB_SMOKE"] = saved
    return rows


def notebook_section(paths: Sequence[Path], modes: Sequence[str]) -> str:
    lines = ["## Notebooks: Run All in a fresh kernel", "",
             "Wall time and peak resident memory of the kernel (sampled every 50 ms) per notebook; real mode runs "
             f"on the CPU, with the torch build of the header (torch {torch.__version__}; Binder installs the "
             "CPU-only build, whose imports alone take about 290 MiB less). The imports-only kernel is the floor "
             "every notebook starts from.", "",
             "| notebook | mode | wall time | peak kernel memory | target | met |", "|---|---|---|---|---|---|"]
    for name, mode, seconds, peak in notebook_rows(paths, modes):
        wall = "–" if seconds is None else f"{seconds:.0f} s"
        met = "yes" if peak <= MEMORY_TARGET_MIB else "no"
        lines.append(f"| {name} | {mode} | {wall} | {peak:,.0f} MiB | ≤ {MEMORY_TARGET_MIB:,} MiB (Binder) | {met} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file (default: %(default)s)")
    parser.add_argument("--data", help="CIFAR-10 for the throughput benchmark (default $RESNET_LAB_DATA; "
                                       "else a synthetic image folder)")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes everywhere: checks that everything runs")
    parser.add_argument("--notebooks-mode", choices=["smoke", "real", "both"], default="smoke",
                        help="smoke (default, about a minute), real (notebook 04 alone: ~30 min, 2 cores) or both")
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebook files (default: notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    command = "python -m benchmarks.run_cpu" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    sections = [header(command)]
    print("throughput ...", flush=True)
    sections.append(throughput_section(args.data, args.quick))
    print("widget latency ...", flush=True)
    sections.append(widget_section(args.quick))
    if not args.skip_notebooks:
        print("notebooks ...", flush=True)
        paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
        modes = ["real", "smoke"] if args.notebooks_mode == "both" else [args.notebooks_mode]
        sections.append(notebook_section(paths, modes))
    if args.quick:
        sections.insert(1, "**Quick mode: sizes too small for the numbers to mean anything.**")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n\n".join(sections) + "\n")
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
