"""The layers of the package (docs/architecture.md): the core imports no GUI toolkit, imports point one way, and
only the task objects know which task they serve."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import napari_cvdm

SRC = Path(napari_cvdm.__file__).parent
CORE_MODULES = sorted(
    m.name for m in pkgutil.walk_packages([str(SRC)], "napari_cvdm.") if not m.name.startswith("napari_cvdm._widgets")
)


def test_every_core_module_leaves_qt_napari_and_magicgui_unimported():
    assert "napari_cvdm.cli" in CORE_MODULES and "napari_cvdm.tasks.sr" in CORE_MODULES
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = [m for m in ('qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the core: {out.stdout.strip()}"


def _imports(path: Path) -> set[str]:
    """Modules a file imports, resolved to ``napari_cvdm.…`` names (relative imports included)."""
    package = ".".join(("napari_cvdm", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            out.add(f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_prediction_never_imports_model_files():
    """models → predict, never back: predict_image needs a network, a task and a normalisation, not a model."""
    assert "napari_cvdm.inference.models" not in _imports(SRC / "inference" / "predict.py")
    assert "napari_cvdm.inference.predict" in _imports(SRC / "inference" / "models.py")


def test_no_module_outside_the_task_objects_asks_which_task_it_has():
    offenders = []
    for path in SRC.rglob("*.py"):
        if "tasks" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in ("sr", "qpi") for c in (node.left, *node.comparators)
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, f"task branches outside napari_cvdm.tasks: {offenders}"


def test_the_reader_and_writer_never_load_torch():
    """Opening or saving a TIFF in napari must not wait for PyTorch to load."""
    code = "import sys, napari_cvdm._reader, napari_cvdm._writer\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
