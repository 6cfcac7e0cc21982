"""Exception types raised by LesionXAI; each message names the offending input and the problem."""

from __future__ import annotations


class LesionXAIError(Exception):
    """Base class of every error the engine raises on purpose (shown to users without a traceback)."""


class InputImageError(LesionXAIError, ValueError):
    """An input image is missing, unreadable, or not usable (2D, NaN, constant, no overlap...)."""


class ModelLoadError(LesionXAIError, ValueError):
    """A model file or configuration cannot be turned into a working network."""


class InstanceError(LesionXAIError, KeyError):
    """A lesion instance id does not exist, or an instance mask is unusable."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(LesionXAIError, ValueError):
    """A user-supplied setting is out of range or inconsistent."""


class Cancelled(LesionXAIError):
    """Long work was cancelled through a CancelToken."""
