"""Realistic FLAIR + MPRAGE multiple-sclerosis phantoms built on the MNI152 2009a template (no network needed).

``generate_phantom(seed, PhantomSettings(...))`` returns a :class:`Phantom` (FLAIR, MPRAGE,
ground-truth lesions, WM probability, geometry, lesion table); ``insert_lesion`` adds a synthetic
lesion to any FLAIR/MPRAGE pair.
"""

from LesionXAILib.phantom.generator import Phantom, PhantomSettings, generate_phantom
from LesionXAILib.phantom.insertion import insert_lesion, pick_nawm_center
from LesionXAILib.phantom.lesion_placement import PlacementSettings

__all__ = [
    "Phantom",
    "PhantomSettings",
    "PlacementSettings",
    "generate_phantom",
    "insert_lesion",
    "pick_nawm_center",
]
