"""SmoothGrad and its squared / absolute variants (formula: explain/smoothgrad.py).

The three variants are one family: computed together, they share their noise draws and network passes.
``DEFAULTS`` is the one source of truth of SmoothGrad's settings (docs/methods.md section 4.2): 16 noise
samples at 5 % of the normalised FLAIR's range, seed 0; ExplainSettings, the Captum-style SmoothGradSettings,
the presets' built-in defaults and the CLI help read them from the registry. The anchor study used 50 samples
(``--preset anchor``); 16 keeps a whole subject within minutes on a laptop's CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from LesionXAILib.explain.methods.base import BatchContext, Explainer, Region
from LesionXAILib.explain.registry import MethodSpec, register
from LesionXAILib.vocabulary import GRADIENT_UNIT

if TYPE_CHECKING:
    import torch

    from LesionXAILib.explain.targets import InstanceTarget

DEFAULTS = {"samples": 16, "noise_level": 0.05, "noise_per_channel": False, "seed": 0}
OPTIONS = ("samples", "noise_level", "noise_per_channel", "seed")


@dataclass(frozen=True)
class SmoothGradSettings:
    """SmoothGrad's own settings (defaults: ``DEFAULTS``); ``sigma`` (one value or one per channel) overrides ``noise_level``.

    ``noise_level``: sigma as a fraction of the (max - min) range of the normalised FLAIR (with
    ``noise_per_channel``: of each channel's own range). ``variant``: what the Captum-style call returns.
    """

    samples: int = DEFAULTS["samples"]
    noise_level: float = DEFAULTS["noise_level"]
    noise_per_channel: bool = DEFAULTS["noise_per_channel"]
    seed: int = DEFAULTS["seed"]
    sigma: Optional[Sequence[float]] = None
    variant: str = "smoothgrad"


class SmoothGrad(Explainer):
    """SmoothGrad of an instance target: the mean gradient over Gaussian-perturbed inputs."""

    settings_type = SmoothGradSettings

    def attribute(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        settings: Optional[SmoothGradSettings] = None,
        region: Optional[Region] = None,
        **overrides: object,
    ) -> torch.Tensor:
        """Return the (C, k, j, i) map of ``settings.variant`` (fields of settings and region also as keywords).

        ``variant`` is 'smoothgrad' (signed mean), 'smoothgrad_squared' or 'smoothgrad_abs'.
        """
        import torch

        from LesionXAILib.explain.model_state import explaining
        from LesionXAILib.explain.smoothgrad import noise_sigma

        settings, region = self._options(settings, region, overrides)
        image, t, crop = self._crop(inputs, target, region)
        if settings.sigma is None:
            sigma = noise_sigma(image, settings.noise_level, settings.noise_per_channel)
        else:
            sigma = np.array(np.broadcast_to(np.asarray(settings.sigma, dtype=np.float64), (image.shape[0],)))
        ctx = self._context(image, t, crop, settings, region, sigma=sigma)
        with explaining(self.model):
            maps = self.maps(ctx, (settings.variant,))
        return torch.from_numpy(crop.insert(maps[settings.variant])[0])

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Return {variant: (K, C, *crop)} maps of the K targets, all variants from the same noise draws."""
        from LesionXAILib.explain.smoothgrad import smoothgrad_maps

        s = ctx.settings
        return smoothgrad_maps(ctx.model, ctx.crop, ctx.sigma, s.samples, s.seed, ctx.aggregation, tuple(names),
                               ctx.batch_size, ctx.reporter)  # fmt: skip


for _order, (_name, _title, _unit, _non_negative) in enumerate((
    ("smoothgrad", "SmoothGrad", GRADIENT_UNIT, False),
    ("smoothgrad_squared", "SmoothGrad²", f"({GRADIENT_UNIT})²", True),
    ("smoothgrad_abs", "|SmoothGrad|", GRADIENT_UNIT, True),
)):  # fmt: skip
    register(MethodSpec(
        name=_name, title=_title, unit=_unit, per_sequence=True, cls=SmoothGrad, family="smoothgrad",
        non_negative=_non_negative, defaults=DEFAULTS, options=OPTIONS, order=20 + _order,
        description="mean over Gaussian-perturbed inputs of the gradient" + {"smoothgrad_squared": " squared",
                                                                            "smoothgrad_abs": "'s magnitude"}.get(_name, ""),
    ))  # fmt: skip
