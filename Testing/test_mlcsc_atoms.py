"""ML-CSC atoms: code-energy shares and lesion reconstructions against activations captured by hooks and scipy convolutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.methods.atoms import Atoms, atom_table
from LesionXAILib.explain.targets import InstanceTarget
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.models.mlcsc import CSCLayer
from LesionXAILib.models.mlcsc_atoms import atom_patches
from explain_fixtures import tiny_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SHAPE = (12, 16, 12)


def small_mlcsc(seed: int = 0) -> LesionModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(name="mlcsc-test", network="mlcsc", architecture={"atoms": [3, 4, 5], "iterations": 2, "hidden": 4})
    from LesionXAILib.lesion_model import build_network

    model = LesionModel(build_network(cfg).double(), cfg).eval()
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, CSCLayer):
                layer.threshold.uniform_(0.0, 0.05)  # a sparse but not empty code
    return model


def image_and_mask(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(2, *SHAPE))
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:8, 6:10, 4:7] = True
    image[0, mask] += 3.0
    return image, mask


def hooked_codes(model: LesionModel, image: np.ndarray) -> list[np.ndarray]:
    """Return every CSC layer's output in module order (FLAIR layer 1, MPRAGE layer 1, joint 2, joint 3), via forward hooks."""
    captured: list[np.ndarray] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out[0].detach().numpy().copy()))
             for m in model.modules() if isinstance(m, CSCLayer)]  # fmt: skip
    with torch.no_grad():
        model(torch.from_numpy(image)[None])
    for h in hooks:
        h.remove()
    return captured


def block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Return True per factor^3 block holding a mask voxel (the grid padded up with False)."""
    padded = np.zeros([-(-s // factor) * factor for s in mask.shape], dtype=bool)
    padded[tuple(slice(0, s) for s in mask.shape)] = mask
    k, j, i = (s // factor for s in padded.shape)
    return padded.reshape(k, factor, j, factor, i, factor).any(axis=(1, 3, 5))


def test_shares_are_each_atoms_code_energy_over_the_lesion_cells():
    model = small_mlcsc()
    image, mask = image_and_mask()
    rows = atom_table(model, image, [InstanceTarget(mask, instance_id=7)])
    codes = hooked_codes(model, image)
    groups = [(1, "FLAIR", codes[0], 1), (1, "MPRAGE", codes[1], 1), (2, "joint", codes[2], 2), (3, "joint", codes[3], 4)]
    for layer, modality, code, factor in groups:
        region = block_any(mask, factor)
        energy = (code.astype(np.float64) ** 2 * region).reshape(code.shape[0], -1).sum(1)
        got = sorted((r for r in rows if r["layer"] == layer and r["modality"] == modality), key=lambda r: r["atom"])
        assert [r["instance_id"] for r in got] == [7] * code.shape[0]
        np.testing.assert_allclose([r["energy"] for r in got], energy, rtol=1e-10)
        np.testing.assert_allclose([r["share"] for r in got], energy / energy.sum(), rtol=1e-10)
        ranks = {r["atom"]: r["rank"] for r in got}
        assert [ranks[a] for a in np.argsort(-energy, kind="stable")] == list(range(1, code.shape[0] + 1))
        assert energy.sum() > 0


def test_layer1_reconstruction_is_the_top_atoms_code_over_the_lesion_convolved_with_the_atoms():
    model = small_mlcsc(seed=2)
    image, mask = image_and_mask(seed=2)
    recon = Atoms(model).attribute(image, mask, atoms_top=2, full_volume=True).numpy()
    codes = hooked_codes(model, image)
    net = model.network
    for m in range(2):
        code = codes[m]
        energy = (code ** 2 * mask).reshape(code.shape[0], -1).sum(1)
        top = np.argsort(-energy, kind="stable")[:2]
        weight = net.modality_layers[m].weight.detach().numpy()
        want = sum(convolve(code[a] * mask, weight[a, 0], mode="constant") for a in top)
        np.testing.assert_allclose(recon[m], want, atol=1e-10)
    assert np.abs(recon).sum() > 0


def test_deep_layer_reconstruction_uses_only_the_top_atoms_and_is_linear_in_them():
    model = small_mlcsc(seed=3)
    image, mask = image_and_mask(seed=3)
    rows = [r for r in atom_table(model, image, [InstanceTarget(mask, instance_id=1)]) if r["layer"] == 3]
    first = Atoms(model).attribute(image, mask, atoms_layer=3, atoms_top=1, full_volume=True).numpy()
    both = Atoms(model).attribute(image, mask, atoms_layer=3, atoms_top=2, full_volume=True).numpy()
    # the second atom alone: its code over the lesion cells, synthesised through D3, D2, D1 of each sequence
    code = hooked_codes(model, image)[3]
    second = next(r["atom"] for r in rows if r["rank"] == 2)
    keep = np.zeros_like(code)
    keep[second] = code[second] * block_any(mask, 4)[: code.shape[1], : code.shape[2], : code.shape[3]]
    net = model.network
    with torch.no_grad():
        y = net.joint_layers[1].synthesis(torch.from_numpy(keep)[None], (6, 8, 6))
        y = net.joint_layers[0].synthesis(y, SHAPE)
        alone = np.stack([net.modality_layers[m].synthesis(y[:, 3 * m : 3 * m + 3], SHAPE)[0, 0].numpy() for m in range(2)])
    np.testing.assert_allclose(both - first, alone, atol=1e-10)
    assert np.abs(alone).sum() > 0


def test_atom_patches_are_the_layer1_atoms_themselves():
    model = small_mlcsc(seed=4)
    patches = atom_patches(model.network, 1, [0, 2], modality=1)
    weight = model.network.modality_layers[1].weight.detach().numpy()
    for n, atom in enumerate([0, 2]):
        np.testing.assert_allclose(patches[n, 1, 1:4, 1:4, 1:4], weight[atom, 0], atol=1e-12)
        assert np.all(patches[n, 0] == 0)


def test_a_model_without_sparse_coding_layers_is_refused_in_one_line():
    with pytest.raises(ParameterError, match="needs an ML-CSC model") as info:
        Atoms(tiny_model())
    assert "\n" not in str(info.value)
    with pytest.raises(ParameterError, match="needs an ML-CSC model"):
        atom_table(tiny_model(), np.zeros((2, 8, 8, 8)), [])


def test_atom_tables_and_the_report_panel(tmp_path):
    import csv
    import json

    from LesionXAILib.explain.methods.atoms import write_atom_tables
    from LesionXAILib.report.atoms_panel import atoms_section, orthogonal_tile

    assert atoms_section(tmp_path) == ""  # a run without atoms gets no section
    model = small_mlcsc(seed=5)
    image, mask = image_and_mask(seed=5)
    other = np.zeros(SHAPE, dtype=bool)
    other[1:3, 2:4, 8:10] = True
    image[0, other] += 3.0
    targets = [InstanceTarget(mask, instance_id=1), InstanceTarget(other, instance_id=2)]
    json_path, csv_path = write_atom_tables(tmp_path, model, image, targets)
    rows = json.loads(json_path.read_text())["rows"]
    with open(csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 2 * (2 * 3 + 4 + 5)  # per instance: 3 atoms x 2 sequences, 4 + 5 joint atoms
    for layer, modality in [(1, "FLAIR"), (1, "MPRAGE"), (2, "joint"), (3, "joint")]:
        for iid in (1, 2):
            shares = [r["share"] for r in rows if (r["instance_id"], r["layer"], r["modality"]) == (iid, layer, modality)]
            assert sum(shares) == pytest.approx(1.0)
    npz = np.load(tmp_path / "atoms.npz")
    assert npz["1_L1_FLAIR"].shape == (3, 5, 5, 5) and npz["1_L3"].shape[:2] == (4, 2)
    top = next(r["atom"] for r in rows if (r["instance_id"], r["layer"], r["modality"], r["rank"]) == (1, 1, "FLAIR", 1))
    assert npz["1_L1_FLAIR_ids"][0] == top
    np.testing.assert_allclose(npz["1_L1_FLAIR"][0, 1:4, 1:4, 1:4], model.network.modality_layers[0].weight[top, 0].detach().numpy(), rtol=1e-6)
    html = atoms_section(tmp_path)
    assert 'id="atoms"' in html and html.count("<img") == 2 and 'id="atoms-table-2"' in html
    tile = orthogonal_tile(np.arange(27.0).reshape(3, 3, 3))
    np.testing.assert_array_equal(tile[:, :3], np.arange(27.0).reshape(3, 3, 3)[1])
    assert np.isnan(tile[:, 3]).all()
