"""What every explainer class shares: the Captum-style entry, the crop it explains, and the pipeline's batch context.

An :class:`Explainer` is used two ways. Captum-style, ``Method(model).attribute(inputs, target, settings,
region)`` explains one instance: ``inputs`` is the normalised (C, k, j, i) image (numpy or torch, a
leading batch axis of 1 allowed), ``target`` an InstanceTarget or a boolean k,j,i mask, ``settings`` the
method's own settings object (``settings_type``; its defaults are the registry's) and ``region`` a
:class:`Region` (aggregation, spacing, crop margin, batch size); either may also be given field by field
as keywords. Each call is self-contained: the model runs in eval mode (its training flag is restored),
hooks are removed, parameters receive no gradients and randomness comes only from the settings' seed.
Results are CPU torch tensors on the input grid. The batch pipeline instead calls the classmethod
:meth:`Explainer.maps` once per group of instances sharing a crop, with a :class:`BatchContext`.

Importing a method file needs no torch (torch, MONAI and SimpleITK load when a method runs): the
registry, and the titles and options it gives the reports and the Slicer panel, stay cheap to read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Optional, Sequence

import numpy as np

from LesionXAILib.errors import InputImageError
from LesionXAILib.explain.registry import method_spec

if TYPE_CHECKING:
    import torch

    from LesionXAILib.explain.crop_inputs import CropInputs
    from LesionXAILib.explain.targets import InstanceTarget
    from LesionXAILib.geometry import Geometry
    from LesionXAILib.lesion_model import LesionModel

Spacing = Sequence[float]  # i, j, k mm, or a Geometry (its spacing is used)


def check_image(model: LesionModel, normalized: np.ndarray | torch.Tensor, geometry: Optional[Geometry]) -> np.ndarray:
    """Return the normalised (C, k, j, i) image as a float numpy array after checking it fits the model and grid."""
    arr = normalized.detach().cpu().numpy() if hasattr(normalized, "detach") else np.asarray(normalized)
    if arr.ndim != 4 or arr.shape[0] != model.config.in_channels:
        raise InputImageError(
            f"normalised image must be ({model.config.in_channels}, k, j, i) "
            f"({', '.join(model.config.input_order)}), got shape {arr.shape}"
        )
    if geometry is not None and tuple(arr.shape[1:]) != tuple(geometry.shape):
        raise InputImageError(f"normalised image shape {arr.shape[1:]} does not match the grid {geometry.shape}")
    if not np.isfinite(arr).all():
        raise InputImageError("normalised image contains NaN or infinite values")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


@dataclass(frozen=True)
class Region:
    """Where and on what target one Captum-style call explains: shared by every method.

    ``aggregation`` (sum, mean, max) defaults to the InstanceTarget's, or 'sum' for a plain mask;
    ``spacing`` is i,j,k mm (or a Geometry) for the crop margin; ``margin_mm`` None takes the model's
    calibrated margin (whole volume if it has none); ``batch_size`` None picks one from the crop size.
    """

    aggregation: Optional[str] = None
    spacing: Spacing | Geometry = (1.0, 1.0, 1.0)
    margin_mm: Optional[float] = None
    full_volume: bool = False
    batch_size: Optional[int] = None


@dataclass(frozen=True)
class NoSettings:
    """The settings of a method that has none of its own."""


@dataclass
class BatchContext:
    """What :meth:`Explainer.maps` gets for one group of K instances sharing a crop.

    ``settings``: the method's own settings object. ``sigma``: SmoothGrad's per-channel noise sigma of the
    whole image. ``layer`` / ``layer_activations``: the resolved network layer of layer methods and its
    whole-volume activations (None: computed from ``image``, the whole normalised image, when needed).
    """

    model: LesionModel
    crop: CropInputs
    aggregation: str
    batch_size: int
    settings: Any = NoSettings()
    sigma: Optional[np.ndarray] = None
    layer: Optional[str] = None
    layer_activations: Any = None
    image: Optional[np.ndarray | torch.Tensor] = None
    reporter: Any = None

    def with_crop(self, crop: CropInputs, image: Optional[np.ndarray | torch.Tensor] = None) -> "BatchContext":
        """Return the same context around another crop (and whole image; its layer activations are then recomputed)."""
        return replace(self, crop=crop, image=image, layer_activations=None)


class Explainer:
    """Base class of a registered method: holds the model and turns (inputs, target, region) into a crop to explain.

    Subclasses set ``settings_type`` (a frozen dataclass whose field defaults are the method's registered
    defaults) and implement :meth:`maps`; per-sequence methods return (K, C, *crop) maps on the crop grid,
    the others (K, k, j, i) maps on the full grid.
    """

    settings_type: ClassVar[type] = NoSettings
    method: ClassVar[str] = ""  # the registered name a Captum-style call returns

    def __init__(self, model: LesionModel) -> None:
        from LesionXAILib.explain.model_state import check_model

        self.model = check_model(model)

    def attribute(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        settings: Any = None,
        region: Optional[Region] = None,
        **overrides: Any,
    ) -> torch.Tensor:
        """Return the map of ``self.method`` on the input grid: (C, k, j, i) per sequence, else (k, j, i).

        ``settings``: a ``settings_type`` object (default: the registered defaults); ``region``: a Region;
        fields of either may be given as keywords instead (``samples=4, margin_mm=8``).
        """
        return self._attribute_one(self.method, inputs, target, settings, region, overrides)

    @classmethod
    def settings_from(cls, explain_settings: Any) -> Any:
        """Return the method's settings taken from an ExplainSettings (fields of the same name)."""
        names = [f.name for f in fields(cls.settings_type)]
        return cls.settings_type(**{n: getattr(explain_settings, n) for n in names if hasattr(explain_settings, n)})

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Return {method name: maps} of the K instances of ``ctx.crop`` for the members ``names`` of this family."""
        raise NotImplementedError

    @classmethod
    def perturbed_maps(cls, ctx: BatchContext, name: str, images: Sequence[torch.Tensor],
                       full_images: Iterable[Optional[np.ndarray]]) -> Iterator[torch.Tensor]:  # fmt: skip
        """Yield the first instance's map of ``name`` for each (C, *crop) image (``full_images``: whole images, or None).

        Used by max-sensitivity; a method that can batch several images in one pass overrides this.
        """
        for image, full in zip(images, full_images):
            yield cls.maps(ctx.with_crop(ctx.crop.with_image(image), full), (name,))[name][0]

    def _options(self, settings: Any, region: Optional[Region], overrides: dict[str, Any]) -> tuple[Any, Region]:
        """Return (method settings, region) with keyword ``overrides`` applied to whichever holds each field."""
        settings = self.settings_type() if settings is None else settings
        region = Region() if region is None else region
        own = {f.name for f in fields(self.settings_type)}
        where = {f.name for f in fields(Region)}
        unknown = sorted(set(overrides) - own - where)
        if unknown:
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected keyword argument(s) {unknown}")
        settings = replace(settings, **{k: v for k, v in overrides.items() if k in own})
        region = replace(region, **{k: v for k, v in overrides.items() if k in where})
        return settings, region

    def _crop(
        self, inputs: np.ndarray | torch.Tensor, target: InstanceTarget | np.ndarray | torch.Tensor, region: Region
    ) -> tuple[np.ndarray, InstanceTarget, CropInputs]:
        """Return (checked image, target, crop inputs) of one Captum-style call."""
        from LesionXAILib.explain.region import explain_box, explain_crop
        from LesionXAILib.explain.settings import resolve_margin
        from LesionXAILib.explain.targets import as_target
        from LesionXAILib.geometry import Geometry
        from LesionXAILib.models.contract import crop_forbidden

        if hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu().numpy()
        arr = np.asarray(inputs)
        if arr.ndim == 5 and arr.shape[0] == 1:
            arr = arr[0]
        image = check_image(self.model, arr, None)
        t = as_target(target, image.shape[1:], region.aggregation)

        full_volume = region.full_volume or crop_forbidden(self.model.config, t.aggregation, region.margin_mm is not None)
        margin_mm = resolve_margin(region.margin_mm, self.model.config, t.aggregation)[0]
        spacing = region.spacing
        spacing_ijk = spacing.spacing if isinstance(spacing, Geometry) else tuple(float(s) for s in spacing)
        box = explain_box(t.mask, spacing_ijk[::-1], margin_mm, self.model.size_divisor, full_volume)
        crop = explain_crop(self.model, image, [t.mask], box, t.aggregation, margin_mm, spacing_ijk[::-1], full_volume)
        return image, t, crop

    def _context(self, image: np.ndarray, t: InstanceTarget, crop: CropInputs, settings: Any, region: Region,
                 **extra: Any) -> BatchContext:  # fmt: skip
        """Return the BatchContext of one Captum-style call."""
        from LesionXAILib.explain.region import auto_batch_size

        bs = region.batch_size or auto_batch_size(crop.box)
        return BatchContext(self.model, crop, t.aggregation, int(bs), settings, image=image, **extra)

    def _attribute_one(self, name: str, inputs, target, settings, region, overrides, **extra: Any) -> torch.Tensor:
        """Return the first instance's map of ``name`` on the input grid for one Captum-style call."""
        import torch

        from LesionXAILib.explain.model_state import explaining

        settings, region = self._options(settings, region, overrides)
        image, t, crop = self._crop(inputs, target, region)
        ctx = self._context(image, t, crop, settings, region, **extra)
        with explaining(self.model):
            out = type(self).maps(ctx, (name,))[name]
        if method_spec(name).per_sequence:  # (K, C, *crop) on the crop grid
            return torch.from_numpy(crop.insert(out)[0])
        return out[0].detach().cpu()
