"""Checkpoint formats: LesionXAI files, wrapped/plain state dicts, DataParallel (anchor format), TorchScript."""

from __future__ import annotations

import pytest
import torch

from engine_fixtures import tiny_config, tiny_model
from LesionXAILib.errors import ModelLoadError
from LesionXAILib.lesion_model import LesionModel, build_network
from LesionXAILib.model_config import PRESETS, ModelConfig, get_config
from LesionXAILib.model_loading import load_model, save_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_anchor_format_dataparallel_checkpoint_loads_by_config_name(tmp_path):
    torch.manual_seed(0)
    cfg = PRESETS["ies-unet"]
    net = build_network(cfg)
    wrapped = torch.nn.DataParallel(net)
    state = wrapped.state_dict()
    assert all(k.startswith("module.") for k in state)
    path = tmp_path / "ies_model.pth"
    torch.save(state, path)
    model = load_model(path, "ies-unet")
    assert _same_weights(model.network, net)
    assert not model.training
    assert model.config.head == "softmax" and model.config.lesion_index == 1
    x = torch.randn(1, 2, 32, 32, 48)  # canonical (k, j, i), as SimpleITK gives it
    net.eval()
    with torch.no_grad():
        # the anchor's network saw nibabel arrays (i, j, k): the preset's contract transposes in and out
        ref = net(x.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)
        out = model(x)
    torch.testing.assert_close(out, ref)
    # lesion logit is channel 1 before the softmax; probability is the softmax's channel 1
    torch.testing.assert_close(model.lesion_logit(out), ref[:, 1:2])
    torch.testing.assert_close(model.probability(out), torch.softmax(ref, 1)[:, 1:2])


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_wrapped_state_dicts(tmp_path, key):
    model = tiny_model()
    path = tmp_path / "ckpt.pt"
    torch.save({key: model.network.state_dict(), "epoch": 3}, path)
    loaded = load_model(path, tiny_config())
    assert _same_weights(loaded.network, model.network)


def test_lesionxai_checkpoint_is_self_describing(tmp_path):
    model = tiny_model(threshold=0.35)
    path = save_checkpoint(model, tmp_path / "m.pt", {"note": "test"})
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.config.threshold == 0.35
    assert _same_weights(loaded.network, model.network)


def test_float16_checkpoint_is_smaller_and_loads_back_into_the_float32_network(tmp_path):
    model = tiny_model()
    counters = [b for name, b in model.network.named_buffers() if name.endswith("num_batches_tracked")]
    assert counters, "the tiny network has batch norm: its step counters are the integer buffers checked here"
    with torch.no_grad():
        for p in model.network.parameters():
            p.normal_()
        for c in counters:
            c.fill_(1000)
    full = save_checkpoint(model, tmp_path / "full.pt")
    half = save_checkpoint(model, tmp_path / "half.pt", {"note": "x"}, float16=True)
    stored = torch.load(str(half), weights_only=True)
    assert stored["metadata"] == {"note": "x", "weights_stored_as": "float16"}
    assert all(v.dtype == torch.float16 for v in stored["state_dict"].values() if v.is_floating_point())
    assert {v.dtype for k, v in stored["state_dict"].items() if k.endswith("num_batches_tracked")} == {torch.int16}
    assert half.stat().st_size < 0.7 * full.stat().st_size
    loaded = load_model(half)
    reference = dict(model.network.named_parameters())
    for name, value in loaded.network.named_parameters():
        assert value.dtype == torch.float32
        # float16 keeps 11 significant bits: relative error <= 2**-11
        assert torch.allclose(value, reference[name], rtol=2.0**-11, atol=1e-7), name
    loaded_counters = [b for name, b in loaded.network.named_buffers() if name.endswith("num_batches_tracked")]
    assert all(c.dtype == torch.int64 and int(c) == 1000 for c in loaded_counters)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_model(tmp_path):
    model = tiny_model()
    scripted = torch.jit.trace(model.network, torch.randn(1, 2, 16, 16, 16))
    path = tmp_path / "traced.pt"
    scripted.save(str(path))
    loaded = load_model(path, tiny_config(), trust=True)  # TorchScript runs code: explicit opt-in
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_checkpoint_that_does_not_fit_lists_keys(tmp_path):
    model = tiny_model()
    path = tmp_path / "small.pt"
    torch.save(model.network.state_dict(), path)
    with pytest.raises(ModelLoadError) as info:
        load_model(path, "ies-unet")
    msg = str(info.value)
    assert "small.pt" in msg and "ies-unet" in msg
    assert "missing keys" in msg or "shape mismatches" in msg
    # an extra key is reported as unexpected, never silently dropped
    state = dict(model.network.state_dict())
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"unexpected keys \[extra.weight\]"):
        load_model(path, tiny_config())


def test_bare_state_dict_needs_config_and_bad_files_are_clear(tmp_path):
    model = tiny_model()
    path = tmp_path / "bare.pt"
    torch.save(model.network.state_dict(), path)
    with pytest.raises(ModelLoadError, match="no embedded configuration"):
        load_model(path)
    with pytest.raises(ModelLoadError, match="file not found"):
        load_model(tmp_path / "nope.pt", tiny_config())
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        load_model(junk, tiny_config())
    with pytest.raises(ModelLoadError, match="unknown model config"):
        get_config("no-such-net")


def test_config_validation():
    with pytest.raises(ModelLoadError, match="sigmoid head needs out_channels=1"):
        ModelConfig(out_channels=2, head="sigmoid")
    with pytest.raises(ModelLoadError, match="len\\(strides\\)"):
        ModelConfig(channels=(4, 8), strides=(2, 2))
    cfg = tiny_config()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.size_divisor == 4


def test_cuda_request_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from LesionXAILib.model_loading import resolve_device

    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_lesion_model_wraps_any_module():
    model = LesionModel(torch.nn.Conv3d(2, 1, 3, padding=1), tiny_config())
    out = model(torch.randn(1, 2, 8, 8, 8))
    assert model.lesion_logit(out).shape == (1, 1, 8, 8, 8)
    torch.testing.assert_close(model.probability(out), torch.sigmoid(out))
