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


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Return Pearson's r of two arrays (flattened, float64)."""
    from LesionXAILib.explain.margin_calibration import pearson_r

    return pearson_r(a, b)
