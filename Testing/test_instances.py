"""Instance labelling (vs scipy), instance table, TP/FP/FN matching and lesion-wise scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from engine_fixtures import OBLIQUE_DIRECTION, make_image
from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.geometry import Geometry
from LesionXAILib.instances import extract_instances, label_components, min_size_in_voxels
from LesionXAILib.matching import compare_masks, lesion_scores, voxel_dice


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two label maps define the same components (up to renumbering)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


@pytest.mark.parametrize("seed", range(5))
def test_labelling_matches_scipy_26_connectivity(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((24, 20, 22)) < rng.uniform(0.05, 0.3)
    ours, n = label_components(mask, 26)
    ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    assert n == n_ref
    assert _same_partition(ours, ref)
    ours6, n6 = label_components(mask, 6)
    ref6, n6_ref = ndimage.label(mask)
    assert n6 == n6_ref and _same_partition(ours6, ref6)


def test_min_size_filter_and_consecutive_ids():
    mask = np.zeros((10, 10, 10), bool)
    mask[1, 1, 1] = True  # 1 voxel
    mask[5:7, 5:7, 5] = True  # 4 voxels
    mask[8, 8, 7:9] = True  # 2 voxels
    labels, n = label_components(mask, 26, min_size_voxels=2)
    assert n == 2 and set(np.unique(labels)) == {0, 1, 2}
    assert labels[1, 1, 1] == 0
    geom = Geometry.from_image(make_image(np.ones((10, 10, 10)), (0.5, 0.5, 2.0)))
    assert min_size_in_voxels(3, "voxels", geom) == 3
    assert min_size_in_voxels(1.5, "mm3", geom) == 3  # 0.5 mm^3 voxels
    with pytest.raises(ParameterError):
        min_size_in_voxels(3, "litres", geom)


def test_instance_table_centroids_volumes_and_probabilities():
    prob = np.zeros((12, 14, 16), np.float32)
    prob[2:5, 3:6, 4:7] = 0.8  # 27 voxels, centroid (i,j,k) = (5,4,3)
    prob[3, 4, 5] = 0.95
    prob[8:10, 10:12, 12:13] = 0.6  # 4 voxels
    prob[0, 0, 0] = 0.9  # 1 voxel, removed by min size
    spacing = (0.8, 1.1, 2.5)
    img = make_image(prob, spacing, (10, -20, 5), OBLIQUE_DIRECTION)
    geom = Geometry.from_image(img)
    inst = extract_instances(prob, geom, threshold=0.5, min_size_voxels=3)
    assert inst.ids == [1, 2]
    a = inst.get(1)
    assert a.voxels == 27 and a.volume_mm3 == pytest.approx(27 * 0.8 * 1.1 * 2.5)
    assert a.centroid_ijk == pytest.approx((5.0, 4.0, 3.0))
    lps = np.array(img.TransformContinuousIndexToPhysicalPoint((5.0, 4.0, 3.0)))
    assert a.centroid_ras == pytest.approx(tuple(lps * [-1, -1, 1]))
    assert a.bbox_ijk_min == (4, 3, 2) and a.bbox_ijk_max == (6, 5, 4)
    assert a.max_probability == pytest.approx(0.95)
    assert a.mean_probability == pytest.approx((26 * 0.8 + 0.95) / 27)
    assert a.status == "predicted"
    assert inst.at_voxel((5, 4, 3)) == 1 and inst.at_voxel((0, 0, 0)) is None and inst.at_voxel((99, 0, 0)) is None
    assert inst.mask(2).sum() == 4
    with pytest.raises(InstanceError, match="lesion instance 9 does not exist .*valid ids: 1, 2"):
        inst.mask(9)
    with pytest.raises(ParameterError):
        extract_instances(prob, geom, threshold=1.5)


def test_tp_fp_fn_matching_on_hand_made_masks():
    shape = (20, 20, 20)
    pred = np.zeros(shape, bool)
    gt = np.zeros(shape, bool)
    pred[2:5, 2:5, 2:5] = True  # TP: overlaps GT lesion A partially
    gt[3:7, 3:7, 3:7] = True  # GT lesion A
    pred[10:12, 10:12, 10:12] = True  # FP
    gt[15:18, 2:4, 2:4] = True  # GT lesion B: missed -> FN
    gt[15:17, 15:17, 15:17] = True  # GT lesion C
    pred[16:18, 16:18, 16:18] = True  # TP on C
    pred[16, 12, 12] = True  # tiny FP (1 voxel), removed by min size 2
    prob = pred.astype(np.float32) * 0.9
    geom = Geometry.from_image(make_image(np.ones(shape)))
    inst = extract_instances(prob, geom, threshold=0.5, min_size_voxels=2, ground_truth=gt)
    status = {r.id: r.status for r in inst.instances}
    assert sorted(status.values()) == ["FN", "FP", "TP", "TP"]
    m = inst.metrics
    assert (m.tp, m.fp, m.fn, m.gt_lesions, m.gt_detected) == (2, 1, 1, 3, 2)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)
    kept = np.zeros(shape, bool)
    kept[2:5, 2:5, 2:5] = kept[10:12, 10:12, 10:12] = kept[16:18, 16:18, 16:18] = True
    assert m.dice == pytest.approx(voxel_dice(kept, gt))
    fn = next(r for r in inst.instances if r.status == "FN")
    assert fn.id == 4 and fn.source == "ground_truth" and fn.voxels == 12
    assert np.array_equal(inst.mask(fn.id), np.pad(np.ones((3, 2, 2), bool), ((15, 2), (2, 16), (2, 16))))
    # FN lesions never overlap predicted instances
    assert not np.any(inst.mask(fn.id) & (prob >= 0.5))


def test_scores_edge_cases():
    assert lesion_scores(0, 0, 0, 0)[2] == 1.0
    p, r, f = lesion_scores(0, 0, 3, 0)
    assert np.isnan(p) and r == 0 and f == 0
    assert voxel_dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    status, _, missed, m = compare_masks(np.zeros((4, 4, 4), np.int32), np.zeros((4, 4, 4), bool))
    assert status == {} and missed == [] and m.f1 == 1.0
    with pytest.raises(ParameterError, match="does not match"):
        compare_masks(np.zeros((4, 4, 4), np.int32), np.zeros((4, 4, 5), bool))
