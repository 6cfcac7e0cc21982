"""Geometry round-trips, MPRAGE resampling and input validation errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from engine_fixtures import OBLIQUE_DIRECTION, make_image
from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry, array_to_image
from LesionXAILib.image_io import check_output_dir, load_pair, read_image, read_label_image, write_volume

SPACING = (0.9, 1.3, 3.0)
ORIGIN = (-91.5, 12.25, -40.0)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_read_round_trip_oblique_anisotropic(tmp_path, suffix):
    rng = np.random.default_rng(1)
    arr = rng.random((7, 9, 11)).astype(np.float32) + 1
    geom = Geometry.from_image(make_image(arr, SPACING, ORIGIN, OBLIQUE_DIRECTION))
    p = write_volume(arr, geom, tmp_path / f"out{suffix}")
    back = read_image(p, "round trip")
    g2 = Geometry.from_image(back)
    assert g2.size == (11, 9, 7)
    np.testing.assert_allclose(g2.spacing, SPACING, atol=1e-5)
    np.testing.assert_allclose(g2.origin, ORIGIN, atol=1e-4)
    np.testing.assert_allclose(g2.direction, OBLIQUE_DIRECTION, atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), arr, rtol=1e-6)


def test_ijk_to_ras_matches_simpleitk_physical_points():
    img = make_image(np.ones((5, 6, 7)), SPACING, ORIGIN, OBLIQUE_DIRECTION)
    geom = Geometry.from_image(img)
    for ijk in [(0, 0, 0), (6, 5, 4), (3, 1, 2)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        ras = geom.ijk_to_ras_points(np.array([ijk]))[0]
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)
        np.testing.assert_allclose(geom.ras_to_ijk_points(ras[None])[0], ijk, atol=1e-9)
    again = Geometry.from_ijk_to_ras(geom.ijk_to_ras(), geom.size)
    assert again.almost_equal(geom, rtol=1e-9, atol=1e-9)


def test_integer_label_output_keeps_geometry(tmp_path):
    labels = np.zeros((6, 8, 10), np.int32)
    labels[2:4, 3:5, 4:6] = 7
    geom = Geometry.from_image(make_image(labels, SPACING, ORIGIN, OBLIQUE_DIRECTION))
    p = write_volume(labels, geom, tmp_path / "labels.nii.gz")
    back = sitk.ReadImage(str(p))
    assert Geometry.from_image(back).almost_equal(geom, atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(back), labels)


def test_mismatched_mprage_is_resampled_linearly(tmp_path, caplog):
    # a linear intensity ramp in physical space is reproduced exactly by linear interpolation
    flair_img = make_image(np.random.default_rng(3).random((20, 22, 24)) + 1, (1.0, 1.0, 1.0), (0, 0, 0))
    t1_shape = (14, 16, 18)
    t1_img = make_image(np.zeros(t1_shape), (2.0, 1.5, 2.0), (-3.0, -2.0, -4.0))
    idx = np.indices(t1_shape)  # k, j, i
    phys = [np.array(t1_img.GetOrigin())[a] + np.array(t1_img.GetSpacing())[a] * idx[2 - a] for a in range(3)]
    ramp = 10 + 0.5 * phys[0] + 0.25 * phys[1] - 0.3 * phys[2]
    t1_img = make_image(ramp, (2.0, 1.5, 2.0), (-3.0, -2.0, -4.0))
    fp, tp = tmp_path / "flair.nii.gz", tmp_path / "t1.nii.gz"
    sitk.WriteImage(flair_img, str(fp))
    sitk.WriteImage(t1_img, str(tp))
    pair = load_pair(fp, tp)
    assert pair.t1.shape == pair.flair.shape == (20, 22, 24)
    assert any("resampled" in n for n in pair.notes)
    k, j, i = np.indices(pair.t1.shape)
    expect = 10 + 0.5 * i + 0.25 * j - 0.3 * k
    inside = (i <= 30) & (j <= 20) & (k <= 22)  # inside the MPRAGE field of view
    np.testing.assert_allclose(pair.t1[inside], expect[inside], atol=1e-3)


def _write(tmp_path, name, img):
    p = tmp_path / name
    sitk.WriteImage(img, str(p))
    return p


def test_bad_inputs_give_clear_errors(tmp_path):
    good = _write(tmp_path, "good.nii.gz", make_image(np.random.default_rng(0).random((8, 8, 8)) + 1))
    two_d = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((8, 8)).astype(np.float32)), str(two_d))
    flat = _write(tmp_path, "flat.nii.gz", make_image(np.ones((4, 1, 6))))
    nan_arr = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    nan_arr[2, 3, 4] = np.nan
    nan = _write(tmp_path, "nan.nii.gz", make_image(nan_arr))
    const = _write(tmp_path, "const.nii.gz", make_image(np.full((8, 8, 8), 3.0)))
    vec = sitk.Compose([make_image(np.ones((4, 4, 4))), make_image(np.zeros((4, 4, 4)))])
    vector = _write(tmp_path, "twochannel.nrrd", vec)
    far = _write(tmp_path, "far.nii.gz", make_image(np.random.default_rng(2).random((8, 8, 8)) + 1, origin=(500, 500, 500)))
    wrong_ext = tmp_path / "scan.png"
    wrong_ext.write_bytes(b"not an image")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not nifti")

    cases = [
        (lambda: read_image(two_d, "FLAIR"), "slice.nii.gz", "2D"),
        (lambda: read_image(flat, "FLAIR"), "flat.nii.gz", "2D slice"),
        (lambda: read_image(nan, "FLAIR"), "nan.nii.gz", "NaN"),
        (lambda: read_image(const, "MPRAGE"), "const.nii.gz", "constant"),
        (lambda: read_image(vector, "FLAIR"), "twochannel.nrrd", "components"),
        (lambda: read_image(tmp_path / "missing.nii.gz", "FLAIR"), "missing.nii.gz", "not found"),
        (lambda: read_image(wrong_ext, "FLAIR"), "scan.png", "unsupported file type"),
        (lambda: read_image(garbage, "FLAIR"), "garbage.nii.gz", "cannot be read"),
        (lambda: load_pair(good, far), "far.nii.gz", "does not overlap"),
    ]
    for fn, name, phrase in cases:
        with pytest.raises(InputImageError) as info:
            fn()
        msg = str(info.value)
        assert name in msg and phrase in msg, msg
        assert "\n" not in msg


def test_outputs_never_overwrite_inputs(tmp_path):
    arr = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32) + 1
    img = make_image(arr)
    src = _write(tmp_path, "flair.nii.gz", img)
    before = src.read_bytes()
    with pytest.raises(InputImageError, match="refusing to overwrite"):
        write_volume(arr * 2, Geometry.from_image(img), src, protected=[src])
    assert src.read_bytes() == before
    with pytest.raises(InputImageError, match="holds the input"):
        check_output_dir(tmp_path, [src])
    assert check_output_dir(tmp_path / "out", [src]).is_dir()
    assert check_output_dir(tmp_path, [src], allow_input_dir=True) == tmp_path


def test_ground_truth_on_other_grid_is_resampled_nearest(tmp_path):
    ref = Geometry.from_image(make_image(np.ones((10, 10, 10)), (1, 1, 1)))
    gt = np.zeros((5, 5, 5), np.uint8)
    gt[2, 2, 2] = 1
    p = _write(tmp_path, "gt.nii.gz", sitk.Cast(make_image(gt, (2, 2, 2)), sitk.sitkUInt8))
    mask = read_label_image(p, ref)
    assert mask.shape == ref.shape and mask.dtype == bool
    assert mask[4, 4, 4] and 1 <= mask.sum() <= 27


def test_array_to_image_rejects_wrong_shape():
    geom = Geometry.from_image(make_image(np.ones((4, 5, 6))))
    with pytest.raises(ValueError, match="does not match"):
        array_to_image(np.ones((6, 5, 4)), geom)
