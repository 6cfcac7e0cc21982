"""Balls in mm, one-transform dilation and shell labels, including anisotropic spacing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.image_io import write_volume
from LesionXAILib.probes import ContextSettings, context_probe
from LesionXAILib.probes.structuring import (
    ball_element,
    dilate_mm,
    distance_from_mask_mm,
    shell_labels,
    within_radius,
)
from probes_fixtures import cube_mask, detector_model, geometry_for, lesion_image


def brute_force_dilation(mask: np.ndarray, radius: float, spacing_kji) -> np.ndarray:
    """Return voxels whose centre lies within ``radius`` mm of some mask voxel centre (explicit loops)."""
    pts = np.argwhere(mask) * np.asarray(spacing_kji)
    grid = np.indices(mask.shape).reshape(3, -1).T * np.asarray(spacing_kji)
    out = np.zeros(grid.shape[0], dtype=bool)
    for p in pts:
        out |= np.sqrt(((grid - p) ** 2).sum(axis=1)) <= radius + 1e-9
    return out.reshape(mask.shape)


@pytest.mark.parametrize("spacing_kji", [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0), (1.2, 0.7, 0.9)])
def test_distance_dilation_matches_ball_dilation_and_brute_force(spacing_kji):
    rng = np.random.default_rng(1)
    mask = np.zeros((14, 17, 15), dtype=bool)
    mask[5:8, 6:10, 6:9] = rng.random((3, 4, 3)) > 0.4
    mask[6, 7, 7] = True
    for r in (0.0, 1.0, 1.5, 2.9, 3.0, 4.2):
        fast = dilate_mm(mask, r, spacing_kji)
        via_element = ndimage.binary_dilation(mask, structure=ball_element(r, spacing_kji))
        np.testing.assert_array_equal(fast, via_element, err_msg=f"r={r}")
        np.testing.assert_array_equal(fast, brute_force_dilation(mask, r, spacing_kji), err_msg=f"r={r}")


def test_ball_element_is_ellipsoidal_in_voxels_for_anisotropic_spacing():
    element = ball_element(3.0, (3.0, 1.0, 1.0))  # k spacing 3 mm, j and i 1 mm
    assert element.shape == (3, 7, 7)
    assert element[0, 3, 3] and element[2, 3, 3]  # 3 mm along k: one slice away
    assert element[1, 3, 0] and element[1, 0, 3]  # 3 mm along i and j: three voxels away
    assert not element[0, 3, 4]  # sqrt(9 + 1) > 3
    disc = sum(1 for a in range(-3, 4) for b in range(-3, 4) if a * a + b * b <= 9)  # 29 in-plane offsets
    assert element.sum() == disc + 2  # plus the voxel above and below the centre


def test_shell_labels_on_anisotropic_grid_are_ellipsoids_in_voxel_space():
    shape = (9, 21, 21)
    mask = np.zeros(shape, dtype=bool)
    mask[4, 10, 10] = True
    spacing = (3.0, 1.0, 1.0)
    radii = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    labels = shell_labels(distance_from_mask_mm(mask, spacing), radii)
    assert labels.dtype == np.int16
    assert labels[4, 10, 10] == 1  # the lesion: radius 0 -> label 1
    assert labels[5, 10, 10] == 4  # one slice away = 3 mm -> radius 3 -> label 4
    assert labels[4, 10, 13] == 4  # three voxels along i = 3 mm
    assert labels[4, 13, 10] == 4
    assert labels[6, 10, 10] == 7  # 6 mm along k
    assert labels[4, 10, 16] == 7  # 6 mm along i
    assert labels[7, 10, 10] == 0  # 9 mm: beyond the largest radius
    # every label equals the index of the smallest radius >= the physical distance, by brute force
    kk, jj, ii = np.indices(shape)
    d = np.sqrt(((kk - 4) * 3.0) ** 2 + (jj - 10) ** 2 + (ii - 10) ** 2)
    expected = np.zeros(shape, dtype=np.int16)
    for idx in range(len(radii) - 1, -1, -1):
        expected[d <= radii[idx] + 1e-9] = idx + 1
    np.testing.assert_array_equal(labels, expected)


def test_shell_labels_need_increasing_radii():
    d = np.zeros((2, 2, 2), dtype=np.float32)
    with pytest.raises(ParameterError):
        shell_labels(d, [])
    with pytest.raises(ParameterError):
        shell_labels(d, [2.0, 1.0])


def test_bad_structuring_input_is_rejected():
    with pytest.raises(ParameterError, match="spacing"):
        distance_from_mask_mm(np.ones((2, 2, 2), bool), (1.0, 0.0, 1.0))
    with pytest.raises(InstanceError, match="empty"):
        distance_from_mask_mm(np.zeros((2, 2, 2), bool), (1.0, 1.0, 1.0))
    with pytest.raises(ParameterError):
        dilate_mm(np.ones((2, 2, 2), bool), -1.0, (1.0, 1.0, 1.0))
    with pytest.raises(ParameterError):
        ball_element(float("nan"), (1.0, 1.0, 1.0))


def test_within_radius_keeps_exact_boundary_voxels():
    assert within_radius(np.array([1.0, 1.0000000001, 1.01]), 1.0).tolist() == [True, True, False]


def test_context_shells_volume_has_input_geometry_and_anisotropic_radii(tmp_path):
    shape = (12, 24, 22)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated, to catch a dropped direction
    geometry = geometry_for(shape, spacing_ijk=(1.0, 1.0, 3.0), origin=(-20.5, 7.0, 3.25), direction=direction)
    mask = cube_mask(shape, (6, 12, 11), 0)
    curve = context_probe(
        detector_model(h=1), lesion_image(shape, mask), mask, geometry, ContextSettings.up_to(6, fill="zero")
    )
    shells = curve.shells(geometry)
    assert shells.shape == geometry.shape and shells.dtype == np.int16
    d = np.sqrt(((np.indices(shape)[0] - 6) * 3.0) ** 2 + (np.indices(shape)[1] - 12) ** 2 + (np.indices(shape)[2] - 11) ** 2)
    expected = np.zeros(shape, dtype=np.int16)
    for idx in range(6, -1, -1):
        expected[d <= idx + 1e-9] = idx + 1
    np.testing.assert_array_equal(shells, expected)
    assert curve.shell_legend() == {i + 1: float(i) for i in range(7)}
    path = write_volume(shells, geometry, tmp_path / "context_shells.nii.gz")
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == geometry.size
    np.testing.assert_allclose(image.GetSpacing(), geometry.spacing)
    np.testing.assert_allclose(image.GetOrigin(), geometry.origin)
    np.testing.assert_allclose(image.GetDirection(), geometry.direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), shells)
    with pytest.raises(ParameterError, match="grid"):
        curve.shells(geometry_for((5, 5, 5)))


def test_context_shells_are_cut_at_the_image_border():
    shape = (10, 10, 10)
    mask = cube_mask(shape, (1, 1, 1), 0)  # near a corner: the crop is padded outside the image
    curve = context_probe(detector_model(h=1), lesion_image(shape, mask), mask, geometry_for(shape), ContextSettings.up_to(4))
    shells = curve.shells()
    assert shells.shape == shape
    kk, jj, ii = np.indices(shape)
    d = np.sqrt((kk - 1) ** 2 + (jj - 1) ** 2 + (ii - 1) ** 2)
    assert np.all((shells > 0) == (d <= 4 + 1e-9))
