"""How the add-on's components enter BasicSR's registries: under names that never collide.

BasicSR's registries are global and refuse a second object under a name (``AssertionError: An object named
'FFANet' was already registered``). Many BasicSR programs share an environment (Real-ESRGAN, GFPGAN, the
published MCLIR fork, a lab's own project), and some register common names (``FFANet``, ``CRLoss``). So every
component of the add-on (decorated with :func:`component`) is registered twice:

* under its **own name** ``MCLIR_<Name>`` (``MCLIR_FFANet``, ``MCLIR_SPNLoss``, ``MCLIR_ModelContrastiveModel``,
  ...), which always refers to the add-on's class;
* under its **short name** (``FFANet``, ``SPNLoss``, ``ModelContrastiveModel``, ...) only while no other program
  holds it, and then as a name that **yields**: when another program registers the same name later (a module
  imported after ``import basicsr``, as BasicSR projects do), its registration succeeds and replaces the
  add-on's entry, as if the add-on were not installed. A name another program registered first is never
  touched. Either way the short name belongs to the other program, and the add-on's class stays reachable
  under ``MCLIR_<Name>``.

Yielding needs BasicSR's ``Registry._do_register(name, obj, suffix)``; each of the three registries the add-on
uses (arch, loss, model) gets an instance-level wrapper that lets a registration replace a yielding entry and
otherwise calls BasicSR's method unchanged (other registries and duplicate names among other programs behave as
in BasicSR). Where that method has another signature (a BasicSR this was not written for), the short names are
not registered at all, only ``MCLIR_<Name>``: a short name that cannot yield could make another program fail.
:func:`owner` tells whether a registered name is the add-on's.
"""
import inspect
import sys

PREFIX = 'MCLIR_'
_REGISTRIES = {'arch': 'ARCH_REGISTRY', 'loss': 'LOSS_REGISTRY', 'model': 'MODEL_REGISTRY'}
_YIELDING = {}   # (registry name, short name) -> the add-on's class held under that name, while it is held
YIELDED = {}     # (registry name, short name) -> module of the program that took the name (for messages)


def _registry(kind):
    from basicsr.utils import registry
    return getattr(registry, _REGISTRIES[kind])


def _can_yield(reg):
    try:
        return tuple(inspect.signature(type(reg)._do_register).parameters) == ('self', 'name', 'obj', 'suffix')
    except (AttributeError, TypeError, ValueError):
        return False


def _make_yielding(reg):
    """Give ``reg`` an instance-level ``_do_register`` that lets another program take a yielding name."""
    if '_do_register' in vars(reg) or not _can_yield(reg):
        return '_do_register' in vars(reg)
    original = type(reg)._do_register

    def _do_register(name, obj, suffix=None):
        key = name + '_' + suffix if isinstance(suffix, str) else name
        held = _YIELDING.get((reg._name, key))
        if held is not None and reg._obj_map.get(key) is held and obj is not held:
            del reg._obj_map[key]
            del _YIELDING[(reg._name, key)]
            YIELDED[(reg._name, key)] = getattr(obj, '__module__', '?')
        return original(reg, name, obj, suffix)

    reg._do_register = _do_register
    return True


def register(cls, kind):
    """Register ``cls`` in BasicSR's ``kind`` registry ('arch', 'loss' or 'model') as the module docstring says."""
    reg = _registry(kind)
    own = PREFIX + cls.__name__
    if reg._obj_map.get(own) is not cls:
        reg._obj_map.pop(own, None)  # a reloaded module: its new class replaces the old one under the own name
        reg._do_register(own, cls)
    short = cls.__name__
    held = reg._obj_map.get(short)
    if held is None and _make_yielding(reg):
        reg._obj_map[short] = cls
        _YIELDING[(reg._name, short)] = cls
    elif held is not None and _YIELDING.get((reg._name, short)) is held and held is not cls:
        reg._obj_map[short] = cls  # a reloaded module of the add-on: still the add-on's name
        _YIELDING[(reg._name, short)] = cls
    return cls


def component(kind):
    """Class decorator: ``@component('loss')`` registers the class as :func:`register` does."""
    def decorate(cls):
        return register(cls, kind)
    return decorate


def owner(kind, name):
    """'mclir_basicsr' when ``name`` in the ``kind`` registry is the add-on's class, else the module of whoever
    registered it (None when nothing is registered under it)."""
    if 'basicsr.utils.registry' not in sys.modules:
        return None
    obj = _registry(kind)._obj_map.get(name)
    if obj is None:
        return None
    module = getattr(obj, '__module__', '') or ''
    return 'mclir_basicsr' if module.split('.')[0] == 'mclir_basicsr' else module


def own_name(cls):
    """The name under which ``cls`` (an add-on component) is always registered."""
    return PREFIX + cls.__name__
