"""Scene-free pieces of the counterfactual and similar-lesions panels: summary text, crop thumbnails, library refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from LesionXAILib.errors import ParameterError
from LesionXAILib.session.counterfactual import summary_text
from LesionXAILib.session.similar import LibraryLink, SimilarPanel, SimilarRow, png_data_uri, similar_text, thumbnail_png


def _summary(**extra):
    base = {"instance_id": 3, "status": "TP", "mode": "remove", "flipped": True,
            "probability": {"mean_before": 0.8123, "mean_after": 0.2011},
            "lesion_volume": {"before_mm3": 50.0, "after_mm3": 30.0, "change_percent": -40.0},
            "largest_displacement_mm": 1.2345, "jacobian": {"positive": True}}  # fmt: skip
    base.update(extra)
    return base


def test_summary_text_says_flipped_probability_volume_and_displacement():
    lines = summary_text(_summary()).splitlines()
    assert lines == ["Lesion 3 (TP): flipped, the model no longer detects it", "Mean probability 0.812 -> 0.201",
                     "Lesion volume 50.0 -> 30.0 mm³ (-40.0 %)", "Largest displacement 1.23 mm"]  # fmt: skip
    assert summary_text(_summary(mode="add", status="FN")).startswith("Lesion 3 (FN): flipped, the model now detects it")
    text = summary_text(_summary(flipped=False, jacobian={"positive": False}, probability={}))
    assert "not flipped within the search budget" in text and "Mean probability n/a -> n/a" in text
    assert text.endswith("Warning: the warp folds (Jacobian <= 0 somewhere)")


def test_thumbnail_is_the_crop_with_the_lesion_outline_in_yellow():
    crop = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 3:7] = 1
    png = thumbnail_png(crop, mask, scale=1)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    inside = np.zeros((8, 8), bool)
    inside[3:5, 4:6] = True  # the 4 x 4 square's interior, by hand
    border = mask.astype(bool) & ~inside
    assert (rgb[border] == (255, 215, 0)).all()
    assert (rgb[~border] == np.repeat(crop[~border][:, None], 3, axis=1)).all()
    big = np.asarray(Image.open(io.BytesIO(thumbnail_png(crop, mask, scale=2))))
    assert big.shape == (16, 16, 3)
    assert png_data_uri(png).startswith("data:image/png;base64,") and png_data_uri(b"") == ""


def test_a_folder_that_is_not_a_library_gives_panels_with_the_reason(tmp_path):
    link = LibraryLink(tmp_path, model=None)
    assert "is not a lesion library" in link.error
    panel = link.neighbours(session=None, lesion_id=4)
    assert not panel.ok and panel.lesion_id == 4 and panel.message == link.error
    with pytest.raises(ParameterError, match="1..50"):
        LibraryLink(tmp_path, model=None, k=0)


def test_similar_text_lists_the_rows():
    panel = SimilarPanel(1, [SimilarRow(1, "self", 1, "TP", 0.0, 12.0), SimilarRow(2, "sub6", 4, "FP", 0.25, 3.5)], "2 nearest")
    assert similar_text(panel).splitlines() == ["2 nearest", "1. self #1 TP  distance 0.000  12.0 mm³",
                                                "2. sub6 #4 FP  distance 0.250  3.5 mm³"]  # fmt: skip
    assert panel.rows[1].to_dict()["thumbnail"] == ""
