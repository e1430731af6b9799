"""Notebook 04 in a real (non-smoke) run without data and without network: it says so and completes on the stand-in.

nbval runs every notebook in smoke mode, where the stand-in is chosen up front; this is the other way to reach it.
The download is made to fail fast and deterministically through a proxy on a closed local port.
"""

import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_training_cifar10.ipynb"


def test_notebook_04_offline_without_data_runs_to_the_end_on_the_stand_in(tmp_path, monkeypatch):
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOK, work)
    monkeypatch.setenv("RESNET_LAB_SMOKE", "0")
    monkeypatch.delenv("RESNET_LAB_DATA", raising=False)
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))  # an empty cache: nothing to reuse
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: refused at once, never a hang
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    notebook = nbformat.read(work / NOTEBOOK.name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()

    text = "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.output_type == "stream")
    assert "CIFAR-10 is not available here" in text
    assert "synthetic smoke-test stand-in" in text
    assert not (work / "runs").exists(), "the stand-in's runs must not be kept beside real ones"
