"""The package's shape: layers whose imports point one way, no import cycle, no import hidden in a function, and
modules short enough to read in one sitting.

    core  <-  files  <-  tasks  <-  runs  <-  augmentation, style, teacher  <-  book, findings, the command line
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "cachesteer_lite"
# A module may import from its own layer and the layers below it; side studies never import each other.
LAYERS: dict[str, int] = {"core": 0, "files": 1, "tasks": 2, "runs": 3, "augmentation": 4, "style": 4,
                          "teacher": 4, "book": 5, "findings": 5, "course": 5, "__main__": 5, "__init__": 5}
SIDE_STUDIES = ("augmentation", "style", "teacher")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def area(module: str) -> str:
    """The layer a module belongs to: its first component below the package (the root's own files by name)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported package module, whether the import sits inside a function) for every import of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(inner) for function in functions for inner in ast.walk(function) if inner is not function}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(name, id(node) in nested) for name in names if name.startswith("cachesteer_lite")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_point_down_the_layers(path: Path) -> None:
    source = area(module_name(path))
    for imported, in_function in package_imports(path):
        assert not in_function, f"{module_name(path)} imports {imported} inside a function"
        target = area(imported)
        assert LAYERS[target] <= LAYERS[source], f"{module_name(path)} ({source}) imports {imported} ({target})"
        if source in SIDE_STUDIES and target in SIDE_STUDIES:
            assert source == target, f"side study {source} imports side study {target}"


def test_no_import_cycle() -> None:
    modules = {module_name(path): path for path in MODULES}
    graph = {name: sorted({imported if imported in modules else imported.rsplit(".", 1)[0]
                           for imported, _ in package_imports(path)} & set(modules) - {name})
             for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import cycle: {' -> '.join(trail[trail.index(name):] + [name])}"
        state[name] = "open"
        for imported in graph[name]:
            if not (name == "cachesteer_lite" or imported == "cachesteer_lite"):  # the root imports, never imported
                visit(imported, trail + [name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_modules_are_short(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module_name(path)} has {lines} lines; split it by job"


def test_the_package_readme_names_every_module() -> None:
    """cachesteer_lite/README.md's table is the map a newcomer reads first: every module of core, tasks and runs
    has a row, and every side study and root file too."""
    table = (PACKAGE / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+)`", table))
    expected = {path.stem for layer in ("core", "tasks", "runs") for path in (PACKAGE / layer).glob("*.py")
                if path.stem != "__init__"}
    expected |= {f"{study}/" for study in SIDE_STUDIES} | {"files", "book", "__main__"}
    assert expected <= named, f"cachesteer_lite/README.md lacks {sorted(expected - named)}"
