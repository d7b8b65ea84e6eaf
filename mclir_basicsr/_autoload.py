"""The start-up hook: the one place that wires BasicSR to the add-on.

``mclir_basicsr_autoload.pth`` (installed next to the package) imports this package at interpreter start-up
(unless switched off), which calls :func:`install`. That only appends two finders to ``sys.meta_path``
(standard library, no torch): the torchvision alias of :mod:`mclir_basicsr.compat` and :class:`_BasicSRHook`,
which waits for ``import basicsr``. When BasicSR's package has finished importing, :func:`activate`:

1. imports the add-on's archs, losses and models, whose decorators register them under names that never
   collide with another program's (:mod:`mclir_basicsr.registration`);
2. applies the fixes for upstream breakage and their guard (:func:`mclir_basicsr.compat.apply`);
3. where BasicSR's ``parse_options`` is the one the guard knows, wraps it once more: an add-on run's whole option
   file is checked before anything is written (:func:`mclir_basicsr.preflight.check_run`), and where the guard
   allows the add-on's run behaviour (W6-W12), it is switched on for an add-on run (a model of the add-on's, or
   every run with ``MCLIR_BASICSR_ADDON=1``) and off for any other (:func:`mclir_basicsr.runs.use`); an
   installed BasicSR script's outputs of an add-on run go to the working directory (W7);
4. makes the add-on's user errors (:class:`mclir_basicsr.errors.MCLIRError`) print as one line without a
   traceback and exit with status 1 (``MCLIR_BASICSR_TRACEBACK=1`` shows the traceback); other exceptions
   are printed as before.

Processes that never import basicsr pay for two list appends. ``MCLIR_BASICSR_AUTOLOAD=0`` switches the
start-up hook off; ``import mclir_basicsr`` still works.
"""
import os
import sys

from mclir_basicsr import compat
from mclir_basicsr.errors import MCLIRError

ENV_SWITCH = 'MCLIR_BASICSR_AUTOLOAD'
OFF_VALUES = ('0', 'false', 'no', 'off')
ON_VALUES = ('1', 'true', 'yes', 'on')
TRACEBACK_ENV = 'MCLIR_BASICSR_TRACEBACK'
_ACTIVE = False


def activate():
    """Register everything, apply the fixes and wire the option parser. Needs an imported basicsr. Idempotent."""
    global _ACTIVE
    if _ACTIVE:
        return
    _ACTIVE = True
    import mclir_basicsr.archs  # noqa: F401  (the decorators register)
    import mclir_basicsr.losses  # noqa: F401
    import mclir_basicsr.models  # noqa: F401
    compat.apply()
    sys.excepthook = one_line_errors(sys.excepthook)
    if _runs_allowed() or compat.STATUS.get('W3 --local-rank') == 'applied':  # parse_options is the one known
        from basicsr.utils import options
        options.parse_options = wrap_parse_options(options.parse_options)
        compat._rebind('parse_options', options.parse_options)
    if _runs_allowed() and compat.main_basicsr_script():
        from mclir_basicsr.runs.outputs import redirect_installed_script_outputs
        redirect_installed_script_outputs(is_addon_run(compat.read_option_file(sys.argv)))


def _runs_allowed():
    """The guard lets the add-on's run behaviour (W6-W12) be used on this BasicSR (and it was not switched off)."""
    return compat.STATUS.get(compat.ADDON_RUNS) == 'applied'


# --------------------------------------------------------------------------- which runs are the add-on's
def opted_in():
    """The user asked for the add-on behaviour in every run (``MCLIR_BASICSR_ADDON=1``)."""
    return os.environ.get(compat.ADDON_ENV, '').strip().lower() in ON_VALUES


def is_addon_model(opt):
    """True when the option file's ``model_type`` names a model of the add-on's (under either of its names)."""
    from mclir_basicsr.registration import owner
    model_type = opt.get('model_type')
    return isinstance(model_type, str) and owner('model', model_type) == 'mclir_basicsr'


def is_addon_run(opt):
    """True for an option file of one of the add-on's models, or when the user opted in."""
    return opted_in() or is_addon_model(opt)


def wrap_parse_options(parse_options):
    """``parse_options`` that switches the add-on's run behaviour for each option file and checks an add-on
    run's options before BasicSR writes anything."""
    if getattr(parse_options, '_mclir_addon', False):
        return parse_options

    def wrapped(root_path, is_train=True):
        check_option_file(sys.argv)
        opt, args = parse_options(root_path, is_train)
        addon = is_addon_model(opt)
        if _runs_allowed():
            from mclir_basicsr import runs
            runs.use(addon or opted_in(), opt.get('model_type'))
        if addon:
            from mclir_basicsr import preflight
            preflight.check_run(opt, is_train)
            _note_names_of_others(opt)
        return opt, args

    wrapped._mclir_wrapped = wrapped._mclir_addon = True
    wrapped.__wrapped__ = parse_options
    wrapped.__doc__ = parse_options.__doc__
    return wrapped


def check_option_file(argv):
    """The ``-opt`` file itself (:mod:`mclir_basicsr.preflight.option_file`), before BasicSR opens it. A file no
    run could use (missing, empty, not YAML, not a mapping) is named in one line for every run while the add-on's
    run behaviour is allowed: BasicSR would stop with a traceback anyway. A key written twice, which BasicSR
    accepts (the last one wins), is an error only in an add-on run, so another program's files load as before;
    so are the sections BasicSR's parse_options reads, missing or of the wrong shape."""
    from mclir_basicsr.preflight import option_file
    from mclir_basicsr.registration import owner
    path = option_file.option_path(argv)
    if path is None:
        return  # BasicSR's argparse says -opt is required
    try:
        text = option_file.read_text(path)
    except MCLIRError:
        if _runs_allowed():
            raise
        return  # not known to be an add-on run: BasicSR reports it as it always has
    name = option_file.model_type(text)
    _check_addon_model_name(path, name)
    addon = opted_in() or (name is not None and owner('model', name) == 'mclir_basicsr')
    if addon or _runs_allowed():
        option_file.check_option_file(path, duplicates=addon, sections=addon, text=text)


def _check_addon_model_name(path, name):
    """A ``model_type`` registered by nobody but close to one of the add-on's models is a misspelt add-on run, which
    BasicSR would end with a KeyError traceback after creating the run's folders: named here in one line instead
    (any other unregistered name is left to BasicSR, as it always was)."""
    import difflib

    from basicsr.utils.registry import MODEL_REGISTRY

    from mclir_basicsr.registration import owner
    from mclir_basicsr.validate import MCLIROptionError
    if name is None or owner('model', name) is not None:
        return
    ours = [n for n, _ in MODEL_REGISTRY if owner('model', n) == 'mclir_basicsr']
    close = difflib.get_close_matches(name, ours, n=1, cutoff=0.8)
    if close:
        raise MCLIROptionError(f'model_type: {name!r} is not a registered model (did you mean {close[0]!r}?) '
                               f'({path})')


def _note_names_of_others(opt):
    """An add-on run whose ``network_g.type`` is a short name another program holds builds that program's network
    (BasicSR builds networks by name): say so, with the add-on's own name (the add-on's losses are built from their
    classes, never by name, so they need no such note)."""
    from mclir_basicsr.registration import PREFIX, owner
    name = (opt.get('network_g') or {}).get('type')
    if not isinstance(name, str) or owner('arch', PREFIX + name) != 'mclir_basicsr':
        return
    other = owner('arch', name)
    if other not in (None, 'mclir_basicsr') and opt.get('rank', 0) == 0:
        print(f'mclir-basicsr: note: network_g.type: {name} is registered by {other}, which this run builds; the '
              f"add-on's is {PREFIX}{name}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one-line errors
def one_line_errors(previous):
    """An excepthook that prints an :class:`MCLIRError` as its one line (``module.Class: message``, as the last
    line of a traceback reads) and hands every other exception to ``previous``."""
    if getattr(previous, '_mclir_one_line', False):
        return previous

    def hook(exc_type, exc, tb):
        shown = os.environ.get(TRACEBACK_ENV, '').strip().lower() in ON_VALUES
        if issubclass(exc_type, MCLIRError) and not shown:
            message = ' '.join(str(exc).split())  # one line, whatever the message holds
            print(f'{exc_type.__module__}.{exc_type.__qualname__}: {message}', file=sys.stderr, flush=True)
            return
        previous(exc_type, exc, tb)

    hook._mclir_one_line = True
    return hook


# --------------------------------------------------------------------------- the import hook
class _LoaderThenActivate:
    """Wraps BasicSR's loader (duck-typed: importing importlib.abc would slow every start-up)."""

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
