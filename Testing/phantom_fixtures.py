"""Phantoms shared by the phantom tests (generated once per test session; a few seconds in all)."""

from __future__ import annotations

import functools

from LesionXAILib.phantom import Phantom, PhantomSettings, generate_phantom

SMALL_FOV = (64.0, 64.0, 64.0)


@functools.lru_cache(maxsize=None)
def whole_brain_phantom(seed: int = 11, n_lesions: int = 15) -> Phantom:
    """Return a cached whole-brain 1 mm phantom."""
    return generate_phantom(seed, PhantomSettings(n_lesions=n_lesions))


@functools.lru_cache(maxsize=None)
def small_phantom(seed: int = 5, n_lesions: int = 6, spacing: tuple = (1.0, 1.0, 1.0)) -> Phantom:
    """Return a cached 64 mm field-of-view phantom (fast; still holds lesions)."""
    return generate_phantom(seed, PhantomSettings(n_lesions=n_lesions, fov_mm=SMALL_FOV, spacing=spacing))
