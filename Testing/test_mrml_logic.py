"""The Qt-free parts of the Slicer module: click-vs-drag decision, first-use dependency plan, parameter mapping, panel text."""

from __future__ import annotations

import math
import subprocess

import pytest

from LesionXAILib.errors import ParameterError
from LesionXAILib.install import dependencies as deps
from LesionXAILib.session.clicks import ClickDetector, ClickPolicy, is_click
from LesionXAILib.slicer_app.controller import DEMO_MODEL, model_key, settings_from_parameters
from LesionXAILib.slicer_app.panel import display_table, format_value, legend_text, statistics_text

# ------------------------------------------------------------------ click vs window/level drag


def test_a_still_short_press_is_a_click():
    d = ClickDetector()
    d.press((100, 80), 10.0)
    d.move((101, 81))
    assert d.release((102, 80), 10.2)


@pytest.mark.parametrize(
    "events, expected",
    [
        ([("press", (100, 80), 0.0), ("release", (140, 60), 0.3)], False),  # window/level drag
        ([("press", (100, 80), 0.0), ("move", (160, 80)), ("release", (101, 80), 0.4)], False),  # out and back
        ([("press", (100, 80), 0.0), ("release", (100, 80), 2.0)], False),  # long hold
        ([("release", (100, 80), 0.1)], False),  # release without press (press happened elsewhere)
        ([("press", (100, 80), 0.0), ("release", (103, 82), 0.59)], True),  # within 4 px and 0.6 s
    ],
)
def test_drags_holds_and_stray_releases_are_not_clicks(events, expected):
    d = ClickDetector()
    result = None
    for kind, *args in events:
        result = getattr(d, kind)(*args)
    assert result is expected


def test_modifier_presses_belong_to_other_tools_and_state_resets():
    d = ClickDetector()
    d.press((10, 10), 0.0, modified=True)
    assert not d.release((10, 10), 0.1)
    d.press((10, 10), 1.0)
    d.cancel()
    assert not d.release((10, 10), 1.1)
    d.press((10, 10), 2.0)
    assert d.release((10, 10), 2.1)
    assert not d.release((10, 10), 2.2)  # one press, one click


def test_policy_thresholds_are_inclusive_and_configurable():
    assert is_click((0, 0), (0, 4), 0.0, 0.6)  # exactly 4 px and 0.6 s: still a click
    assert not is_click((0, 0), (3, 4), 0.0, 0.1)  # 5 px
    strict = ClickPolicy(max_distance_px=1.0, max_duration_s=0.1)
    assert not is_click((0, 0), (0, 2), 0.0, 0.05, strict)
    assert not is_click((0, 0), (0, 0), 0.0, 0.2, strict)
    assert not is_click((0, 0), (0, 0), 1.0, 0.5)  # negative duration (clock reset) is not a click


# ------------------------------------------------------------------ first-use dependency plan

REQS = ["torch>=2.2,<2.14", "monai>=1.4,<1.7", "numpy>=1.24", "SimpleITK>=2.3", "connected-components-3d>=3.12"]


def versions(**installed):
    table = {deps.normalize_name(k): v for k, v in installed.items()}
    return lambda name: table.get(deps.normalize_name(name))


def test_nothing_to_install_when_everything_is_satisfied():
    plan = deps.install_plan(REQS, "Linux", False, versions(torch="2.13.0", monai="1.5.0", connected_components_3d="3.20"))
    assert not plan.needed and plan.torch_args is None and plan.requirements == []


def test_missing_torch_is_the_pinned_cpu_build_unless_linux_with_nvidia():
    have = dict(monai="1.5.0", connected_components_3d="3.20")
    linux_cpu = deps.install_plan(REQS, "Linux", False, versions(**have))
    assert linux_cpu.torch_args == [f"torch=={deps.TORCH_VERSION}", "--index-url", deps.CPU_INDEX_URL]
    linux_gpu = deps.install_plan(REQS, "Linux", True, versions(**have))
    assert linux_gpu.torch_args == [f"torch=={deps.TORCH_VERSION}"]
    mac = deps.install_plan(REQS, "Darwin", False, versions(**have))
    assert mac.torch_args == [f"torch=={deps.TORCH_VERSION}"]
    windows_gpu = deps.install_plan(REQS, "Windows", True, versions(**have))
    assert deps.CPU_INDEX_URL in windows_gpu.torch_args and "PyTorch" in windows_gpu.describe()


def test_bundled_packages_are_never_planned_and_wrong_versions_are():
    plan = deps.install_plan(REQS, "Linux", False, versions(torch="2.1.0", monai="1.3.0"))
    assert plan.requirements == ["monai>=1.4,<1.7", "connected-components-3d>=3.12"]
    assert plan.torch_args is not None and any("2.1.0" in n for n in plan.notes)
    assert "numpy" not in plan.describe() and "SimpleITK" not in plan.describe()


def test_requirement_files_are_parsed_like_pip(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n\nmonai>=1.4  # inline\n--index-url https://example.invalid\nnibabel>=5.0\n")
    assert deps.read_requirements(path) == ["monai>=1.4", "nibabel>=5.0"]
    assert deps.requirement_name("connected-components-3d>=3.12") == "connected-components-3d"
    with pytest.raises(ValueError):
        deps.requirement_name(">=1.0")


def test_gpu_detection_reads_nvidia_smi():
    ok = subprocess.CompletedProcess(["nvidia-smi", "-L"], 0, stdout="GPU 0: NVIDIA H200 (UUID: x)\n")
    assert deps.nvidia_gpu_present(run=lambda *a, **k: ok, which=lambda name: "/usr/bin/nvidia-smi")
    none = subprocess.CompletedProcess(["nvidia-smi", "-L"], 9, stdout="")
    assert not deps.nvidia_gpu_present(run=lambda *a, **k: none, which=lambda name: "/usr/bin/nvidia-smi")
    assert not deps.nvidia_gpu_present(which=lambda name: None)


def test_the_shipped_requirements_are_all_satisfied_in_this_environment():
    """The test environment has what the module would install (so the plan's checks are meaningful)."""
    from pathlib import Path

    reqs = deps.read_requirements(Path(__file__).resolve().parents[1] / "LesionXAI" / "Resources" / "requirements.txt")
    assert all(deps.is_satisfied(r) for r in reqs), [r for r in reqs if not deps.is_satisfied(r)]


# ------------------------------------------------------------------ parameters -> settings, panel text


def test_parameters_map_to_session_settings():
    s = settings_from_parameters(use_model_threshold=True, threshold=0.3, min_size=5, smoothgrad=True, gradcampp=False,
                                 samples=8, seed=2, max_radius_mm=10)  # fmt: skip
    assert s.threshold is None and s.min_size == 5 and s.methods == ("smoothgrad",)
    assert (s.samples, s.seed, s.max_radius_mm) == (8, 2, 10.0)
    assert settings_from_parameters(use_model_threshold=False, threshold=0.3).threshold == 0.3
    only_probe = settings_from_parameters(smoothgrad=False, gradcampp=False)
    assert only_probe.methods == () and only_probe.analysis_settings().explain is None
    with pytest.raises(ParameterError, match="threshold"):
        settings_from_parameters(use_model_threshold=False, threshold=1.0)
    with pytest.raises(ParameterError, match="samples"):
        settings_from_parameters(samples=0)


def test_model_paths_empty_means_demo(tmp_path):
    assert model_key("") == model_key(".") == model_key(None) == DEMO_MODEL
    assert model_key(tmp_path / "m.pt") == str((tmp_path / "m.pt").resolve())


def test_panel_table_and_text():
    rows = [
        {"id": 1, "status": "TP", "volume_mm3": 42.04, "mean_probability": 0.91234, "flair_share": None,
         "context_needed_mm": None},
        {"id": 2, "status": "FN", "volume_mm3": 7.0, "mean_probability": None, "flair_share": 0.5,
         "context_needed_mm": math.inf},
    ]  # fmt: skip
    titles, cells = display_table(rows)
    assert titles[0] == "Lesion" and len(cells) == 2
    assert cells[0][:4] == ["1", "TP", "42.0", "0.912"] and cells[0][4:] == ["", ""]
    assert cells[1][5] == "beyond probe" and format_value("context_needed_mm", 3.0) == "3"
    text = statistics_text({"id": 2, "name": "Lesion 2 · TP · 42 mm³", "mean_probability": 0.9, "flair_share": 0.62,
                            "flair_share_method": "smoothgrad", "context_description": "needs 3 mm of context"})  # fmt: skip
    assert "Lesion 2 · TP" in text and "62%" in text and "needs 3 mm" in text
    signed = legend_text({"title": "SmoothGrad FLAIR", "min": -2.0, "max": 2.0, "units": "d logit / d input",
                          "transparent_below": 0.2})  # fmt: skip
    assert "-2" in signed and "0.2" in signed
    assert "mm" in legend_text({"title": "Context shells", "min": 0.0, "max": 6.0, "units": "mm"})


def test_torch_comes_through_the_pytorch_extension_when_present_else_pip_and_never_in_testing():
    missing = deps.install_plan(REQS, "Linux", False, versions(connected_components_3d="3.20"))
    assert missing.torch_args and missing.requirements  # torch and monai missing
    with_extension = deps.install_steps(missing, pytorch_utils_available=True, testing=False)
    assert [s.kind for s in with_extension] == ["pytorch_utils", "pip"]
    assert with_extension[0].args == (f"=={deps.TORCH_VERSION}",)  # the tested version, the extension picks the build
    assert with_extension[1].args == tuple(missing.requirements)
    without = deps.install_steps(missing, pytorch_utils_available=False, testing=False)
    assert [s.kind for s in without] == ["pip_torch", "pip"] and list(without[0].args) == missing.torch_args
    text = deps.describe_steps(with_extension)
    assert text.startswith("1. PyTorch") and "PyTorch extension" in text and "\n2. " in text
    with pytest.raises(deps.InstallRefused, match="testing mode never installs"):
        deps.install_steps(missing, pytorch_utils_available=True, testing=True)
    # nothing missing: nothing to do, in testing mode too
    satisfied = deps.install_plan(REQS, "Linux", False, versions(torch="2.13.0", monai="1.5.0", connected_components_3d="3.20"))
    assert deps.install_steps(satisfied, True, True) == []
    only_packages = deps.install_plan(REQS, "Linux", False, versions(torch="2.13.0", connected_components_3d="3.20"))
    assert [s.kind for s in deps.install_steps(only_packages, True, False)] == ["pip"]
