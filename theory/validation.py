"""Checks of user-supplied values at the package's boundaries: one module, one message format.

Every public entry point of :mod:`theory`, :mod:`empirical` and the config loader validates its arguments with
these functions, so that a wrong value fails at once with a message that names the parameter, the expected type
and range, and the value received, instead of producing a silently wrong run deep inside a computation:

* booleans are never numbers (``True`` is not a learning rate of 1; ``numpy.bool_`` neither);
* complex numbers are never real (NumPy would silently drop the imaginary part);
* NaN and infinity are rejected wherever a finite number is expected;
* integers must be integers (``2.0`` is a float, refused where a count is expected).

A value of the wrong *type* raises :class:`ParameterTypeError`, which is both a ``TypeError`` and a
``ValueError`` (callers that catch either keep working); a value of the right type outside its range raises
``ValueError``.  Each check returns the value converted to its plain Python type (``float``, ``int``, ``bool``),
so the caller stores a clean value.  Pure Python and NumPy: no torch (0-d tensors pass through ``numpy.asarray``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ParameterTypeError",
    "as_real_array",
    "check_bool",
    "check_choice",
    "check_finite",
    "check_id_list",
    "check_in_unit_interval",
    "check_int",
    "check_int_list",
    "check_nonnegative",
    "check_nonnegative_int",
    "check_options",
    "check_positive",
    "check_positive_int",
    "check_probability",
    "check_real",
    "check_string",
    "describe",
]


class ParameterTypeError(TypeError, ValueError):
    """A parameter of the wrong type (e.g. a bool, a string or a complex number where a real is expected).

    Both a ``TypeError`` (what it is) and a ``ValueError`` (what the package raised for bad input before it had
    this class), so ``except ValueError`` at the command line still turns it into exit code 2.
    """


def describe(value: Any) -> str:
    """``repr`` of ``value`` with its type when the repr hides it (``True`` -> ``True (a bool)``), shortened."""
    try:
        text = " ".join(repr(value).split())  # one line, even for arrays
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, (bool, np.bool_)):
        return f"{text} (a bool)"
    if isinstance(value, (complex, np.complexfloating)):
        return f"{text} (a complex number)"
    if isinstance(value, str):
        return f"{text} (a string)"
    return text


_NUMBER_HINT = {True: "", False: " (a real number)"}


def _real(value: Any, name: str, requirement: str) -> float:
    """``value`` as a float if it is a real number (not bool, not complex), else :class:`ParameterTypeError`."""
    if isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        raise ParameterTypeError(f"{name} {requirement}{_NUMBER_HINT['number' in requirement]}, got {describe(value)}")
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:  # an int beyond the float range, e.g. 10**400
            return math.inf if value > 0 else -math.inf
    try:  # 0-d arrays and tensors of a real dtype
        array = np.asarray(value)
    except Exception:  # any failure to convert means "not a number"
        array = None
    if array is None or array.ndim != 0 or array.dtype.kind not in "iuf":
        raise ParameterTypeError(f"{name} {requirement}{_NUMBER_HINT['number' in requirement]}, got {describe(value)}")
    return float(array)


def _requirement(finite: bool, low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """The phrase after the parameter's name: "must be a finite number in (0, inf)", "must lie in [0, 1)"."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    if low is not None and high is not None:
        return f"must lie in {left}{low:g}, {high:g}{right}"
    kind = "a finite number" if finite else "a number"
    if low is not None:
        return f"must be {kind} in {left}{low:g}, inf)"
    if high is not None:
        return f"must be {kind} in (-inf, {high:g}{right}"
    return f"must be {kind}"


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    note: str = "",
) -> float:
    """A real number (not bool, not complex; finite unless ``finite=False``) within the given bounds, as a float.

    NaN is always rejected; infinity only passes with ``finite=False`` and an open-ended side.  ``note`` is
    appended to the message in parentheses (what the bound means).
    """
    requirement = _requirement(finite, low, high, low_open, high_open) + (f" ({note})" if note else "")
    number = _real(value, name, requirement)
    bad = math.isnan(number) or (finite and math.isinf(number))
    bad = bad or (low is not None and (number < low or (low_open and number == low)))
    bad = bad or (high is not None and (number > high or (high_open and number == high)))
    if bad:
        raise ValueError(f"{name} {requirement}, got {describe(value)}")
    return number


def check_finite(value: Any, name: str) -> float:
    """Any finite real number."""
    return check_real(value, name)


def check_positive(value: Any, name: str) -> float:
    """A finite real number > 0 (learning rates, time steps, scales)."""
    return check_real(value, name, low=0.0, low_open=True)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite real number >= 0 (weight decay, durations that may be zero)."""
    return check_real(value, name, low=0.0)


def check_in_unit_interval(value: Any, name: str, *, closed_right: bool = False, open_left: bool = False) -> float:
    """A real number in [0, 1) by default (a momentum coefficient); ``closed_right``/``open_left`` change the ends."""
    return check_real(value, name, low=0.0, high=1.0, low_open=open_left, high_open=not closed_right)


def check_probability(value: Any, name: str) -> float:
    """A real number in the open interval (0, 1) (confidence levels, fractions of a split)."""
    return check_real(value, name, low=0.0, high=1.0, low_open=True, high_open=True)


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None, note: str = "") -> int:
    """An integer (Python or NumPy; not a bool, not a float such as ``2.0``) within [minimum, maximum].

    ``note`` is appended to the message in parentheses (what the bound means).
    """
    if minimum is not None and maximum is not None:
        expected = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    elif maximum is not None:
        expected = f"an integer <= {maximum}"
    else:
        expected = "an integer"
    if note:
        expected = f"{expected} ({note})"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ParameterTypeError(f"{name} must be {expected}, got {describe(value)}")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {expected}, got {describe(value)}")
    return number


def check_positive_int(value: Any, name: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    return check_int(value, name, minimum=1)


def check_nonnegative_int(value: Any, name: str) -> int:
    """An integer >= 0 (seeds, optional counts where 0 means "off")."""
    return check_int(value, name, minimum=0)


def check_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` only: a string such as ``"no"`` is truthy, so it is rejected rather than guessed."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ParameterTypeError(f"{name} must be true or false (a bool), got {describe(value)}")


def check_string(value: Any, name: str, *, nonempty: bool = True) -> str:
    """A string (non-empty by default)."""
    if not isinstance(value, str):
        raise ParameterTypeError(f"{name} must be a string, got {describe(value)}")
    if nonempty and not value:
        raise ValueError(f"{name} must be a non-empty string, got ''")
    return value


def check_choice(value: Any, name: str, choices: Collection[str]) -> str:
    """One of the strings ``choices``."""
    allowed = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {allowed}, got {describe(value)}")
    return value


def _holds_bool(value: Any) -> bool:
    """Whether a (nested) list or tuple holds a bool anywhere."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_bool(item) for item in value)


def as_real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array, rejecting complex, boolean and non-numeric entries instead of converting them.

    ``numpy.asarray(z, dtype=float)`` drops the imaginary part of a complex ``z`` with only a warning, and reads
    ``True`` as 1.0; a matrix of either is a caller's mistake, so it is refused with the parameter's name.
    Finiteness and shape are the caller's to check (they differ per parameter).
    """
    if _holds_bool(value):  # [0.1, True] would become the float array [0.1, 1.0]
        raise ParameterTypeError(f"{name} must be an array of real numbers, got boolean entries: {describe(value)}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ParameterTypeError(f"{name} must be an array of real numbers, got {describe(value)}") from exc
    if array.dtype.kind == "O":
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterTypeError(f"{name} must be an array of real numbers, got {describe(value)}") from exc
    if array.dtype.kind not in "iuf":
        kind = {"c": "complex", "b": "boolean"}.get(array.dtype.kind, f"{array.dtype}")
        raise ParameterTypeError(f"{name} must be an array of real numbers, got {kind} entries: {describe(value)}")
    return np.array(array, dtype=np.float64)


def check_int_list(
    value: Any, name: str, *, minimum: int | None = 1, allow_scalar: bool = False, nonempty: bool = True
) -> tuple[int, ...]:
    """A list of integers, each >= ``minimum`` (layer widths, milestones); one integer if ``allow_scalar``."""
    if allow_scalar and not isinstance(value, (list, tuple)):
        return (check_int(value, name, minimum=minimum),)
    bound = "" if minimum is None else f" >= {minimum}"
    if not isinstance(value, (list, tuple)):
        raise ParameterTypeError(f"{name} must be a list of integers{bound}, got {describe(value)}")
    if nonempty and not value:
        raise ValueError(f"{name} must be a non-empty list of integers{bound}, got []")
    return tuple(check_int(item, f"{name}[{i}]", minimum=minimum) for i, item in enumerate(value))


def check_id_list(value: Any, name: str) -> list[str] | None:
    """Ids where a list is expected: ``None`` stays ``None``, one string is one id, else a list of strings.

    A bare string is read as one id (``only="svag"`` is ``["svag"]``), never iterated into its characters.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) and not isinstance(value, (set, frozenset)):
        raise ParameterTypeError(f"{name} must be an id or a list of ids (strings), got {describe(value)}")
    items = list(value)
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise ParameterTypeError(f"{name} must hold ids (strings); got {describe(bad[0])}")
    return items


def check_options(
    options: Any,
    checks: Mapping[str, Callable[[Any, str], Any]],
    prefix: str,
    fixed: Sequence[str] = (),
    label: str | None = None,
) -> dict[str, Any]:
    """Keyword options of a builder or loader: each key known, each value passed through its check.

    ``checks`` maps an option name to ``check(value, name) -> value``; the name given is ``prefix.key`` (e.g.
    ``model.hidden``), so the message says which key of which table is wrong.  ``fixed`` are keys that the
    caller handles itself (listed as allowed in the message); ``label`` names the owner in the message about
    unknown keys (e.g. ``model 'mlp'``; default ``prefix``).  Returns the checked values.
    """
    if not isinstance(options, Mapping):
        raise ParameterTypeError(
            f"{prefix} options must be a table (a mapping of names to values), got {describe(options)}"
        )
    unknown = sorted(str(key) for key in options if key not in checks)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {label or prefix}; allowed: {[*fixed, *checks]}")
    return {key: checks[key](value, f"{prefix}.{key}") for key, value in options.items()}
