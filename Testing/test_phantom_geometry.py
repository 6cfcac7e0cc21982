"""Phantom geometry: MNI alignment, anisotropic spacing, padding, and a write/read round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LesionXAILib.geometry import Geometry
from LesionXAILib.image_io import load_pair, read_label_image
from LesionXAILib.instances import label_components
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.phantom.anatomy import load_anatomy, template_path
from phantom_fixtures import SMALL_FOV, small_phantom


def _lps_centroid(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    kji = np.array(np.nonzero(mask), dtype=float).mean(axis=1)
    m = geometry.ijk_to_lps()
    return m[:3, :3] @ kji[::-1] + m[:3, 3]


def test_grid_keeps_the_template_direction_and_1mm_spacing():
    template = Geometry.from_image(sitk.ReadImage(str(template_path("t1"))))
    p = small_phantom()
    assert p.geometry.direction == template.direction
    assert p.geometry.spacing == (1.0, 1.0, 1.0)
    # the cropped grid's voxels sit on the template's voxel lattice
    offset = np.linalg.solve(template.ijk_to_lps()[:3, :3], np.subtract(p.geometry.origin, template.origin))
    assert np.allclose(offset, np.round(offset), atol=1e-6)
    assert p.geometry.size == (64, 64, 64)


def test_whole_brain_grid_is_cropped_around_the_brain():
    anatomy = load_anatomy()
    p = generate_phantom(13, PhantomSettings(n_lesions=0))
    brain = p.flair > 0
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        filled = np.flatnonzero(brain.any(axis=other))
        margin_low, margin_high = filled[0], brain.shape[axis] - 1 - filled[-1]
        assert margin_low <= p.settings.margin_voxels and margin_high <= p.settings.margin_voxels
    # the brain is deformed, not moved away: its centroid stays within a few mm of the template's
    template_center = _lps_centroid(anatomy.map("mask") > 0.5, anatomy.geometry)
    assert np.linalg.norm(_lps_centroid(brain, p.geometry) - template_center) < 6.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 3.0), (0.8, 1.25, 2.0)])
def test_anisotropic_phantoms_occupy_the_same_physical_space(spacing):
    iso = small_phantom(seed=7, n_lesions=4)
    aniso = small_phantom(seed=7, n_lesions=4, spacing=spacing)
    assert aniso.geometry.spacing == spacing
    assert aniso.geometry.direction == iso.geometry.direction
    expected = tuple(int(round(64 / s)) for s in spacing)
    assert aniso.geometry.size == expected
    # the same subject: every lesion and the brain sit at the same physical place on both grids
    assert np.linalg.norm(_lps_centroid(aniso.flair > 0, aniso.geometry) - _lps_centroid(iso.flair > 0, iso.geometry)) < 1.0
    iso_labels, n_iso = label_components(iso.lesions)
    aniso_labels, n_aniso = label_components(aniso.lesions)
    assert n_iso == n_aniso == 4
    aniso_centres = [_lps_centroid(aniso_labels == lab, aniso.geometry) for lab in range(1, n_aniso + 1)]
    for lab in range(1, n_iso + 1):
        centre = _lps_centroid(iso_labels == lab, iso.geometry)
        assert min(np.linalg.norm(centre - c) for c in aniso_centres) < 1.0
    # thick slices lose some lesion volume to partial voluming (voxels must be >= 50 % lesion)
    vol_iso = iso.lesions.sum() * iso.geometry.voxel_volume
    vol_aniso = aniso.lesions.sum() * aniso.geometry.voxel_volume
    assert 0.6 * vol_iso < vol_aniso < 1.2 * vol_iso


def test_random_padding_shifts_the_origin_but_not_the_anatomy():
    plain = generate_phantom(9, PhantomSettings(n_lesions=3, fov_mm=SMALL_FOV))
    padded = generate_phantom(9, PhantomSettings(n_lesions=3, fov_mm=SMALL_FOV, random_pad_voxels=6))
    assert padded.geometry.size != plain.geometry.size
    assert np.allclose(_lps_centroid(padded.lesions, padded.geometry), _lps_centroid(plain.lesions, plain.geometry))
    assert padded.lesions.sum() == plain.lesions.sum()


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 3.0)])
def test_written_files_round_trip_with_matching_geometry(tmp_path, spacing):
    p = small_phantom(seed=7, n_lesions=4, spacing=spacing)
    paths = p.write(tmp_path / "ph", tissue=True)
    assert {"flair", "t1", "lesions", "json", "wm", "gm", "csf"} <= set(paths)
    for name in ("flair", "t1", "lesions", "wm"):
        image = sitk.ReadImage(str(paths[name]))
        assert Geometry.from_image(image).almost_equal(p.geometry, atol=1e-4), name
    pair = load_pair(paths["flair"], paths["t1"])
    assert pair.notes == []  # same grid: no resampling happened
    assert np.array_equal(pair.flair, p.flair) and np.array_equal(pair.t1, p.t1)
    assert np.array_equal(read_label_image(paths["lesions"], pair.geometry), p.lesions)
    info = json.loads(paths["json"].read_text())
    assert info["seed"] == 7 and len(info["lesions"]) == len(p.lesion_params)
    assert info["geometry"]["spacing"] == list(spacing)
    # table centres in RAS agree with the written geometry
    for row in info["lesions"]:
        ras = pair.geometry.ijk_to_ras_points(np.array([row["center_ijk"]]))[0]
        assert np.allclose(ras, row["center_ras"], atol=1e-2)
