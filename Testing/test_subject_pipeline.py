"""The run-a-subject loop shared by the demo and the cohort, and the one eval-mode guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LesionXAILib.analysis import AnalysisSettings, analyse_lesion
from LesionXAILib.eval_mode import eval_mode
from LesionXAILib.explain import ExplainSettings
from LesionXAILib.probes import ContextSettings
from LesionXAILib.segmentation import SegmentationSettings, segment
from LesionXAILib.subject_pipeline import ANALYSE_STAGE, WRITE_STAGE, analyse_and_write_subject

from subject_fixtures import two_lesion_subject

SETTINGS = AnalysisSettings(
    explain=ExplainSettings(methods=("gradient",), samples=2, seed=1),
    context=ContextSettings(radii_mm=(0.0, 1.0, 2.0)),
)


@pytest.fixture(scope="module")
def segmented():
    model, pair = two_lesion_subject()
    result = segment(pair, model, SegmentationSettings())
    assert len(result.instances.ids) == 2
    return model, result


def test_every_lesion_is_written_as_analysed_alone_then_released(segmented, tmp_path):
    model, result = segmented
    seen, stages = [], []

    def on_lesion(a):
        seen.append((a.id, all(isinstance(m, np.ndarray) for m in a.explanation.maps.values())))

    analyses = analyse_and_write_subject(model, result, tmp_path, SETTINGS, on_lesion=on_lesion, on_stage=stages.append)
    assert [a.id for a in analyses] == result.instances.ids
    assert seen == [(i, True) for i in result.instances.ids]  # the caller sees the maps before they are released
    assert stages == [ANALYSE_STAGE, WRITE_STAGE, ANALYSE_STAGE, WRITE_STAGE, ANALYSE_STAGE, WRITE_STAGE]
    for a in analyses:
        assert set(a.explanation.maps) == {"gradient_flair", "gradient_mprage"}
        assert all(v is None for v in a.explanation.maps.values())  # released, names kept
        alone = analyse_lesion(model, result, a.id, SETTINGS)  # an independent run of the same lesion
        for key, arr in alone.explanation.maps.items():
            written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"instance_{a.id}" / f"{key}.nii.gz")))
            np.testing.assert_allclose(written, arr, rtol=1e-6, atol=1e-9)
    doc = json.loads((tmp_path / "explanations.json").read_text())
    assert doc and (tmp_path / "context_probe.json").is_file() and (tmp_path / "lesions.csv").is_file()


def test_lesion_files_can_be_skipped(segmented, tmp_path):
    model, result = segmented
    analyse_and_write_subject(model, result, tmp_path, SETTINGS, write_lesion_files=False)
    assert not list(tmp_path.glob("instance_*")) and (tmp_path / "lesions.csv").is_file()


def test_eval_mode_switches_batch_norm_and_restores_the_training_flag_even_on_error():
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2)).train()
    x = torch.randn(3, 1, 2, 2, 2)
    with eval_mode(net):
        assert not net.training and not net[1].training
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(together, alone)  # eval batch norm: batch elements do not mix
    assert net.training and net[1].training
    with pytest.raises(RuntimeError):
        with eval_mode(net):
            raise RuntimeError("boom")
    assert net.training
    net.eval()
    with eval_mode(net):
        pass
    assert not net.training  # a model in eval mode stays there
