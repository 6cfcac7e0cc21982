"""Training the demo segmenter: patch sampling, loss, an end-to-end tiny retrain, seed ranges, model card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from LesionXAILib.cli.main import main
from LesionXAILib.errors import ParameterError
from LesionXAILib.model_loading import load_model
from LesionXAILib.training import TRAIN_SEED_START, PatchSampler, TrainingSubject, TrainSettings, evaluate_model
from LesionXAILib.training.loss import dice_bce_loss


def _subject(shape=(20, 24, 28), lesion_at=(10, 12, 14)) -> TrainingSubject:
    image = np.ones((2, *shape), dtype=np.float32)
    image[:, :2] = 0  # background slab
    lesions = np.zeros(shape, dtype=bool)
    lesions[lesion_at] = True
    brain = np.argwhere(image[0] != 0)
    return TrainingSubject(0, image, lesions, np.argwhere(lesions).astype(np.int32), (brain.min(0), brain.max(0)))


def test_lesion_centred_patches_contain_the_lesion_and_keep_image_label_aligned():
    subject = _subject()
    sampler = PatchSampler([subject], (8, 8, 8), lesion_fraction=1.0, intensity_jitter=0.0, seed=3)
    for _ in range(50):
        image, label = sampler.sample()
        assert image.shape == (2, 8, 8, 8) and label.shape == (1, 8, 8, 8)
        assert label.sum() == 1  # the single lesion voxel is always inside (flips keep it)
        assert np.all(image[:, label[0] > 0] == 1.0)


def test_patches_larger_than_the_image_are_zero_padded_and_jitter_spares_background():
    subject = _subject(shape=(6, 6, 6), lesion_at=(3, 3, 3))
    sampler = PatchSampler([subject], (8, 8, 8), lesion_fraction=0.0, intensity_jitter=0.2, seed=1)
    image, label = sampler.sample()
    assert image.shape == (2, 8, 8, 8)
    assert np.all(image[:, 6:] == 0) and np.all(image[:, :, 6:] == 0)  # padding
    assert np.all(image[:, :2, :6, :6] == 0)  # background stays exactly 0 (as normalisation leaves it)
    assert label.sum() == 1


def test_sampler_is_deterministic_for_a_seed():
    a = PatchSampler([_subject()], (8, 8, 8), seed=5).batch(3)
    b = PatchSampler([_subject()], (8, 8, 8), seed=5).batch(3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def _subject_with_mimics() -> TrainingSubject:
    subject = _subject(shape=(40, 40, 40), lesion_at=(5, 5, 5))
    mimics = np.zeros(subject.lesions.shape, dtype=np.uint8)
    mimics[30:40, 30:40, 30:40] = 2  # a large mimic: 1000 voxels
    mimics[33, 6, 6] = 3  # a one-voxel mimic of another kind
    mimics[5, 5, 5] = 1  # under the lesion: not a mimic voxel for sampling
    from LesionXAILib.training.data import mimic_voxels_by_kind

    subject.mimic_voxels = mimic_voxels_by_kind(mimics, subject.lesions)
    return subject


def test_a_phantom_subject_lists_its_mimics_by_kind_outside_lesions():
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.training.data import subject_from_phantom

    phantom = generate_phantom(10000, PhantomSettings(fov_mm=(64.0, 64.0, 64.0)))
    subject = subject_from_phantom(phantom)
    assert len(subject.mimic_voxels) == len(np.unique(phantom.mimics[(phantom.mimics > 0) & ~subject.lesions]))
    for voxels in subject.mimic_voxels:
        labels = phantom.mimics[tuple(voxels.T)]
        assert len(np.unique(labels)) == 1 and labels[0] > 0
        assert not subject.lesions[tuple(voxels.T)].any()
    assert sum(len(v) for v in subject.mimic_voxels) == int(((phantom.mimics > 0) & ~subject.lesions).sum())


def test_mimic_voxels_are_grouped_by_kind_and_exclude_lesions():
    kinds = _subject_with_mimics().mimic_voxels
    assert [len(v) for v in kinds] == [1000, 1]
    assert not any(np.all(v == (5, 5, 5), axis=1).any() for v in kinds)
    assert kinds[1].tolist() == [[33, 6, 6]]


def test_mimic_centred_patches_contain_a_mimic_and_kinds_are_drawn_evenly():
    subject = _subject_with_mimics()
    sampler = PatchSampler([subject], (8, 8, 8), lesion_fraction=0.0, mimic_fraction=1.0, intensity_jitter=0.0, seed=2)
    small = 0
    for _ in range(400):
        start = sampler._start(subject)
        inside = [np.all((v >= start) & (v < start + 8), axis=1).any() for v in subject.mimic_voxels]
        assert any(inside)
        small += inside[1] and not inside[0]
    # the one-voxel kind is drawn about as often as the 1000-voxel one (by voxels it would be 1 in 1001)
    assert 150 < small < 250


def test_patch_kind_shares_follow_the_fractions():
    subject = _subject_with_mimics()
    sampler = PatchSampler([subject], (8, 8, 8), lesion_fraction=0.5, mimic_fraction=0.3, intensity_jitter=0.0, seed=4)
    counts = {"lesion": 0, "mimic": 0, "other": 0}
    for _ in range(3000):
        start = sampler._start(subject)
        if np.all((subject.lesion_voxels >= start) & (subject.lesion_voxels < start + 8), axis=1).any():
            counts["lesion"] += 1
        elif any(np.all((v >= start) & (v < start + 8), axis=1).any() for v in subject.mimic_voxels):
            counts["mimic"] += 1
        else:
            counts["other"] += 1
    # random brain patches rarely touch the lesion corner or the mimics, so shares are close to the fractions
    assert abs(counts["lesion"] / 3000 - 0.5) < 0.04
    assert abs(counts["mimic"] / 3000 - 0.3) < 0.06


def test_without_mimic_sampling_the_patches_are_those_drawn_before_it_existed():
    plain, with_mimics = _subject(shape=(40, 40, 40), lesion_at=(5, 5, 5)), _subject_with_mimics()
    a = PatchSampler([plain], (8, 8, 8), seed=9).batch(6)
    b = PatchSampler([with_mimics], (8, 8, 8), seed=9).batch(6)  # mimic_fraction 0: mimics ignored, same stream
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_patch_fractions_are_validated():
    with pytest.raises(ParameterError, match="exceed 1"):
        PatchSampler([_subject()], (8, 8, 8), lesion_fraction=0.7, mimic_fraction=0.4)
    with pytest.raises(ParameterError, match="mimic fraction must be in 0..1"):
        TrainSettings(mimic_fraction=-0.1)
    with pytest.raises(ParameterError, match="need phantoms with mimics"):
        TrainSettings(mimic_fraction=0.2, mimics=False)


def test_loss_is_bce_plus_one_minus_soft_dice():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    p = torch.sigmoid(logits)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    assert float(dice_bce_loss(logits, target)) == pytest.approx(float(bce + 1 - dice), rel=1e-6)


def test_training_and_evaluation_seed_ranges_do_not_overlap():
    with pytest.raises(ParameterError, match="kept for evaluation"):
        TrainSettings(train_seeds=(5,))
    with pytest.raises(ParameterError, match="training range"):
        evaluate_model(None, [TRAIN_SEED_START + 1])
    assert min(TrainSettings().train_seeds) >= TRAIN_SEED_START


def test_retraining_a_tiny_config_runs_end_to_end_and_the_result_loads_and_evaluates(tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    args = ["-q", "train", "--out", str(out), "--config", "tiny", "--seeds", "10000-10001", "--fov", "48", "48", "48",
            "--patch", "32", "32", "32", "--steps", "6", "--seed", "1"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 2  # refuses to overwrite without --force
    model = load_model(out)
    assert model.config.name == "tiny" and not model.training
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 6 and card["training"]["settings"]["train_seeds"] == "10000-10001"
    assert card["inputs"]["order"] == ["FLAIR", "MPRAGE"]
    capsys.readouterr()
    assert main(["-q", "evaluate", "--model", str(out), "--seeds", "7", "--fov", "48", "48", "48", "--update-card"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["subjects"] == 1 and 0.0 <= summary["dice_mean"] <= 1.0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["evaluation"]["seeds"] == [7]
    assert "voxel Dice" in out.with_suffix(".md").read_text()
    assert card["evaluation"]["phantom_settings"]["mimics"] is True
    # models trained before mimics existed are evaluated on phantoms without them, and the card says so
    assert main(["-q", "evaluate", "--model", str(out), "--seeds", "7", "--fov", "48", "48", "48", "--no-mimics",
                 "--out", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "eval.json").read_text())["phantom_settings"]["mimics"] is False
    # training and evaluation phantoms had lookalikes unless told otherwise; the card's text says which
    assert card["training"]["settings"]["lookalikes"] is True and card["evaluation"]["phantom_settings"]["lookalikes"] is True
    assert "with lesion mimics and lookalikes" in out.with_suffix(".md").read_text()
    assert main(["-q", "evaluate", "--model", str(out), "--seeds", "7", "--fov", "48", "48", "48", "--no-lookalikes",
                 "--update-card"]) == 0  # fmt: skip
    assert "mm, with lesion mimics (no lookalikes)" in out.with_suffix(".md").read_text()


def test_training_can_continue_from_a_checkpoint_and_the_card_names_it(tmp_path):
    first = tmp_path / "first.pt"
    common = ["--config", "tiny", "--seeds", "10000", "--fov", "48", "48", "48", "--patch", "32", "32", "32", "--seed", "1"]
    assert main(["-q", "train", "--out", str(first), "--steps", "3", *common]) == 0
    start = load_model(first)
    second = tmp_path / "second.pt"
    # zero learning rate: the continued run's weights are exactly the ones it started from
    assert main(["-q", "train", "--out", str(second), "--steps", "2", "--lr", "0", "--init", str(first),
                 "--mimic-fraction", "0.3", *common]) == 0  # fmt: skip
    cont = load_model(second)
    for (name, a), b in zip(start.network.state_dict().items(), cont.network.state_dict().values()):
        if a.is_floating_point() and "running" not in name:
            assert torch.equal(a, b), name
    card = json.loads(second.with_suffix(".json").read_text())
    init = card["training"]["initialised_from"]
    assert init["path"] == str(first) and init["steps"] == 3 and len(init["sha256"]) == 64
    assert "continued from" in second.with_suffix(".md").read_text()
    assert card["training"]["settings"]["mimic_fraction"] == 0.3
    assert "0.6 of patches lesion-centred, 0.3 centred on mimics" in second.with_suffix(".md").read_text()
    # a run continuing a continued run lists both earlier runs, earliest first
    third = tmp_path / "third.pt"
    assert main(["-q", "train", "--out", str(third), "--steps", "1", "--lr", "0", "--init", str(second), *common]) == 0
    text = third.with_suffix(".md").read_text()
    assert "continued from 2 earlier run(s), earliest first" in text
    first_line = next(line for line in text.splitlines() if line.startswith("  1. "))
    second_line = next(line for line in text.splitlines() if line.startswith("  2. "))
    assert f"`{first}`" in first_line and "3 steps" in first_line
    assert f"`{second}`" in second_line and "2 steps" in second_line and "--mimic-fraction" in second_line
    # a checkpoint of another network is refused, naming what differs
    from LesionXAILib.training import train_model

    other = TrainSettings(config="lesionxai-demo", train_seeds=(10000,), fov_mm=(48.0, 48.0, 48.0), patch_size=(32, 32, 32),
                          steps=1, init=str(first))  # fmt: skip
    with pytest.raises(ParameterError, match="different network"):
        train_model(other)
