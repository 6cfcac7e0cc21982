"""analyse_lesions / write_analysis_run: per-lesion explanations + context probe, written like segment/explain/probe."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from LesionXAILib.analysis import AnalysisSettings, analyse_lesion, analyse_lesions, write_analysis_run
from LesionXAILib.errors import InstanceError
from LesionXAILib.explain import ExplainSettings, explain_instance
from LesionXAILib.probes import ContextSettings, context_probe
from LesionXAILib.segmentation import SegmentationSettings, segment

from probes_fixtures import detector_model


@pytest.fixture(scope="module")
def segmented():
    from LesionXAILib.image_io import InputPair
    from explain_fixtures import unit_geometry

    shape = (24, 28, 26)
    rng = np.random.default_rng(3)
    flair = 100 + rng.normal(0, 2, shape)
    flair[6:9, 6:9, 6:9] = 160
    flair[15:19, 17:20, 14:18] = 170
    # z-scored MPRAGE of +-1 everywhere: 'tissue' for the detector (it treats |MPRAGE| < 0.5 as fill)
    t1 = 80 + 20 * np.sign(rng.normal(0, 1, shape))
    pair = InputPair(flair.astype(np.float32), t1.astype(np.float32), unit_geometry(shape))
    model = detector_model(h=1, level=1.5)
    result = segment(pair, model, SegmentationSettings())
    assert len(result.instances.ids) == 2
    return model, result


SETTINGS = AnalysisSettings(
    explain=ExplainSettings(methods=("gradient", "smoothgrad"), samples=3, seed=1),
    context=ContextSettings(radii_mm=(0.0, 1.0, 2.0, 3.0)),
)


def test_each_lesion_gets_the_same_maps_and_curve_as_the_direct_calls(segmented):
    model, result = segmented
    analyses = list(analyse_lesions(model, result, None, SETTINGS))
    assert [a.id for a in analyses] == result.instances.ids
    for a in analyses:
        mask = result.instances.mask(a.id)
        direct = explain_instance(model, result.normalized, mask, result.geometry, SETTINGS.explain)
        for key, arr in direct.maps.items():
            np.testing.assert_allclose(a.explanation.maps[key], arr, rtol=1e-6, atol=1e-9)
        curve = context_probe(
            model, result.normalized, mask, result.geometry,
            ContextSettings(radii_mm=SETTINGS.context.radii_mm, threshold=result.threshold,
                            min_size_voxels=result.instances.min_size_voxels),
        )  # fmt: skip
        np.testing.assert_array_equal(a.curve.detected, curve.detected)
        assert a.curve.context_needed_mm == curve.context_needed_mm
        row = a.summary()
        assert row["id"] == a.id and row["context_status"] == curve.status
        assert row["smoothgrad_flair_inside_sum"] == pytest.approx(a.explanation.statistics["smoothgrad_flair"]["inside_sum"])
        json.dumps(row, allow_nan=False)


def test_parts_can_be_skipped_and_unknown_ids_fail_before_work(segmented):
    model, result = segmented
    only_probe = analyse_lesion(model, result, result.instances.ids[0], AnalysisSettings(explain=None, context=SETTINGS.context))
    assert only_probe.explanation is None and only_probe.curve is not None
    with pytest.raises(InstanceError):
        list(analyse_lesions(model, result, [99], SETTINGS))


def test_run_directory_has_the_segment_explain_probe_layout(segmented, tmp_path):
    model, result = segmented
    analyses = []
    for a in analyse_lesions(model, result, None, SETTINGS):
        a.write(tmp_path / f"instance_{a.id}", result.geometry)
        analyses.append(a)
    write_analysis_run(tmp_path, result, analyses, SETTINGS)
    for name in ("probability.nii.gz", "instances.nii.gz", "instances.json", "explanations.json", "context_probe.json", "lesions.csv"):
        assert (tmp_path / name).exists(), name
    for i in result.instances.ids:
        for name in ("smoothgrad_flair.nii.gz", "gradient_mprage.nii.gz", "context_curve.csv", "context_shells.nii.gz"):
            assert (tmp_path / f"instance_{i}" / name).exists(), (i, name)
    with open(tmp_path / "lesions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == result.instances.ids
    doc = json.loads((tmp_path / "explanations.json").read_text())
    assert [r["instance_id"] for r in doc["instances"]] == result.instances.ids
