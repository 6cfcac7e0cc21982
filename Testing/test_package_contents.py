"""The installed package holds no test support: no library module imports Playwright or pytest."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "LesionXAILib"
TEST_ONLY = ("playwright", "pytest")


def test_no_library_module_imports_test_tools():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] in TEST_ONLY for n in names):
                offenders.append(f"{path.relative_to(LIBRARY.parent)}:{node.lineno}")
    assert offenders == []
    assert (LIBRARY.parent / "Testing" / "support" / "viewer_harness.py").is_file()
