"""Sliding-window inference: equality with a direct pass, window counting, progress and cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_fixtures import blob_volume, tiny_model
from LesionXAILib.errors import Cancelled, ParameterError
from LesionXAILib.inference import InferenceSettings, count_windows, effective_roi, predict_output, predict_probability
from LesionXAILib.normalization import zscore_nonzero
from LesionXAILib.progress import CancelToken


def test_sliding_window_equals_direct_pass_below_window_size():
    model = tiny_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 24, 28, 20)).astype(np.float32)  # multiples of the divisor (4), < 96
    out = predict_output(model, x, InferenceSettings(roi_size=(96, 96, 96)))
    with torch.no_grad():
        direct = model(torch.from_numpy(x)[None])[0]
    torch.testing.assert_close(out, direct, rtol=1e-5, atol=1e-5)
    prob = predict_probability(model, x, InferenceSettings(roi_size=(96, 96, 96)))
    np.testing.assert_allclose(prob, torch.sigmoid(direct[0]).numpy(), rtol=1e-5, atol=1e-6)


def test_odd_sizes_are_padded_and_cropped_back():
    model = tiny_model()
    x = np.random.default_rng(1).standard_normal((2, 21, 30, 19)).astype(np.float32)
    out = predict_output(model, x, InferenceSettings(roi_size=(16, 16, 16), overlap=0.5))
    assert tuple(out.shape) == (1, 21, 30, 19)
    assert torch.isfinite(out).all()


def test_tiled_inference_is_close_to_direct_pass_inside():
    # with Gaussian blending, tiles agree with a whole-volume pass away from tile borders
    model = tiny_model()
    vol, _ = blob_volume((32, 32, 32))
    x = zscore_nonzero(np.stack([vol, 250 - vol]))
    tiled = predict_output(model, x, InferenceSettings(roi_size=(24, 24, 24), overlap=0.5))
    with torch.no_grad():
        direct = model(torch.from_numpy(x)[None])[0]
    assert torch.corrcoef(torch.stack([tiled.flatten(), direct.flatten()]))[0, 1] > 0.95


def test_window_count_matches_monai_and_progress_reaches_one():
    from monai.data.utils import dense_patch_slices

    for shape, roi, ov in [((160, 192, 160), (96, 96, 96), 0.25), ((50, 40, 33), (16, 16, 16), 0.5)]:
        interval = [r if r == s else max(int(r * (1 - ov)), 1) for s, r in zip(shape, roi)]
        assert count_windows(shape, roi, ov) == len(dense_patch_slices(shape, roi, interval))
    model = tiny_model()
    x = np.random.default_rng(2).standard_normal((2, 40, 40, 40)).astype(np.float32)
    seen = []
    predict_output(model, x, InferenceSettings(roi_size=(16, 16, 16)), progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and all(b >= a for a, b in zip(seen, seen[1:]))
    assert effective_roi((10, 200, 33), (96, 96, 96), 16) == (16, 96, 48)


def test_cancellation_stops_inference():
    model = tiny_model()
    x = np.random.default_rng(3).standard_normal((2, 40, 40, 40)).astype(np.float32)
    token = CancelToken()
    calls = []

    def progress(f, m):
        calls.append(f)
        token.cancel()

    with pytest.raises(Cancelled):
        predict_output(model, x, InferenceSettings(roi_size=(16, 16, 16)), progress=progress, cancel=token)
    assert len(calls) == 1


def test_wrong_channel_count_is_rejected():
    model = tiny_model()
    with pytest.raises(ParameterError, match="expects 2 input channels"):
        predict_output(model, np.zeros((3, 8, 8, 8), np.float32))
    with pytest.raises(ParameterError, match="overlap"):
        predict_output(model, np.zeros((2, 8, 8, 8), np.float32), InferenceSettings(overlap=1.5))


def test_zscore_nonzero_matches_definition():
    rng = np.random.default_rng(4)
    a = rng.random((2, 6, 7, 8)).astype(np.float32) * 100
    a[:, :2] = 0
    z = zscore_nonzero(a)
    for c in range(2):
        nz = a[c] != 0
        np.testing.assert_allclose(z[c][nz], (a[c][nz] - a[c][nz].mean()) / a[c][nz].std(), rtol=1e-4, atol=1e-5)
        assert np.all(z[c][~nz] == 0)
