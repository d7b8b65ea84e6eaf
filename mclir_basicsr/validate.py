"""The option error type and the checks of BasicSR's own sections (:mod:`mclir_basicsr.preflight`; the add-on's
sections are pydantic models, :mod:`mclir_basicsr.options`): each check takes the option's path and its value,
returns the (normalised) value or raises :class:`MCLIROptionError` whose one-line message starts with the path and
says what was expected. Standard library only.
"""
import difflib
import math

from mclir_basicsr.errors import MCLIRError


class MCLIROptionError(MCLIRError, ValueError):
    """A bad option. The message starts with the option's path (``train.negatives.decay[1]: ...``)."""


def fail(path, expected, value):
    raise MCLIROptionError(f'{path}: expected {expected}, got {value!r}')


def did_you_mean(value, choices):
    """' (did you mean 'x'?)' for the closest choice, case-insensitively; '' if none is close."""
    lowered = {str(c).lower(): c for c in choices}
    close = difflib.get_close_matches(str(value).lower(), list(lowered), n=1)
    return f' (did you mean {lowered[close[0]]!r}?)' if close else ''


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_int(path, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        fail(path, 'a positive integer', v)
    return v










def boolean(path, v):
    if not isinstance(v, bool):
        fail(path, 'true or false', v)
    return v






def one_of(*choices, optional=False):
    def check(path, v):
        if optional and v is None:
            return None
        if not isinstance(v, str) or v not in choices:
            accepted = ', '.join(choices) + (', null' if optional else '')
            hint = did_you_mean(v, choices) if isinstance(v, str) else ''
            raise MCLIROptionError(f'{path}: expected one of {accepted}; got {v!r}{hint}')
        return v
    check.choices = choices
    return check






def non_negative_int(path, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        fail(path, 'an integer >= 0', v)
    return v


def positive_float(path, v):
    if not is_number(v) or not math.isfinite(v) or v <= 0:
        fail(path, 'a finite number > 0', v)
    return float(v)


def bounded_number(path, v, expected, ok):
    """A finite number for which ``ok(v)`` holds; ``expected`` says which (e.g. 'a number > 0'). A string that
    YAML read from a number (``2e-4``) is named with how to write it."""
    if not is_number(v) or not math.isfinite(v) or not ok(v):
        raise MCLIROptionError(f'{path}: expected {expected}, got {v!r}{_string_hint(v)}')
    return v


def whole_number(v):
    """True for an int, or a finite float without a fractional part (``int()`` keeps its value); not for bools."""
    return is_number(v) and (isinstance(v, int) or (math.isfinite(v) and v == int(v)))


def positive_count(path, v):
    """A positive integer, also written as an integer-valued float (YAML's ``!!float 1e5``); returns the int."""
    if not whole_number(v) or v < 1:
        raise MCLIROptionError(f'{path}: expected a positive integer, got {v!r}{_string_hint(v)}')
    return int(v)


def _string_hint(v):
    """How to write a number that YAML read as a string ('' for anything else)."""
    if not isinstance(v, str):
        return ''
    if v.strip().isdigit():
        return ' (a string: write it without quotes)'
    try:
        number = float(v)
    except ValueError:
        return ''
    if whole_number(number) and number >= 1:
        return f' (YAML reads {v} as a string: write {int(number)})'
    if '.' in v:  # YAML reads 0.9 as a number: this one was quoted
        return ' (a string: write it without quotes)'
    if math.isfinite(number):  # PyYAML (YAML 1.1) needs a dot in the mantissa: 2e-4 is a string, 2.0e-4 a float
        return f' (YAML reads {v} as a string: write !!float {v.strip()})'
    return ''


def mapping(path, v, example=''):
    """A mapping (``example`` shows one, e.g. ``{type: EDSR, ...}``)."""
    if not isinstance(v, dict):
        fail(path, 'a mapping' + (f', e.g. {example}' if example else ''), v)
    return v
