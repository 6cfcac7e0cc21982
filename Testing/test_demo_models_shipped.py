"""Every shipped demo model (Resources/models/lesionxai-demo-*.pt) loads with its card and segments a small phantom."""

from __future__ import annotations

import numpy as np
import pytest

from LesionXAILib.model_loading import load_model
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.segmentation import segment
from LesionXAILib.study.models import shipped_models
from LesionXAILib.training.model_card import read_model_card

SHIPPED = shipped_models()


def test_the_anchor_comparison_models_are_shipped():
    assert {"unet", "unet-anchor", "dynunet", "swinunetr"} <= set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_and_segments_a_small_phantom(name):
    path = SHIPPED[name]
    assert path.stat().st_size <= 10 * 2**20
    card = read_model_card(path)
    assert card["training"]["steps"] > 0
    model = load_model(path)
    from LesionXAILib.training.model_card import output_description

    assert card["output"] == output_description(model.config)  # the card describes the head the checkpoint has
    phantom = generate_phantom(7, PhantomSettings(n_lesions=4, fov_mm=(64.0, 64.0, 64.0)))
    result = segment(phantom.pair(), model, ground_truth=phantom.lesions)
    assert result.probability.shape == phantom.geometry.shape
    assert np.isfinite(result.probability).all() and 0.0 <= result.probability.min() <= result.probability.max() <= 1.0
    # a trained model finds at least one true lesion of the four
    assert result.instances.metrics.tp >= 1


def test_demo_picks_a_shipped_model_by_name_and_can_drop_mimics():
    from LesionXAILib.cli.commands import demo
    from LesionXAILib.cli.main import build_parser
    from LesionXAILib.errors import ModelLoadError
    from LesionXAILib.study.models import is_shipped_name, resolve_model

    assert resolve_model("dynunet") == SHIPPED["dynunet"] and is_shipped_name("unet-anchor")
    with pytest.raises(ModelLoadError, match="shipped"):
        resolve_model("no-such-model")
    args = build_parser().parse_args(["demo", "--small", "--no-mimics", "--model", "dynunet"])
    assert demo.phantom_settings_from_args(args).mimics is False
    assert demo.phantom_settings_from_args(build_parser().parse_args(["demo", "--small"])).mimics is True
