"""The typed exception hierarchy shared by every gridlens package.

Callers catch what they can handle::

    GridlensError
    ├── InputError             bad input from a user: the CLI maps it to exit code 2, HTTP to 4xx
    │   ├── DataFormatError    a file or payload that cannot be parsed (corrupt, truncated, NaNs)
    │   ├── ParameterError     an option or argument outside its allowed range
    │   ├── NotFoundError      a named thing that does not exist (file, channel, bus, device)
    │   └── ConflictError      a named thing that already exists (device name, user name)
    └── ComputationError       valid input, but the computation could not produce an answer
        ├── InsufficientDataError   too little signal (e.g. fewer than two fundamental cycles)
        └── ConvergenceError        an iterative method did not converge

Every message is one line, written for the person who supplied the input.
"""

from __future__ import annotations

__all__ = [
    "ComputationError",
    "ConflictError",
    "ConvergenceError",
    "DataFormatError",
    "GridlensError",
    "InputError",
    "InsufficientDataError",
    "NoCounterError",
    "NotFoundError",
    "ParameterError",
    "check_param",
]


class GridlensError(Exception):
    """Base class of every error gridlens raises on purpose."""


class InputError(GridlensError, ValueError):
    """The input (a file, an option, a request) is wrong; the user can fix it."""


class DataFormatError(InputError):
    """A file or payload cannot be parsed: corrupt, truncated, non-numeric, NaN runs."""


class ParameterError(InputError):
    """A parameter is outside its allowed range or of the wrong type."""


class NotFoundError(InputError, LookupError):
    """A named thing does not exist: a file, a channel, a bus, a device."""


class ConflictError(InputError):
    """A thing with that name already exists (a device, a user)."""


class ComputationError(GridlensError, RuntimeError):
    """The input is well formed but the computation cannot give a trustworthy answer."""


class InsufficientDataError(ComputationError, InputError):
    """Too little data for the requested computation (e.g. fewer than two cycles)."""


class NoCounterError(InsufficientDataError):
    """No row of digit wheels was found in a meter photo."""


class ConvergenceError(ComputationError):
    """An iterative method did not converge."""


def check_param(ok: bool, name: str, owner: str, expected: str, got: object) -> None:
    """Raise :class:`ParameterError` with the house message template unless ``ok``.

    ``The 'window_cycles' parameter of analyze must be an int in [1, 600]. Got 0 instead.``
    """
    if not ok:
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be {expected}. Got {got!r} instead."
        )
