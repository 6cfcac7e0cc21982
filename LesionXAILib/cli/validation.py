"""Checking every command-line number before any work starts, and reducing error messages to one line.

argparse's ``type=float`` accepts 'nan' and 'inf', and nothing bounds a value from above, so
``--margin-mm inf`` crashed deep inside and ``--samples 1000000000`` ran for hours. Every float option
must be finite; the options below also have a range, each with the reason shown in the message. The
upper bounds are far above any useful value: they only stop typos and hostile inputs.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from LesionXAILib.errors import ParameterError

BRAIN_MM = 300.0  # larger than any adult head in every direction
PASSES = 10_000  # network passes per lesion beyond which a setting only burns time
MAX_RADII = 500  # radii of one context probe: each is one network run per lesion


@dataclass(frozen=True)
class Range:
    """Allowed values of one option: lo/hi (inclusive unless ``open_lo``), and why the bound exists.

    Only the upper bound is checked here: lower bounds are checked, with their own messages, by the settings
    objects the options become (ExplainSettings, ContextSettings, ...); ``lo`` documents them.
    """

    lo: Optional[float] = None
    hi: Optional[float] = None
    why: str = ""
    open_lo: bool = False

    def problem(self, value: float) -> Optional[str]:
        """Return what is wrong with ``value`` (None when it is allowed)."""
        if self.hi is not None and value > self.hi:
            return f"{value:g} is above the limit of {self.hi:g}" + (f" ({self.why})" if self.why else "")
        return None


_PASSES_WHY = f"each is one more network pass per lesion; {PASSES:g} already takes hours"
_MM_WHY = f"{BRAIN_MM:g} mm is larger than any head"
# by option string; an option that several commands share has one meaning and one range everywhere
RANGES: dict[str, Range] = {
    "--samples": Range(1, PASSES, _PASSES_WHY),
    "--ig-steps": Range(1, PASSES, _PASSES_WHY),
    "--infidelity-perturbations": Range(1, PASSES, _PASSES_WHY),
    "--sensitivity-samples": Range(1, PASSES, _PASSES_WHY),
    "--deletion-steps": Range(1, PASSES, _PASSES_WHY),
    "--noise-level": Range(0, 10, "a multiple of the normalised FLAIR range; 10 is pure noise"),
    "--infidelity-scale": Range(0, 10, "a multiple of the normalised FLAIR range; 10 is pure noise"),
    "--sensitivity-radius": Range(0, 10, "a multiple of the normalised FLAIR range; 10 is pure noise"),
    "--margin-mm": Range(0, BRAIN_MM, _MM_WHY + "; use --full-volume for the whole image"),
    "--max-radius": Range(0, BRAIN_MM, _MM_WHY),
    "--max-radius-mm": Range(0, BRAIN_MM, _MM_WHY),
    "--radius-step": Range(0, BRAIN_MM, _MM_WHY, open_lo=True),
    "--radii": Range(0, BRAIN_MM, _MM_WHY),
    "--margins": Range(0, BRAIN_MM, _MM_WHY),
    "--receptive-margin": Range(0, BRAIN_MM, _MM_WHY),
    "--ring-mm": Range(0, BRAIN_MM, _MM_WHY),
    "--half-width": Range(0, BRAIN_MM, _MM_WHY, open_lo=True),
    "--min-distance": Range(0, BRAIN_MM, _MM_WHY),
    "--ap-dilate-mm": Range(0, BRAIN_MM, _MM_WHY),
    "--deletion-region-mm": Range(-1, BRAIN_MM, _MM_WHY),
    "--fov": Range(0, 1000.0, "1000 mm is larger than any scanner's field of view", open_lo=True),
    "--spacing": Range(0, 50.0, "50 mm voxels hold no anatomy", open_lo=True),
    "--threshold": Range(0, 1, "a probability", open_lo=True),
    "--overlap": Range(0, 0.95, "sliding windows overlapping more than 95% multiply the work by over 8000"),
    "--min-size": Range(0, 1e9, "no lesion is larger than the image"),
    "--ap-top-k": Range(0, 100, "a percentage"),
    "--min-r": Range(-1, 1, "a correlation"),
    "--min-captured": Range(0, 1, "a share"),
    "--seed": Range(0, 2**32 - 1, "the random generators take 32-bit seeds"),
    "--phantom-seed": Range(0, 2**32 - 1, "the random generators take 32-bit seeds"),
    "--batch-size": Range(1, 4096, "more copies than fit any accelerator"),
    "--roi": Range(8, 1024, "a sliding window larger than any image"),
    "--patch": Range(8, 1024, "a training patch larger than any image"),
    "--workers": Range(0, 4096, "more processes than any machine runs usefully"),
    "--threads": Range(1, 4096, "more threads than any machine has"),
    "--port": Range(0, 65535, "TCP ports end at 65535"),
    "--precompute": Range(0, 10_000),
    "--positions": Range(1, 100_000, "each is one network run per size and contrast"),
    "--sizes": Range(0, 1e6, "1e6 mm^3 is larger than a brain", open_lo=True),
    "--contrasts": Range(0, 100, "a ratio of intensities", open_lo=True),
    "--t1-contrast": Range(0, 100, "a ratio of intensities", open_lo=True),
    "--lesions": Range(0, 10_000),
    "--max-image-voxels": Range(1, 2**40),
    "--minutes": Range(0, 60 * 24 * 365, "a year", open_lo=True),
    "--steps": Range(1, 10**9),
    "--lr": Range(0, 10, "a learning rate", open_lo=True),
}


def _values(value: Any) -> Iterable[Any]:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _values(v)
    elif value is not None:
        yield value


def _subparser(parser: argparse.ArgumentParser, command: Optional[str]) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def validate_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Raise ParameterError (one line, naming the option) for a non-finite or out-of-range number in ``args``."""
    sub = _subparser(parser, getattr(args, "command", None))
    for action in sub._actions:
        if not action.option_strings or action.type not in (int, float):
            continue
        name = max(action.option_strings, key=len)
        rule = RANGES.get(name)
        for value in _values(getattr(args, action.dest, None)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ParameterError(f"{name}: must be a finite number, got {value}")
            if rule is not None:
                problem = rule.problem(float(value))
                if problem:
                    raise ParameterError(f"{name}: {problem}")
    _check_radii_count(args)
    _check_ring(args)


def _check_radii_count(args: argparse.Namespace) -> None:
    step = getattr(args, "radius_step", None)
    top = getattr(args, "max_radius", None)
    if getattr(args, "radii", None) is not None:
        if len(args.radii) > MAX_RADII:
            raise ParameterError(f"--radii: {len(args.radii)} radii is above the limit of {MAX_RADII} (each is one network run per lesion)")
        return
    if step and top is not None and top / step + 1 > MAX_RADII:
        raise ParameterError(
            f"--max-radius {top:g} with --radius-step {step:g} makes {int(top / step) + 1} radii, above the limit of "
            f"{MAX_RADII} (each is one network run per lesion); use a larger --radius-step"
        )


def _check_ring(args: argparse.Namespace) -> None:
    ring = getattr(args, "ring_mm", None)
    if ring is not None and len(ring) == 2 and float(ring[0]) > float(ring[1]):
        raise ParameterError(f"--ring-mm: the inner radius {ring[0]:g} is larger than the outer {ring[1]:g}")


def one_line(message: object) -> str:
    """Return ``message`` on one line; a multi-line ITK error keeps only its informative line."""
    text = str(message).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and any("itk::" in line or "Exception thrown" in line for line in lines):
        from LesionXAILib.image_checks import itk_reason

        return itk_reason(text)
    return " ".join(text.split())
