"""The package's structural rules (docs/ARCHITECTURE.md): where imports go, module size, one record per network."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: third-party libraries that cost real time to import (a module that must stay light imports them late)
HEAVY = {"torch", "torchvision", "cv2", "matplotlib", "skimage", "onnx", "onnxruntime", "onnxscript", "lpips", "scipy",
         "huggingface_hub", "safetensors", "tensorboard", "kornia", "PIL", "numpy", "tqdm", "yaml", "wandb", "mlflow"}
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in SRC.rglob("*.py")}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _run_time_imports(tree: ast.Module) -> set[str]:
    """Dotted names a module imports when it is imported (``if TYPE_CHECKING:`` blocks excluded)."""
    names: set[str] = set()
    for node in tree.body:
        for statement in node.body if isinstance(node, ast.Try) else [node]:
            if isinstance(statement, ast.Import):
                names |= {alias.name for alias in statement.names}
            elif isinstance(statement, ast.ImportFrom) and statement.module and statement.level == 0:
                names.add(statement.module)
                names |= {f"{statement.module}.{a.name}" for a in statement.names
                          if f"{statement.module}.{a.name}" in MODULES}
    return names


def _edges() -> dict[str, set[str]]:
    edges = {}
    for name, tree in TREES.items():
        deps = {(_known(n) or n) if n.split(".")[0] == "jdrl" else "!" + n for n in _run_time_imports(tree)}
        parts = name.split(".")
        deps |= {".".join(parts[:i]) for i in range(1, len(parts))}  # a package's parents are imported first
        deps.discard(name)
        edges[name] = deps
    return edges


EDGES = _edges()


def _closure(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in EDGES.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                if not dep.startswith("!"):
                    todo.append(dep)
    return seen


def _heavy(name: str) -> set[str]:
    return {dep[1:].split(".")[0] for dep in _closure(name) if dep.startswith("!")} & HEAVY


def _local_imports(tree: ast.Module):
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    yield from ((node.lineno, alias.name) for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    yield node.lineno, node.module


def test_an_import_inside_a_function_keeps_a_light_module_light_or_breaks_a_cycle():
    """ARCHITECTURE.md, 'the rule for where an import goes': a local import of a jdrl module is there because it
    brings a heavy library the importing module does not load at its top, or because at the top it would
    make a cycle; a local third-party import is not one the module already makes at its top."""
    wrong = []
    for name, tree in TREES.items():
        own_heavy, top = _heavy(name), {dep[1:] for dep in EDGES[name] if dep.startswith("!")}
        for line, imported in _local_imports(tree):
            if imported.split(".")[0] == "jdrl":
                target = _known(imported)
                cycle = target == name or name in _closure(target)
                if not cycle and not (_heavy(target) - own_heavy):
                    wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {imported} late for nothing")
            elif imported in top:
                wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {imported} again")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(SRC)): n for path in MODULES.values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_every_built_in_network_has_a_record_that_its_readers_understand():
    from jdrl.evaluation.protocol_record import RELEASED_CROPS
    from jdrl.nets import net_names
    from jdrl.nets.official import families
    from jdrl.nets.record import records
    from jdrl.nets.tiling import TILE_HINTS

    found = records()
    assert sorted(found) == net_names() == sorted(TILE_HINTS)
    for name, record in found.items():
        assert (record.released is None) != (record.official is None), name  # one kind of released file each
        if record.released is not None:
            assert record.released.border in RELEASED_CROPS, name
    for family in families():  # every file of a family maps to exactly one of its names
        assert all(sum(family.files[n].fits(family.files[m].match) for m in family.names) >= 1 for n in family.names)
        assert {family.choose(family.files[n].match) for n in family.names} == set(family.names)


@pytest.mark.parametrize("build", ["create_net", "class"])
def test_released_border_comes_from_the_record_for_networks_built_either_way(build):
    from jdrl.evaluation.protocol_record import resolve_border
    from jdrl.nets import create_net
    from jdrl.nets.unet import UNet

    unet = create_net("unet", width=0.125) if build == "create_net" else UNet(width=0.125)
    assert resolve_border("released", unet) == "released-unet"
