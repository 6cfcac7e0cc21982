"""Per-lesion result cache: keyed by (inputs + settings + model fingerprint, lesion id), bounded in bytes, thread-safe."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Hashable, Optional

import numpy as np

# full-grid maps are large (a 1 mm brain: ~30 MB per map); keep about a dozen lesions of a real scan
DEFAULT_CACHE_BYTES = 1 << 30


def digest_arrays(*items: Any) -> str:
    """Return a hex digest of arrays (values, dtype, shape) and JSON-able items, in order."""
    h = hashlib.blake2b(digest_size=20)
    for item in items:
        if isinstance(item, np.ndarray):
            arr = np.ascontiguousarray(item)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(memoryview(arr).cast("B"))
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


def model_fingerprint(model: Any) -> str:
    """Return a digest of a LesionModel's configuration and every parameter/buffer value."""
    import torch

    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def result_bytes(value: Any) -> int:
    """Return the approximate memory held by a cached LesionResult (its maps and curve arrays)."""
    total = 0
    analysis = getattr(value, "analysis", None)
    explanation = getattr(analysis, "explanation", None)
    if explanation is not None:
        total += sum(int(np.asarray(m).nbytes) for m in explanation.maps.values())
    curve = getattr(analysis, "curve", None)
    if curve is not None and curve.distance_mm is not None:
        total += int(curve.distance_mm.nbytes)
    return total


class ResultCache:
    """Least-recently-used store of per-lesion results, evicting the oldest beyond ``max_bytes``.

    The key's first part fingerprints everything the result depends on (input voxels and geometry,
    ground truth, model weights, settings), so a change of any of them simply misses; entries of old
    keys age out. ``hits``/``misses`` count lookups, for tests and the status line.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: "OrderedDict[tuple[str, Hashable], tuple[Any, int]]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, lesion_id: Hashable) -> Optional[Any]:
        """Return the cached value (marking it recently used) or None."""
        with self._lock:
            item = self._items.get((key, lesion_id))
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end((key, lesion_id))
            self.hits += 1
            return item[0]

    def contains(self, key: str, lesion_id: Hashable) -> bool:
        """Return True if a value is stored (does not count as a lookup)."""
        with self._lock:
            return (key, lesion_id) in self._items

    def put(self, key: str, lesion_id: Hashable, value: Any) -> None:
        """Store a value, then evict least-recently-used entries while over budget (the newest always stays)."""
        size = result_bytes(value)
        with self._lock:
            self._items[(key, lesion_id)] = (value, size)
            self._items.move_to_end((key, lesion_id))
            while len(self._items) > 1 and self.total_bytes() > self.max_bytes:
                self._items.popitem(last=False)

    def total_bytes(self) -> int:
        """Return the bytes held (approximate)."""
        return sum(size for _, size in self._items.values())

    def keys(self) -> list[tuple[str, Hashable]]:
        """Return the stored (key, lesion id) pairs, oldest first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
