"""Packaging tells the truth: one version, a cheap ``import jdrl``, a typed public API, floors in step."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import jdrl

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "src" / "jdrl" / "__init__.py"
FLOORS = ROOT / ".ci" / "floors.txt"


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_single_sourced():
    project = pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert jdrl.__version__ == version("jdrl")  # installed metadata == the literal in jdrl/__init__.py


def test_cli_version_is_the_package_version():
    out = subprocess.run([sys.executable, "-m", "jdrl", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"jdrl {jdrl.__version__}"


def test_import_jdrl_does_not_import_torch():
    code = "import jdrl, sys; print('torch' in sys.modules, 'importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", sorted(jdrl._EXPORTS))
def test_every_export_resolves(name):
    assert name in jdrl.__all__ and name in dir(jdrl)
    assert getattr(jdrl, name) is not None


def test_all_lists_exactly_the_exports_and_the_version():
    assert sorted(jdrl.__all__) == sorted([*jdrl._EXPORTS, "__version__"])


def test_type_checking_block_imports_exactly_the_exports():
    tree = ast.parse(INIT.read_text())
    blocks = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    assert len(blocks) == 1
    imported = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: re-export as 'X as X'"
            imported[alias.name] = node.module
    assert imported == jdrl._EXPORTS  # same names, from the modules __getattr__ imports them from


def _requirement(text: str) -> tuple[str, str | None]:
    """``name>=floor`` -> (normalised name, floor); extras/markers are not used in this project."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][0-9.]*))?.*", text)
    assert match, text
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)


def test_floors_file_matches_pyproject():
    project = pyproject()["project"]
    floors = {}
    for requirement in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values()
                                                    for r in extra)]:
        name, floor = _requirement(requirement)
        assert floor, f"{requirement}: every dependency has a floor"
        floors[name] = floor
    pins = {}
    for line in FLOORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = pinned.strip()
    assert pins, "no pins in .ci/floors.txt"
    for name, pinned in pins.items():
        assert name in floors, f"{name} is pinned in .ci/floors.txt but not a dependency"
        floor = tuple(int(part) for part in floors[name].split("."))
        assert tuple(int(part) for part in pinned.split("."))[: len(floor)] == floor, (
            f"{name}: .ci/floors.txt pins {pinned}, pyproject's floor is {floors[name]}")
    untested = set(floors) - set(pins)
    # wandb/mlflow: optional loggers; ruff/mypy/import-linter/pytest: tools (their floors are whatever CI installs
    # alongside)
    assert untested <= {"wandb", "mlflow", "ruff", "mypy", "import-linter", "pytest", "pytest-xdist"}, untested
