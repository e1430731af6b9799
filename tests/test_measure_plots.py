"""resnet_lab.measure and the network diagram of resnet_lab.plots."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.patches import Arc, Rectangle
from torch import nn

from resnet_lab import measure
from resnet_lab.checkpoint import write_metrics
from resnet_lab.measure import multiply_adds, stage_table, step_cost, synchronize
from resnet_lab.models import cifar_resnet, count_parameters, imagenet_resnet
from resnet_lab.plots import LiveCurves, draw_network, plain_log_labels, plot_history


def test_multiply_adds_match_the_papers_table_1():
    assert multiply_adds(imagenet_resnet(18), (1, 3, 224, 224)) / 1e9 == pytest.approx(1.8, abs=0.05)
    assert multiply_adds(imagenet_resnet(34), (1, 3, 224, 224)) / 1e9 == pytest.approx(3.6, abs=0.1)
    v15 = multiply_adds(imagenet_resnet(50), (1, 3, 224, 224))
    original = multiply_adds(imagenet_resnet(50, stride_in_1x1=True), (1, 3, 224, 224))
    assert original / 1e9 == pytest.approx(3.8, abs=0.1) and v15 > original + 0.2e9


def test_multiply_adds_leave_the_model_untouched_and_scale_with_depth():
    model = cifar_resnet(20)
    macs_20 = multiply_adds(model, (1, 3, 32, 32))
    assert next(model.parameters()).device.type == "cpu"
    assert 40e6 < macs_20 < 42e6  # ResNet-20: about 41 million multiply-adds
    assert multiply_adds(model, (2, 3, 32, 32)) == 2 * macs_20
    assert multiply_adds(cifar_resnet(56), (1, 3, 32, 32)) > 2.5 * macs_20


@pytest.mark.parametrize("depth", [18, 50])
def test_multiply_adds_of_an_imagenet_resnet_on_a_cifar_image(depth):
    # at batch 1 its last maps are 1x1: BatchNorm in training mode refused them
    model = imagenet_resnet(depth)
    small, large = multiply_adds(model, (1, 3, 32, 32)), multiply_adds(model, (1, 3, 224, 224))
    fc = model.fc.in_features * model.fc.out_features
    assert small == (large - fc) // 49 + fc  # every map 7 times narrower and shorter, the classifier unchanged
    assert model.training  # the caller's model keeps its mode


def test_stage_table_shapes_and_parameters_add_up():
    model = cifar_resnet(20)
    rows = stage_table(model, (1, 3, 32, 32))
    by_name = {row.name: row for row in rows}
    assert [by_name[f"layer{i}"].output_shape for i in (1, 2, 3)] == [(1, 16, 32, 32), (1, 32, 16, 16), (1, 64, 8, 8)]
    assert [by_name[f"layer{i}"].blocks for i in (1, 2, 3)] == [3, 3, 3]
    assert sum(row.parameters for row in rows) == count_parameters(model) == 269_722
    assert "relu" not in by_name


def test_step_cost_measures_time_and_saved_activations():
    small = step_cost(cifar_resnet(8), 2, repeats=1)
    large = step_cost(cifar_resnet(8), 4, repeats=1)
    assert small.milliseconds > 0 and small.peak_cuda_mib is None
    assert large.saved_mib == pytest.approx(2 * small.saved_mib, rel=0.05)


def test_step_cost_keeps_the_models_mode_and_batchnorm_statistics():
    model = cifar_resnet(8).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    step_cost(model, 2, repeats=1)  # trains for its passes: batch statistics update the running ones
    assert not model.training and all(torch.equal(before[key], model.state_dict()[key]) for key in before)


def test_synchronize_waits_for_cuda_and_mps_and_step_cost_waits_after_every_step(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    for device in ("cpu", "cuda:0", "mps"):
        synchronize(torch.device(device))
    assert calls == [("cuda", torch.device("cuda:0")), ("mps", None)]  # both queue kernels asynchronously; the CPU not
    waited = []
    monkeypatch.setattr(measure, "synchronize", waited.append)
    step_cost(cifar_resnet(8), 2, repeats=3)
    assert waited == [torch.device("cpu")] * 5  # warm-up, 3 timed steps, the memory pass: the clock reads finished work


class SavesOneTensorThrice(nn.Module):
    """``x * scale`` saves x; exp saves its output h; sin and cos each save their input, the same h."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x * self.scale).exp()
        return (h.sin() + h.cos()).flatten(1)[:, :10]


def test_step_cost_counts_a_tensor_saved_by_several_operations_once():
    batch = 4
    image_bytes = batch * 3 * 32 * 32 * 4  # float32: x and h, one storage each
    saved = step_cost(SavesOneTensorThrice(), batch, repeats=1).saved_mib * 2**20
    assert 2 * image_bytes <= saved < 2 * image_bytes + 1024  # + the loss's small tensors; 4 * if counted per save


@pytest.mark.parametrize(
    "model, arcs, projections",
    [(cifar_resnet(20), 9, 0), (cifar_resnet(20, residual=False), 0, 0), (cifar_resnet(20, shortcut="B"), 9, 2)],
)
def test_network_diagram_is_drawn_from_the_model(model, arcs, projections):
    ax = draw_network(model)
    assert sum(isinstance(p, Rectangle) for p in ax.patches) == 2 + len(model.blocks)
    drawn_arcs = [p for p in ax.patches if isinstance(p, Arc)]
    assert len(drawn_arcs) == arcs
    assert sum(p.get_linestyle() == ":" for p in drawn_arcs) == projections
    assert sum(text.get_text().endswith("/2") for text in ax.texts) == 2
    plt.close(ax.figure)


def _history(errors):
    return [{"epoch": i + 1, "train_acc": 1 - e / 100, "val_acc": 1 - (e + 5) / 100, "test_acc": None,
             "train_loss": e / 50, "val_loss": e / 40, "test_loss": None} for i, e in enumerate(errors)]


@pytest.mark.parametrize("errors, minor_labels", [
    ([70, 55, 40, 32], {"30", "40", "50", "60", "70", "80", "90"}),  # one decade: every tick, ends widened
    ([60, 20, 5, 2], {"2", "5", "20", "50"}),  # within two decades: the 2x and 5x ticks
    ([90, 9, 0.9, 0.09], set()),  # wider: the decades only
])
def test_history_plot_labels_log_axes_with_plain_numbers(errors, minor_labels):
    axes = plot_history({"resnet20": _history(errors), "plain20": _history([e + 2 for e in errors])})
    axes[0].figure.canvas.draw()
    for ax in axes:
        assert ax.get_yscale() == "log" and ax.get_ylabel() == "error (%)" and ax.get_xlabel() == "epoch"
    labels = [t.get_text() for t in axes[0].yaxis.get_ticklabels(which="both") if t.get_text()]  # shared y axis
    low, high = axes[0].get_ylim()
    minor_formatter = axes[0].yaxis.get_minor_formatter()
    minor = {minor_formatter(v) for v in axes[0].yaxis.get_minorticklocs() if low <= v <= high} - {""}
    assert labels and all(text.replace(".", "").isdigit() for text in labels), labels
    assert minor == minor_labels
    assert [line.get_label() for line in axes[1].get_lines()] == ["resnet20 (val)", "plain20 (val)"]
    plt.close(axes[0].figure)


@pytest.mark.parametrize("epochs", [4, 40])
def test_history_tells_test_from_validation_and_keeps_each_runs_style(epochs):
    history = [dict(record, test_acc=record["val_acc"] - 0.01, test_loss=record["val_loss"])
               for record in _history(list(range(70, 70 - epochs, -1)))]
    axes = plot_history({"paper": history, "fast": history}, colors={"paper": "C0", "fast": "C0"},
                        styles={"paper": "-", "fast": "--"})
    lines = {line.get_label(): line for line in axes[1].get_lines()}
    assert list(lines) == ["paper (val)", "paper (test)", "fast (val)", "fast (test)"]
    looks = {label: (line.get_linestyle(), line.get_color(), line.get_marker()) for label, line in lines.items()}
    assert len(set(looks.values())) == 4, looks  # val and test of a run used to differ only by alpha
    for run, style in (("paper", "-"), ("fast", "--")):
        assert lines[f"{run} (val)"].get_linestyle() == lines[f"{run} (test)"].get_linestyle() == style
    plt.close(axes[0].figure)


def test_training_curves_tick_whole_epochs_and_label_the_loss_axis_plainly(monkeypatch):
    history = _history([64, 43, 34, 30, 27, 25, 24, 23, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 9])
    axes = plot_history({"resnet20": history})
    shown = {}

    class Handle:  # IPython's display handle: the latest figure replaces the shown one
        def update(self, fig):
            shown["fig"] = fig

    def display(fig, display_id=None):
        shown["fig"] = fig
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    curves = LiveCurves("resnet20")
    for record in history:
        curves(record)
    figures = [axes[0].figure, shown["fig"]]
    for figure in figures:
        figure.canvas.draw()
        for ax in figure.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
    loss_axis = shown["fig"].axes[0]
    assert loss_axis.get_yscale() == "log"
    labels = [t.get_text() for t in loss_axis.yaxis.get_ticklabels(which="both") if t.get_text()]
    assert labels and not any("10^" in text or "times" in text for text in labels), labels
    low, high = loss_axis.get_ylim()  # losses 0.18-1.6, widened to one-digit ends that carry labels
    assert (low, high) == pytest.approx((0.1, 2.0))
    assert {"0.1", "2"} <= set(labels)
    legends = [[line.get_label() for line in ax.get_lines()] for ax in shown["fig"].axes]
    assert legends == [["train", "val"], ["train", "val"]]  # the same order in both panels
    for figure in figures:
        plt.close(figure)


def test_live_curves_of_a_resumed_run_start_at_epoch_1(tmp_path, monkeypatch):
    history = _history([64, 43, 34, 30])
    write_metrics(tmp_path / "metrics.json", model="resnet20", recipe="fast", seed=0, device="cpu", data="smoke",
                  history=history[:2])  # what the interrupted run left
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda fig, display_id=None: shown.append(fig))
    curves = LiveCurves("resnet20", run_dir=tmp_path)  # draws the two saved epochs at once
    assert len(shown) == 1 and [len(line.get_xdata()) for line in shown[0].axes[0].get_lines()] == [2, 2]
    for record in history[2:]:  # the resumed run reports epochs 3 and 4
        curves(record)
    assert [r["epoch"] for r in curves.history] == [1, 2, 3, 4]
    without_run_dir = LiveCurves("resnet20")
    without_run_dir(history[2])
    assert [r["epoch"] for r in without_run_dir.history] == [3]
    shown.clear()
    assert LiveCurves("resnet20", run_dir=tmp_path / "new_run").history == [] and not shown  # a new run: no figure



def test_plain_log_labels_reads_a_narrow_log_axis_in_plain_numbers():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0.75, 6.5])
    ax.set_yscale("log")
    plain_log_labels(ax)
    fig.canvas.draw()
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert {"1", "2", "5"} <= set(labels) and not any("times" in label or "^" in label for label in labels)
    assert low <= 0.75 and high >= 6.5 and all(float(f"{end:.1g}") == pytest.approx(end) for end in (low, high))
    plt.close(fig)
