"""The package's shape: one-way imports, the demo tooling outside the library, gradio only in the UI, small modules.

Walks every module's imports with ``ast`` (top-level and function-level imports alike), so a lazy import inside a
function is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "braindiff_app"
MAX_LINES = 620  # "about 600 lines" per module (STYLE.md, rule 3)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of the braindiff_app modules (and third-party roots) ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


MODULES = _modules()
IMPORTS = {name: _imports(path, name) for name, path in MODULES.items()}


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_sees_the_package():
    assert "braindiff_app.pipeline" in MODULES and "braindiff_app.demo.simulate" in MODULES
    assert "braindiff_app.demo.stimuli" in IMPORTS["braindiff_app.demo.simulate"]


def test_the_library_never_imports_the_demo_tooling():
    """Only demo/ itself and the command line (cli/) may import braindiff_app.demo."""
    offenders = {
        module: sorted(n for n in names if _in(n, "braindiff_app.demo"))
        for module, names in IMPORTS.items()
        if not (_in(module, "braindiff_app.demo") or _in(module, "braindiff_app.cli"))
    }
    offenders = {m: n for m, n in offenders.items() if n}
    assert not offenders, f"library modules importing the demo tooling: {offenders}"


def test_layers_import_one_way():
    """ui/ -> pipeline/roi/reconstruct -> models/, regression/, data/, evaluation/; never upwards."""
    upper = ("braindiff_app.ui", "braindiff_app.cli", "braindiff_app.pipeline", "braindiff_app.roi",
             "braindiff_app.reconstruct")
    lower = ("braindiff_app.models", "braindiff_app.regression", "braindiff_app.data", "braindiff_app.evaluation",
             "braindiff_app.config", "braindiff_app.atomic", "braindiff_app.provenance", "braindiff_app.bundles",
             "braindiff_app.stage2", "braindiff_app.images", "braindiff_app.protocol")
    bad = {}
    for module, names in IMPORTS.items():
        if any(_in(module, p) for p in lower):
            up = sorted(n for n in names if any(_in(n, p) for p in upper))
            if up:
                bad[module] = up
        if not _in(module, "braindiff_app.ui") and not _in(module, "braindiff_app.cli"):
            ui = sorted(n for n in names if _in(n, "braindiff_app.ui"))
            if ui:
                bad[module] = ui
    assert not bad, f"imports against the layering: {bad}"


def test_gradio_only_in_the_ui():
    users = sorted(m for m, names in IMPORTS.items() if any(_in(n, "gradio") for n in names))
    assert users and all(_in(m, "braindiff_app.ui") for m in users), users


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines; split it by idea (STYLE.md rule 3)"
