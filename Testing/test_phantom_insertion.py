"""insert_lesion / pick_nawm_center: inputs untouched, lesion in white matter with the asked contrast and size."""

from __future__ import annotations

import numpy as np
import pytest

from LesionXAILib.errors import ParameterError
from LesionXAILib.instances import label_components
from LesionXAILib.phantom import insert_lesion, pick_nawm_center
from phantom_fixtures import small_phantom


def _site(p, seed=0):
    return pick_nawm_center(p.wm, p.geometry, p.lesions, seed=seed, min_distance_mm=8.0)


def test_pick_nawm_center_is_in_white_matter_away_from_lesions():
    from scipy import ndimage

    p = small_phantom()
    i, j, k = _site(p)
    assert p.wm[k, j, i] >= 0.9
    distance = ndimage.distance_transform_edt(~p.lesions)
    assert distance[k, j, i] >= 8.0
    assert _site(p, seed=0) == (i, j, k)


def test_insert_lesion_leaves_its_inputs_untouched():
    p = small_phantom()
    flair, t1, wm = p.flair.copy(), p.t1.copy(), p.wm.copy()
    new_flair, new_t1, mask = insert_lesion(p.flair, p.t1, p.geometry, _site(p), 60.0, wm=p.wm, seed=3)
    assert np.array_equal(p.flair, flair) and np.array_equal(p.t1, t1) and np.array_equal(p.wm, wm)
    assert new_flair is not p.flair and new_t1 is not p.t1
    assert mask.any()


def test_inserted_lesion_is_one_white_matter_blob_with_the_asked_contrast_and_size():
    p = small_phantom()
    center = _site(p)
    volume = 80.0
    new_flair, new_t1, mask = insert_lesion(
        p.flair, p.t1, p.geometry, center, volume, flair_contrast=1.8, t1_contrast=0.7, wm=p.wm, seed=1, heterogeneity=0.0
    )
    _, n = label_components(mask)
    assert n == 1
    i, j, k = center
    assert mask[k, j, i]
    assert p.wm[mask].mean() > 0.8
    assert 0.75 * volume <= mask.sum() * p.geometry.voxel_volume <= 1.25 * volume
    # away from the lesion box nothing changes
    changed = (new_flair != p.flair) | (new_t1 != p.t1)
    zz, yy, xx = np.nonzero(changed)
    assert max(abs(zz - k).max(), abs(yy - j).max(), abs(xx - i).max()) <= 10
    # contrast: ratio of lesion core to the original NAWM there is close to the asked ratio
    core = mask & (p.wm > 0.95)
    assert np.median(new_flair[core] / p.flair[core]) == pytest.approx(1.8, rel=0.12)
    assert np.median(new_t1[core] / p.t1[core]) == pytest.approx(0.7, rel=0.12)


def test_insertion_is_deterministic_and_honours_anisotropic_spacing():
    p = small_phantom(seed=7, n_lesions=4, spacing=(1.0, 1.0, 3.0))
    center = pick_nawm_center(p.wm, p.geometry, p.lesions, seed=2, min_distance_mm=6.0, min_wm=0.8)
    a = insert_lesion(p.flair, p.t1, p.geometry, center, 150.0, seed=4, shape="sphere")
    b = insert_lesion(p.flair, p.t1, p.geometry, center, 150.0, seed=4, shape="sphere")
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    mask = a[2]
    # a 150 mm^3 sphere (radius 3.3 mm) spans about 2-3 slices of 3 mm but 6-7 voxels in-plane
    k_extent = np.ptp(np.nonzero(mask)[0]) + 1
    i_extent = np.ptp(np.nonzero(mask)[2]) + 1
    assert k_extent <= 3 and i_extent >= 5
    assert 0.6 * 150 <= mask.sum() * p.geometry.voxel_volume <= 1.4 * 150


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"center_ijk": (500, 10, 10)}, "outside"),
        ({"volume_mm3": 0.0}, "volume"),
        ({"flair_contrast": -1.0}, "flair_contrast"),
        ({"shape": "cube"}, "shape"),
    ],
)
def test_insert_lesion_rejects_bad_arguments(kwargs, match):
    p = small_phantom()
    args = {"center_ijk": _site(p), "volume_mm3": 20.0}
    args.update(kwargs)
    with pytest.raises(ParameterError, match=match):
        insert_lesion(p.flair, p.t1, p.geometry, **args)


def test_insert_lesion_rejects_arrays_off_the_grid():
    p = small_phantom()
    with pytest.raises(ParameterError, match="MPRAGE"):
        insert_lesion(p.flair, p.t1[:-1], p.geometry, _site(p), 20.0)
