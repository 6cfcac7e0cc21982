"""torchvision is either importable or absent, and the nnU-Net / MONAI bundle paths LesionXAI uses never import it.

nnunetv2 -> dynamic_network_architectures -> timm pulls PyPI's torchvision, which is built for the CUDA
torch and fails to import with the pinned CPU torch; the Makefile removes it (README "Models"). The
second test runs a folder model in a fresh interpreter in which importing torchvision or timm raises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def test_torchvision_imports_or_is_absent():
    code = "import importlib.util, sys\nif importlib.util.find_spec('torchvision') is None: sys.exit(3)\nimport torchvision"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 3), proc.stderr[-500:]


BLOCKER = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torchvision", "timm"):
                raise ModuleNotFoundError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def test_nnunet_and_bundle_paths_run_without_torchvision(tmp_path):
    pytest.importorskip("nnunetv2")
    from nnunet_fixtures import tiny_nnunet_case

    folder, flair, t1, _ = tiny_nnunet_case()
    script = BLOCKER + textwrap.dedent(
        f"""
        from LesionXAILib.image_io import load_pair
        from LesionXAILib.model_loading import load_model
        from LesionXAILib.segmentation import segment
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # nnU-Net's own predictor too
        import monai.transforms, monai.bundle, monai.inferers
        result = segment(load_pair({str(flair)!r}, {str(t1)!r}), load_model({str(folder)!r}, options={{"folds": "1"}}))
        assert result.probability.max() > 0.5
        assert not any(m.split(".")[0] in ("torchvision", "timm") for m in sys.modules)
        print("ok")
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
