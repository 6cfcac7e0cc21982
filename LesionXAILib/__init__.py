"""LesionXAI engine: instance-level explanations of 3D U-Net MS lesion segmentation.

Importable with no Qt and no Slicer. Heavy submodules (torch, MONAI) load on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
