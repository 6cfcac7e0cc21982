"""The names and display labels of the Grad-CAM methods (data only, importable without torch).

The formulas are in :mod:`LesionXAILib.explain.cam_variants`; reports, the viewer and the Slicer
module read the names from here so that a new variant needs no edit there. ``gradcampp`` is the
measured default Grad-CAM++ for one lesion; in outputs of LesionXAI before this change it meant ``gradcampp_paper``.
"""

CAM_LABELS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "gradcam_relu": "Grad-CAM (ReLU gradients)",
    "gradcampp_paper": "Grad-CAM++ (closed form)",
    "gradcampp_local": "Grad-CAM++ (lesion-box sums)",
    "gradcampp_anchor": "Grad-CAM++ (MONAI, anchor)",
    "layercam": "LayerCAM",
    "gradcampp_spatial": "Grad-CAM++ (per-position weights)",
    "gradcam_reach": "Grad-CAM (lesion reach)",
    "gradcampp_reach": "Grad-CAM++ (lesion reach)",
}
CAM_METHODS: tuple[str, ...] = tuple(CAM_LABELS)
