"""The ML-CSC segmenter as a LesionXAI model: a few training steps lower the loss; `train --config mlcsc` output loads and segments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from LesionXAILib.cli.main import main
from LesionXAILib.model_config import get_config
from LesionXAILib.model_loading import load_model
from LesionXAILib.models.architectures import ARCHITECTURES, DIVISORS
from LesionXAILib.models.mlcsc import MLCSCSegmenter
from LesionXAILib.training.loss import dice_bce_loss


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blob_batch(seed: int = 0, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a (4, 2, s, s, s) batch of noisy images with one bright-FLAIR, dark-MPRAGE ball each, and its labels."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"))
    images, labels = [], []
    for _ in range(4):
        centre = rng.uniform(4, size - 4, size=3)
        ball = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= rng.uniform(2, 3.5) ** 2
        img = rng.normal(scale=0.3, size=(2, size, size, size))
        img[0, ball] += 2.0
        img[1, ball] -= 1.0
        images.append(img)
        labels.append(ball[None])
    return torch.tensor(np.stack(images), dtype=torch.float32), torch.tensor(np.stack(labels), dtype=torch.float32)


def test_mlcsc_is_a_registered_architecture_with_its_config():
    cfg = get_config("mlcsc")
    assert cfg.network == "mlcsc" and "mlcsc" in ARCHITECTURES and "mlcsc" in DIVISORS
    assert cfg.size_divisor == 2 ** (len(cfg.architecture["atoms"]) - 1)
    net = ARCHITECTURES["mlcsc"](cfg)
    assert isinstance(net, MLCSCSegmenter)
    out = net(torch.zeros(1, 2, 8, 12, 8))
    assert out.shape == (1, 1, 8, 12, 8)


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    net = MLCSCSegmenter(atoms=(4, 6, 8), iterations=2, hidden=8)
    images, labels = blob_batch()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(20):
        loss = dice_bce_loss(net(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    with torch.no_grad():
        final = float(dice_bce_loss(net(images), labels))
    assert final < 0.95 * losses[0] and losses[-1] < losses[0], losses


def test_train_config_mlcsc_writes_a_checkpoint_that_loads_and_segments_a_phantom(tmp_path, capsys):
    out = tmp_path / "mlcsc.pt"
    args = ["-q", "train", "--out", str(out), "--config", "mlcsc", "--seeds", "10000", "--fov", "40", "40", "40",
            "--patch", "16", "16", "16", "--steps", "3", "--seed", "1"]  # fmt: skip
    assert main(args) == 0
    model = load_model(out)
    assert isinstance(model.network, MLCSCSegmenter), type(model.network)
    assert model.config.name == "mlcsc", model.config.name
    assert not model.training, [(n, m.training) for n, m in model.named_modules() if m.training][:5]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"]["network"].startswith("ML-CSC") and card["training"]["steps"] == 3
    assert "ML-CSC" in out.with_suffix(".md").read_text()
    # a bare state dict loads through --config mlcsc (--weights) like any config network
    torch.save(model.network.state_dict(), tmp_path / "weights.pt")
    bare = load_model(tmp_path / "weights.pt", config="mlcsc")
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(bare(x), model(x))
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import segment

    phantom = generate_phantom(7, PhantomSettings(fov_mm=(40.0, 40.0, 40.0)))
    seg = segment(phantom.pair(), model, ground_truth=phantom.lesions)
    assert seg.probability.shape == phantom.lesions.shape
    assert np.isfinite(seg.probability).all() and 0.0 <= seg.probability.min() <= seg.probability.max() <= 1.0
