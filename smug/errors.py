"""Errors a user can act on.

Every error smug raises on bad input is a subclass of :class:`SmugError` and of
the matching built-in (``ValueError`` or ``TypeError``), so ``except ValueError``
keeps working, and every message names the offending value and what is expected.
"""

from __future__ import annotations

__all__ = [
    "SmugError",
    "ValidationError",
    "ShapeError",
    "NonFiniteError",
    "BoundsError",
    "UnknownVariableError",
    "ConfigError",
    "SchemaError",
    "BackendError",
    "UnknownBackendError",
    "BackendNotInstalledError",
    "UnsupportedProblemError",
    "UnsupportedParameterError",
    "LicenseLimitError",
    "UnprovenExplanationError",
    "UnprovenExplanationWarning",
]


class SmugError(Exception):
    """Base class of every error smug raises on purpose."""


class ValidationError(SmugError, ValueError):
    """A value does not satisfy what smug requires of it."""


class ShapeError(ValidationError):
    """An array or tensor has the wrong shape."""


class NonFiniteError(ValidationError):
    """A NaN or infinite number where a finite one is required."""


class BoundsError(ValidationError):
    """A lower bound above its upper bound, or a value outside its bounds."""


class UnknownVariableError(ValidationError):
    """A constraint or mapping refers to a variable that does not exist."""


class ConfigError(ValidationError):
    """An unknown configuration key or an out-of-range configuration value."""


class SchemaError(ValidationError):
    """A serialised problem does not follow the documented schema."""


class BackendError(SmugError, RuntimeError):
    """A backend could not be used."""


class UnknownBackendError(BackendError, ValueError):
    """No backend is registered under the requested name."""


class BackendNotInstalledError(BackendError, ImportError):
    """The backend is known but its solver is not installed (the message has the install command)."""


class UnsupportedProblemError(BackendError, ValueError):
    """The backend cannot represent this problem (for example ReLU constraints on CP-SAT)."""


class UnsupportedParameterError(BackendError, ValueError):
    """A solve parameter was set that the backend cannot honour."""


class LicenseLimitError(UnsupportedProblemError):
    """The solver's licence refuses this problem (too large for a size-limited licence, or no licence at all).

    The message names the limit and the fix: the user's own licence, or another backend.
    """


class UnprovenExplanationError(SmugError, RuntimeError):
    """An explanation was asked to be proven (``on_unproven="raise"``) and is not optimal-and-verified."""


class UnprovenExplanationWarning(UserWarning):
    """An attribution map comes from a mask that is not proven minimal or not verified (for example a time-out)."""
