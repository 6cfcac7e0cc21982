"""A full-size subject and a network for the explainer benchmarks (shared by bench_explain.py and
explain_margin_fidelity.py).

Subject: a LesionXAI phantom (``generate_phantom``) with its ground-truth lesions as the instances
to explain; if the phantom package is not installed, the nilearn MNI152 template (as FLAIR and
MPRAGE) with spherical lesion masks in bright white matter. Network: a checkpoint (default: the
shipped demo model), or a named config randomly initialised (``--config ies-unet``: the anchor's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def add_subject_arguments(ap: argparse.ArgumentParser) -> None:
    """Add --model/--config/--phantom-seed/--lesions/--fov options."""
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped demo model)")
    ap.add_argument("--config", default=None, help="random-initialised network config instead of a checkpoint (e.g. ies-unet, custom)")
    ap.add_argument("--phantom-seed", type=int, default=1)
    ap.add_argument("--lesions", type=int, default=12, help="lesions in the phantom (>= 10)")
    ap.add_argument("--fov", type=float, nargs=3, default=(160.0, 192.0, 160.0), metavar=("I", "J", "K"), help="phantom field of view in mm")


def load_network(model: str | None, config: str | None):
    """Return (eval LesionModel, description) from a checkpoint or a randomly initialised config."""
    import torch

    from LesionXAILib.lesion_model import LesionModel, build_network
    from LesionXAILib.model_config import ModelConfig, get_config
    from LesionXAILib.model_loading import load_model

    if config is not None:
        torch.manual_seed(0)
        cfg = ModelConfig() if config == "custom" else get_config(config)
        net = LesionModel(build_network(cfg), cfg).eval()
        desc = f"{cfg.name} (random init)"
    else:
        net = load_model(model)
        desc = str(net.source)
    params = sum(p.numel() for p in net.parameters())
    return net, f"{desc}, {params / 1e6:.2f} M parameters, size divisor {net.size_divisor}"


def make_subject(seed: int, n_lesions: int, fov_mm) -> dict:
    """Return {'image': normalised (2,k,j,i), 'geometry', 'masks': [k,j,i bool], 'source': str}."""
    from LesionXAILib.instances import label_components
    from LesionXAILib.segmentation import prepare_input

    try:
        from LesionXAILib.phantom import PhantomSettings, generate_phantom
    except ImportError:
        generate_phantom = None
    if generate_phantom is not None:
        ph = generate_phantom(seed, PhantomSettings(n_lesions=n_lesions, fov_mm=tuple(fov_mm)))
        pair, lesions = ph.pair(), ph.lesions
        source = f"phantom seed {seed} ({n_lesions} lesions requested, fov {tuple(fov_mm)} mm)"
    else:
        pair, lesions = _template_subject(seed, n_lesions, fov_mm)
        source = f"MNI152 template with {n_lesions} spherical lesion masks (phantom package not installed)"
    labels, n = label_components(lesions, 26, 3)
    masks = [labels == i for i in range(1, n + 1)]
    return {"image": prepare_input(pair), "geometry": pair.geometry, "masks": masks, "source": source, "lesions": lesions}


def _template_subject(seed: int, n_lesions: int, fov_mm):
    import nilearn
    import SimpleITK as sitk

    from LesionXAILib.image_io import pair_from_images

    path = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    size = np.array(img.GetSize())
    want = np.minimum(np.array(fov_mm, dtype=int), size)
    start = (size - want) // 2
    img = sitk.RegionOfInterest(img, [int(v) for v in want], [int(v) for v in start])
    pair = pair_from_images(img, img)
    arr = pair.flair
    rng = np.random.default_rng(seed)
    bright = np.argwhere(arr > np.quantile(arr[arr > 0], 0.9))
    lesions = np.zeros(arr.shape, bool)
    grid = np.indices(arr.shape)
    placed = 0
    while placed < n_lesions:
        c = bright[rng.integers(len(bright))]
        r = rng.uniform(1.5, 4.5)
        if lesions[tuple(slice(max(0, v - 8), v + 8) for v in c)].any():
            continue
        lesions |= ((grid - c.reshape(3, 1, 1, 1)) ** 2).sum(0) <= r * r
        placed += 1
    return pair, lesions


def set_phantom_bn_stats(model, seed: int = 101, crops: int = 6, size: int = 96, fov_mm=(160.0, 192.0, 160.0)) -> str:
    """Give a randomly initialised network realistic batch-norm statistics; return what was done.

    A random network keeps BN's defaults (running mean 0, variance 1), so its deep activations are far
    from normalised and its gradients die out within a few voxels: an unrealistically short reach.
    Here every BN layer's running statistics are replaced by the activation statistics of ``crops``
    random ``size``^3 crops (inside the head) of a phantom (``seed``; not one the benchmark explains):
    train-mode forward passes without gradients, momentum None (a cumulative average over the crops),
    weights untouched. This is what BN statistics are after training, minus the learned weights.
    """
    import torch

    subject = make_subject(seed, 12, fov_mm)
    image = torch.from_numpy(np.ascontiguousarray(subject["image"], dtype=np.float32))
    head = np.argwhere(subject["image"][0] != 0)
    lo, hi = head.min(0), head.max(0) + 1
    rng = np.random.default_rng(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(crops):
            start = [int(rng.integers(a, max(a + 1, b - size + 1))) for a, b in zip(lo, hi)]
            x = image[(slice(None),) + tuple(slice(a, a + size) for a in start)]
            pad = [size - n for n in x.shape[1:]]
            x = torch.nn.functional.pad(x, [0, pad[2], 0, pad[1], 0, pad[0]])
            model(x[None])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()
    return f"BN statistics from {crops} random {size}^3 crops of phantom seed {seed} (train-mode passes, weights untouched)"


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Return Pearson's r of two arrays (flattened, float64)."""
    from LesionXAILib.explain.margin_calibration import pearson_r

    return pearson_r(a, b)
