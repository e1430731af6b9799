"""Where resnet-lab lives on the web: the one place its public URL is written.

Moving the repository is a one-line change to ``REPOSITORY`` (and ``BRANCH``) followed by::

    python -m resnet_lab.project

which rewrites the Colab/Binder badges, the notebooks' Colab install line and the README from these
values. ``tests/test_project.py`` fails while any file still points elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["REPOSITORY", "BRANCH", "github_url", "install_spec", "colab_url", "binder_url", "sync_links"]

REPOSITORY = "resnet-lab/resnet-lab"  # GitHub "owner/name"
BRANCH = "main"

_ROOT = Path(__file__).resolve().parent.parent  # the repository's checkout


def github_url() -> str:
    """The repository's web address."""
    return f"https://github.com/{REPOSITORY}"


def install_spec() -> str:
    """What ``pip install`` takes on Colab to get this package straight from GitHub."""
    return f"resnet-lab @ git+{github_url()}@{BRANCH}"


def colab_url(notebook: str) -> str:
    """'Open in Colab' address of ``notebook`` (a file name inside ``notebooks/``)."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{notebook}"


def binder_url(notebook: str) -> str:
    """mybinder.org address that opens ``notebook`` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}?urlpath=lab/tree/notebooks/{notebook}"


# The forms in which only this repository's location appears; each captures (owner/name, branch).
_OWN_LINKS = [
    r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/",
    r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/([\w.-]+)\?",
    r"git\+https://github\.com/([\w.-]+/[\w.-]+?)@([\w.-]+)",
]


def _rewrite(text: str, old_locations: set[tuple[str, str]]) -> str:
    """``text`` with links to each old (repository, branch) pointing at ``REPOSITORY``/``BRANCH``."""
    for old_repository, old_branch in old_locations:
        text = text.replace(f"github/{old_repository}/blob/{old_branch}/", f"github/{REPOSITORY}/blob/{BRANCH}/")
        text = text.replace(f"gh/{old_repository}/{old_branch}?", f"gh/{REPOSITORY}/{BRANCH}?")
        text = text.replace(f"github.com/{old_repository}@{old_branch}", f"github.com/{REPOSITORY}@{BRANCH}")
        text = re.sub(rf"github\.com/{re.escape(old_repository)}(?![\w.-])", f"github.com/{REPOSITORY}", text)
    return text


def sync_links(paths: list[Path] | None = None) -> list[Path]:
    """Point every link to this repository in ``paths`` at ``REPOSITORY``/``BRANCH``; return the files changed.

    ``paths`` defaults to the notebooks, README, CITATION.cff and pyproject.toml. A file's old location is
    read from the Colab/Binder/install links in these files, so links to other repositories are left alone.
    """
    if paths is None:
        paths = sorted((_ROOT / "notebooks").glob("*.ipynb"))
        paths += [_ROOT / name for name in ("README.md", "CITATION.cff", "pyproject.toml")]
    texts = {path: path.read_text(encoding="utf-8") for path in paths if path.exists()}
    old_locations = {match.groups() for text in texts.values() for pattern in _OWN_LINKS
                     for match in re.finditer(pattern, text)}
    changed = []
    for path, text in texts.items():
        new = _rewrite(text, old_locations)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    for changed_path in sync_links():
        print(f"updated {changed_path.relative_to(_ROOT)}")
