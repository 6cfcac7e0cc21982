"""Case-based explanation, honestly evaluated: does the FP share of a lesion's nearest library lesions predict FP vs TP?

Held-out design: the library holds the lesions of phantoms with seeds >= 10000 (the demo model's
training seeds); the queries are phantoms with seeds < 10000, never in the library. Phantoms are made
harder than the demo model's training distribution (contrast jitter 2, every other subject in 1x1x3 mm
slices, threshold 0.3) so that the model makes false positives at all: on its own evaluation phantoms it
makes none. Score per query lesion (TP or FP): the FP share of its k nearest library lesions among
those that are TP or FP. Baseline: lesion volume alone (smaller = more likely FP, i.e. score -volume).
AUC = P(score of an FP > score of a TP) + 0.5 P(tie) (Mann-Whitney), with a seeded bootstrap 95% interval
over query lesions; checked against scikit-learn's roc_auc_score when it is installed.

Every candidate layer set is scored on the same lesions (one forward pass per lesion captures all
layers), which is how the default layers were chosen (README "Similar lesions").

Also (``--search-only`` runs just this): exact cosine search time at 10^5 library lesions, against a
full argsort of the same distances (baseline measured in the same run).

    python benchmarks/bench_similar.py [--library-seeds 10000-10007] [--query-seeds 0-7] [--k 5]
    python benchmarks/bench_similar.py --search-only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LesionXAILib.library.embedding import EmbeddingSettings, combine_blocks, layer_blocks  # noqa: E402
from LesionXAILib.library.layers import network_aliases  # noqa: E402
from LesionXAILib.library.search import nearest  # noqa: E402

FOV_MM = (112.0, 112.0, 96.0)
CANDIDATES = {
    "bottleneck": ("bottleneck",),
    "decoder2": ("decoder2",),
    "decoder1": ("decoder1",),
    "bottleneck+decoder2": ("bottleneck", "decoder2"),
    "bottleneck+decoder1": ("bottleneck", "decoder1"),
    "bottleneck+decoder2+decoder1": ("bottleneck", "decoder2", "decoder1"),
}


def seed_range(text: str) -> list[int]:
    """Return the seeds of 'a-b' (inclusive) or 'a,b,c'."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(v) for v in text.split(",")]


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Return the Mann-Whitney AUC of ``scores`` for ``positive`` (ties count one half)."""
    pos, neg = scores[positive], scores[~positive]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def bootstrap_ci(scores: np.ndarray, positive: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Return the 2.5th and 97.5th percentile of the AUC over ``n`` seeded resamples of the query lesions."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(scores), len(scores))
        v = auc(scores[idx], positive[idx])
        if np.isfinite(v):
            values.append(v)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def subject_lesions(model, seed: int, threshold: float, layers: tuple[str, ...]) -> list[dict]:
    """Return one dict per lesion of phantom ``seed``: status, volume and per-layer unit blocks."""
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import SegmentationSettings, segment

    spacing = (1.0, 1.0, 3.0) if seed % 2 else (1.0, 1.0, 1.0)
    ph = generate_phantom(seed, PhantomSettings(n_lesions=20, fov_mm=FOV_MM, spacing=spacing, contrast_jitter=2.0))
    result = segment(ph.pair(), model, SegmentationSettings(threshold=threshold), ground_truth=ph.lesions)
    settings = EmbeddingSettings(layers=layers)
    print(f"  seed {seed}: {len(result.instances.instances)} lesions", flush=True)
    rows = []
    for inst in result.instances.instances:
        blocks = layer_blocks(model, result.normalized, result.instances.labels == inst.id, result.geometry.spacing_kji, settings)
        rows.append({"seed": seed, "id": inst.id, "status": inst.status, "volume": inst.volume_mm3, "blocks": blocks})
    return rows


def embeddings(rows: list[dict], names: tuple[str, ...]) -> np.ndarray:
    """Return the embeddings of ``rows`` built from the blocks of the layers ``names``."""
    return np.stack([combine_blocks([r["blocks"][n] for n in names]) for r in rows])


def evaluate(library: list[dict], queries: list[dict], names: tuple[str, ...], k: int) -> tuple[float, tuple[float, float]]:
    """Return (AUC, 95% CI) of the neighbours' FP share predicting FP among the TP/FP query lesions."""
    lib = [r for r in library if r["status"] in ("TP", "FP")]
    q = [r for r in queries if r["status"] in ("TP", "FP")]
    idx, _ = nearest(embeddings(q, names), embeddings(lib, names), k)
    lib_fp = np.array([r["status"] == "FP" for r in lib])
    share = lib_fp[idx].mean(axis=1)
    positive = np.array([r["status"] == "FP" for r in q])
    return auc(share, positive), bootstrap_ci(share, positive)


def check_auc_reference(scores: np.ndarray, positive: np.ndarray) -> None:
    """Assert the AUC equals scikit-learn's, when scikit-learn is installed."""
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return
    if positive.any() and (~positive).any():
        assert abs(roc_auc_score(positive, scores) - auc(scores, positive)) < 1e-12


def search_benchmark(n: int = 100_000, dim: int = 320, queries: int = 50, k: int = 5) -> None:
    """Print exact search seconds per query at ``n`` library lesions, and a full argsort of the same distances (baseline)."""
    rng = np.random.default_rng(0)
    lib = rng.normal(size=(n, dim)).astype(np.float32)
    lib /= np.linalg.norm(lib, axis=1, keepdims=True)
    q = lib[rng.integers(0, n, queries)] + 0.01 * rng.normal(size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    nearest(q[:2], lib, k)  # warm-up
    t = time.perf_counter()
    idx, _ = nearest(q, lib, k)
    exact = (time.perf_counter() - t) / queries
    t = time.perf_counter()
    full = np.argsort(1.0 - q @ lib.T, axis=1)[:, :k]
    baseline = (time.perf_counter() - t) / queries
    assert np.array_equal(np.sort(idx, axis=1), np.sort(full, axis=1))
    print(f"exact cosine search, {n} lesions x {dim} dims, {queries} queries in one batch: {exact * 1e3:.2f} ms per query; "
          f"full argsort baseline {baseline * 1e3:.2f} ms per query (ratio {exact / baseline:.2f})")  # fmt: skip
    t = time.perf_counter()
    for i in range(10):
        nearest(q[i : i + 1], lib, k)
    print(f"one query at a time: {(time.perf_counter() - t) / 10 * 1e3:.2f} ms per query")


def main() -> int:
    """Run the evaluation and print its tables; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library-seeds", default="10000-10007")
    parser.add_argument("--query-seeds", default="0-7")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--search-only", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    search_benchmark()
    if args.search_only:
        return 0
    from LesionXAILib.model_loading import load_model

    model = load_model()
    aliases = network_aliases(model.network)
    all_layers = tuple(sorted({a for names in CANDIDATES.values() for a in names}))
    start = time.perf_counter()
    library = [r for s in seed_range(args.library_seeds) for r in subject_lesions(model, s, args.threshold, all_layers)]
    queries = [r for s in seed_range(args.query_seeds) for r in subject_lesions(model, s, args.threshold, all_layers)]
    for rows in (library, queries):  # blocks are keyed by module name: give them the alias names too
        for r in rows:
            r["blocks"].update({a: r["blocks"][aliases[a]] for a in all_layers})

    def mix(rows: list[dict]) -> str:
        return ", ".join(f"{s} {sum(r['status'] == s for r in rows)}" for s in ("TP", "FP", "FN"))

    print(f"library seeds {args.library_seeds}: {mix(library)}; query seeds {args.query_seeds}: {mix(queries)}; "
          f"threshold {args.threshold}, k {args.k}; {time.perf_counter() - start:.0f} s")  # fmt: skip
    q = [r for r in queries if r["status"] in ("TP", "FP")]
    positive = np.array([r["status"] == "FP" for r in q])
    volume_score = -np.array([r["volume"] for r in q])
    check_auc_reference(volume_score, positive)
    lo, hi = bootstrap_ci(volume_score, positive)
    print(f"{'predictor':<34s} {'AUC':>6s}  95% CI")
    print(f"{'lesion volume alone (smaller=FP)':<34s} {auc(volume_score, positive):6.3f}  [{lo:.3f}, {hi:.3f}]")
    for label, names in CANDIDATES.items():
        a, (lo, hi) = evaluate(library, queries, names, args.k)
        layer_names = "+".join(aliases[n] for n in names)
        print(f"{'neighbours FP share: ' + label:<34s} {a:6.3f}  [{lo:.3f}, {hi:.3f}]  ({layer_names})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
