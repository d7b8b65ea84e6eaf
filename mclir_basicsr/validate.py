"""Checks of option values, shared by the MCLIR schema (:mod:`mclir_basicsr.options`) and the checks of
BasicSR's own sections (:mod:`mclir_basicsr.preflight`): each takes the option's path and its value, returns
the (normalised) value or raises :class:`MCLIROptionError` whose one-line message starts with the path and says
what was expected. Standard library only.
"""
import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable

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


def unit_float(path, v):
    if not is_number(v) or not 0 <= v <= 1:
        fail(path, 'a number in [0, 1]', v)
    return float(v)


def non_negative_float(path, v):
    if not is_number(v) or not math.isfinite(v) or v < 0:
        fail(path, 'a finite number >= 0', v)
    return float(v)


def optional_positive_float(path, v):
    if v is None:
        return None
    if not is_number(v) or not math.isfinite(v) or v <= 0:
        fail(path, 'null or a finite number > 0', v)
    return float(v)


def optional_positive_int(path, v):
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        fail(path, 'null or a positive integer', v)
    return v


def boolean(path, v):
    if not isinstance(v, bool):
        fail(path, 'true or false', v)
    return v


def optional_str(path, v):
    if v is not None and not (isinstance(v, str) and v):
        fail(path, 'null or a file path', v)
    return v


def boolean_or_auto(path, v):
    if not (isinstance(v, bool) or v == 'auto'):
        fail(path, 'true, false or auto', v)
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


def list_of(item_check):
    def check(path, v):
        if is_number(v):  # a scalar is broadcast to every negative
            return item_check(path, v)
        if not isinstance(v, (list, tuple)) or not v:
            fail(path, 'a non-empty list (one entry per negative model)', v)
        return [item_check(f'{path}[{i}]', x) for i, x in enumerate(v)]
    check.__name__ = f'list of {item_check.__name__} (or one for all)'
    return check


def layer_weights(path, v):
    if not isinstance(v, dict) or not v:
        fail(path, 'a mapping of VGG layer name to weight, e.g. {relu1_2: 0.2, relu2_2: 0.3}', v)
    return {str(k): non_negative_float(f'{path}.{k}', w) for k, w in v.items()}


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


# --------------------------------------------------------------------------- a section of options
@dataclass(frozen=True)
class Option:
    default: Any
    check: Callable
    doc: str
    required: bool = False


def _unknown_keys(path, given, known):
    for key in given:
        if key not in known:
            raise MCLIROptionError(f'{path}.{key}: unknown option{did_you_mean(key, known)}; '
                                   f'known: {", ".join(known)}')


def validate_section(path, given, spec):
    if given is None:
        given = {}
    if not isinstance(given, dict):
        fail(path, 'a mapping', given)
    _unknown_keys(path, given, spec)
    out = {}
    for key, option in spec.items():
        if key in given:
            out[key] = option.check(f'{path}.{key}', given[key])
        elif option.required:
            raise MCLIROptionError(f'{path}.{key}: required ({option.doc})')
        else:
            out[key] = option.default
    return out
