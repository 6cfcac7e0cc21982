"""The words, colours and number formats every front end shows: map keys, method and sequence titles,
lesion statuses, lesion-table columns and cell formats.

Data and pure functions only (no torch, Qt, Slicer or trame imports), so the Slicer module, the browser
viewer, the HTML reports and the CLI all import it cheaply and show the same thing the same way.

Map keys: a gradient explainer gives one map per input sequence, keyed ``"<method>_<sequence>"``
(``smoothgrad_flair``); a CAM gives one map for all sequences, keyed by the method alone
(``gradcampp``). Build keys with :func:`map_key` and read them with :func:`parse_map_key`; method
names themselves contain underscores (``integrated_gradients``), so never split a key by hand.

Status colours (one set for the report, the cohort report, the viewer and the Slicer module): the
colour-blind-safe ColorBrewer "Dark2" triple, TP green ``#1b9e77``, FP orange ``#d95f02``, FN (missed)
purple ``#7570b3``; lesions without ground truth are grey ``#555555``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from LesionXAILib.explain.registry import available_methods, find_spec
from LesionXAILib.explain.registry import method_title as registry_title

# ---------------------------------------------------------------- methods
# Titles, units and kinds of the explainer methods are registered once, in each method's file
# (LesionXAILib.explain.registry; torch-free to read); the functions below read them from there.
CAM_UNIT = "a.u. (CAM)"
GRADIENT_UNIT = "d logit / d normalised input"


def __getattr__(name: str) -> tuple[str, ...]:
    """Return GRADIENT_METHODS / NON_NEGATIVE_METHODS / CAM_METHODS, read from the explainer registry when asked."""
    if name == "GRADIENT_METHODS":
        return tuple(m for m in known_methods() if not is_cam_method(m))
    if name == "NON_NEGATIVE_METHODS":
        return tuple(m for m in known_methods() if find_spec(m).non_negative)
    if name == "CAM_METHODS":
        return tuple(m for m in known_methods() if find_spec(m).uses_layer)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- sequences and overlays
SEQUENCES: tuple[str, ...] = ("flair", "mprage")
_SEQUENCE_TITLES = {"flair": "FLAIR", "mprage": "MPRAGE", "t1": "T1"}
CONTEXT_SHELLS = "context_shells"  # the context probe's overlay (not an explainer map)
CONTEXT_SHELLS_TITLE = "Context shells"

# ---------------------------------------------------------------- lesion statuses
STATUS_TP = "TP"
STATUS_FP = "FP"
STATUS_FN = "FN"
STATUS_PREDICTED = "predicted"  # no ground truth to compare with
STATUSES: tuple[str, ...] = (STATUS_TP, STATUS_FP, STATUS_FN, STATUS_PREDICTED)
STATUS_NAMES = {
    STATUS_TP: "true positive",
    STATUS_FP: "false positive",
    STATUS_FN: "false negative (missed)",
    STATUS_PREDICTED: "predicted",
}
STATUS_COLOURS = {STATUS_TP: "#1b9e77", STATUS_FP: "#d95f02", STATUS_FN: "#7570b3", STATUS_PREDICTED: "#555555"}
UNKNOWN_STATUS_COLOUR = "#555555"

NONE_TEXT = "—"  # a value not computed yet, missing, or NaN


def method_title(name: str) -> str:
    """Return the display title of an explainer method ('smoothgrad' -> 'SmoothGrad'); unknown names unchanged."""
    return registry_title(name)


def method_unit(name: str) -> str:
    """Return the unit of an explainer method's map values (the registered one; gradient units if unknown)."""
    spec = find_spec(name)
    return spec.unit if spec is not None else GRADIENT_UNIT


def known_methods() -> tuple[str, ...]:
    """Return every registered explainer method name (gradient methods first, then the CAMs)."""
    return available_methods()


def is_cam_method(name: str) -> bool:
    """Return True for a method with one map for all sequences (the CAMs)."""
    spec = find_spec(name)
    return spec is not None and not spec.per_sequence


def is_non_negative(name: str) -> bool:
    """Return True when the maps of method or map key ``name`` are never negative."""
    spec = find_spec(parse_map_key(name).method)
    return spec is not None and spec.non_negative


def sequence_title(sequence: str) -> str:
    """Return the display name of an input sequence ('flair' -> 'FLAIR')."""
    return _SEQUENCE_TITLES.get(sequence, sequence.upper())


# ---------------------------------------------------------------- map keys
@dataclass(frozen=True)
class MapKey:
    """The name of one explanation map: its method and, for per-sequence maps, the sequence."""

    method: str
    sequence: Optional[str] = None

    def __str__(self) -> str:
        """Return the string key, e.g. 'smoothgrad_flair' or 'gradcampp'."""
        return self.method if self.sequence is None else f"{self.method}_{self.sequence}"

    @property
    def title(self) -> str:
        """Return the display title, e.g. 'SmoothGrad FLAIR'."""
        return map_title(str(self))


def map_key(method: str, sequence: Optional[str] = None) -> str:
    """Return the string key of a map: '<method>_<sequence>', or the method alone for a CAM / no sequence."""
    return str(MapKey(method, sequence))


def map_keys(method: str, sequences: Iterable[str]) -> list[str]:
    """Return the keys of a method's maps: one per sequence, or just the method for a CAM."""
    if is_cam_method(method):
        return [method]
    return [map_key(method, s) for s in sequences]


def parse_map_key(key: str, methods: Optional[Iterable[str]] = None) -> MapKey:
    """Return the MapKey of a string key (longest known method prefix wins; else split at the last '_').

    ``methods`` adds method names to the known ones (e.g. the methods listed in a run's settings).
    """
    key = str(key)
    names = set(known_methods()) | set(methods or ())
    if key in names:
        return MapKey(key)
    for method in sorted(names, key=len, reverse=True):
        if key.startswith(method + "_"):
            return MapKey(method, key[len(method) + 1:])
    if "_" in key:
        method, sequence = key.rsplit("_", 1)
        return MapKey(method, sequence)
    return MapKey(key)


def map_title(key: str, separator: str = " ") -> str:
    """Return a map's or overlay's display title ('smoothgrad_flair' -> 'SmoothGrad FLAIR', shells included)."""
    if key == CONTEXT_SHELLS:
        return CONTEXT_SHELLS_TITLE
    parsed = parse_map_key(key)
    if parsed.method not in known_methods():
        return key
    title = method_title(parsed.method)
    return title if parsed.sequence is None else f"{title}{separator}{sequence_title(parsed.sequence)}"


# ---------------------------------------------------------------- statuses
def status_colour(status: Optional[str], default: str = UNKNOWN_STATUS_COLOUR) -> str:
    """Return the hex colour of a lesion status (``default`` for an unknown one)."""
    return STATUS_COLOURS.get(str(status), default)


# ---------------------------------------------------------------- numbers
def finite_or_none(value: Any, keep_inf: bool = False) -> Optional[float]:
    """Return ``value`` as a float, or None when missing, not a number, NaN, or (unless ``keep_inf``) infinite."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(v) or (math.isinf(v) and not keep_inf):
        return None
    return v


def format_number(value: Any, digits: int = 3, missing: str = NONE_TEXT) -> str:
    """Return a number for a table cell: ``digits`` decimals below 1, fewer above, scientific when tiny or huge.

    Missing/NaN -> ``missing``; infinity -> '∞'; bool -> yes/no; int unchanged; non-numbers as their text.
    """
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):  # numpy integers too
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return missing
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    a = abs(v)
    if a != 0 and (a < 10 ** -(digits - 1) or a >= 1e5):
        return f"{v:.{digits - 1}e}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.{digits - 1}f}"
    return f"{v:.{digits}f}"


# ---------------------------------------------------------------- lesion table
@dataclass(frozen=True)
class Column:
    """One lesion-table column: statistics key, header, unit, value kind (int/double/string) and cell format."""

    key: str
    header: str
    unit: str
    kind: str
    format: str  # one of: int, text, volume, probability, share, context, mm

    @property
    def title(self) -> str:
        """Return the header with its unit, e.g. 'Volume (mm³)'."""
        return f"{self.header} ({self.unit})" if self.unit else self.header


LESION_COLUMNS: tuple[Column, ...] = (
    Column("id", "Lesion", "", "int", "int"),
    Column("status", "Status", "", "string", "text"),
    Column("voxels", "Voxels", "voxels", "int", "int"),
    Column("volume_mm3", "Volume", "mm³", "double", "volume"),
    Column("mean_probability", "Mean probability", "", "double", "probability"),
    Column("max_probability", "Max probability", "", "double", "probability"),
    Column("flair_share", "FLAIR share of attribution", "", "double", "share"),
    Column("context_needed_mm", "Context needed", "mm", "double", "context"),
    Column("context_status", "Context status", "", "string", "text"),
    Column("centroid_r", "Centroid R", "mm", "double", "mm"),
    Column("centroid_a", "Centroid A", "mm", "double", "mm"),
    Column("centroid_s", "Centroid S", "mm", "double", "mm"),
)
# the short table of the side panels (viewer and Slicer module), with their narrow headers
PANEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "Lesion"),
    ("status", "Status"),
    ("volume_mm3", "Volume (mm³)"),
    ("mean_probability", "Mean p"),
    ("flair_share", "FLAIR share"),
    ("context_needed_mm", "Context (mm)"),
)
_COLUMNS = {c.key: c for c in LESION_COLUMNS}


def column(key: str) -> Column:
    """Return the lesion-table column of a statistics key (KeyError for an unknown key)."""
    return _COLUMNS[key]


def _context_text(v: float, max_radius_mm: Optional[float]) -> str:
    if math.isinf(v):
        return f"> {max_radius_mm:g}" if max_radius_mm else "beyond probe"
    return f"{v:g}"


# cell text of a finite (or, for context, infinite) number, by Column.format
_CELL_FORMATS: dict[str, Callable[[float, Optional[float]], str]] = {
    "int": lambda v, _: str(int(v)),
    "volume": lambda v, _: f"{v:.1f}",
    "mm": lambda v, _: f"{v:.1f}",
    "probability": lambda v, _: f"{v:.3f}",
    "share": lambda v, _: f"{100.0 * v:.0f} %",
    "context": _context_text,
}


def format_cell(key: str, value: Any, max_radius_mm: Optional[float] = None, missing: str = NONE_TEXT) -> str:
    """Return the text of one lesion-table cell (no unit); ``max_radius_mm`` words 'beyond the largest radius'."""
    kind = _COLUMNS[key].format if key in _COLUMNS else "number"
    if value is None or value == "":
        return missing
    if kind == "text":
        return str(value)
    v = finite_or_none(value, keep_inf=True)
    if v is None:
        return missing
    if kind in _CELL_FORMATS and (kind == "context" or math.isfinite(v)):
        return _CELL_FORMATS[kind](v, max_radius_mm)
    return format_number(v, missing=missing)
