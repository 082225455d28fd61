"""The core names no task: app, registry, repository, config and the rest of
``modelplex.server`` import no task package; tasks come from plugins."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "server" / "modelplex" / "server"
SHARED = [ROOT / "server" / "modelplex" / name for name in ("runtime.py", "taskdef.py", "hookspecs.py", "specs.py")]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _core_files() -> list[Path]:
    return [*sorted(CORE.rglob("*.py")), *SHARED]


def test_the_core_imports_no_task_package():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imports(path) if m.startswith("modelplex.tasks") and m != "modelplex.tasks.base"
        )
        for path in _core_files()
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core modules import task packages: {offenders}"


def test_the_core_names_no_task_service_or_id():
    """No task's id or generated module appears in the server's core (a plugin brings them)."""
    words = ("image_classification", "text_generation", "ImageClassification", "TextGeneration", "classif")
    found = [
        f"{path.relative_to(ROOT)}: {w}" for path in sorted(CORE.rglob("*.py")) for w in words if w in path.read_text()
    ]
    assert not found, found


def test_the_check_sees_an_offending_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from modelplex.tasks.classification.runtime import ClassificationRuntime\n")
    assert "modelplex.tasks.classification.runtime" in _imports(bad)
