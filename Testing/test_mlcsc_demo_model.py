"""The shipped ML-CSC demo segmenter: it meets its model card on held-out phantoms and explains itself by atoms end to end."""

from __future__ import annotations

import json

import pytest

from LesionXAILib.cli.main import main
from LesionXAILib.model_loading import load_model
from LesionXAILib.models.mlcsc import MLCSCSegmenter
from LesionXAILib.phantom import PhantomSettings
from LesionXAILib.resources import resources_dir
from LesionXAILib.training import evaluate_model
from LesionXAILib.training.model_card import read_model_card


pytestmark = pytest.mark.usefixtures("one_torch_thread")


MODEL = resources_dir() / "models" / "lesionxai-demo-mlcsc.pt"
# never used for training (>= 10000) nor by the evaluation recorded in the model card (100-109)
UNSEEN_SEEDS = (9001, 9002)
FOV = (96.0, 96.0, 96.0)  # a small field of view keeps the check fast; lesions stay inside it


def test_mlcsc_demo_model_loads_and_carries_its_card():
    model = load_model(MODEL)
    assert isinstance(model.network, MLCSCSegmenter) and model.config.network == "mlcsc"
    assert model.config.input_order == ("FLAIR", "MPRAGE") and model.config.head == "sigmoid"
    assert MODEL.stat().st_size < 10 * 2**20
    card = read_model_card(MODEL)
    assert card["architecture"]["network"].startswith("ML-CSC")
    assert card["training"]["steps"] > 0 and not card["training"].get("partial")
    assert min(int(s) for s in str(card["training"]["settings"]["train_seeds"]).split("-")) >= 10000
    assert card["evaluation"]["subjects"] >= 10


def test_mlcsc_demo_model_meets_its_card_on_unseen_phantoms():
    card = read_model_card(MODEL)["evaluation"]
    # the card was measured on phantoms without lesion mimics (the model was trained before they existed)
    result = evaluate_model(load_model(MODEL), UNSEEN_SEEDS, PhantomSettings(fov_mm=FOV, mimics=False))
    summary = result.summary()
    # the card's figures, with the margin two small phantoms leave around a ten-subject mean
    assert summary["dice_mean"] >= min(0.7, card["dice_mean"] - 0.1), summary
    assert summary["lesion_f1"] >= min(0.7, card["lesion_f1"] - 0.1), summary


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlcsc_phantom")
    assert main(["-q", "phantom", "--seed", "9003", "--fov", "64", "64", "64", "--lesions", "4", "--out", str(d)]) == 0
    return d


def test_explain_atoms_writes_maps_tables_and_the_report_panel(phantom_dir, tmp_path):
    from LesionXAILib.report.atoms_panel import atoms_section

    out = tmp_path / "run"
    code = main(["-q", "explain", "--flair", str(phantom_dir / "flair.nii.gz"), "--t1", str(phantom_dir / "t1.nii.gz"),
                 "--out", str(out), "--model", str(MODEL), "--methods", "atoms", "--margin-mm", "12", "--instances", "1"])  # fmt: skip
    assert code == 0
    for key in ("atoms_flair", "atoms_mprage"):
        assert (out / "instance_1" / f"{key}.nii.gz").exists()
    rows = json.loads((out / "atoms.json").read_text())["rows"]
    assert {r["instance_id"] for r in rows} == {1}
    assert {(r["layer"], r["modality"]) for r in rows} == {(1, "FLAIR"), (1, "MPRAGE"), (2, "joint"), (3, "joint")}
    assert (out / "atoms.csv").exists() and "<img" in atoms_section(out)


def test_explain_atoms_refuses_a_model_without_sparse_coding_layers(tmp_path, capsys):
    from explain_fixtures import saved_subject

    d, model_path, threshold = saved_subject(tmp_path)
    out = tmp_path / "out"
    code = main(["-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(out),
                 "--model", str(model_path), "--threshold", f"{threshold}", "--methods", "atoms"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "needs an ML-CSC model" in err and len(err.splitlines()) == 1
    assert not (out / "explanations.json").exists()
