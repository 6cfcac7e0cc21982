"""Per-lesion counterfactuals on a hand-built model whose detection depends only on the lesion's size.

Every expectation is computed here, independently of the library: the lesion's size is the bright
load the detector sums (``bright_load``), the warp is replayed with SimpleITK's displacement-field
transform, the Jacobian determinant is SimpleITK's, and the flip is confirmed by re-running the
whole segmentation pipeline on the counterfactual images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from LesionXAILib.counterfactual import CounterfactualSettings, lesion_counterfactual, plan
from LesionXAILib.counterfactual.normalisation import fit_linear_map
from LesionXAILib.counterfactual.lattice import lesion_lattice
from LesionXAILib.counterfactual.output import original_raw
from LesionXAILib.counterfactual.warp import exp_velocity, identity_grid, sample, upsampling_matrix
from LesionXAILib.errors import Cancelled, InstanceError, ParameterError
from LesionXAILib.image_io import InputPair
from LesionXAILib.instances import STATUS_FN
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import CancelToken
from LesionXAILib.segmentation import SegmentationSettings, segment
from test_counterfactual_support import (
    LESION, T_FULL, T_LOW, TISSUE, ConstantDetector, bright_load, geometry, size_config, size_model, subject_arrays,
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 90  # the detector's size threshold (load); the blob's load is about 123




@pytest.fixture(scope="module")
def subject():
    flair, t1, blob = subject_arrays()
    grid = geometry(flair.shape)
    model = size_model(N)
    result = segment(InputPair(flair, t1, grid), model, SegmentationSettings())
    return flair, t1, blob, grid, model, result


@pytest.fixture(scope="module")
def removed(subject):
    flair, t1, blob, grid, model, result = subject
    return lesion_counterfactual(model, result, 1, "remove", CounterfactualSettings())


def surface_voxels(mask: np.ndarray) -> int:
    """Return the number of mask voxels with a 6-neighbour outside it."""
    return int((mask & ~ndimage.binary_erosion(mask)).sum())


def test_the_detector_depends_on_size_only(subject):
    flair, t1, blob, grid, model, result = subject
    assert [r.id for r in result.instances.instances] == [1]
    assert bright_load(flair) > N  # detected as it is ...
    small = flair.copy()
    small[blob & ~ndimage.binary_erosion(blob)] = TISSUE  # ... and not once its outer shell is gone
    assert bright_load(small) < N
    assert not segment(InputPair(small, t1, grid), model, SegmentationSettings()).instances.instances


def test_remove_shrinks_the_lesion_just_below_the_size_the_model_needs(subject, removed):
    flair, t1, blob, grid, model, result = subject
    s = CounterfactualSettings()
    cf = removed
    assert cf.passed and cf.flipped and cf.before.detected and not cf.after.detected
    after = bright_load(original_raw(result, cf)[0])
    # the bisection leaves the result within step / 2^refine of the last iterate that was still detected; a
    # boundary that moves by d voxels changes the load by at most (LESION - TISSUE) / (T_FULL - T_LOW) * d per
    # surface voxel, and each control point moves at most that far (x2: the exp and diagonal moves); the
    # intensity change adds at most intensity_per_mm * the same step per lesion voxel
    sub_step = s.step_mm / 2**s.refine_steps
    tolerance = 2 * surface_voxels(blob) * (LESION - TISSUE) / (T_FULL - T_LOW) * sub_step
    tolerance += s.intensity_per_mm * sub_step * blob.sum() / (T_FULL - T_LOW)
    assert N - 0.5 - tolerance <= after < N - 0.5
    row = cf.summary()
    assert row["lesion_volume"]["change_mm3"] < 0  # it shrank
    assert row["largest_displacement_mm"] > 0
    assert row["change_within_near_share"] > 0.99  # the change stays near the lesion
    assert row["resegmentation"]["confirms_flip"] is True


def test_the_warp_is_diffeomorphic_with_a_positive_jacobian(removed):
    det = removed.pullback_jacobian
    assert det.min() > 0 and removed.diffeomorphic
    jac = removed.summary()["jacobian"]
    assert jac["positive"] is True and 0 < jac["min"] <= 1 <= jac["max"]
    # a shrinking warp: the anatomy's log volume change is negative on the lesion
    assert removed.log_jacobian()[removed.warped_mask > 0.5].mean() < 0


def test_resegmenting_the_counterfactual_images_confirms_the_flip(subject, removed):
    flair, t1, blob, grid, model, result = subject
    raw = original_raw(result, removed)
    again = segment(InputPair(raw[0], raw[1], grid), model, SegmentationSettings())
    assert not any((again.instances.labels > 0)[blob])  # the whole pipeline, whole volume: no lesion left there


def test_same_inputs_same_outputs(subject, removed):
    flair, t1, blob, grid, model, result = subject
    again = lesion_counterfactual(model, result, 1, "remove", CounterfactualSettings())
    for name in ("displacement", "raw", "intensity", "pullback_jacobian"):
        assert np.array_equal(getattr(again, name), getattr(removed, name)), name
    assert again.iterations == removed.iterations


def test_add_grows_a_missed_lesion_until_the_model_finds_it():
    flair, t1, blob = subject_arrays(radius=2.6)  # load about 81 < N: missed
    grid = geometry(flair.shape)
    model = size_model(N)
    result = segment(InputPair(flair, t1, grid), model, SegmentationSettings(), ground_truth=blob)
    [row] = result.instances.instances
    assert row.status == STATUS_FN
    assert plan(result.instances, None, "auto") == [(row.id, "add")]
    cf = lesion_counterfactual(model, result, row.id, "add", CounterfactualSettings())
    assert cf.passed and cf.after.detected and not cf.before.detected
    raw = original_raw(result, cf)
    assert bright_load(raw[0]) >= N - 0.5
    assert cf.summary()["lesion_volume"]["change_mm3"] > 0 or cf.summary()["largest_intensity_change"]["FLAIR"] > 0
    again = segment(InputPair(raw[0], raw[1], grid), model, SegmentationSettings())
    assert any((again.instances.labels > 0)[blob])


def test_a_model_that_cannot_be_flipped_returns_an_unflipped_result(subject):
    flair, t1, blob, grid, model, result = subject
    constant = LesionModel(ConstantDetector(flair.shape, (15, 16, 17), (22, 23, 24)), size_config(), source="constant").eval()
    res = segment(InputPair(flair, t1, grid), constant, SegmentationSettings())
    cf = lesion_counterfactual(constant, res, 1, "remove", CounterfactualSettings(max_iter=3))
    assert not cf.flipped and not cf.passed and cf.iterations == 3
    assert cf.after.detected


def test_plan_refuses_what_cannot_be_done(subject):
    flair, t1, blob, grid, model, result = subject
    with pytest.raises(InstanceError, match="does not exist"):
        plan(result.instances, [7])
    with pytest.raises(InstanceError, match="nothing to add"):
        plan(result.instances, [1], "add")
    with pytest.raises(InstanceError, match="needs missed"):
        plan(result.instances, None, "add")
    assert plan(result.instances, None, "remove") == [(1, "remove")]
    empty = segment(InputPair(*subject_arrays(radius=0)[:2], grid), model, SegmentationSettings())
    with pytest.raises(InstanceError, match="no lesion"):
        plan(empty.instances, None)


def test_cancelling_stops_the_search(subject):
    flair, t1, blob, grid, model, result = subject
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        lesion_counterfactual(model, result, 1, "remove", CounterfactualSettings(), cancel=token)


def test_settings_are_checked():
    with pytest.raises(ParameterError, match="mode"):
        CounterfactualSettings(mode="shrink")
    with pytest.raises(ParameterError, match="step"):
        CounterfactualSettings(step_mm=0)
    with pytest.raises(ParameterError, match="maximum iterations"):
        CounterfactualSettings(max_iter=0)


def test_z_scored_models_see_the_same_counterfactual_through_the_fixed_normalisation(subject):
    flair, t1, blob, grid, model, result = subject
    flair = flair.copy()
    flair[2:, :, :12] -= 40.0  # a second tissue, so that the lesion is a small part of the brain's variance (as in MRI)
    brain = flair != 0
    mean, std = flair[brain].astype(np.float64).mean(), flair[brain].astype(np.float64).std()
    z = size_model(N, normalization="zscore-nonzero", t_low=(T_LOW - mean) / std, t_full=(T_FULL - mean) / std)
    res = segment(InputPair(flair, t1, grid), z, SegmentationSettings())
    cf = lesion_counterfactual(z, res, 1, "remove", CounterfactualSettings())
    assert cf.passed
    # the re-segmentation normalises the counterfactual afresh; the statistics drift is small here
    assert N - 10 < bright_load(original_raw(res, cf)[0]) < N + 1


def test_other_normalisations_must_be_linear_maps_normalisations_and_refuses_others():
    rng = np.random.default_rng(1)
    raw = rng.uniform(10, 50, (6, 7, 8))
    raw[0] = 0
    scale, offset, background = fit_linear_map(raw, np.where(raw != 0, 0.5 * raw - 3, 0))
    assert scale == pytest.approx(0.5) and offset == pytest.approx(-3) and background == 0
    with pytest.raises(ParameterError, match="not a per-channel linear map"):
        fit_linear_map(raw, np.sqrt(raw))


def test_scaling_and_squaring_matches_the_flow_of_the_velocity_field():
    mask = np.zeros((20, 21, 22), bool)
    mask[9:11, 9:11, 9:11] = True
    lattice = lesion_lattice(mask, (1, 1, 1), 3.0, 3.0)
    rng = np.random.default_rng(0)
    mats = [torch.as_tensor(upsampling_matrix(n, s)[:, 2:-2], dtype=torch.float64) for n, s in zip(lattice.shape, lattice.step)]
    free = torch.as_tensor(rng.normal(0, 1.0, (3,) + lattice.free_shape))
    v = torch.einsum("cabd,ia,jb,kd->cijk", free, *mats)
    u = exp_velocity(v, 7)
    # reference: each voxel's path under dx/dt = v(x) from t = 0 to 1, integrated by RK4 in 64 steps
    base = identity_grid(v.shape[1:], v.dtype)
    x, h = base.clone(), 1.0 / 64

    def velocity(points):
        return sample(v, points).permute(1, 2, 3, 0)

    for _ in range(64):
        k1 = velocity(x)
        k2 = velocity(x + 0.5 * h * k1)
        k3 = velocity(x + 0.5 * h * k2)
        k4 = velocity(x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    flow = (x - base).permute(3, 0, 1, 2)
    first_order = float((v - flow).abs().max())  # what a plain displacement u = v would miss
    assert float((u - flow).abs().max()) < 0.25 * first_order
    # the field is exactly zero on the box's border voxels
    for axis in (1, 2, 3):
        assert float(u.select(axis, 0).abs().max()) == 0 and float(u.select(axis, -1).abs().max()) == 0
