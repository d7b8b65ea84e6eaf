"""Whether an option section's arguments bind to the constructor they are passed to (``network_g`` to its arch).

BasicSR builds a network as ``ARCH_REGISTRY.get(type)(**arguments)``; :func:`check_arguments` checks that call
before it is made, from the constructor's signature: an argument it does not take (unless it takes
``**kwargs``), one it needs that is not set, and a value of an obviously wrong type. It never rejects what the
constructor accepts, so a value is wrong only when it fits none of the kinds the parameter is known to take:

* the kinds come from the parameter's default (``64`` an integer, ``255.`` a number, ``(6, 6)`` a list), its
  annotation, and its entry in the Google-style docstring that BasicSR's archs carry (``res_scale (float)``,
  ``img_size (int | tuple(int))``), all together; a parameter with none of these, or one documented with a type
  that is not a plain value (``nn.Module``), takes anything, and ``null`` is accepted everywhere;
* an integer parameter takes ints (not ``64.0``: torch's layers refuse a float size), a number ints and floats,
  a flag bools and numbers, a string any scalar, a list lists and scalars (archs spread a scalar with
  ``to_2tuple``); what is left is a string where a number, flag or list is expected, a list or mapping where
  a scalar is, and a float where only an integer is.
"""
import inspect
import math
import re

from mclir_basicsr.validate import MCLIROptionError, did_you_mean

# value categories that no parameter of the kind takes ('fraction': a float with a fractional part, or inf/nan)
REJECTED = {
    'int': {'str', 'seq', 'dict', 'float', 'fraction'},
    'float': {'str', 'seq', 'dict'},
    'bool': {'str', 'seq', 'dict'},
    'str': {'seq', 'dict'},
    'seq': {'str', 'dict'},
    'dict': {'str', 'seq', 'int', 'float', 'fraction', 'bool'},
}
EXPECTED = {'int': 'an integer', 'float': 'a number', 'bool': 'true or false', 'str': 'a string', 'seq': 'a list',
            'dict': 'a mapping'}
WORDS = {'int': 'int', 'integer': 'int', 'float': 'float', 'number': 'float', 'bool': 'bool', 'boolean': 'bool',
         'str': 'str', 'string': 'str', 'list': 'seq', 'tuple': 'seq', 'sequence': 'seq', 'dict': 'dict',
         'mapping': 'dict'}
NOTHING = ('none', 'optional', 'nonetype')  # words of a type that add no kind (null is always accepted)
TYPES = {bool: 'bool', int: 'int', float: 'float', str: 'str', list: 'seq', tuple: 'seq', dict: 'dict'}
DOC_ENTRY = re.compile(r'^\s*\**(\w+)\s*\((.+?)\)\s*:', re.M)  # "    num_feat (int): ..." / "img_size (int | x):"
ANYTHING = None  # a parameter that takes any value


def category(v):
    """The kind of a value as YAML gives it: none, bool, int, float, fraction, str, seq, dict or other."""
    if v is None:
        return 'none'
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, int):
        return 'int'
    if isinstance(v, float):
        return 'float' if math.isfinite(v) and v == int(v) else 'fraction'
    if isinstance(v, str):
        return 'str'
    if isinstance(v, (list, tuple)):
        return 'seq'
    return 'dict' if isinstance(v, dict) else 'other'


def kinds_of_text(text):
    """The kinds a docstring or annotation type names (``int | tuple(int)`` -> {int, seq}); ANYTHING when it
    names a type that is not a plain value."""
    text, inner = re.sub(r'\b(?:typing\.)?(?:Optional|Union)\[(.*)\]', r'\1', text.strip()), 1
    while inner:  # what a type holds (tuple(int), list[str]) adds no kind
        text, inner = re.subn(r'[\[(][^\[\]()]*[\])]', '', text)
    kinds = set()
    for part in re.split(r',|\||\s+or\s+', text):
        word = re.match(r'\s*(?:typing\.|builtins\.)?([A-Za-z_][\w.]*)', part)
        name = word.group(1).lower() if word else 'none'
        if name not in NOTHING:
            if name not in WORDS:
                return ANYTHING
            kinds.add(WORDS[name])
    return kinds or ANYTHING


def documented(func):
    """{parameter: its type text} from the Google-style ``Args:`` of ``func``'s own docstrings (a class's
    docstring and its ``__init__``'s)."""
    texts = [func.__doc__ or '']
    if inspect.isclass(func):
        texts.append(getattr(func.__init__, '__doc__', '') or '')
    return dict(DOC_ENTRY.findall('\n'.join(texts)))


def parameter_kinds(param, doc_type):
    """The kinds ``param`` takes: the union of what its default, annotation and docstring entry say; ANYTHING
    when one of them names something else or none says anything."""
    kinds = set()
    sources = []
    if param.default is not inspect.Parameter.empty and param.default is not None:
        cat = category(param.default)
        if cat == 'other':
            return ANYTHING
        kinds.add('float' if cat == 'fraction' else cat)
    if param.annotation is not inspect.Parameter.empty:
        sources.append(TYPES.get(param.annotation) or str(param.annotation))
    if doc_type is not None:
        sources.append(doc_type)
    for source in sources:
        found = {source} if source in REJECTED else kinds_of_text(source)
        if found is ANYTHING:
            return ANYTHING
        kinds |= found
    return kinds or ANYTHING


def wrong_type(value, kinds):
    """True when ``value`` fits none of ``kinds``."""
    if kinds is ANYTHING:
        return False
    cat = category(value)
    return cat not in ('none', 'other') and all(cat in REJECTED[k] for k in kinds)


def describe(func, name, param, doc_type):
    """What ``func`` says of parameter ``name``: ``EDSR's num_feat: int, default 64``."""
    said = [doc_type] if doc_type else []
    if param.default is not inspect.Parameter.empty:
        said.append(f'default {param.default!r}')
    return f"{getattr(func, '__name__', func)}'s {name}: {', '.join(said) or 'no default'}"


def signature(func):
    """``inspect.signature(func)``, or None when it has none to read (a builtin)."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def check_arguments(path, owner, func, arguments):
    """Raise MCLIROptionError when ``func(**arguments)`` cannot bind, naming ``path.<argument>``; ``owner`` names
    the constructor in the message (``EDSR (basicsr.archs.edsr_arch.EDSR)``)."""
    sig = signature(func)
    if sig is None:
        return
    params = sig.parameters
    by_name = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for key in arguments:
        if key not in by_name and not takes_any:
            raise MCLIROptionError(f'{path}.{key}: not an argument of {owner}{did_you_mean(key, list(by_name))}')
    missing = [n for n, p in params.items() if p.default is p.empty and n not in arguments
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        also = f' (also not set: {", ".join(missing[1:])})' if missing[1:] else ''
        raise MCLIROptionError(f'{path}.{missing[0]}: required by {owner}, not set{also}')
    docs = documented(func)
    for key, value in arguments.items():
        if key not in by_name:
            continue
        kinds = parameter_kinds(by_name[key], docs.get(key))
        if wrong_type(value, kinds):
            shown = kinds - {'int'} if 'float' in kinds else kinds  # "a number" covers "an integer"
            expected = ' or '.join(EXPECTED[k] for k in sorted(shown, key=list(EXPECTED).index))
            write = f'write {int(value)}; ' if category(value) == 'float' else ''  # torch takes no 64.0 for 64
            raise MCLIROptionError(f'{path}.{key}: expected {expected}, got {value!r} '
                                   f'({write}{describe(func, key, by_name[key], docs.get(key))})')
    try:
        sig.bind(**arguments)
    except TypeError as e:
        raise MCLIROptionError(f'{path}: the arguments do not fit {owner}: {e}') from None
