"""Lesion instances: thresholding, 26-connected components (cc3d), the instance table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

import numpy as np

from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.geometry import Geometry

STATUS_PREDICTED = "predicted"  # no ground truth to compare with
STATUS_TP = "TP"
STATUS_FP = "FP"
STATUS_FN = "FN"


def label_components(mask: np.ndarray, connectivity: int = 26, min_size_voxels: int = 1) -> tuple[np.ndarray, int]:
    """Return (int32 labels 1..N in raster order, N) of the connected components of ``mask`` of at least ``min_size_voxels``."""
    import cc3d

    if connectivity not in (6, 18, 26):
        raise ParameterError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    labels, n = cc3d.connected_components(m, connectivity=connectivity, return_N=True)
    labels = labels.astype(np.int32, copy=False)
    if n == 0 or min_size_voxels <= 1:
        return labels, int(n)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = counts >= min_size_voxels
    keep[0] = False
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels], int(keep.sum())


def min_size_in_voxels(min_size: float, unit: str, geometry: Geometry) -> int:
    """Return the minimum component size in voxels for a size given in 'voxels' or 'mm3'."""
    if min_size < 0:
        raise ParameterError(f"minimum lesion size must be >= 0, got {min_size}")
    if unit == "voxels":
        return max(1, int(np.ceil(min_size)))
    if unit in ("mm3", "mm^3"):
        return max(1, int(np.ceil(min_size / geometry.voxel_volume - 1e-9)))
    raise ParameterError(f"minimum size unit must be 'voxels' or 'mm3', got '{unit}'")


@dataclass
class Instance:
    """One lesion instance: a predicted component, or a missed (FN) ground-truth lesion."""

    id: int
    status: str
    voxels: int
    volume_mm3: float
    centroid_ijk: tuple[float, float, float]
    centroid_ras: tuple[float, float, float]
    bbox_ijk_min: tuple[int, int, int]
    bbox_ijk_max: tuple[int, int, int]
    mean_probability: float
    max_probability: float
    source: str = "prediction"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict of this row."""
        d = asdict(self)
        for k in ("centroid_ijk", "centroid_ras", "bbox_ijk_min", "bbox_ijk_max"):
            d[k] = [float(v) if isinstance(v, float) else int(v) for v in d[k]]
        return d

    @property
    def centroid_voxel(self) -> tuple[int, int, int]:
        """Return the i,j,k voxel nearest to the centroid."""
        return tuple(int(round(v)) for v in self.centroid_ijk)


def describe_components(
    labels: np.ndarray,
    ids: Iterable[int],
    geometry: Geometry,
    probability: Optional[np.ndarray],
    status: str,
    source: str,
) -> list[Instance]:
    """Return one Instance per id in ``labels`` with size, centroid (i,j,k and RAS), bbox and probability stats."""
    from scipy import ndimage

    ids = [int(i) for i in ids]
    if not ids:
        return []
    objects = ndimage.find_objects(labels, max_label=max(ids))
    rows: list[Instance] = []
    for i in ids:
        sl = objects[i - 1]
        if sl is None:
            raise InstanceError(f"instance {i} has no voxels")
        sub = labels[sl] == i
        kk, jj, ii = np.nonzero(sub)
        k0, j0, i0 = (s.start for s in sl)
        ck, cj, ci = kk.mean() + k0, jj.mean() + j0, ii.mean() + i0
        ras = geometry.ijk_to_ras_points(np.array([[ci, cj, ck]]))[0]
        if probability is not None:
            p = probability[sl][sub]
            mean_p, max_p = float(p.mean()), float(p.max())
        else:
            mean_p = max_p = float("nan")
        n = int(sub.sum())
        rows.append(
            Instance(
                id=i,
                status=status,
                voxels=n,
                volume_mm3=float(n * geometry.voxel_volume),
                centroid_ijk=(float(ci), float(cj), float(ck)),
                centroid_ras=tuple(float(v) for v in ras),
                bbox_ijk_min=(int(sl[2].start), int(sl[1].start), int(sl[0].start)),
                bbox_ijk_max=(int(sl[2].stop - 1), int(sl[1].stop - 1), int(sl[0].stop - 1)),
                mean_probability=mean_p,
                max_probability=max_p,
                source=source,
            )
        )
    return rows


@dataclass
class InstanceSet:
    """A k,j,i int32 label map of lesion instances on a grid, with its table (and matching metrics)."""

    labels: np.ndarray
    instances: list[Instance]
    geometry: Geometry
    threshold: float
    min_size_voxels: int
    metrics: Optional["LesionMetrics"] = None  # noqa: F821 - defined in matching

    @property
    def ids(self) -> list[int]:
        """Return all instance ids (predicted first, then FN)."""
        return [r.id for r in self.instances]

    def get(self, instance_id: int) -> Instance:
        """Return the table row of ``instance_id`` or raise InstanceError listing valid ids."""
        for row in self.instances:
            if row.id == int(instance_id):
                return row
        raise InstanceError(self._unknown(instance_id))

    def _unknown(self, instance_id: int) -> str:
        ids = self.ids
        shown = ", ".join(str(i) for i in ids[:20]) + (" ..." if len(ids) > 20 else "")
        return f"lesion instance {instance_id} does not exist (valid ids: {shown or 'none, no lesions found'})"

    def mask(self, instance_id: int) -> np.ndarray:
        """Return the boolean k,j,i mask of ``instance_id``."""
        self.get(instance_id)
        return self.labels == int(instance_id)

    def bbox_slices(self, instance_id: int, margin_voxels: tuple[int, int, int] = (0, 0, 0)) -> tuple[slice, slice, slice]:
        """Return k,j,i slices of the instance's bounding box grown by ``margin_voxels`` (k,j,i), clipped."""
        row = self.get(instance_id)
        lo = np.array(row.bbox_ijk_min[::-1]) - np.asarray(margin_voxels)
        hi = np.array(row.bbox_ijk_max[::-1]) + 1 + np.asarray(margin_voxels)
        shape = self.labels.shape
        return tuple(slice(int(max(0, a)), int(min(s, b))) for a, b, s in zip(lo, hi, shape))

    def at_voxel(self, ijk: tuple[int, int, int]) -> Optional[int]:
        """Return the instance id at voxel i,j,k, or None for background/outside."""
        if not self.geometry.contains_index(ijk):
            return None
        v = int(self.labels[int(ijk[2]), int(ijk[1]), int(ijk[0])])
        return v or None

    def table(self) -> list[dict]:
        """Return the instance table as a list of flat dicts."""
        return [r.to_dict() for r in self.instances]


def extract_instances(
    probability: np.ndarray,
    geometry: Geometry,
    threshold: float = 0.5,
    min_size_voxels: int = 3,
    connectivity: int = 26,
    ground_truth: Optional[np.ndarray] = None,
) -> InstanceSet:
    """Return the lesion instances of ``probability >= threshold`` (with TP/FP/FN if ``ground_truth`` given)."""
    from LesionXAILib.matching import match_to_ground_truth

    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold}")
    if probability.shape != geometry.shape:
        raise ParameterError(f"probability shape {probability.shape} does not match the grid {geometry.shape}")
    labels, n = label_components(probability >= threshold, connectivity, min_size_voxels)
    rows = describe_components(labels, range(1, n + 1), geometry, probability, STATUS_PREDICTED, "prediction")
    result = InstanceSet(labels, rows, geometry, float(threshold), int(min_size_voxels))
    if ground_truth is not None:
        match_to_ground_truth(result, ground_truth, probability, connectivity)
    return result
