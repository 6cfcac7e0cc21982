"""A format's own resampling as a differentiable torch operator: one matrix per axis, taken from the format's code.

nnU-Net's resampling (skimage/scipy spline ``resize`` with edge mode, in-plane then nearest along an
anisotropic axis) and MONAI's ``Spacing`` (``grid_sample`` on an axis-aligned scaling of the voxel
grid, and its inverse as ``Invertd`` applies it) are linear in the voxel values and act on each axis
separately: the 3D operator is the product of three 1D operators. Each 1D operator is a small
matrix (output voxels x input voxels along that axis), which LesionXAI obtains by running the
format's own resampling function on the unit vectors of that axis (other axes of size 1 at the
target spacing, so untouched). Applying the three matrices with ``torch.einsum`` then reproduces
the format's resampling on the whole volume, and autograd gives its exact adjoint: gradients are
taken *through* the format's resampling onto the FLAIR grid.

Methods (``InputContract.resampling``): ``"nnunet"`` (parameters: the plans' ``resampling_fn_data_kwargs``
forward and ``resampling_fn_probabilities_kwargs`` back, in ``config.extra['nnunet_resampling']``) and
``"monai"`` (``Spacing``'s mode / padding mode / align_corners, in ``config.extra['monai_spacing']``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import ModelLoadError

METHODS = ("trilinear", "nnunet", "monai")


@dataclass(frozen=True)
class SeparableResampling:
    """A linear resampling of the last three axes given by one (out, in) matrix per axis, optionally clipped.

    ``clip``: ``None``; ``"volume"`` clips each channel to its input range after resampling (skimage's
    ``resize(clip=True)`` on a whole volume); an axis number ``a`` resamples the other two axes, clips each
    slice along ``a`` to its input range (skimage on each 2D slice), then resamples axis ``a``.
    """

    matrices: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    clip: Optional[str | int] = None

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Return the spatial shape of the resampled volume."""
        return tuple(int(m.shape[0]) for m in self.matrices)

    def _along(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        m = self.matrices[axis].to(dtype=x.dtype, device=x.device)
        return torch.movedim(torch.movedim(x, x.ndim - 3 + axis, -1) @ m.T, -1, x.ndim - 3 + axis)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return (..., d0, d1, d2) resampled to ``out_shape`` (differentiable, clipping included)."""
        if self.clip is None or self.clip == "volume":
            y = x
            for axis in range(3):
                y = self._along(y, axis)
            if self.clip == "volume":
                dims = (-3, -2, -1)
                y = torch.minimum(torch.maximum(y, x.amin(dim=dims, keepdim=True)), x.amax(dim=dims, keepdim=True))
            return y
        a = int(self.clip)
        plane = tuple(d for d in (-3, -2, -1) if d != a - 3)
        y = x
        for axis in range(3):
            if axis != a:
                y = self._along(y, axis)
        y = torch.minimum(torch.maximum(y, x.amin(dim=plane, keepdim=True)), x.amax(dim=plane, keepdim=True))
        return self._along(y, a)


def _spline_matrix(n: int, m: int, order: int) -> torch.Tensor:
    """Return the (m, n) matrix of skimage ``resize(order, mode='edge', anti_aliasing=False)`` without its clipping (scipy zoom)."""
    import scipy.ndimage as ndi

    eye = np.eye(n)
    cols = [ndi.zoom(eye[c], m / n, order=order, mode="nearest", grid_mode=True) for c in range(n)]
    if any(len(c) != m for c in cols):
        raise ModelLoadError(f"spline resampling {n} -> {m} voxels gave another size")
    return torch.from_numpy(np.stack(cols, axis=1)).float()


def _axis_probe(fn: Callable[[np.ndarray, int], np.ndarray], n: int, axis: int) -> torch.Tensor:
    """Return the (out, n) matrix of a separable resampling along ``axis``: ``fn`` applied to the axis's unit vectors."""
    shape = [1, 1, 1]
    shape[axis] = n
    probe = np.zeros((n, *shape), dtype=np.float64)
    for c in range(n):
        probe[(c, *[c if a == axis else 0 for a in range(3)])] = 1.0
    out = np.asarray(fn(probe, axis), dtype=np.float64)
    squeezed = np.moveaxis(out, 1 + axis, 1).reshape(n, out.shape[1 + axis], -1)[..., 0]
    return torch.from_numpy(squeezed.T.copy()).float()


def nnunet_pair(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float], parameters: dict[str, Any]) -> tuple[SeparableResampling, SeparableResampling]:
    """Return (to the target spacing, back to ``shape``) as nnU-Net's preprocessor and predictor resample (model axis order).

    Axes nnU-Net resamples with spline order <= 1 (its nearest/linear steps, no clipping effect) take
    nnU-Net's own function on unit vectors; axes with a higher order take scipy's ``zoom`` (what
    skimage's ``resize`` runs), and skimage's clipping to the input range is applied as nnU-Net meets
    it (per channel, or per slice when nnU-Net resamples an anisotropic axis separately).
    """
    from nnunetv2.preprocessing.resampling.default_resampling import (
        compute_new_shape, determine_do_sep_z_and_axis, resample_data_or_seg_to_shape,
    )  # fmt: skip

    shape = [int(s) for s in shape]
    spacing, target = [float(s) for s in spacing], [float(t) for t in target]
    new_shape = [int(v) for v in compute_new_shape(shape, spacing, target)]

    def build(n_in: list[int], n_out: list[int], current: list[float], new: list[float], kwargs: dict) -> SeparableResampling:
        kwargs = dict(kwargs)
        if kwargs.get("is_seg"):
            raise ModelLoadError("nnU-Net resampling of data with is_seg=True is not a linear operator")
        order, order_z = int(kwargs.get("order", 3)), int(kwargs.get("order_z", 0))
        separate, axis = determine_do_sep_z_and_axis(
            kwargs.get("force_separate_z"), current, new, kwargs.get("separate_z_anisotropy_threshold", 3.0)
        )
        if separate and order_z > 1:
            raise ModelLoadError(f"nnU-Net resampling with order_z {order_z} > 1 is not supported")
        orders = [order_z if separate and a == axis else order for a in range(3)]

        def probe(values: np.ndarray, a: int) -> np.ndarray:
            out_shape = [1, 1, 1]
            out_shape[a] = n_out[a]
            return resample_data_or_seg_to_shape(values, out_shape, current, new, **kwargs)

        mats = []
        for a in range(3):
            if n_in[a] == n_out[a]:
                mats.append(torch.eye(n_in[a]))
            elif orders[a] <= 1:
                mats.append(_axis_probe(probe, n_in[a], a))
            else:
                mats.append(_spline_matrix(n_in[a], n_out[a], orders[a]))
        clip = None
        if n_in != n_out and order > 1:
            clip = int(axis) if separate else "volume"
        return SeparableResampling(tuple(mats), clip)

    to_model = build(shape, new_shape, spacing, target, dict(parameters.get("data") or {}))
    back = build(new_shape, shape, target, spacing, dict(parameters.get("probabilities") or {}))
    return to_model, back


def monai_pair(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float], parameters: dict[str, Any]) -> tuple[SeparableResampling, SeparableResampling]:
    """Return (MONAI ``Spacing(pixdim=target)``, its inverse as ``Invertd`` applies it) on an axis-aligned grid (model axis order).

    Spacing keeps the image's direction and scales its axes, so input and output grids differ by a
    per-axis scaling: probing each axis with the other axes at the target spacing gives its matrix.
    """
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    shape = [int(s) for s in shape]
    spacing, target = [float(s) for s in spacing], [float(t) for t in target]
    kwargs = {k: parameters[k] for k in ("mode", "padding_mode", "align_corners", "scale_extent") if k in parameters}
    forward_mats, back_mats = [], []
    for axis in range(3):
        # the other axes already at the target spacing: Spacing leaves them (size 1) as they are
        probe_spacing = list(target)
        probe_spacing[axis] = spacing[axis]
        transform = Spacing(pixdim=target, **kwargs)

        def forward(probe: np.ndarray, _axis: int) -> np.ndarray:
            img = MetaTensor(torch.from_numpy(probe), affine=torch.diag(torch.tensor([*probe_spacing, 1.0], dtype=torch.float64)))
            out = transform(img)
            forward.out = out
            return out.detach().cpu().numpy()

        fwd = _axis_probe(forward, shape[axis], axis)
        if fwd.shape[1] != shape[axis] or any(int(s) != 1 for a, s in enumerate(forward.out.shape[1:]) if a != axis):
            raise ModelLoadError(f"MONAI Spacing changed the size of an axis it should not ({tuple(forward.out.shape[1:])})")
        template = forward.out

        def backward(probe: np.ndarray, _axis: int) -> np.ndarray:

            img = MetaTensor(torch.from_numpy(probe), affine=template.affine.clone(), meta=dict(template.meta))
            img.applied_operations = [dict(op) for op in template.applied_operations]
            return transform.inverse(img).detach().cpu().numpy()

        forward_mats.append(fwd)
        back_mats.append(_axis_probe(backward, fwd.shape[0], axis))
    return SeparableResampling(tuple(forward_mats)), SeparableResampling(tuple(back_mats))


def resampling_pair(method: str, shape: Sequence[int], spacing: Sequence[float], target: Sequence[float], parameters: dict[str, Any]):
    """Return (to model spacing, back) SeparableResampling operators of ``method`` for a model-axis volume of ``shape``."""
    if method == "nnunet":
        return nnunet_pair(shape, spacing, target, parameters)
    if method == "monai":
        return monai_pair(shape, spacing, target, parameters)
    raise ModelLoadError(f"resampling method '{method}' has no separable operator (known: nnunet, monai)")


def model_space_statistics(resampled: torch.Tensor, nonzero: bool) -> tuple[list[float], list[float], Optional[torch.Tensor]]:
    """Return (mean, std per channel, non-zero mask or None) of a (C, ...) resampled image as MONAI ``NormalizeIntensity`` takes them."""
    means, stds = [], []
    for c in range(resampled.shape[0]):
        values = resampled[c][resampled[c] != 0] if nonzero else resampled[c].reshape(-1)
        if values.numel() == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        std = float(torch.std(values.double(), unbiased=False))
        means.append(float(values.double().mean()))
        stds.append(std if std != 0.0 else 1.0)
    return means, stds, (resampled != 0) if nonzero else None


def zscore_with_model_space_statistics(stack: np.ndarray, config: Any) -> np.ndarray:
    """Return the (C, k, j, i) stack z-scored everywhere with the statistics ``LesionModel.bind`` measured in model space."""
    stats = (config.extra or {}).get("model_space_statistics") if config is not None else None
    if not stats:
        raise ModelLoadError("normalization 'zscore-model-space' needs the model bound to the images first (model.bind(geometry, pair))")
    out = np.asarray(stack, dtype=np.float32).copy()
    for c, (m, s) in enumerate(zip(stats["mean"], stats["std"])):
        out[c] = (out[c] - np.float32(m)) / np.float32(s)
    return out
