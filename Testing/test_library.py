"""Lesion embeddings and the lesion library with the shipped demo model on a small phantom: pooling checked by
brute force, determinism, self-retrieval, the model-identity guard, the Parquet round trip, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.library.build import add_subject, library_identity, result_table
from LesionXAILib.library.embedding import EmbeddingSettings, embed_lesion, layer_blocks
from LesionXAILib.library.layers import network_aliases, resolve_layers
from LesionXAILib.library.query import find_similar, open_checked
from LesionXAILib.library.store import LesionLibrary, read_parquet, write_parquet
from LesionXAILib.library.table import LesionTable
from LesionXAILib.model_loading import load_model
from LesionXAILib.segmentation import segment

from phantom_fixtures import small_phantom


@pytest.fixture(scope="module")
def demo():
    """The demo model and its segmentation (with ground truth) of a small phantom."""
    torch.set_num_threads(1)
    model = load_model()
    ph = small_phantom()
    return model, segment(ph.pair(), model, ground_truth=ph.lesions)


def _brute_force_block(model, image, mask, layer, spacing, ring_mm=(1.0, 3.0), margin_mm=16.0):
    """The per-layer block computed independently: own crop, own hook, block means by reshaping, own ring."""
    from scipy.ndimage import distance_transform_edt

    d = model.size_divisor
    kk, jj, ii = np.nonzero(mask)
    lo = [int(np.floor((v.min() - np.ceil(margin_mm / s)) / d) * d) for v, s in zip((kk, jj, ii), spacing)]
    hi = [int(np.ceil((v.max() + 1 + np.ceil(margin_mm / s)) / d) * d) for v, s in zip((kk, jj, ii), spacing)]
    lo = [max(0, a) for a in lo]
    hi = [min(n, b) for n, b in zip(mask.shape, hi)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    crop_img = image[(slice(None),) + sl]
    pad = [(0, (-s) % d) for s in crop_img.shape[1:]]
    crop_img = np.pad(crop_img, [(0, 0)] + pad)
    crop_mask = np.pad(mask[sl], pad)
    dist = distance_transform_edt(~crop_mask, sampling=spacing)
    ring = (dist >= ring_mm[0]) & (dist <= ring_mm[1]) & ~crop_mask
    module = model.network.get_submodule(layer)
    seen = {}
    handle = module.register_forward_hook(lambda m, a, o: seen.setdefault("a", o.detach()))
    with torch.no_grad():
        model.network(torch.from_numpy(crop_img.astype(np.float32))[None])
    handle.remove()
    a = seen["a"][0].double().numpy()
    f = [crop_mask.shape[i] // a.shape[1 + i] for i in range(3)]
    feats = []
    for m in (crop_mask, ring):
        g = a.shape[1:]
        w = m.reshape(g[0], f[0], g[1], f[1], g[2], f[2]).mean(axis=(1, 3, 5))
        feats.append((a * w).sum(axis=(1, 2, 3)) / w.sum())
    v = np.concatenate(feats)
    return v / np.linalg.norm(v)


def test_layer_blocks_match_a_brute_force_pooling(demo):
    model, result = demo
    aliases = network_aliases(model.network)
    assert aliases["bottleneck"] == "model.1.submodule.1.submodule.1.submodule"
    assert aliases["decoder1"] == "model.1.submodule.2"
    inst = result.instances
    spacing = result.geometry.spacing_kji
    for lesion_id in inst.ids[:2]:
        mask = inst.labels == lesion_id
        settings = EmbeddingSettings(layers=("bottleneck", "decoder1"))
        blocks = layer_blocks(model, result.normalized, mask, spacing, settings)
        for name, block in blocks.items():
            expected = _brute_force_block(model, result.normalized, mask, name, spacing)
            np.testing.assert_allclose(block, expected, rtol=1e-5, atol=1e-6)
        e = embed_lesion(model, result.normalized, mask, spacing, settings)
        whole = np.concatenate(list(blocks.values()))
        np.testing.assert_allclose(e, whole / np.linalg.norm(whole), rtol=1e-5, atol=1e-6)


def test_embeddings_are_identical_across_runs_and_model_loads(demo):
    model, result = demo
    first = result_table(model, "s", result).embedding
    again = result_table(load_model(), "s", result).embedding
    assert first.shape[0] == len(result.instances.ids) and first.shape[1] > 0
    assert np.array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-6)


def test_fn_lesions_are_embedded_from_their_ground_truth_mask(demo):
    model, result = demo
    ph = small_phantom()
    gt = ph.lesions.copy()
    far = np.argwhere((result.probability < 0.01) & (ph.flair > 0))[0]  # brain, nowhere near a prediction
    gt[tuple(slice(max(0, v - 1), v + 2) for v in far)] = True  # a ground-truth cube the model misses -> an FN lesion
    res = segment(ph.pair(), model, ground_truth=gt)
    fn = [r for r in res.instances.instances if r.status == "FN"]
    assert fn, "the test needs an FN lesion"
    table = result_table(model, "s", res, ids=[fn[0].id])
    expected = embed_lesion(model, res.normalized, res.instances.labels == fn[0].id, res.geometry.spacing_kji)
    assert table.status[0] == "FN" and np.array_equal(table.embedding[0], expected)


def test_a_subject_entered_twice_finds_its_own_lesions_first(demo, tmp_path):
    model, result = demo
    settings = EmbeddingSettings()
    lib = LesionLibrary.create_or_open(tmp_path / "lib", library_identity(model, settings))
    add_subject(lib, model, "phantom", result, settings)
    add_subject(lib, model, "phantom-again", result, settings)
    _, table = open_checked(tmp_path / "lib", library_identity(model, settings))
    queries = result_table(model, "query", result, settings)
    found = find_similar(table, queries, k=3)
    for q in range(len(queries)):
        first_two = {(str(table.subject[i]), int(table.id[i])) for i in found.neighbours[q, :2]}
        assert first_two == {("phantom", int(queries.id[q])), ("phantom-again", int(queries.id[q]))}
        assert found.distances[q, 0] < 1e-6 and found.distances[q, 1] < 1e-6
    records = found.to_records()
    assert records[0]["neighbours"][0]["distance"] == 0.0


def test_a_library_of_another_models_embeddings_is_refused(demo, tmp_path):
    model, result = demo
    settings = EmbeddingSettings()
    lib = LesionLibrary.create_or_open(tmp_path / "lib", library_identity(model, settings))
    add_subject(lib, model, "a", result, settings)
    other = load_model()
    with torch.no_grad():
        next(other.network.parameters()).add_(1e-3)
    with pytest.raises(ParameterError, match="another model"):
        open_checked(tmp_path / "lib", library_identity(other, settings))
    with pytest.raises(ParameterError, match="another model"):
        LesionLibrary.create_or_open(tmp_path / "lib", library_identity(other, settings))
    other_layers = EmbeddingSettings(layers=("bottleneck",))
    with pytest.raises(ParameterError, match="layers"):
        open_checked(tmp_path / "lib", library_identity(model, other_layers))


def test_parquet_round_trip_keeps_every_column(tmp_path):
    rng = np.random.default_rng(3)
    n, dim, s = 7, 12, 32
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    table = LesionTable(
        subject=np.array([f"s{i % 3}" for i in range(n)], dtype=object), id=np.arange(1, n + 1),
        status=np.array(["TP", "FP", "FN", "TP", "FP", "FN", "predicted"], dtype=object),
        voxels=rng.integers(1, 500, n), volume_mm3=rng.uniform(1, 500, n), centroid_ras=rng.normal(size=(n, 3)),
        mean_probability=np.array([0.9, 0.6, np.nan, 0.7, 0.55, np.nan, 0.8]), embedding=emb,
        crop=rng.integers(0, 256, (n, 3, s, s)).astype(np.uint8), crop_mask=rng.integers(0, 2, (n, 3, s, s)).astype(np.uint8),
    )  # fmt: skip
    identity = {"weights_sha256": "abc", "layers": ["x"]}
    path = write_parquet(tmp_path / "t.parquet", table, identity)
    back, meta = read_parquet(path)
    assert meta["identity"] == identity
    for name in ("subject", "id", "status", "voxels", "volume_mm3", "centroid_ras", "embedding", "crop", "crop_mask"):
        assert np.array_equal(getattr(back, name), getattr(table, name)), name
    np.testing.assert_array_equal(back.mean_probability, table.mean_probability)  # NaN where NaN
    import pyarrow.parquet as pq

    schema = pq.read_schema(str(path))  # a real Parquet file, readable without LesionXAI
    assert schema.field("embedding").type.list_size == dim


def test_bad_inputs_give_clear_messages(demo, tmp_path):
    model, result = demo
    settings = EmbeddingSettings()
    identity = library_identity(model, settings)
    LesionLibrary.create_or_open(tmp_path / "empty", identity)
    with pytest.raises(ParameterError, match="holds no lesion"):
        open_checked(tmp_path / "empty", identity)
    with pytest.raises(ParameterError, match="not a lesion library"):
        LesionLibrary.open(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="not a lesion library"):
        LesionLibrary.create_or_open(tmp_path / "busy", identity)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(InstanceError, match="valid ids"):
        result_table(model, "s", result, ids=[99])
    with pytest.raises(ParameterError, match="does not exist"):
        resolve_layers(model, ["model.9"])
    with pytest.raises(ParameterError, match="subject id"):
        LesionLibrary.create_or_open(tmp_path / "lib", identity).add("../x", result_table(model, "s", result, ids=[1]))
    assert json.loads((tmp_path / "empty" / "library.json").read_text())["identity"] == identity
