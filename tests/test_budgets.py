"""The house keeps its budgets: modules stay short, functions fit on a screen, imports point down the floors and never
run in a circle, and the data floor never asks for a task by name (docs/architecture.md)."""

import ast
from pathlib import Path

import napari_cvdm

SRC = Path(napari_cvdm.__file__).parent
MODULE_LINES = 400
FUNCTION_LINES = 60
CLI_LINES = 300

#: The floors of docs/architecture.md, from the faces (the package's root: the command line, the napari
#: contributions, the bioimage.io entry point; and the widgets) down to the core. A module imports its own floor and
#: those below it, never one above.
FLOORS = {
    "napari_cvdm._widgets": 6,
    "napari_cvdm.jobs": 5,
    "napari_cvdm.training": 4,
    "napari_cvdm.inference": 3,
    "napari_cvdm.tasks": 2,
    "napari_cvdm.data": 1,
    "napari_cvdm.physics": 0,
    "napari_cvdm.diffusion": 0,
    "napari_cvdm._version": 0,
}
FACES = 6
#: The modules that lie in the package's root: the faces, nothing else.
ROOT = {
    "cli",
    "_options",
    "_terminal",
    "_reader",
    "_writer",
    "_sample_data",
    "bioimageio_model",
    "__main__",
    "_version",
}


def _module_name(path: Path) -> str:
    parts = ("napari_cvdm", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imported(path: Path) -> set[str]:
    """The package's modules a file imports anywhere in it (inside functions and ``TYPE_CHECKING`` too)."""
    return _imported_by(path.read_text(), _module_name(path), path.name == "__init__.py")


def _imported_by(code: str, name: str, is_package: bool) -> set[str]:
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{node.module}" if node.module else parent
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {m: _imported(p) for m, p in MODULES.items()}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), list(GRAPH[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(GRAPH[m])
    return seen


def test_no_module_is_longer_than_its_budget():
    long = {
        str(p.relative_to(SRC)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MODULE_LINES
    }
    assert not long, f"modules over {MODULE_LINES} lines: {long}"


def test_the_command_line_stays_a_thin_face():
    assert len((SRC / "cli.py").read_text().splitlines()) <= CLI_LINES


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{p.relative_to(SRC)}:{node.name} ({node.end_lineno - node.lineno + 1})"
        for p in MODULES.values()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > FUNCTION_LINES
    ]
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"


def test_imports_never_run_in_a_circle():
    """Not even through an import inside a function: a circle means two modules are one concept, or a floor is
    missing. A package's ``__init__`` may gather its own modules."""
    circles = sorted(m for m in GRAPH if m in _reachable(m) and not _gathers_itself(m))
    assert not circles, f"modules that import themselves through others: {circles}"


def _gathers_itself(module: str) -> bool:
    """A package whose only way back to itself is through its own modules importing each other."""
    return MODULES[module].name == "__init__.py" and all(
        m.startswith(module + ".") for m in _reachable(module) if module in _reachable(m)
    )


def test_the_data_floor_never_asks_for_a_task():
    offenders = {
        m: sorted(GRAPH[m])
        for m in GRAPH
        if m.startswith("napari_cvdm.data") and any(i.startswith("napari_cvdm.tasks") for i in GRAPH[m])
    }
    assert not offenders, f"data modules importing tasks: {offenders}"


def test_the_check_sees_imports_inside_functions_and_relative_ones():
    code = (
        "def f():\n    from .uncertainty import coverage\n    from . import models\n    import napari_cvdm.jobs.bench\n"
    )
    seen = _imported_by(code, "napari_cvdm.inference.consistency", is_package=False)
    assert seen == {"napari_cvdm.inference.uncertainty", "napari_cvdm.inference.models", "napari_cvdm.jobs.bench"}
    assert _imported_by("from ..tasks import Task\n", "napari_cvdm.data.x", False) == {"napari_cvdm.tasks"}


def _floor(module: str) -> int:
    """The floor of a module (the root's modules are faces)."""
    found = [f for prefix, f in FLOORS.items() if module == prefix or module.startswith(prefix + ".")]
    return found[0] if found else FACES


def test_imports_point_down_the_floors():
    up = sorted(f"{m} imports {i}" for m in GRAPH for i in GRAPH[m] if _floor(i) > _floor(m))
    assert not up, f"imports that point up: {up}"


def test_only_the_faces_lie_in_the_package_root():
    flat = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    assert flat == ROOT, f"modules in the root that belong on a floor: {sorted(flat - ROOT)}"
