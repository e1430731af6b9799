"""resnet_lab.project: the repository's URL lives in one place, and every file agrees with it."""

import re
import shutil
from pathlib import Path

from resnet_lab import project

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_file_points_at_the_configured_repository(tmp_path):
    files = NOTEBOOKS + [ROOT / "README.md", ROOT / "CITATION.cff", ROOT / "pyproject.toml"]
    copies = []
    for path in files:
        copies.append(tmp_path / path.name)
        shutil.copy(path, copies[-1])
    assert project.sync_links(copies) == [], "run `python -m resnet_lab.project` after changing REPOSITORY"


def test_each_notebook_has_its_own_colab_badge():
    for path in NOTEBOOKS:
        assert project.colab_url(path.name) in path.read_text(encoding="utf-8")
        assert project.colab_url(path.name) in (ROOT / "README.md").read_text(encoding="utf-8")


def test_moving_the_repository_rewrites_only_its_own_links(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"[badge]({project.colab_url('01_x.ipynb')}) [binder]({project.binder_url('01_x.ipynb')})\n"
        f"pip install '{project.install_spec()}'\nsee {project.github_url()}/issues and "
        "https://github.com/pytorch/vision\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(project, "REPOSITORY", "someone/fork")
    monkeypatch.setattr(project, "BRANCH", "dev")
    assert project.sync_links([readme]) == [readme]
    text = readme.read_text(encoding="utf-8")
    assert project.colab_url("01_x.ipynb") in text and project.binder_url("01_x.ipynb") in text
    assert project.install_spec() in text and "https://github.com/someone/fork/issues" in text
    assert "https://github.com/pytorch/vision" in text
    assert not re.search(r"resnet-lab/resnet-lab", text)
