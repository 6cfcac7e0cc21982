"""Lesion mimics: anatomical location rules, FLAIR brightness, determinism, no overlap with lesions, flag off = old phantom."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from LesionXAILib.cli.main import main
from LesionXAILib.instances import label_components
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.phantom.mimics import MIMIC_KINDS
from phantom_fixtures import SMALL_FOV

SEED = 11


@functools.lru_cache(maxsize=None)
def _pair(seed: int = SEED):
    """Return the same whole-brain subject with and without mimics."""
    on = generate_phantom(seed, PhantomSettings(n_lesions=15))
    off = generate_phantom(seed, PhantomSettings(n_lesions=15, mimics=False))
    return on, off


def _kind(p, name):
    return p.mimics == 1 + MIMIC_KINDS.index(name)


def test_mimics_are_on_by_default_and_off_writes_none():
    on, off = _pair()
    assert PhantomSettings().mimics is True
    assert off.mimics is None and off.mimic_params == []
    assert on.mimics.dtype == np.uint8 and on.mimics.shape == on.geometry.shape
    kinds = {row["kind"] for row in on.mimic_params}
    assert {"cap", "cortical", "choroid", "flow"} <= kinds
    for name in kinds:
        assert _kind(on, name).sum() > 0, name


def test_mimics_never_touch_lesions_and_are_not_ground_truth():
    on, off = _pair()
    assert np.array_equal(on.lesions, off.lesions)
    assert on.lesion_params == off.lesion_params
    mimic = on.mimics > 0
    assert not (mimic & on.lesions).any()
    # kept >= 2 mm from any lesion voxel (distance computed here, on the output grid)
    dist = ndimage.distance_transform_edt(~on.lesions, sampling=on.geometry.spacing_kji)
    assert dist[mimic].min() >= 2.0


def test_flair_changes_only_around_mimics_and_tissue_maps_are_unchanged():
    on, off = _pair()
    changed = on.flair != off.flair
    near = ndimage.binary_dilation(on.mimics > 0, iterations=3)
    assert changed.any() and not (changed & ~near).any()
    for name in ("wm", "gm", "csf"):
        assert np.array_equal(getattr(on, name), getattr(off, name)), name


def test_mimics_are_as_bright_as_lesions_on_flair():
    on, _ = _pair()
    wm = (on.wm > 0.95) & ~on.lesions & (on.mimics == 0)
    wm_level = np.median(on.flair[wm])
    lesion_level = np.median(on.flair[on.lesions]) / wm_level
    for name in ("cap", "cortical"):
        level = np.median(on.flair[_kind(on, name)]) / wm_level
        # intensity alone cannot tell them apart: within the lesions' own range
        assert 1.25 <= level and abs(level - lesion_level) < 0.4, (name, level, lesion_level)


def test_caps_hug_the_ventricles_deep_in_the_brain():
    on, _ = _pair()
    cap = _kind(on, "cap")
    brain = on.flair > 0
    depth = ndimage.distance_transform_edt(brain)
    ventricles = (on.csf > 0.5) & (depth > 15)
    to_ventricle = ndimage.distance_transform_edt(~ventricles)
    assert np.percentile(to_ventricle[cap], 90) <= 4.0
    assert np.median(depth[cap]) > 15.0
    # MPRAGE isointense to white matter (lesions are hypointense)
    wm = (on.wm > 0.95) & ~on.lesions & (on.mimics == 0)
    assert np.median(on.t1[cap]) > 0.85 * np.median(on.t1[wm]) > np.median(on.t1[on.lesions])


def test_cortical_mimics_follow_grey_matter_and_choroid_lies_in_csf():
    on, _ = _pair()
    cortical, choroid = _kind(on, "cortical"), _kind(on, "choroid")
    assert np.median(on.gm[cortical]) >= 0.5 and np.median(on.wm[cortical]) < 0.5
    assert np.median(on.csf[choroid]) >= 0.5
    depth = ndimage.distance_transform_edt(on.flair > 0)
    assert np.median(depth[choroid]) > 15.0


def test_septum_lies_on_the_midline():
    for seed in (SEED, 12, 13, 14):
        on, _ = _pair(seed) if seed == SEED else (generate_phantom(seed, PhantomSettings(n_lesions=2)), None)
        septum = _kind(on, "septum")
        if not septum.any():
            continue
        mid_i = np.argwhere(on.flair > 0)[:, 2].mean()
        i = np.argwhere(septum)[:, 2]
        assert np.abs(i - mid_i).max() <= 4.0
        return
    pytest.fail("no septum mimic in four subjects")


def test_flow_ghosts_touch_flair_only_and_repeat_along_i():
    on, off = _pair()
    flow = _kind(on, "flow")
    assert np.array_equal(on.t1[flow], off.t1[flow])
    labels, n = label_components(flow, 26)
    centres = np.array([np.argwhere(labels == c).mean(axis=0) for c in range(1, n + 1)])
    # each ghost train shares its k,j with other spots: some pair differs only along i
    same_line = [
        (a, b) for a in range(n) for b in range(a + 1, n)
        if np.abs(centres[a, :2] - centres[b, :2]).max() < 2.0 and abs(centres[a, 2] - centres[b, 2]) >= 8.0
    ]  # fmt: skip
    assert same_line


def test_mimics_are_deterministic_per_seed():
    settings = PhantomSettings(n_lesions=3, fov_mm=(96.0, 96.0, 96.0))
    a, b, c = generate_phantom(31, settings), generate_phantom(31, settings), generate_phantom(32, settings)
    assert np.array_equal(a.mimics, b.mimics) and np.array_equal(a.flair, b.flair)
    assert a.mimic_params == b.mimic_params
    assert not np.array_equal(a.mimics, c.mimics)


# Sums of the phantoms made by the generator before mimics existed (commit 5a4e26c), recorded with
# float64 accumulation; mimics=False must reproduce them.
PRE_MIMICS = {
    5: (dict(n_lesions=6, fov_mm=SMALL_FOV), 152557378.13539505, 233600513.562912, 1410),
    7: (dict(n_lesions=4, fov_mm=SMALL_FOV, spacing=(1.0, 1.0, 3.0)), 28011876.89386511, 66783651.38104248, 127),
}


@pytest.mark.parametrize("seed", sorted(PRE_MIMICS))
def test_flag_off_reproduces_the_pre_mimics_phantom(seed):
    kwargs, flair_sum, t1_sum, lesion_voxels = PRE_MIMICS[seed]
    p = generate_phantom(seed, PhantomSettings(**kwargs, mimics=False))
    assert p.flair.astype(np.float64).sum() == pytest.approx(flair_sum, rel=1e-9)
    assert p.t1.astype(np.float64).sum() == pytest.approx(t1_sum, rel=1e-9)
    assert int(p.lesions.sum()) == lesion_voxels


def test_phantom_command_writes_mimics_and_no_mimics_flag(tmp_path):
    args = ["-q", "phantom", "--seed", "4", "--lesions", "3", "--fov", "96", "96", "96"]
    assert main(args + ["--out", str(tmp_path / "on")]) == 0
    assert main(args + ["--out", str(tmp_path / "off"), "--no-mimics"]) == 0
    assert not (tmp_path / "off" / "mimics.nii.gz").exists()
    mimics = sitk.ReadImage(str(tmp_path / "on" / "mimics.nii.gz"))
    flair = sitk.ReadImage(str(tmp_path / "on" / "flair.nii.gz"))
    assert mimics.GetOrigin() == flair.GetOrigin() and mimics.GetSpacing() == flair.GetSpacing()
    info = json.loads((tmp_path / "on" / "lesions.json").read_text())
    assert info["settings"]["mimics"] is True and info["mimics"]
    assert sum(info["mimic_voxels"].values()) == int((sitk.GetArrayFromImage(mimics) > 0).sum())
    off = json.loads((tmp_path / "off" / "lesions.json").read_text())
    assert off["settings"]["mimics"] is False and "mimics" not in off
