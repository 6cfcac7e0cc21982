"""The shared vocabulary: map keys round-trip, titles, status colours, cell formats, finite_or_none."""

import math
import subprocess
import sys

import numpy as np
import pytest

from LesionXAILib import vocabulary as V


@pytest.mark.parametrize(
    "key, method, sequence",
    [
        ("smoothgrad_flair", "smoothgrad", "flair"),
        ("smoothgrad_squared_mprage", "smoothgrad_squared", "mprage"),
        ("integrated_gradients_flair", "integrated_gradients", "flair"),
        ("gradcampp", "gradcampp", None),
        ("gradcampp_anchor", "gradcampp_anchor", None),
        ("newmethod_t2", "newmethod", "t2"),
    ],
)
def test_map_key_round_trip(key, method, sequence):
    parsed = V.parse_map_key(key)
    assert (parsed.method, parsed.sequence) == (method, sequence)
    assert str(parsed) == key == V.map_key(method, sequence)


def test_map_keys_one_per_sequence_but_one_for_a_cam():
    assert V.map_keys("smoothgrad", ["flair", "mprage"]) == ["smoothgrad_flair", "smoothgrad_mprage"]
    assert V.map_keys("gradcam", ["flair", "mprage"]) == ["gradcam"]
    assert V.parse_map_key("my_method_flair", methods=["my_method"]) == V.MapKey("my_method", "flair")


def test_titles():
    assert V.map_title("smoothgrad_flair") == "SmoothGrad FLAIR"
    assert V.map_title("smoothgrad_flair", " · ") == "SmoothGrad · FLAIR"
    assert V.map_title("gradcampp") == "Grad-CAM++"
    assert V.map_title("context_shells") == "Context shells"
    assert V.map_title("not_a_map") == "not_a_map"
    assert V.method_title("integrated_gradients") == "Integrated gradients"
    assert V.method_unit("gradcam") == V.CAM_UNIT and V.method_unit("smoothgrad") == V.GRADIENT_UNIT
    assert V.is_non_negative("gradcampp") and V.is_non_negative("smoothgrad_abs_flair")
    assert not V.is_non_negative("smoothgrad_flair")


def test_one_status_colour_per_status():
    assert set(V.STATUS_COLOURS) == set(V.STATUSES)
    assert len(set(V.STATUS_COLOURS.values())) == len(V.STATUSES)
    assert V.status_colour("FN") == "#7570b3" and V.status_colour("??") == V.UNKNOWN_STATUS_COLOUR


def test_finite_or_none():
    assert V.finite_or_none(None) is None and V.finite_or_none("x") is None
    assert V.finite_or_none(float("nan")) is None and V.finite_or_none(np.float32(2.5)) == 2.5
    assert V.finite_or_none(math.inf) is None and V.finite_or_none(math.inf, keep_inf=True) == math.inf


def test_format_number_and_cells():
    assert [V.format_number(v) for v in (None, float("nan"), math.inf, True, 7, np.int64(7), 0.5, 2.5, 123.4, 1e-4, 2e5)] == [
        "—", "—", "∞", "yes", "7", "7", "0.500", "2.50", "123", "1.00e-04", "2.00e+05"]
    assert V.format_cell("volume_mm3", 42) == "42.0"
    assert V.format_cell("mean_probability", 0.8124) == "0.812"
    assert V.format_cell("flair_share", 0.634) == "63 %"
    assert V.format_cell("context_needed_mm", math.inf, 15.0) == "> 15"
    assert V.format_cell("context_needed_mm", math.inf) == "beyond probe"
    assert V.format_cell("context_needed_mm", 3.0) == "3"
    assert V.format_cell("flair_share", None) == V.NONE_TEXT and V.format_cell("id", 4.0) == "4"
    assert V.column("volume_mm3").title == "Volume (mm³)"


def test_imports_no_heavy_module():
    code = "import sys, LesionXAILib.vocabulary; print(any(m in sys.modules for m in ('torch', 'slicer', 'qt', 'trame', 'matplotlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
