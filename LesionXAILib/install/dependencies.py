"""First-use dependency plan for the Slicer module (stdlib only: usable before torch/MONAI are installed).

Slicer ships its own Python with numpy and SimpleITK (never reinstalled: Slicer's SimpleITK is a
custom build). Everything else LesionXAI needs is listed in ``LesionXAI/Resources/requirements.txt``
and installed only after the user agrees, on first use, never at import time and never in testing mode.

torch is the one package handled apart, because its default wheel differs by platform:
- already importable in a version the requirements admit (for example from the PyTorch extension):
  kept as is;
- Linux with an NVIDIA GPU (``nvidia-smi -L`` lists one): the pinned version from PyPI, whose Linux
  wheels are the CUDA builds;
- everything else: the pinned CPU build (PyTorch's CPU wheel index on Linux and Windows, PyPI on
  macOS whose wheels are CPU/MPS builds). This is the tested configuration and avoids a multi-GB
  CUDA download on machines that cannot use it; a GPU user on Windows installs the CUDA build through
  the PyTorch extension, which LesionXAI then keeps.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

TORCH_VERSION = "2.13.0"  # the version CI tests (Makefile TORCH_VERSION)
CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
# provided by Slicer itself; pip must not replace them
BUNDLED_WITH_SLICER = ("numpy", "SimpleITK")
# distribution name -> import name, where they differ
IMPORT_NAMES = {"connected-components-3d": "cc3d", "scikit-image": "skimage"}


def normalize_name(name: str) -> str:
    """Return a distribution name normalised as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: str | Path) -> list[str]:
    """Return the requirement lines of a requirements file (comments, blank lines and options dropped)."""
    out = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


def requirement_name(requirement: str) -> str:
    """Return the distribution name of a requirement string such as 'monai>=1.4,<1.7'."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def installed_version(name: str) -> Optional[str]:
    """Return the installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_satisfied(requirement: str, version_of: Callable[[str], Optional[str]] = installed_version) -> bool:
    """Return True if the requirement's distribution is installed in an admitted version."""
    name = requirement_name(requirement)
    version = version_of(name)
    if version is None:
        return False
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # no 'packaging': presence is the best we can check
        return True
    return Requirement(requirement).specifier.contains(Version(version), prereleases=True)


def nvidia_gpu_present(run: Callable = subprocess.run, which: Callable = shutil.which) -> bool:
    """Return True if ``nvidia-smi -L`` lists at least one GPU."""
    exe = which("nvidia-smi")
    if not exe:
        return False
    try:
        done = run([exe, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in (done.stdout or "")


def torch_install_args(system: str, has_nvidia_gpu: bool, version: str = TORCH_VERSION) -> list[str]:
    """Return the pip arguments installing torch on ``system`` ('Linux', 'Windows', 'Darwin')."""
    pin = f"torch=={version}"
    if system == "Darwin" or (system == "Linux" and has_nvidia_gpu):
        return [pin]
    return [pin, "--index-url", CPU_INDEX_URL]


@dataclass
class InstallPlan:
    """What a first-use install must do: torch (pip arguments, or None) and the other missing requirements."""

    torch_args: Optional[list[str]] = None
    requirements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        """Return True if anything must be installed."""
        return bool(self.torch_args or self.requirements)

    def describe(self) -> str:
        """Return a short text for the confirmation dialog."""
        lines = []
        if self.torch_args:
            lines.append("PyTorch: " + " ".join(self.torch_args))
        if self.requirements:
            lines.append("Python packages: " + ", ".join(self.requirements))
        return "\n".join(lines + self.notes)


def install_plan(
    requirements: list[str],
    system: str,
    has_nvidia_gpu: bool,
    version_of: Callable[[str], Optional[str]] = installed_version,
) -> InstallPlan:
    """Return what to install for ``requirements`` on this machine (nothing for what is already satisfied)."""
    plan = InstallPlan()
    for req in requirements:
        name = requirement_name(req)
        if normalize_name(name) in {normalize_name(b) for b in BUNDLED_WITH_SLICER}:
            continue
        if is_satisfied(req, version_of):
            continue
        if normalize_name(name) == "torch":
            if version_of("torch") is not None:
                plan.notes.append(f"installed torch {version_of('torch')} does not satisfy '{req}'; it will be replaced")
            plan.torch_args = torch_install_args(system, has_nvidia_gpu)
            if system == "Windows" and has_nvidia_gpu:
                plan.notes.append(
                    "an NVIDIA GPU was found: the CPU build is installed; for CUDA install PyTorch "
                    "through the 'PyTorch' extension (LesionXAI then uses it)"
                )
        else:
            plan.requirements.append(req)
    return plan


# ---------------------------------------------------------------- how to install (the PyTorch extension first)
PYTORCH_EXTENSION = "PyTorch"  # the extension LesionXAI depends on (CMakeLists.txt EXTENSION_DEPENDS)


@dataclass(frozen=True)
class InstallStep:
    """One install step: ``kind`` 'pytorch_utils' (args: the torch version requirement), 'pip_torch' or 'pip'."""

    kind: str
    args: tuple
    label: str


class InstallRefused(RuntimeError):
    """Installing is not allowed here (testing mode): the message lists what is missing."""


def install_steps(plan: InstallPlan, pytorch_utils_available: bool, testing: bool) -> list:
    """Return the ordered InstallSteps for ``plan``: torch through the PyTorch extension when it is there, else pip.

    The PyTorch extension's ``PyTorchUtils`` picks the CUDA or CPU build that matches this machine (as
    TotalSegmentator and MONAIAuto3DSeg rely on); LesionXAI asks it for the tested version. Without the
    extension, torch comes from pip as :func:`torch_install_args` says. Nothing is ever installed in
    testing mode (:class:`InstallRefused`): a test must not download gigabytes.
    """
    if not plan.needed:
        return []
    if testing:
        raise InstallRefused("LesionXAI's Python dependencies are missing and testing mode never installs them:\n" + plan.describe())
    steps = []
    if plan.torch_args:
        if pytorch_utils_available:
            steps.append(InstallStep("pytorch_utils", (f"=={TORCH_VERSION}",),
                                     f"PyTorch {TORCH_VERSION} through the {PYTORCH_EXTENSION} extension (CUDA or CPU build for this machine)"))  # fmt: skip
        else:
            steps.append(InstallStep("pip_torch", tuple(plan.torch_args), f"PyTorch {TORCH_VERSION} with pip"))
    if plan.requirements:
        steps.append(InstallStep("pip", tuple(plan.requirements), "Python packages: " + ", ".join(plan.requirements)))
    return steps


def describe_steps(steps: list) -> str:
    """Return the confirmation text listing each step (asked once, before anything is installed)."""
    return "\n".join(f"{n}. {step.label}" for n, step in enumerate(steps, 1))
