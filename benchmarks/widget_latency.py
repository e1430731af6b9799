"""How long notebook 01's gradient explorer takes to redraw after the depth slider moves, on the CPU.

    python -m benchmarks.widget_latency                  # depths 20, 56, 110, 200; 5 redraws each
    python -m benchmarks.widget_latency --quick          # depths 20 and 56, 2 redraws each

It builds ``resnet_lab.widgets.gradient_explorer()`` (no browser or kernel needed) and sets its depth slider: the
slider's observer redraws exactly as in the notebook (build the plain and the residual ``deep_mlp``, one backward
pass each, draw with ``draw_gradient_norms``, encode the PNG). The time is that of the assignment to the slider.
Matplotlib draws with the Agg backend. One untimed redraw comes first (fonts, first-call overheads); the depths
are then visited in turn, ``repeats`` times. Target: a median under 300 ms at every depth.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch

__all__ = ["TARGET_MS", "Latency", "depth_slider", "measure", "markdown_table", "main"]

TARGET_MS = 300.0
DEPTHS = (20, 56, 110, 200)


@dataclass(frozen=True)
class Latency:
    depth: int
    times_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def max_ms(self) -> float:
        return max(self.times_ms)

    @property
    def met(self) -> bool:
        return self.median_ms < TARGET_MS


def depth_slider(panel):
    """The depth ``IntSlider`` of a ``gradient_explorer()`` panel (the one whose description is "depth")."""
    import ipywidgets as widgets

    stack = [panel]
    while stack:
        widget = stack.pop()
        if isinstance(widget, widgets.IntSlider) and widget.description == "depth":
            return widget
        stack.extend(getattr(widget, "children", ()))
    raise LookupError("the gradient explorer has no IntSlider described 'depth'; update depth_slider()")


def measure(depths: tuple[int, ...] = DEPTHS, repeats: int = 5) -> list[Latency]:
    """Redraw times (ms) of the gradient explorer at each depth, ``repeats`` times each (after one warm-up)."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot draws anything; the notebook's inline backend also renders with Agg
    from resnet_lab.widgets import gradient_explorer

    slider = depth_slider(gradient_explorer(depth=depths[0]))  # the constructor's redraw is the warm-up
    times: dict[int, list[float]] = {depth: [] for depth in depths}
    for _ in range(repeats):
        for depth in depths:
            if slider.value == depth:  # an unchanged value triggers nothing: step away first (untimed)
                slider.value = depth + 1 if depth < slider.max else depth - 1
            start = time.perf_counter()
            slider.value = depth  # the observer redraws synchronously
            times[depth].append(1000 * (time.perf_counter() - start))
    return [Latency(depth, tuple(values)) for depth, values in times.items()]


def markdown_table(results: list[Latency]) -> str:
    lines = ["| depth | median | max | redraws | target (median) | met |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.depth} | {r.median_ms:.0f} ms | {r.max_ms:.0f} ms | {len(r.times_ms)} | < {TARGET_MS:.0f} ms | "
              f"{'yes' if r.met else 'no'} |" for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Latency]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", help=f"default {' '.join(map(str, DEPTHS))}")
    parser.add_argument("--repeats", type=int, help="timed redraws per depth (default 5, 2 with --quick)")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    parser.add_argument("--quick", action="store_true", help="depths 20 and 56, 2 redraws each")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    depths = tuple(args.depths or (DEPTHS[:2] if args.quick else DEPTHS))
    results = measure(depths, args.repeats or (2 if args.quick else 5))
    print(f"gradient explorer redraw (notebook 01), {torch.get_num_threads()} torch threads, Agg backend")
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
