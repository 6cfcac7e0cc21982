"""Loading policy (issue 16): TorchScript runs code when loaded, so it loads only through --model with --trust-model.

The TorchScript file below has a harmless side effect in its load step: a submodule's ``__setstate__``
(run by ``torch.jit.load``) maps a marker file and writes ones into it. The marker starts as zeros,
so its content says whether the file's code ran.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from engine_fixtures import tiny_config, tiny_model
from LesionXAILib.cli.main import main
from LesionXAILib.errors import ModelLoadError
from LesionXAILib.model_loading import load_model, load_weights, save_checkpoint

MARKER_BYTES = 4
# the side-effect model travels as TorchScript, which torch now flags as deprecated
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Marker(torch.nn.Module):
    """Identity whose unpickling writes ones into the marker file (the side effect)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.token = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        t = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        t.fill_(1)
        self.token = int(t.sum())  # keeps the write from being optimised away


class _SideEffectNet(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.mark = _Marker(marker)
        self.conv = torch.nn.Conv3d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.mark(x))


def _write_side_effect_model(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker.bin"
    marker.write_bytes(bytes(MARKER_BYTES))
    path = tmp_path / "model.pt"
    torch.jit.script(_SideEffectNet(str(marker))).save(str(path))
    assert marker.read_bytes() == bytes(MARKER_BYTES)  # saving runs no __setstate__
    return path, marker


def _ran(marker: Path) -> bool:
    return marker.read_bytes() != bytes(MARKER_BYTES)


def test_torchscript_refused_without_trust_and_its_code_does_not_run(tmp_path):
    path, marker = _write_side_effect_model(tmp_path)
    with pytest.raises(ModelLoadError, match="--trust-model") as info:
        load_model(path, tiny_config())
    assert "\n" not in str(info.value) and "model.pt" in str(info.value)
    assert not _ran(marker)


def test_torchscript_loads_when_trusted_with_a_warning(tmp_path, caplog):
    path, marker = _write_side_effect_model(tmp_path)
    with caplog.at_level(logging.WARNING, logger="LesionXAILib.model_loading"):
        model = load_model(path, tiny_config(), trust=True)
    assert _ran(marker)  # the check above is not vacuous: trusted loading does run the file's code
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "TorchScript" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    assert model(torch.zeros(1, 2, 4, 4, 4)).shape == (1, 1, 4, 4, 4)


def test_torchscript_never_loads_as_weights_even_if_trusted_elsewhere(tmp_path):
    path, marker = _write_side_effect_model(tmp_path)
    with pytest.raises(ModelLoadError, match="TorchScript") as info:
        load_weights(path, "ies-unet")
    assert "was not loaded" in str(info.value)
    assert not _ran(marker)


def test_state_dicts_and_checkpoints_need_no_trust(tmp_path):
    model = tiny_model()
    ckpt = save_checkpoint(model, tmp_path / "m.pt")
    assert load_model(ckpt).config == model.config
    bare = tmp_path / "bare.pt"
    torch.save(model.network.state_dict(), bare)
    assert load_weights(bare, tiny_config()).config == tiny_config()
    # a pickled object (not plain tensors) is refused by weights_only loading
    evil = tmp_path / "pickled.pt"
    torch.save({"state_dict": model.network.state_dict(), "obj": _SideEffectNet}, evil)
    with pytest.raises(ModelLoadError, match="cannot be read as a PyTorch checkpoint"):
        load_model(evil, tiny_config())


def _subject(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    arr = (rng.random((16, 16, 16)) * 100 + 10).astype(np.float32)
    paths = []
    for name in ("flair", "t1"):
        p = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(p))
        paths.append(p)
    return paths[0], paths[1]


@pytest.mark.parametrize("option", ["--model", "--weights"])
def test_cli_refuses_torchscript_without_running_it(tmp_path, capsys, option):
    path, marker = _write_side_effect_model(tmp_path)
    flair, t1 = _subject(tmp_path)
    code = main(["-q", "segment", "--flair", str(flair), "--t1", str(t1), "--out", str(tmp_path / "out"),
                 option, str(path), "--config", "tiny"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "TorchScript" in err and "Traceback" not in err
    assert not _ran(marker)


def test_cli_trust_model_loads_torchscript_model_but_not_weights(tmp_path, capsys):
    path, marker = _write_side_effect_model(tmp_path)
    flair, t1 = _subject(tmp_path)
    base = ["-q", "segment", "--flair", str(flair), "--t1", str(t1), "--config", "tiny", "--trust-model"]
    assert main([*base, "--out", str(tmp_path / "w"), "--weights", str(path)]) != 0
    assert not _ran(marker)  # --trust-model does not open --weights to code
    assert main([*base, "--out", str(tmp_path / "m"), "--model", str(path)]) == 0
    assert _ran(marker)
    assert (tmp_path / "m" / "probability.nii.gz").exists()


def test_slicer_logic_follows_the_same_policy(tmp_path):
    from LesionXAILib.slicer_app.controller import ModuleController

    path, marker = _write_side_effect_model(tmp_path)
    logic = ModuleController(scene=None)
    with pytest.raises(ModelLoadError, match="Trust model code"):
        logic.model(str(path))
    assert not _ran(marker)
    model = logic.model(str(path), trust_model=True)
    assert _ran(marker) and model.source == str(path)
