"""The shipped demo segmenter on fresh phantoms it never saw (issue: Dice >= 0.7 and lesion F1 >= 0.7)."""

from __future__ import annotations

from LesionXAILib.model_loading import load_model
from LesionXAILib.phantom import PhantomSettings
from LesionXAILib.resources import default_model_path
from LesionXAILib.training import evaluate_model
from LesionXAILib.training.model_card import read_model_card

# never used for training (>= 10000) nor by the evaluation recorded in the model card (100-109)
UNSEEN_SEEDS = (9001, 9002)


def test_demo_model_is_the_default_and_carries_its_card():
    path = default_model_path()
    model = load_model()
    assert model.source == str(path)
    assert model.config.input_order == ("FLAIR", "MPRAGE") and model.config.in_channels == 2
    assert model.config.head == "sigmoid" and model.config.out_channels == 1
    assert path.stat().st_size < 8 * 2**20  # "a few MB"
    card = read_model_card(path)
    assert card["training"]["steps"] > 0 and card["evaluation"]["subjects"] >= 10
    assert not card["training"].get("partial")


def test_demo_model_segments_unseen_phantoms():
    # the shipped demo model was trained on phantoms without lesion mimics: it is held to its targets on those
    result = evaluate_model(load_model(), UNSEEN_SEEDS, PhantomSettings(mimics=False))
    summary = result.summary()
    for row in result.rows:
        assert row["dice"] >= 0.7, row
        assert row["f1"] >= 0.7, row
    assert summary["lesion_f1"] >= 0.7
