"""The explainer registry: every attribution method registered once, with what the rest of the code needs to know.

A method is one file in :mod:`LesionXAILib.explain.methods` holding one class (an :class:`Explainer` with a
Captum-style ``attribute(inputs, target, ...)`` and the batched ``maps`` the pipeline calls) and one
:func:`register` call with its :class:`MethodSpec`. Files in that package are imported the first time the
registry is read, so adding a method is adding a file (and its test); the batch pipeline
(:mod:`LesionXAILib.explain.api`), the settings' validation, the CLI ``--methods`` choices, the metrics
(:mod:`LesionXAILib.metrics.explainer_maps`), titles (``vocabulary.method_title``) and the Slicer module's
options all read this registry.

Methods of one ``family`` are computed together from one set of network passes (the SmoothGrad variants
share their noise draws, the Grad-CAM variants one backward pass to the layer): the pipeline calls the
family's class once with all selected members. Display order is ``order`` (built-ins 10-99; later
additions default to after them).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional

from LesionXAILib.errors import ParameterError

METHODS_PACKAGE = "LesionXAILib.explain.methods"


@dataclass(frozen=True)
class MethodSpec:
    """One registered attribution method: its name, how it is shown and what it reads from ExplainSettings.

    ``per_sequence``: one map per input sequence (keys ``<name>_<sequence>``, crop-grid maps that are 0
    beyond the crop), else one map per instance (key ``<name>``, on the full grid). ``non_negative``: maps
    are never < 0 (drawn with a sequential colour table). ``uses_layer``: explained at a named network layer
    (``ExplainSettings.cam_layer``; the pipeline shares the layer's whole-volume activations). ``defaults``:
    the method's settings and their values, the one source of truth for them (``ExplainSettings``, presets
    and front ends read them here). ``options``: the ExplainSettings fields the method reads. ``cls``: the
    :class:`~LesionXAILib.explain.methods.base.Explainer` subclass computing it.
    """

    name: str
    title: str
    unit: str
    per_sequence: bool
    cls: type
    family: str = ""
    non_negative: bool = False
    uses_layer: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    description: str = ""
    order: float = 100.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ParameterError(f"method name must be a lower-case identifier, got '{self.name}'")
        object.__setattr__(self, "family", self.family or self.name)
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "options", tuple(self.options))


_REGISTRY: dict[str, MethodSpec] = {}
_loaded = False


def register(spec: MethodSpec) -> MethodSpec:
    """Return ``spec`` after adding it to the registry (ParameterError if its name is taken by another class)."""
    old = _REGISTRY.get(spec.name)
    if old is not None and old.cls is not spec.cls:
        raise ParameterError(f"an explanation method named '{spec.name}' is already registered ({old.cls.__name__})")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method from the registry (for tests and plug-ins that registered one)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    """Import every module of the methods package once; each registers its method(s) on import."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(METHODS_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{METHODS_PACKAGE}.{info.name}")


def available_methods() -> tuple[str, ...]:
    """Return the names of every registered method, in display order."""
    _load_builtins()
    return tuple(s.name for s in sorted(_REGISTRY.values(), key=lambda s: s.order))


def method_spec(name: str) -> MethodSpec:
    """Return the MethodSpec of ``name`` (ParameterError naming the choices if there is none)."""
    _load_builtins()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ParameterError(f"unknown explanation method '{name}'; choose from {', '.join(available_methods())}")
    return spec


def find_spec(name: str) -> Optional[MethodSpec]:
    """Return the MethodSpec of ``name``, or None if no method has that name."""
    _load_builtins()
    return _REGISTRY.get(name)


def method_title(name: str) -> str:
    """Return the display title of a method (the name itself if it is not registered)."""
    spec = find_spec(name)
    return spec.title if spec is not None else name


def method_default(method: str, option: str) -> Any:
    """Return the registered default of one of a method's settings (e.g. ``("smoothgrad", "samples")`` -> 16)."""
    spec = method_spec(method)
    if option not in spec.defaults:
        raise ParameterError(f"method '{method}' has no setting '{option}'; it has {', '.join(spec.defaults)}")
    return spec.defaults[option]


def families(methods: tuple[str, ...] | list[str]) -> list[tuple[MethodSpec, list[str]]]:
    """Return [(first member's spec, members)] of ``methods`` grouped by family, in order of first appearance."""
    out: dict[str, tuple[MethodSpec, list[str]]] = {}
    for name in methods:
        spec = method_spec(name)
        out.setdefault(spec.family, (spec, []))[1].append(name)
    return list(out.values())
