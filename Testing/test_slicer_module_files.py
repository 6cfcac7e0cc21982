"""The extension's CMake files list every script and resource, and the installed layout is importable.

LesionXAI/CMakeLists.txt is configured by real CMake inside a throw-away project whose Slicer/CTK
macros only record their arguments (Slicer itself cannot be installed here); the recorded lists are
compared with the files on disk, then laid out the way ctkMacroCompilePythonScript copies them (each
path relative to its source dir, under qt-scripted-modules) and imported from there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "LesionXAI"
LIB_DIR = "lib/Slicer-5.12/qt-scripted-modules"

RECORDER = """
cmake_minimum_required(VERSION 3.16)
project(LesionXAIFileCheck NONE)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {lib})
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR {lib})
foreach(name slicerMacroBuildScriptedModule ctkMacroCompilePythonScript slicer_add_python_unittest)
  cmake_language(EVAL CODE "function(${{name}})
    file(APPEND \\"${{OUT}}\\" \\"${{name}}|\\${{CMAKE_CURRENT_SOURCE_DIR}}|\\${{ARGN}}\\\\n\\")
  endfunction()")
endforeach()
set(BUILD_TESTING ON)
add_subdirectory("{module}" module)
"""
KEYWORDS = {"NAME", "TARGET_NAME", "SCRIPTS", "RESOURCES", "SOURCE_DIR", "DESTINATION_DIR", "INSTALL_DIR", "SCRIPT",
            "SLICER_ARGS", "WITH_GENERIC_TESTS", "NO_INSTALL_SUBDIR", "WITH_SUBDIR", "GLOBAL_TARGET"}  # fmt: skip


def parse_args(args: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for a in args:
        if a in KEYWORDS:
            key = a
            out.setdefault(key, [])
        elif key is not None:
            out[key].append(a)
    return out


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    tmp = tmp_path_factory.mktemp("cmake")
    (tmp / "src").mkdir()
    (tmp / "src" / "CMakeLists.txt").write_text(RECORDER.format(lib=LIB_DIR, module=MODULE_DIR.as_posix()))
    out = tmp / "calls.txt"
    done = subprocess.run(["cmake", "-S", str(tmp / "src"), "-B", str(tmp / "build"), f"-DOUT={out}"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = {}
    for line in out.read_text().splitlines():
        name, source_dir, args = line.split("|", 2)
        recorded[name] = (Path(source_dir), parse_args(args.split(";")), tmp / "build")
    return recorded


def package_files() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "LesionXAILib").rglob("*.py") if "__pycache__" not in p.parts)


def test_module_is_built_with_its_script_resources_and_generic_tests(calls):
    source, args, _ = calls["slicerMacroBuildScriptedModule"]
    assert args["NAME"] == ["LesionXAI"] and args["SCRIPTS"] == ["LesionXAI.py"]
    assert "WITH_GENERIC_TESTS" in args
    assert set(args["RESOURCES"]) == {"Resources/Icons/LesionXAI.png", "Resources/UI/LesionXAI.ui", "Resources/requirements.txt"}
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert on_disk == set(args["RESOURCES"]), "every file under LesionXAI/Resources must be listed (and only those)"


def test_every_engine_file_is_installed_beside_the_module(calls):
    source, args, build = calls["ctkMacroCompilePythonScript"]
    assert args["TARGET_NAME"] == ["LesionXAILib"]
    assert Path(args["SOURCE_DIR"][0]).resolve() == ROOT
    assert sorted(args["SCRIPTS"]) == package_files()
    # every shipped demo model with its card, and the engine's data files (training configs)
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "Resources" / "models").glob("lesionxai-demo-*") if p.is_file()}
    data = {p.relative_to(ROOT).as_posix() for p in (ROOT / "LesionXAILib").rglob("*.json")}
    assert set(args["RESOURCES"]) == shipped | data
    assert {"Resources/models/lesionxai-demo-unet.pt", "Resources/models/lesionxai-demo-unet-anchor.pt",
            "Resources/models/lesionxai-demo-dynunet.pt"} <= shipped and data  # fmt: skip
    # same destination as the module itself: LesionXAILib/ and Resources/ end up next to LesionXAI.py
    assert Path(args["DESTINATION_DIR"][0]) == build / LIB_DIR
    assert args["INSTALL_DIR"] == [LIB_DIR] and "NO_INSTALL_SUBDIR" in args


def test_self_test_is_registered_with_slicer_add_python_unittest(calls):
    source, args, _ = calls["slicer_add_python_unittest"]
    assert source == MODULE_DIR / "Testing" / "Python"
    assert Path(args["SCRIPT"][0]).resolve() == MODULE_DIR / "LesionXAI.py"
    assert "--no-main-window" in args["SLICER_ARGS"]


def test_installed_layout_imports_the_bridge_and_finds_the_demo_model(calls, tmp_path):
    """Copy files as the macros would, then import the copy in a fresh interpreter (nothing from the checkout)."""
    _, module_args, _ = calls["slicerMacroBuildScriptedModule"]
    _, lib_args, _ = calls["ctkMacroCompilePythonScript"]
    dest = tmp_path / LIB_DIR
    for rel in module_args["SCRIPTS"] + module_args["RESOURCES"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MODULE_DIR / rel, dest / rel)
    for rel in lib_args["SCRIPTS"] + lib_args["RESOURCES"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, dest / rel)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import LesionXAILib, LesionXAILib.session.core, LesionXAILib.mrml.writer, LesionXAILib.slicer_app.controller, LesionXAILib.slicer_app.selftest;"
        "from LesionXAILib.resources import default_model_path;"
        "from LesionXAILib.study.models import shipped_models;"
        "from LesionXAILib.training.trainer import TrainSettings;"
        "assert TrainSettings(config='demo-dynunet').model_config().name == 'demo-dynunet';"
        "assert {'unet', 'unet-anchor', 'dynunet'} <= set(shipped_models()), shipped_models();"
        "print(LesionXAILib.__file__); print(default_model_path())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LESIONXAI_RESOURCES")}
    done = subprocess.run([sys.executable, "-c", code, str(dest)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lib_file, model = done.stdout.split()
    assert Path(lib_file).resolve().is_relative_to(dest.resolve())
    assert Path(model).resolve() == (dest / "Resources" / "models" / "lesionxai-demo-unet.pt").resolve()


def test_requirements_match_the_project_dependencies_minus_what_slicer_ships():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    from LesionXAILib.install.dependencies import BUNDLED_WITH_SLICER, normalize_name, read_requirements

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bundled = {normalize_name(b) for b in BUNDLED_WITH_SLICER}
    expected = sorted(r.replace(" ", "") for r in project if normalize_name(re.split(r"[<>=!~ ]", r)[0]) not in bundled)
    assert sorted(read_requirements(MODULE_DIR / "Resources" / "requirements.txt")) == expected


def test_top_level_cmake_is_a_complete_extension():
    text = (ROOT / "CMakeLists.txt").read_text()
    for pattern in (r"project\(LesionXAI\)", r"find_package\(Slicer REQUIRED\)", r"include\(\$\{Slicer_USE_FILE\}\)",
                    r"add_subdirectory\(LesionXAI\)", r"include\(\$\{Slicer_EXTENSION_GENERATE_CONFIG\}\)",
                    r"include\(\$\{Slicer_EXTENSION_CPACK\}\)"):  # fmt: skip
        assert re.search(pattern, text), pattern
    for var in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{var} "[^"]+"\)', text), var
    icon = re.search(r'EXTENSION_ICONURL "[^"]*/main/([^"]+)"', text).group(1)
    assert (ROOT / icon).is_file(), f"icon URL points at {icon}, which is not in the repository"


# the Slicer Extensions Index entry schema (Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json):
# required keys and every allowed key with its JSON type
INDEX_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
INDEX_REQUIRED = {"$schema", "category", "scm_url"}
INDEX_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
               "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool,
               "tier": int}  # fmt: skip


def test_extensions_index_entry_matches_the_schema_and_the_cmake_metadata():
    import json

    entry = json.loads((ROOT / "LesionXAI.json").read_text())
    assert entry["$schema"] == INDEX_SCHEMA
    assert INDEX_REQUIRED <= set(entry) and set(entry) <= set(INDEX_TYPES), set(entry) - set(INDEX_TYPES)
    for key, value in entry.items():
        assert isinstance(value, INDEX_TYPES[key]), key
    assert entry.get("scm_type", "git") in ("git", "local") and 1 <= entry.get("tier", 1) <= 5
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    cmake = (ROOT / "CMakeLists.txt").read_text()
    category = re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1)
    depends = re.search(r'set\(EXTENSION_DEPENDS "([^"]+)"\)', cmake).group(1).split(";")
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', cmake).group(1)
    assert entry["category"] == category and entry["build_dependencies"] == depends == ["PyTorch"]
    assert entry["scm_url"] == homepage and entry["scm_url"].startswith("https://github.com/")
    # the README's install section says the same
    readme = (ROOT / "README.md").read_text()
    assert "Slicer 5.10" in readme and "PyTorch" in readme and "Extensions Manager" in readme
