"""The explainer registry: one registration makes a method flow through the batch pipeline, the CLI and the settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
import SimpleITK as sitk
import torch

from explain_fixtures import box_mask, logits, saved_subject, synthetic_image, tiny_model, unit_geometry
from LesionXAILib.errors import ParameterError
from LesionXAILib.explain import ExplainSettings, Region, SmoothGrad, SmoothGradSettings, explain_instance
from LesionXAILib.explain.methods.base import BatchContext, Explainer
from LesionXAILib.explain.registry import (
    MethodSpec,
    available_methods,
    method_default,
    method_spec,
    method_title,
    register,
    unregister,
)

EXTRA = "test_gradient_x_input"
ROOT = Path(__file__).resolve().parents[1]


class GradientTimesInput(Explainer):
    """A method defined only in this test: x * dS/dx (what adding a method to explain/methods/ looks like)."""

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        from LesionXAILib.explain.gradient import gradient_maps

        g = gradient_maps(ctx.model, ctx.crop, ctx.aggregation, ctx.batch_size, ctx.reporter)
        return {EXTRA: g * ctx.crop.image[None]}


@pytest.fixture
def extra_method():
    register(MethodSpec(name=EXTRA, title="Gradient × input", unit="logit", per_sequence=True, cls=GradientTimesInput))
    yield EXTRA
    unregister(EXTRA)


def test_a_registered_method_flows_through_the_batch_pipeline(extra_method):
    shape = (16, 16, 16)
    model = tiny_model()
    image = synthetic_image(shape, seed=2)
    mask = box_mask(shape, (7, 7, 7), (9, 10, 9))
    settings = ExplainSettings(methods=("smoothgrad", extra_method), samples=2, full_volume=True)
    e = explain_instance(model, image, mask, unit_geometry(shape), settings)
    assert {f"{extra_method}_flair", f"{extra_method}_mprage"} <= set(e.maps)
    assert set(e.statistics["flair_share"]) == {"smoothgrad", extra_method}
    assert e.statistics[f"{extra_method}_flair"]["inside_voxels"] == mask.sum()
    # independent check: central finite differences of the summed lesion logit, times the input
    eps = 1e-5
    for c, seq in enumerate(("flair", "mprage")):
        for v in [(8, 8, 8), (6, 9, 10), (11, 5, 8)]:
            up, down = image.copy(), image.copy()
            up[(c, *v)] += eps
            down[(c, *v)] -= eps
            fd = (logits(model, up)[mask].sum() - logits(model, down)[mask].sum()) / (2 * eps)
            assert e.maps[f"{extra_method}_{seq}"][v] == pytest.approx(fd * image[(c, *v)], rel=1e-4, abs=1e-7)


def test_a_registered_method_is_a_cli_choice_and_is_written(extra_method, tmp_path):
    from LesionXAILib.cli.main import build_parser, main

    help_text = build_parser()._subparsers._group_actions[0].choices["explain"].format_help()
    assert extra_method in " ".join(help_text.split())
    d, model_path, threshold = saved_subject(tmp_path, (20, 24, 20))
    out = tmp_path / "out"
    code = main([
        "-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(out),
        "--model", str(model_path), "--threshold", f"{threshold}", "--min-size", "1", "--methods", extra_method,
        "--margin-mm", "6", "--instances", "1",
    ])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "explanations.json").read_text())
    assert doc["settings"]["methods"] == [extra_method]
    for seq in ("flair", "mprage"):
        img = sitk.ReadImage(str(out / "instance_1" / f"{extra_method}_{seq}.nii.gz"))
        assert img.GetSpacing() == pytest.approx((1.0, 1.0, 1.2))


def test_unknown_and_duplicate_methods_are_refused(extra_method):
    with pytest.raises(ParameterError, match="choose from.*gradient"):
        ExplainSettings(methods=("no_such_method",))
    with pytest.raises(ParameterError, match="already registered"):
        register(MethodSpec(name=extra_method, title="x", unit="x", per_sequence=True, cls=SmoothGrad))
    with pytest.raises(ParameterError, match="lower-case identifier"):
        MethodSpec(name="Bad-Name", title="x", unit="x", per_sequence=True, cls=SmoothGrad)
    unregister(extra_method)
    assert extra_method not in available_methods()
    with pytest.raises(ParameterError, match="unknown explanation method"):
        ExplainSettings(methods=(extra_method,))


def test_builtin_methods_and_their_defaults_are_written_once():
    from LesionXAILib.cam_methods import CAM_LABELS
    from LesionXAILib.presets import BUILTIN_DEFAULTS

    names = available_methods()
    assert names[:5] == ("gradient", "smoothgrad", "smoothgrad_squared", "smoothgrad_abs", "integrated_gradients")
    assert names[5:-1] == tuple(CAM_LABELS)
    assert names[-1] == "atoms" and method_spec("atoms").per_sequence  # ML-CSC models only (issue 22)
    assert all(method_spec(m).uses_layer and not method_spec(m).per_sequence for m in CAM_LABELS)
    assert method_title("smoothgrad") == "SmoothGrad" and method_title("gradcampp") == CAM_LABELS["gradcampp"]
    assert method_title("not_registered") == "not_registered"
    samples = method_default("smoothgrad", "samples")
    assert samples == 16  # docs/methods.md: SmoothGrad's default (the anchor's 50 is --preset anchor)
    assert ExplainSettings().samples == SmoothGradSettings().samples == BUILTIN_DEFAULTS["samples"] == samples
    assert ExplainSettings().noise_level == SmoothGradSettings().noise_level == method_default("smoothgrad", "noise_level")
    assert ExplainSettings().ig_steps == method_default("integrated_gradients", "ig_steps")
    with pytest.raises(ParameterError, match="no setting"):
        method_default("gradient", "samples")


def test_smoothgrad_settings_object_equals_keywords_and_rejects_unknown_ones():
    shape = (16, 16, 16)
    model = tiny_model()
    image = synthetic_image(shape, seed=5)
    mask = box_mask(shape, (6, 6, 6), (9, 9, 8))
    sg = SmoothGrad(model)
    a = sg.attribute(image, mask, SmoothGradSettings(samples=3, seed=4, variant="smoothgrad_abs"), Region(full_volume=True))
    b = sg.attribute(image, mask, samples=3, seed=4, variant="smoothgrad_abs", full_volume=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(TypeError, match="samplez"):
        sg.attribute(image, mask, samplez=3)


def test_reading_the_registry_imports_no_torch():
    code = (
        "import sys\n"
        "from LesionXAILib.explain.registry import available_methods, method_spec, method_title\n"
        "from LesionXAILib.explain.settings import ExplainSettings\n"
        "assert 'gradcampp' in available_methods() and method_title('gradient') == 'Gradient'\n"
        "assert ExplainSettings().samples == method_spec('smoothgrad').defaults['samples']\n"
        "heavy = [m for m in ('torch', 'SimpleITK', 'monai') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=60)
