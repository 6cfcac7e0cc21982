"""Segmentation benchmark: LesionXAI's segment() vs a plain MONAI sliding_window_inference call.

Both run in the same invocation, each repetition in a fresh subprocess so peak RSS is per method.
Input: the 1 mm MNI152 template shipped in nilearn (as FLAIR and MPRAGE), the anchor-format network
(ies-unet, randomly initialised: weights do not change the cost). Prints wall time, ratio, peak RSS.

    .venv/bin/python benchmarks/bench_segment.py [--repeats 3] [--config ies-unet]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _template_path() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def _worker(method: str, config: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import SimpleITK as sitk
    import torch

    from LesionXAILib.image_io import pair_from_images
    from LesionXAILib.lesion_model import LesionModel, build_network
    from LesionXAILib.model_config import get_config
    from LesionXAILib.segmentation import SegmentationSettings, prepare_input, segment

    torch.manual_seed(0)
    cfg = get_config(config)
    model = LesionModel(build_network(cfg), cfg).eval()
    img = sitk.ReadImage(str(_template_path()), sitk.sitkFloat32)
    pair = pair_from_images(img, img)
    shape = pair.flair.shape
    start = time.perf_counter()
    if method == "lesionxai":
        result = segment(pair, model, SegmentationSettings(threshold=0.5))
        n = len(result.instances.instances)
    else:
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(prepare_input(pair))[None]
        with torch.inference_mode():
            out = sliding_window_inference(x, cfg.roi_size, 1, model, overlap=cfg.overlap, mode="gaussian")
            prob = torch.softmax(out, 1)[0, cfg.lesion_index].numpy() if cfg.head == "softmax" else torch.sigmoid(out)[0, 0].numpy()
        n = int((prob >= 0.5).sum())
    seconds = time.perf_counter() - start
    return {"method": method, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "shape_kji": list(shape), "n": n, "threads": torch.get_num_threads()}


def main() -> None:
    """Run both methods alternately and print a comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", default="ies-unet")
    ap.add_argument("--worker", choices=("lesionxai", "monai"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.config)))
        return
    runs: dict[str, list[dict]] = {"monai": [], "lesionxai": []}
    for _ in range(args.repeats):
        for method in ("monai", "lesionxai"):
            out = subprocess.run([sys.executable, __file__, "--worker", method, "--config", args.config],
                                 capture_output=True, text=True, check=True)
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(r["seconds"] for r in runs["monai"])
    ours = statistics.median(r["seconds"] for r in runs["lesionxai"])
    shape = runs["monai"][0]["shape_kji"]
    print(f"volume {shape} (k,j,i) 1 mm, network {args.config}, torch threads {runs['monai'][0]['threads']}, repeats {args.repeats}")
    for m in ("monai", "lesionxai"):
        secs = [round(r["seconds"], 2) for r in runs[m]]
        rss = max(r["peak_rss_mb"] for r in runs[m])
        print(f"  {m:10s} median {statistics.median(secs):7.2f} s  runs {secs}  peak RSS {rss:7.0f} MB")
    ratio = ours / base
    print(f"ratio lesionxai/monai = {ratio:.3f} (target <= 1.1); peak RSS lesionxai "
          f"{max(r['peak_rss_mb'] for r in runs['lesionxai']) / 1024:.2f} GB (target <= 4 GB)")


if __name__ == "__main__":
    main()
