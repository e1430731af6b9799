"""Notebook hygiene: what a reader on GitHub, Colab or Binder gets from the committed files.

nbval (in the same test command) executes every notebook in smoke mode; these tests check the committed
files themselves: valid, clean, executed in order from a real run, small, and with the conventions of
every notebook (badge, parameters cell, setup cell, exercise check).
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

from resnet_lab import project

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_OUTPUT_BYTES = 250_000  # one figure at the default resolution is 50-150 kB
MAX_NOTEBOOK_BYTES = 2_000_000


def test_the_collection_exists():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_vanishing_exploding_gradients.ipynb"]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_valid_with_cell_ids_and_python3_kernel(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    assert all(cell.get("id") for cell in nb.cells)
    assert nb.metadata.kernelspec.name == "python3"


# Every output of these depends on the data they train on (CIFAR-10 for real, the stand-in in smoke mode), so no
# cell's committed output can match a smoke run: nbval executes them without comparing outputs.
DATA_DEPENDENT = {"04_training_cifar10.ipynb"}
DEV_DATA_TAG = "dev-data-images"  # cells showing images of the development data: committed without output


def test_executed_in_order_without_errors(notebook):
    path, nb = notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = [c for c in code if DEV_DATA_TAG not in c.metadata.get("tags", [])]
    counts = [c.execution_count for c in shown]
    assert None not in counts, "commit the notebook with the outputs of a real run (Run All in a fresh kernel)"
    assert counts == sorted(set(counts)) and counts[0] == 1, "re-run top to bottom in a fresh kernel"
    errors = [i for i, c in enumerate(code) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"error outputs in code cells {errors}"


def test_no_images_of_the_development_data_are_committed(notebook):
    path, nb = notebook
    for cell in nb.cells:
        if DEV_DATA_TAG in cell.metadata.get("tags", []):
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name}: clear the outputs of cells tagged {DEV_DATA_TAG!r} before committing")


def test_no_widget_state_and_no_huge_outputs(notebook):
    path, nb = notebook
    assert "widgets" not in nb.metadata, "strip widget state (it is large and useless without a kernel)"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert len(json.dumps(output)) < MAX_OUTPUT_BYTES


def test_no_control_characters_in_cell_sources(notebook):
    path, nb = notebook
    for index, cell in enumerate(nb.cells):
        match = re.search(r"[\x00-\x09\x0b-\x1f\x7f]", cell.source)  # newline is the only one allowed
        context = cell.source[max(match.start() - 30, 0):match.end() + 10] if match else ""
        assert not match, (f"{path.name}, cell {index}: control character {match.group()!r} in {context!r} — a Python "
                           "escape (\\a, \\b, \\f, \\v, \\t) ate a LaTeX backslash; edit with raw strings")


def test_template(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "colab-badge.svg" in first.source and project.colab_url(path.name) in first.source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("Learning goals", "Summary", "Further reading", "Prerequisites"):
        assert heading in text
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []) and "SMOKE" in code[0].source
    assert '"google.colab" in sys.modules' in code[1].source and "setup_notebook" in code[1].source
    sources = "\n".join(c.source for c in code)
    assert "checks.check_" in sources and "solutions." in sources  # an exercise, and its reference checked in smoke
    if path.name not in DATA_DEPENDENT:
        assert "# NBVAL_CHECK_OUTPUT" in sources
