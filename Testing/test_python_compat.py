"""The engine and the Slicer module on every Python the supported Slicers embed (3.10-3.12), and a clear refusal below.

The lint part always runs: every shipped file parses with Python 3.10's grammar (``ast.parse`` with
``feature_version``) and imports nothing from the standard library newer than 3.10. Then each real
interpreter 3.10-3.12 found on this machine (pyenv installs them side by side) compiles every file,
and Python 3.9 (Slicer 5.6/5.8) imports the version check and gets the refusal, not a traceback.
"""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "LesionXAILib").rglob("*.py")) + [ROOT / "LesionXAI" / "LesionXAI.py"]
# standard-library names added after Python 3.10 (the oldest supported)
NEWER_MODULES = {"tomllib", "wsgiref.types"}
NEWER_NAMES = {
    "typing": {"Self", "LiteralString", "Never", "assert_never", "assert_type", "reveal_type", "dataclass_transform",
               "NotRequired", "Required", "TypeVarTuple", "Unpack", "override", "TypeAliasType", "get_overloads",
               "clear_overloads", "ReadOnly", "TypeIs"},
    "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "FlagBoundary", "member", "nonmember", "global_enum"},
    "datetime": {"UTC"},
    "itertools": {"batched"},
    "hashlib": {"file_digest"},
    "asyncio": {"TaskGroup", "timeout", "Runner", "Barrier"},
    "contextlib": {"chdir"},
}  # fmt: skip
NEWER_ATTRIBUTES = {("datetime", "UTC"), ("itertools", "batched"), ("hashlib", "file_digest"), ("asyncio", "TaskGroup"),
                    ("asyncio", "timeout"), ("contextlib", "chdir"), ("enum", "StrEnum"), ("typing", "Self")}  # fmt: skip


def _interpreter(version: str):
    """Return a working ``python<version>`` (PATH or a pyenv install), or None."""
    candidates = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    for exe in candidates:
        if exe and subprocess.run([exe, "-c", "import sys"], capture_output=True).returncode == 0:
            return exe
    return None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_file_parses_with_python_3_10_grammar(path):
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


def test_nothing_from_the_standard_library_newer_than_python_3_10():
    offences = []
    for path in SHIPPED:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                offences += [(path, a.name) for a in node.names if a.name in NEWER_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module in NEWER_MODULES:
                    offences.append((path, node.module))
                offences += [(path, f"{node.module}.{a.name}") for a in node.names if a.name in NEWER_NAMES.get(node.module, ())]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in NEWER_ATTRIBUTES:
                    offences.append((path, f"{node.value.id}.{node.attr}"))
    assert not offences, [(str(p.relative_to(ROOT)), name) for p, name in offences]


def test_the_checks_catch_what_they_are_for():
    with pytest.raises(SyntaxError):
        ast.parse("def f[T](x: T) -> T:\n    return x\n", feature_version=(3, 10))  # 3.12 generics
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=(3, 10))  # 3.11


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12"])
def test_every_shipped_file_compiles_with_a_real_interpreter(version, tmp_path):
    exe = _interpreter(version)
    if exe is None:
        pytest.skip(f"no Python {version} interpreter on this machine (the grammar check above still ran)")
    script = (
        "import sys\n"
        "bad = []\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        compile(open(path, encoding='utf-8').read(), path, 'exec', dont_inherit=True)\n"
        "    except SyntaxError as exc:\n"
        "        bad.append(f'{path}:{exc.lineno}: {exc.msg}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([exe, "-c", script, *map(str, SHIPPED)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_slicer_5_8_python_gets_the_refusal_not_a_traceback():
    exe = _interpreter("3.9")
    code = (
        "from LesionXAILib.mrml.compat import slicer_refusal\n"
        "print(slicer_refusal('5.8.1'))\n"
    )
    if exe is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([exe, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "needs 3D Slicer 5.10 or later" in done.stdout and "Python 3.9" in done.stdout


def test_version_refusal_below_5_10_and_none_from_5_10():
    from LesionXAILib.mrml.compat import MINIMUM_SLICER, parse_version, slicer_refusal

    assert MINIMUM_SLICER == (5, 10)
    for version in ("5.6.2", "5.8.1", "5.9.0-2025-06-01", "4.11.20210226"):
        text = slicer_refusal(version, (3, 9))
        assert text and "5.10 or later" in text and version in text and "\n" not in text
    for version in ("5.10.0", "5.12.0", "5.11.0-2026-01-03", "6.0.0"):
        assert slicer_refusal(version, (3, 12)) is None
    assert "Python 3.10" in slicer_refusal("5.10.0", (3, 9))  # a custom build with an old Python
    assert parse_version("5.10.0") == (5, 10, 0) and parse_version("5.9.0-2025") == (5, 9, 0)
    assert parse_version("") is None and slicer_refusal("", (3, 12)) is None
    assert sys.version_info[:2] >= (3, 10)
