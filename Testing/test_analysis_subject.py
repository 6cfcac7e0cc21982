"""SubjectAnalysis: subject-wide work done once (CAM layer activations), staged per-lesion analysis, resuming.

The network is the hand-built context detector behind an identity 1x1x1 convolution (a layer the CAMs
hook), so instances are known; whole-volume passes are counted with a forward hook on the network.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesionXAILib.analysis import AnalysisSettings, SubjectAnalysis, analyse_lesion, analyse_lesions
from LesionXAILib.errors import Cancelled, ParameterError
from LesionXAILib.explain import ExplainSettings
from LesionXAILib.explain.api import combine_explanations, instance_targets, iter_explanations
from LesionXAILib.explain.cam import layer_activations
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.probes import ContextSettings
from LesionXAILib.progress import CancelToken
from LesionXAILib.segmentation import SegmentationSettings, segment

from probes_fixtures import DetectorNet

SHAPE = (24, 28, 26)
# a small ROI margin and receptive margin keep every crop smaller than the volume, so a gradient-free
# pass over the whole volume can only be the CAM layer-activation pass
EXPLAIN = ExplainSettings(methods=("smoothgrad", "gradcampp"), samples=2, seed=1, roi_margin_mm=2.0)
SETTINGS = AnalysisSettings(explain=EXPLAIN, context=ContextSettings(radii_mm=(0.0, 1.0, 2.0), receptive_margin_mm=3.0))


class PassCounter:
    """Counts the network's forward passes over the whole volume without gradients (layer-activation passes)."""

    def __init__(self, model: LesionModel, shape) -> None:
        self.shape = tuple(shape)
        self.whole_volume = 0
        self.grad_samples = 0
        self.calls = 0
        self.handle = model.network.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.calls += 1
        x = args[0]
        if torch.is_grad_enabled():
            self.grad_samples += x.shape[0]
        elif tuple(x.shape[2:]) == self.shape:
            self.whole_volume += x.shape[0]

    def remove(self) -> None:
        self.handle.remove()


@pytest.fixture(scope="module")
def segmented():
    from LesionXAILib.image_io import InputPair
    from explain_fixtures import unit_geometry

    rng = np.random.default_rng(3)
    flair = 100 + rng.normal(0, 2, SHAPE)
    flair[5:8, 5:8, 5:8] = 160
    flair[15:19, 17:20, 14:18] = 170
    flair[16:18, 5:7, 18:20] = 165
    t1 = 80 + 20 * np.sign(rng.normal(0, 1, SHAPE))
    pair = InputPair(flair.astype(np.float32), t1.astype(np.float32), unit_geometry(SHAPE))
    config = ModelConfig(name="detector", channels=(1,), strides=(), num_res_units=0, threshold=0.5,
                         roi_size=(256, 256, 256), cam_layer="pre")  # fmt: skip
    model = LesionModel(DetectorNet(), config, source="hand-built").eval()
    result = segment(pair, model, SegmentationSettings())
    assert len(result.instances.ids) == 3
    return model, result


def test_cam_activations_are_computed_once_per_subject_not_per_lesion(segmented):
    model, result = segmented
    ids = result.instances.ids
    counter = PassCounter(model, result.normalized.shape[1:])
    try:
        subject = SubjectAnalysis(model, result)
        shared = [analyse_lesion(model, result, i, SETTINGS, subject=subject) for i in ids]
        assert counter.whole_volume == 1 and subject.activation_passes == 1
        counter.whole_volume = 0
        together = list(analyse_lesions(model, result, None, SETTINGS))
        assert counter.whole_volume == 1  # one SubjectAnalysis for the whole call
        counter.whole_volume = 0
        alone = [analyse_lesion(model, result, i, SETTINGS) for i in ids]  # no subject given: one pass per call
        assert counter.whole_volume == len(ids)
    finally:
        counter.remove()
    for a, b, c in zip(shared, together, alone):
        assert set(a.explanation.maps) == {"smoothgrad_flair", "smoothgrad_mprage", "gradcampp"}
        for key in a.explanation.maps:
            np.testing.assert_array_equal(a.explanation.maps[key], c.explanation.maps[key])
            np.testing.assert_array_equal(b.explanation.maps[key], c.explanation.maps[key])
    assert shared[0].explanation.maps["gradcampp"].max() > 0


def test_precomputed_activations_must_match_the_layer_and_grid(segmented):
    model, result = segmented
    target = instance_targets(result.instances, [result.instances.ids[0]], "sum")
    good = layer_activations(model, result.normalized, "pre")
    direct = next(iter_explanations(model, result.normalized, target, result.geometry, EXPLAIN))
    given = next(iter_explanations(model, result.normalized, target, result.geometry, EXPLAIN, layer_activations=good))
    np.testing.assert_array_equal(direct.maps["gradcampp"], given.maps["gradcampp"])
    other = layer_activations(model, result.normalized, "detector.box.0")
    with pytest.raises(ParameterError, match="not of the CAM layer"):
        next(iter_explanations(model, result.normalized, target, result.geometry, EXPLAIN, layer_activations=other))
    smaller = layer_activations(model, result.normalized[:, :-4], "pre")
    with pytest.raises(ParameterError, match="padded grid"):
        next(iter_explanations(model, result.normalized, target, result.geometry, EXPLAIN, layer_activations=smaller))


def test_stages_arrive_first_explainer_first_and_give_the_same_analysis(segmented):
    model, result = segmented
    lesion = result.instances.ids[1]
    joint = analyse_lesion(model, result, lesion, SETTINGS)
    stages = []
    staged = SubjectAnalysis(model, result).analyse(lesion, SETTINGS, first=("gradcampp",), on_partial=stages.append)
    # stage 1: Grad-CAM++ only; stage 2: + SmoothGrad, no curve yet; the returned analysis adds the curve
    assert [sorted(s.explanation.maps) for s in stages] == [
        ["gradcampp"], ["gradcampp", "smoothgrad_flair", "smoothgrad_mprage"]
    ]
    assert all(s.curve is None for s in stages) and staged.curve is not None
    assert stages[0].explanation.settings.methods == ("gradcampp",)
    for key, arr in joint.explanation.maps.items():
        np.testing.assert_array_equal(staged.explanation.maps[key], arr)
    a, b = joint.explanation.to_dict(), staged.explanation.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b  # statistics, FLAIR shares, settings, box, layer: as one call computes them
    np.testing.assert_array_equal(staged.curve.detected, joint.curve.detected)
    assert staged.summary().keys() == joint.summary().keys()
    # the probe first (e.g. for the context-shells overlay)
    stages.clear()
    SubjectAnalysis(model, result).analyse(lesion, SETTINGS, first=("context",), on_partial=stages.append)
    assert stages[0].curve is not None and stages[0].explanation is None


def test_a_cancelled_analysis_resumes_from_its_last_stage(segmented):
    model, result = segmented
    lesion = result.instances.ids[0]
    subject = SubjectAnalysis(model, result)
    token = CancelToken()
    stages = []

    def stop_after_first(analysis):
        stages.append(analysis)
        token.cancel()

    with pytest.raises(Cancelled):
        subject.analyse(lesion, SETTINGS, None, token, first=("smoothgrad",), on_partial=stop_after_first)
    assert len(stages) == 1 and sorted(stages[0].explanation.maps) == ["smoothgrad_flair", "smoothgrad_mprage"]
    counter = PassCounter(model, result.normalized.shape[1:])
    try:
        resumed = subject.analyse(lesion, SETTINGS, start=stages[0])
    finally:
        counter.remove()
    # SmoothGrad is not recomputed: only the Grad-CAM++ pass needs gradients (SmoothGrad would add 2 samples)
    assert counter.grad_samples == 1
    for key in ("smoothgrad_flair", "smoothgrad_mprage"):
        assert resumed.explanation.maps[key] is stages[0].explanation.maps[key]
    direct = analyse_lesion(model, result, lesion, SETTINGS)
    for key, arr in direct.explanation.maps.items():
        np.testing.assert_array_equal(resumed.explanation.maps[key], arr)
    assert resumed.curve is not None
    with pytest.raises(ParameterError):
        list(analyse_lesions(model, result, None, SETTINGS, subject=SubjectAnalysis(model, segment_copy(result))))


def segment_copy(result):
    """Return a shallow copy of a SegmentationResult (another result object with the same data)."""
    import copy

    return copy.copy(result)


def test_combining_rejects_overlapping_or_foreign_parts(segmented):
    model, result = segmented
    a, b = result.instances.ids[:2]
    subject = SubjectAnalysis(model, result)
    sg = subject.explain(a, EXPLAIN.replace(methods=("smoothgrad",)))
    with pytest.raises(ParameterError, match="both hold"):
        combine_explanations([sg, sg], EXPLAIN)
    other = subject.explain(b, EXPLAIN.replace(methods=("gradcampp",)))
    with pytest.raises(ParameterError, match="instances"):
        combine_explanations([sg, other], EXPLAIN)


def test_staged_analysis_uses_and_records_the_models_margin(segmented, tmp_path):
    import json

    from LesionXAILib.analysis import write_analysis_run

    model, result = segmented
    calibrated = LesionModel(model.network, model.config.replace(explain_margin_mm=3.0), source="hand-built").eval()
    settings = AnalysisSettings(explain=ExplainSettings(methods=("gradient", "smoothgrad"), samples=2, seed=1), context=None)
    subject = SubjectAnalysis(calibrated, result)
    lesion = result.instances.ids[0]
    staged = subject.analyse(lesion, settings, first=("smoothgrad",))
    whole = subject.analyse(lesion, settings)
    for a in (staged, whole):
        assert a.explanation.settings.roi_margin_mm == 3.0
    for key in whole.explanation.maps:
        np.testing.assert_array_equal(staged.explanation.maps[key], whole.explanation.maps[key])
    write_analysis_run(tmp_path, result, [whole], settings)
    doc = json.loads((tmp_path / "explanations.json").read_text())
    assert doc["settings"]["roi_margin_mm"] == 3.0 and doc["instances"][0]["settings"]["roi_margin_mm"] == 3.0
