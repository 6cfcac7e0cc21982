"""Phantom generator: determinism, tissue contrasts, lesion placement, counts and volumes, settings errors."""

from __future__ import annotations

import numpy as np
import pytest

from LesionXAILib.errors import ParameterError
from LesionXAILib.instances import label_components
from LesionXAILib.phantom import PhantomSettings, PlacementSettings, generate_phantom
from LesionXAILib.phantom.lesion_placement import KINDS
from phantom_fixtures import SMALL_FOV, small_phantom, whole_brain_phantom


def test_same_seed_gives_identical_phantoms_and_different_seeds_differ():
    settings = PhantomSettings(n_lesions=5, fov_mm=SMALL_FOV)
    a = generate_phantom(21, settings)
    b = generate_phantom(21, settings)
    c = generate_phantom(22, settings)
    for name in ("flair", "t1", "lesions", "wm"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.geometry == b.geometry
    assert a.lesion_params == b.lesion_params
    assert not np.array_equal(a.flair, c.flair)
    assert not np.array_equal(a.lesions, c.lesions)


def test_lesion_count_does_not_change_the_subjects_anatomy():
    # independent random streams: the same subject with more lesions keeps its tissue maps
    a = generate_phantom(23, PhantomSettings(n_lesions=2, fov_mm=SMALL_FOV))
    b = generate_phantom(23, PhantomSettings(n_lesions=6, fov_mm=SMALL_FOV))
    assert np.array_equal(a.wm, b.wm)
    assert a.lesions.sum() < b.lesions.sum()


def test_arrays_are_float32_kji_on_the_geometry_and_skull_stripped():
    p = small_phantom()
    assert p.flair.dtype == np.float32 and p.t1.dtype == np.float32 and p.lesions.dtype == bool
    for arr in (p.flair, p.t1, p.lesions, p.wm, p.gm, p.csf):
        assert arr.shape == p.geometry.shape
    brain = p.flair > 0
    # background is exactly 0 in both sequences (z-scoring treats zeros as background)
    assert np.array_equal(brain, p.t1 > 0)
    assert not p.lesions[~brain].any()
    assert np.all(p.flair >= 0) and np.all(np.isfinite(p.flair)) and np.all(np.isfinite(p.t1))


def _median(image, mask):
    return float(np.median(image[mask]))


def test_tissue_contrasts_follow_mprage_and_flair_ordering():
    p = whole_brain_phantom()
    clean = ~p.lesions
    wm = (p.wm > 0.95) & clean
    gm = (p.gm > 0.95) & clean
    csf = (p.csf > 0.95) & clean
    assert wm.sum() > 1000 and gm.sum() > 1000 and csf.sum() > 1000
    # MPRAGE: WM bright, GM darker, CSF dark
    assert _median(p.t1, wm) > 1.2 * _median(p.t1, gm) > 1.2 * _median(p.t1, csf)
    # FLAIR: GM brighter than WM, CSF suppressed (darkest)
    assert _median(p.flair, gm) > 1.05 * _median(p.flair, wm) > 1.05 * 2 * _median(p.flair, csf)
    # lesions: hyperintense on FLAIR (brighter than GM too on average), hypointense on MPRAGE
    assert _median(p.flair, p.lesions) > _median(p.flair, gm)
    assert _median(p.t1, p.lesions) < 0.95 * _median(p.t1, wm)


def test_every_lesion_is_flair_hyper_and_mprage_hypo_against_its_surrounding_white_matter():
    from scipy import ndimage

    p = whole_brain_phantom()
    labels, n = label_components(p.lesions)
    assert n > 5
    for lab in range(1, n + 1):
        lesion = labels == lab
        ring = ndimage.binary_dilation(lesion, iterations=6) & ~ndimage.binary_dilation(p.lesions, iterations=2)
        nawm = ring & (p.wm > 0.9)
        if nawm.sum() < 20:
            continue
        core = lesion & ~ndimage.binary_erosion(lesion) if lesion.sum() < 30 else ndimage.binary_erosion(lesion)
        assert _median(p.flair, core) > 1.15 * _median(p.flair, nawm), lab
        assert _median(p.t1, core) < 0.99 * _median(p.t1, nawm), lab


def test_lesion_table_counts_kinds_and_white_matter_sites():
    p = whole_brain_phantom()
    rows = p.lesion_params
    assert len(rows) == 15
    assert {r["kind"] for r in rows} <= set(KINDS)
    assert sum(r["kind"] == "periventricular" for r in rows) >= 3
    lo, hi = PlacementSettings().volume_range_mm3
    for r in rows:
        assert lo <= r["volume_requested_mm3"] <= hi
        assert 0 < r["volume_mm3"] <= 1.3 * hi
        # centres lie in white matter (the table's centre is on the output grid, i,j,k)
        i, j, k = (int(round(v)) for v in r["center_ijk"])
        assert p.wm[k, j, i] >= 0.4, r
    total = sum(r["volume_mm3"] for r in rows)
    # lesions may merge where they touch, never grow: the mask holds at most the sum of their volumes
    assert p.lesions.sum() <= total + 1e-6
    assert p.lesions.sum() >= 0.8 * total


def test_default_lesion_count_is_realistic_and_explicit_counts_are_honoured():
    p = generate_phantom(31, PhantomSettings(fov_mm=(120.0, 140.0, 110.0)))
    assert 10 <= len(p.lesion_params) <= 25
    assert len(small_phantom(n_lesions=6).lesion_params) == 6
    empty = generate_phantom(31, PhantomSettings(n_lesions=0, fov_mm=SMALL_FOV))
    assert empty.lesion_params == [] and not empty.lesions.any()


def test_requested_volumes_are_met_for_free_standing_ovoids():
    settings = PhantomSettings(
        n_lesions=8,
        fov_mm=(96.0, 96.0, 96.0),
        lesions=PlacementSettings(volume_range_mm3=(40.0, 400.0), touching_fraction=0.0, irregular_fraction=0.0),
    )
    p = generate_phantom(41, settings)
    assert len(p.lesion_params) == 8
    for r in p.lesion_params:
        assert 40.0 <= r["volume_requested_mm3"] <= 400.0
        # voxelisation and CSF clipping (periventricular lesions stop at the ventricle) cost some volume
        assert 0.5 * r["volume_requested_mm3"] <= r["volume_mm3"] <= 1.2 * r["volume_requested_mm3"], r


def test_touching_lesions_merge_with_the_lesion_they_touch():
    settings = PhantomSettings(
        n_lesions=6, fov_mm=(96.0, 96.0, 96.0), lesions=PlacementSettings(touching_fraction=1.0, volume_range_mm3=(30, 300))
    )
    p = generate_phantom(43, settings)
    rows = {r["id"]: r for r in p.lesion_params}
    touching = [r for r in rows.values() if r["touches"] is not None]
    assert len(touching) >= 3
    labels, _ = label_components(p.lesions)

    def component(r):
        i, j, k = (int(round(v)) for v in r["center_ijk"])
        return labels[k, j, i]

    merged = sum(1 for r in touching if component(r) and component(r) == component(rows[r["touches"]]))
    assert merged >= len(touching) - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_lesions": -1},
        {"n_lesions": 500},
        {"spacing": (1.0, 0.0, 1.0)},
        {"spacing": (1.0, 1.0)},
        {"fov_mm": (4.0, 64.0, 64.0)},
        {"contrast_jitter": 3.0},
        {"lesions": PlacementSettings(volume_range_mm3=(50.0, 10.0))},
    ],
)
def test_bad_settings_raise_a_parameter_error(kwargs):
    with pytest.raises(ParameterError, match="phantom"):
        PhantomSettings(**kwargs)


def test_bad_seed_raises_a_parameter_error():
    with pytest.raises(ParameterError, match="seed"):
        generate_phantom(-3)
