"""The option error type and the small helpers every option check shares (the checks themselves are pydantic
models: :mod:`mclir_basicsr.options` for the add-on's sections, :mod:`mclir_basicsr.preflight.sections` for
BasicSR's). Standard library only.
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


def whole_number(v):
    """True for an int, or a finite float without a fractional part (``int()`` keeps its value); not for bools."""
    return is_number(v) and (isinstance(v, int) or (math.isfinite(v) and v == int(v)))


def string_hint(v):
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
