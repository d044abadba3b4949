"""The house rules that keep the core headless and the parts apart, checked on the source itself.

- cloud_client/, reporting/, dictation/ and viewer/ (outside viewer/qt/) never import Qt, VTK or pyqtgraph;
- nothing imports app; cloud/ imports no workstation package (they meet only through DICOM);
- every module says in its docstring what it owns.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["app", "viewer", "reporting", "dictation", "cloud_client", "cloud", "bench", "installer", "resources"]
GUI_MODULES = ("PySide6", "PyQt5", "PyQt6", "vtk", "vtkmodules", "pyqtgraph")
CLIENT_PACKAGES = ("app", "viewer", "reporting", "dictation", "cloud_client")


def _modules(package: str):
    for path in sorted((REPO / package).rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def _core_modules():
    for package in ("cloud_client", "reporting", "dictation", "viewer"):
        for path in _modules(package):
            if package == "viewer" and "qt" in path.relative_to(REPO / "viewer").parts[:1]:
                continue
            yield path


@pytest.mark.parametrize("path", list(_core_modules()), ids=lambda p: str(p.relative_to(REPO)))
def test_core_modules_are_headless(path):
    bad = {name for name in _imports(path) if _top(name) in GUI_MODULES}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}: core modules must stay Qt/VTK-free"


def test_nothing_imports_app_and_cloud_is_separate():
    offenders = []
    for package in PACKAGES:
        if package == "app":
            continue
        for path in _modules(package):
            for name in _imports(path):
                if _top(name) == "app":
                    offenders.append(f"{path.relative_to(REPO)} imports {name}")
                if package == "cloud" and _top(name) in CLIENT_PACKAGES:
                    offenders.append(f"{path.relative_to(REPO)} (cloud) imports {name}")
    assert not offenders, "\n".join(offenders)


def test_every_module_says_what_it_owns():
    missing = []
    for package in PACKAGES:
        for path in _modules(package):
            if path.name == "__init__.py" and path.parent != REPO / package and not path.read_text().strip():
                continue  # empty sub-package markers
            tree = ast.parse(path.read_text())
            if not ast.get_docstring(tree):
                missing.append(str(path.relative_to(REPO)))
    assert not missing, "modules without a docstring: " + ", ".join(missing)
