"""The repository's promises: README commands, CI entry point, lint, licence and citation."""

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_command(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", README, flags=re.DOTALL)
    assert match, f"README lost its {marker} block"
    return match.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_command("test-command") in ci.splitlines()


def test_readme_opens_the_notebooks_with_the_same_install():
    learn, test = readme_command("learn-command"), readme_command("test-command")
    assert learn.count("\n") == test.count("\n") == 0  # one copy-pasteable line each
    assert learn.split("&& jupyter lab")[0] == test.split("&& python -m pytest")[0]
    assert "jupyter lab notebooks" in learn


def test_requirements_admit_the_local_torch_and_never_pin_it():
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    for package in ("torch", "torchvision", "jupyterlab", "ipywidgets", "matplotlib", "tqdm", "nbval", "pytest"):
        assert re.search(rf"^{package}(>=|$)", requirements, flags=re.MULTILINE), package
    assert "==" not in requirements and "-e ." in requirements


def test_ruff_is_clean_on_package_tests_and_notebooks():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Modules whose `__all__` is kept complete; the rest of the package can join this list.
ALL_CHECKED = sorted(path.stem for path in (ROOT / "resnet_lab").glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("name", ALL_CHECKED)
def test_all_lists_every_public_name_the_module_defines(name):
    module = importlib.import_module(f"resnet_lab.{name}")
    defined = set()
    for node in ast.parse(Path(module.__file__).read_text(encoding="utf-8")).body:  # top level only
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    public = {n for n in defined if not n.startswith("_")}
    unlisted = sorted(public - set(module.__all__))
    assert not unlisted, f"public but not in __all__ (make them private or list them): {unlisted}"
    assert all(hasattr(module, n) for n in module.__all__)


def test_licence_and_citation():
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert "Deep Residual Learning for Image Recognition" in citation and "Krizhevsky" in citation


def _dependencies(lines: list[str]) -> dict[str, str]:
    """``{name: specifier}`` of requirement lines (comments, options and ``-e .`` left out)."""
    found = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, specifier = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", line).groups()
            found[name.lower()] = specifier
    return found


def test_the_dependency_lists_agree_and_admit_what_is_installed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    declared = _dependencies(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                             ["dependencies"])
    for path in (ROOT / "requirements.txt", ROOT / "binder" / "requirements.txt"):
        listed = _dependencies(path.read_text(encoding="utf-8").splitlines())
        for name, specifier in declared.items():
            assert name in listed, f"{path.name} lacks {name}"
            if name in ("torch", "torchvision"):  # the versions fit relies on: the same floor everywhere
                assert listed[name] == specifier, (path.name, name)
    for name, specifier in declared.items():
        assert version(name) in SpecifierSet(specifier), f"installed {name} {version(name)} is not {specifier}"
