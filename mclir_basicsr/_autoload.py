"""Register the add-on the moment BasicSR is imported, in any process.

``mclir_basicsr_autoload.pth`` (installed next to the package) imports this package at
interpreter start-up (unless switched off), which calls :func:`install`. That only appends two
finders to ``sys.meta_path`` (standard library, no torch): the torchvision alias of
:mod:`mclir_basicsr.compat` and :class:`_BasicSRHook`, which waits for ``import basicsr``.
When BasicSR's package has finished importing, the hook imports the add-on's models and losses,
whose decorators register them, and applies :func:`mclir_basicsr.compat.apply`: the fixes for
upstream breakage, and the switch that gives add-on runs (and only them) the add-on's behaviour.
Processes that never import basicsr pay for two list appends.

``MCLIR_BASICSR_AUTOLOAD=0`` switches the start-up hook off; ``import mclir_basicsr`` still works.
"""
import sys

from mclir_basicsr import compat

ENV_SWITCH = 'MCLIR_BASICSR_AUTOLOAD'
OFF_VALUES = ('0', 'false', 'no', 'off')
_ACTIVE = False


def activate():
    """Apply the workarounds and register everything. Needs an imported basicsr. Idempotent."""
    global _ACTIVE
    if _ACTIVE:
        return
    _ACTIVE = True
    import mclir_basicsr.archs  # noqa: F401  (the decorators register)
    import mclir_basicsr.losses  # noqa: F401
    import mclir_basicsr.models  # noqa: F401
    compat.apply()  # after the registration: it tells add-on runs by their registered model_type


class _LoaderThenActivate:
    """Wraps BasicSR's loader (duck-typed: importlib.abc costs 15 ms to import at start-up)."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        activate()

    def __getattr__(self, name):  # get_resource_reader, is_package, get_code, ...
        return getattr(self._loader, name)


class _BasicSRHook:
    """Wraps the loader of the top-level ``basicsr`` package to run :func:`activate` after it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'basicsr':
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _LoaderThenActivate(spec.loader)
                return spec
        return None


def install():
    """Install the finders; if basicsr is already imported, activate now."""
    compat.install_torchvision_alias()
    if not any(isinstance(f, _BasicSRHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _BasicSRHook())
    if 'basicsr' in sys.modules:
        activate()  # basicsr was imported before us (hook switched off, or ``python -S``)

