"""Synthetic-lesion probe: exact agreement with the full pipeline, contrast response, positions, files, CLI."""

from __future__ import annotations

import csv
import functools
import json

import numpy as np
import pytest
import torch

pytest.importorskip("LesionXAILib.phantom", reason="needs the phantom generator (branch phantom)")

from LesionXAILib.cli.main import main  # noqa: E402
from LesionXAILib.errors import ParameterError  # noqa: E402
from LesionXAILib.image_io import write_volume  # noqa: E402
from LesionXAILib.lesion_model import LesionModel  # noqa: E402
from LesionXAILib.matching import voxel_dice  # noqa: E402
from LesionXAILib.normalization import zscore_nonzero  # noqa: E402
from LesionXAILib.phantom import PhantomSettings, generate_phantom  # noqa: E402
from LesionXAILib.probes import ContextSettings, SyntheticSettings, synthetic_lesion_probe  # noqa: E402
from LesionXAILib.probes.white_matter import estimate_white_matter, nawm_candidates, pick_positions  # noqa: E402
from LesionXAILib.segmentation import SegmentationSettings, segment  # noqa: E402
from engine_fixtures import tiny_model  # noqa: E402
from probes_fixtures import detector_config  # noqa: E402


@functools.lru_cache(maxsize=None)
def phantom():
    return generate_phantom(5, PhantomSettings(n_lesions=6, fov_mm=(64.0, 64.0, 64.0)))


class FlairThreshold(torch.nn.Module):
    """logit = 10 (FLAIR - level): a voxel is lesion iff its normalised FLAIR exceeds ``level``."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = float(level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * (x[:, 0:1] - self.level)


def flair_level(p, ratio: float) -> float:
    """Return the normalised FLAIR of ``ratio`` times the median white-matter FLAIR of phantom ``p``."""
    flair = p.flair[p.flair != 0].astype(np.float64)
    wm = float(np.median(p.flair[p.wm >= 0.9]))
    return float((ratio * wm - flair.mean()) / flair.std())


def test_trials_match_the_full_pipeline_on_the_modified_subject():
    p = phantom()
    model = tiny_model(threshold=0.5, roi_size=(64, 64, 64))  # one window: the pipeline is one forward pass
    settings = SyntheticSettings(volumes_mm3=(8.0, 60.0), flair_contrasts=(1.5,), n_positions=1, seed=3)
    result = synthetic_lesion_probe(model, p.pair(), settings, wm=p.wm, exclude=p.lesions)
    assert len(result.trials) == 2 and result.wm_source == "given"
    for trial in result.trials:
        pair, mask = result.subject(p.pair(), trial.index)
        assert int(mask.sum()) == trial.lesion_voxels > 0
        assert np.array_equal(p.flair, phantom().flair)  # the subject itself is never modified
        normalized = zscore_nonzero(pair.stacked())
        seg = segment(pair, model, SegmentationSettings(threshold=0.5, min_size=1))
        np.testing.assert_allclose(seg.normalized, normalized)
        assert trial.point.mean_probability == pytest.approx(float(seg.probability[mask].mean()), abs=1e-5)
        assert trial.point.max_probability == pytest.approx(float(seg.probability[mask].max()), abs=1e-5)


def test_detection_follows_contrast_and_reruns_are_identical():
    p = phantom()
    level = flair_level(p, 2.0)
    model = LesionModel(FlairThreshold(level), detector_config()).eval()
    settings = SyntheticSettings(volumes_mm3=(10.0, 80.0), flair_contrasts=(1.05, 3.0), n_positions=3, seed=1)
    result = synthetic_lesion_probe(model, p.pair(), settings, wm=p.wm, exclude=p.lesions)
    summary = {(r["volume_mm3"], r["flair_contrast"]): r for r in result.summary_rows()}
    for v in (10.0, 80.0):
        assert summary[(v, 1.05)]["detection_rate"] == 0.0
        assert summary[(v, 3.0)]["detection_rate"] == 1.0
        assert summary[(v, 3.0)]["mean_dice"] > 0.5
    again = synthetic_lesion_probe(model, p.pair(), settings, wm=p.wm, exclude=p.lesions)
    assert again.rows() == result.rows()


def test_context_probe_runs_on_inserted_lesions():
    p = phantom()
    model = LesionModel(FlairThreshold(flair_level(p, 2.0)), detector_config()).eval()
    settings = SyntheticSettings(
        volumes_mm3=(40.0,), flair_contrasts=(3.0,), n_positions=1, context=ContextSettings.up_to(3)
    )
    trial = synthetic_lesion_probe(model, p.pair(), settings, wm=p.wm, exclude=p.lesions).trials[0]
    # a voxel-wise FLAIR threshold needs no context at all
    assert trial.context.status == "detected_without_context" and trial.context.instance_id == trial.index
    assert trial.row()["context_needed_mm"] == 0.0


def test_positions_are_in_deep_white_matter_away_from_lesions_and_each_other():
    p = phantom()
    candidates = nawm_candidates(p.wm, p.geometry, p.lesions, min_wm=0.9, min_distance_mm=8.0)
    positions = pick_positions(candidates, p.geometry, 5, seed=2, min_separation_mm=8.0)
    assert len(positions) == 5 and positions == pick_positions(candidates, p.geometry, 5, seed=2, min_separation_mm=8.0)
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(~p.lesions)
    for a, (i, j, k) in enumerate(positions):
        assert p.wm[k, j, i] >= 0.9 and distance[k, j, i] >= 8.0
        for b in positions[a + 1 :]:
            assert np.linalg.norm(np.subtract((i, j, k), b)) >= 8.0


def test_white_matter_estimate_agrees_with_the_phantom_truth():
    p = phantom()
    estimate = estimate_white_matter(p.flair, p.t1)
    assert voxel_dice(estimate > 0.5, p.wm > 0.5) > 0.8
    assert not np.any((estimate > 0.5) & p.lesions & (p.flair > np.median(p.flair[p.wm > 0.9]) * 1.5))


def test_bad_synthetic_settings():
    with pytest.raises(ParameterError, match="volumes"):
        SyntheticSettings(volumes_mm3=())
    with pytest.raises(ParameterError, match="positive"):
        SyntheticSettings(volumes_mm3=(10, -5))
    with pytest.raises(ParameterError, match="contrast"):
        SyntheticSettings(flair_contrasts=(0,))
    with pytest.raises(ParameterError, match="shape"):
        SyntheticSettings(shape="cube")
    p = phantom()
    model = tiny_model()
    with pytest.raises(ParameterError, match="outside the image"):
        synthetic_lesion_probe(model, p.pair(), SyntheticSettings(positions_ijk=((0, 0, 999),)))
    with pytest.raises(ParameterError, match="white-matter map shape"):
        synthetic_lesion_probe(model, p.pair(), SyntheticSettings(), wm=p.wm[:-1])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_synth_probe_cli_writes_csv_json_png(tmp_path):
    p = phantom()
    inputs = tmp_path / "in"
    paths = p.write(inputs)
    wm_path = write_volume(p.wm, p.geometry, inputs / "wm.nii.gz")
    model_path = inputs / "flair_threshold.pt"
    torch.jit.script(FlairThreshold(flair_level(p, 2.0))).save(str(model_path))
    config_path = inputs / "config.json"
    config_path.write_text(json.dumps(detector_config().to_dict()))
    out = tmp_path / "out"
    code = main(["-q", "synth-probe", "--flair", str(paths["flair"]), "--t1", str(paths["t1"]), "--out", str(out),
                 "--model", str(model_path), "--config", str(config_path), "--trust-model", "--wm", str(wm_path),
                 "--sizes", "20", "60", "--contrasts", "1.05", "3", "--positions", "2", "--min-size", "1"])  # fmt: skip
    assert code == 0
    for name in ("synthetic_trials.csv", "synthetic_summary.csv", "synthetic_probe.json", "synthetic_probe.png",
                 "instances.json"):  # fmt: skip
        assert (out / name).exists(), name
    trials = list(csv.DictReader(open(out / "synthetic_trials.csv")))
    assert len(trials) == 8
    summary = json.loads((out / "synthetic_probe.json").read_text())
    rates = {(r["volume_mm3"], r["flair_contrast"]): r["detection_rate"] for r in summary["summary"]}
    assert rates[(20.0, 3.0)] == 1.0 and rates[(20.0, 1.05)] == 0.0
    code = main(["-q", "synth-probe", "--flair", str(paths["flair"]), "--t1", str(paths["t1"]), "--out", str(out),
                 "--model", str(model_path), "--config", str(config_path), "--trust-model", "--sizes", "0"])  # fmt: skip
    assert code == 2
