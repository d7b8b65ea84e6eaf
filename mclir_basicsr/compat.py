"""Fixes for upstream breakage, and the guard that applies them (nothing else lives here).

BasicSR 1.4.2 (the current PyPI release) was written for torch 1.x and CUDA. The fixes below
apply to every program that imports basicsr, because without them BasicSR fails; each is small,
tested in ``tests/test_compat.py``, and steps aside where upstream works:

=====  ==================================================================================
 W1    ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17; BasicSR
       1.4.2 imports ``rgb_to_grayscale`` from it. A meta-path finder serves an alias of
       ``torchvision.transforms.functional`` under the old name, only if the real module is
       missing, and only when something imports it (no torch import at start-up).
 W2    ``--launcher pytorch`` calls ``torch.cuda.set_device`` unconditionally and defaults to
       nccl: on CPU use gloo (``dist_params.backend`` in the YAML overrides), pin the GPU
       from ``LOCAL_RANK`` (correct on multi-node). BasicSR never destroys the process group;
       a gloo group made here is destroyed at exit, while the interpreter is still whole, and
       the exit pauses without the GIL: gloo's worker threads outlive the group, and one that
       frees a finished collective's work once the interpreter is finalising aborts a rank that
       finished cleanly ("terminate called without an active exception").
 W3    ``python -m torch.distributed.launch`` passes ``--local-rank=N``, which BasicSR's
       argument parser rejects; it is rewritten to ``--local_rank`` (untouched otherwise).
 W4    ``load_resume_state`` maps every storage to CUDA and looks for auto-resume states
       relative to the working directory instead of the experiment folder: states load on
       the model's device (the current GPU when there is one, as upstream), found where
       BasicSR wrote them.
 W5    ``BaseModel.model_to_device`` passes a CUDA device id to DistributedDataParallel even
       on CPU: no device ids on CPU (upstream's method is called unchanged otherwise).
=====  ==================================================================================

The guard: :func:`apply` patches only a BasicSR in :data:`TESTED_RANGE` (``MCLIR_BASICSR_COMPAT=force``
overrides), and only where every attribute a workaround touches exists with the expected
parameters. Each workaround is applied whole or not at all; what is skipped is named in one
:class:`BasicSRCompatWarning`. The guard also decides whether the add-on's own run behaviour
(W6-W12, :mod:`mclir_basicsr.runs`, bound per option file by the start-up hook) may be used on this
BasicSR: :data:`STATUS` says so under :data:`ADDON_RUNS`.

This module imports only ``os`` and ``sys`` at import time and nothing of the add-on: the start-up
hook (:mod:`mclir_basicsr._autoload`) uses it in every Python process, before torch is loaded, and it
can be loaded on its own (the fixes without the add-on).
"""
import os
import sys

TESTED_RANGE = ((1, 4, 2), (1, 5))   # BasicSR >= 1.4.2, < 1.5 (PyPI 1.4.2 and the master branch)
FORCE_ENV = 'MCLIR_BASICSR_COMPAT'   # 'force': apply on an untested BasicSR version too
ADDON_ENV = 'MCLIR_BASICSR_ADDON'    # '1': add-on behaviour (W6-W12) for every model_type; '0': for none
OFF_VALUES = ('0', 'false', 'no', 'off')

STATUS = {}  # workaround name -> 'applied' or 'skipped: <why>' (filled by apply)
_APPLIED = False
_WARNED = False


class BasicSRCompatWarning(UserWarning):
    """The installed BasicSR is not the one the workarounds were tested on; some were skipped."""


# --------------------------------------------------------------------------- W1 (torchvision)
_FT_NAME = 'torchvision.transforms.functional_tensor'


class _FunctionalTensorAlias:
    """Serve ``torchvision.transforms.functional_tensor`` when torchvision no longer has it.

    A meta-path finder and loader (duck-typed: importing importlib.abc would slow every start-up)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _FT_NAME:
            return None
        for finder in sys.meta_path:  # the real module wins when it exists
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            if finder.find_spec(fullname, path, target) is not None:
                return None
        import importlib.machinery
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import importlib
        functional = importlib.import_module('torchvision.transforms.functional')
        module.__getattr__ = lambda name: getattr(functional, name)
        module.__doc__ = 'Alias of torchvision.transforms.functional (installed by mclir_basicsr.compat).'


def install_torchvision_alias():
    if not any(isinstance(f, _FunctionalTensorAlias) for f in sys.meta_path):
        sys.meta_path.append(_FunctionalTensorAlias())


# --------------------------------------------------------------------------- W2 (launcher)
def init_dist(launcher, backend=None, file_params=None, **kwargs):
    """Drop-in for ``basicsr.utils.dist_util.init_dist`` that works on CPU (gloo) and GPU.

    ``file_params``: the option file's ``dist_params`` (BasicSR passes them only to slurm)."""
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from basicsr.utils import dist_util

    params = dict(file_params or {})
    params.update(kwargs)
    backend = backend or params.pop('backend', None) or ('nccl' if torch.cuda.is_available() else 'gloo')
    params.pop('backend', None)
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if launcher == 'pytorch':
        if backend == 'nccl':
            local_rank = int(os.environ.get('LOCAL_RANK', int(os.environ['RANK']) % torch.cuda.device_count()))
            torch.cuda.set_device(local_rank)
        params.pop('port', None)
        dist.init_process_group(backend=backend, **params)
    elif launcher == 'slurm':
        if backend == 'nccl':
            dist_util._init_dist_slurm(backend, port=params.get('port'))
        else:  # upstream's slurm path pins a GPU; on CPU only the rendezvous variables are needed
            os.environ.setdefault('MASTER_PORT', str(params.get('port') or 29500))
            os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
            os.environ['RANK'] = os.environ['SLURM_PROCID']
            if 'MASTER_ADDR' not in os.environ:
                import subprocess
                node_list = os.environ['SLURM_NODELIST']
                os.environ['MASTER_ADDR'] = subprocess.getoutput(
                    f'scontrol show hostname {node_list} | head -n1')
            dist.init_process_group(backend=backend)
    else:
        raise ValueError(f'Invalid launcher type: {launcher}')
    if backend == 'gloo':  # local to each rank, unlike nccl's shutdown, so safe after an error too
        import atexit
        atexit.register(_destroy_process_group)


def _destroy_process_group():
    import time

    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
        # gloo's worker threads outlive the group (DDP's reducer still holds it) and may be about to free the last
        # collective's work, which takes the GIL: a thread that takes it once the interpreter is finalising is
        # ended inside that destructor, and the process aborts. A pause without the GIL lets them finish first.
        time.sleep(0.05)


# --------------------------------------------------------------------------- W3 (and W2's dist_params)
def normalise_argv(argv):
    """``--local-rank=N`` / ``--local-rank N`` (torch.distributed.launch) -> ``--local_rank``."""
    return ['--local_rank' + a[len('--local-rank'):] if a.startswith('--local-rank') else a for a in argv]


def read_option_file(argv):
    """The ``-opt`` file of a command line as a dict ({} when absent or unreadable: BasicSR's own
    parser then reports it with its message)."""
    import yaml
    for flag in ('-opt', '--opt'):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            try:
                with open(argv[argv.index(flag) + 1]) as f:
                    loaded = yaml.safe_load(f)
                return loaded if isinstance(loaded, dict) else {}
            except (OSError, yaml.YAMLError):
                return {}
    return {}


def _parse_with_file_dist_params(parse_options, root_path, is_train):
    """Run BasicSR's parser with W2's init_dist seeing the option file's dist_params."""
    import functools
    options = sys.modules['basicsr.utils.options']
    if STATUS.get('W2 CPU launcher') != 'applied':
        return parse_options(root_path, is_train)
    options.init_dist = functools.partial(init_dist, file_params=read_option_file(sys.argv).get('dist_params'))
    try:
        return parse_options(root_path, is_train)
    finally:
        options.init_dist = init_dist


def wrap_parse_options(parse_options):
    """Wrap ``basicsr.utils.options.parse_options``: W3, the option file's dist_params for W2, W4 in a
    script's ``__main__``. (The start-up hook wraps the result again for the add-on's own runs.)"""
    if getattr(parse_options, '_mclir_wrapped', False):
        return parse_options

    def wrapped(root_path, is_train=True):
        sys.argv[:] = normalise_argv(sys.argv)
        opt, args = _parse_with_file_dist_params(parse_options, root_path, is_train)
        if STATUS.get('W4 resume states') == 'applied':
            _rebind_main_script({'load_resume_state': load_resume_state})
        return opt, args

    wrapped._mclir_wrapped = True
    wrapped.__wrapped__ = parse_options
    wrapped.__doc__ = parse_options.__doc__
    return wrapped


# --------------------------------------------------------------------------- W4 (resume)
def load_resume_state(opt):
    """Drop-in for ``basicsr.train.load_resume_state`` that loads on the model's device."""
    return load_state(opt)


def load_state(opt, select=None, load=None):
    """:func:`load_resume_state`; ``select(opt, path)``, when given, returns the state to load instead of the one
    found (the add-on's runs skip unreadable states); ``load(path, map_location)``, when given, reads it instead
    of ``torch.load`` (the add-on's runs read states without running code)."""
    import torch
    from basicsr.utils import check_resume

    path = None
    if opt['auto_resume']:
        state_dir = opt['path']['training_states']
        if os.path.isdir(state_dir):
            iters = [int(f[:-len('.state')]) for f in os.listdir(state_dir)
                     if f.endswith('.state') and f[:-len('.state')].isdigit()]
            if iters:
                path = os.path.join(state_dir, f'{max(iters)}.state')
                opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if path is None:
        return None
    if select is not None:
        path = select(opt, path)
    if opt['num_gpu'] != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    if load is None:
        state = torch.load(path, map_location=device, weights_only=False)  # what BasicSR reads: its own states
    else:
        state = load(path, device)
    check_resume(opt, state['iter'])
    return state


# --------------------------------------------------------------------------- W5 (DDP on CPU)
def wrap_model_to_device(model_to_device):
    if getattr(model_to_device, '_mclir_wrapped', False):
        return model_to_device

    def wrapped(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            from torch.nn.parallel import DistributedDataParallel
            return DistributedDataParallel(
                net.to(self.device), find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return model_to_device(self, net)

    wrapped._mclir_wrapped = True
    wrapped.__wrapped__ = model_to_device
    return wrapped


# --------------------------------------------------------------------------- script namespaces
_NAMESPACES = ('basicsr.train', 'basicsr.test', 'basicsr.utils.options')


def _rebind(name, value, modules=_NAMESPACES):
    for mod_name in modules:
        mod = sys.modules.get(mod_name)
        if mod is not None and hasattr(mod, name):
            setattr(mod, name, value)


def main_basicsr_script():
    """'train' or 'test' when ``__main__`` is BasicSR's own train.py / test.py, else None."""
    main = sys.modules.get('__main__')
    main_file = getattr(main, '__file__', None)
    basicsr = sys.modules.get('basicsr')
    if not main_file or basicsr is None:
        return None
    pkg = os.path.realpath(os.path.dirname(basicsr.__file__))
    name = os.path.basename(main_file)
    if name in ('train.py', 'test.py') and os.path.realpath(os.path.dirname(main_file)) == pkg:
        return name[:-3]
    return None


def _rebind_main_script(replacements):
    """BasicSR's train.py run as a script holds its own names in ``__main__``: rebind those
    that exist there (called once the script has run its imports)."""
    if main_basicsr_script():
        main = sys.modules['__main__']
        for name, value in replacements.items():
            if hasattr(main, name):
                setattr(main, name, value)


# --------------------------------------------------------------------------- the guard
FIXES = ('W2 CPU launcher', 'W3 --local-rank', 'W4 resume states', 'W5 DDP on CPU')
ADDON_RUNS = 'W6-W9 add-on runs'

# (module, attribute path, expected parameter names) of everything each workaround touches
TARGETS = {
    'W2 CPU launcher': [('basicsr.utils.dist_util', 'init_dist', ('launcher', 'backend', 'kwargs')),
                        ('basicsr.utils.options', 'init_dist', ('launcher', 'backend', 'kwargs'))],
    'W3 --local-rank': [('basicsr.utils.options', 'parse_options', ('root_path', 'is_train'))],
    'W4 resume states': [('basicsr.train', 'load_resume_state', ('opt',)),
                         ('basicsr.utils.options', 'parse_options', ('root_path', 'is_train')),
                         ('basicsr.utils', 'check_resume', ('opt', 'resume_iter'))],
    'W5 DDP on CPU': [('basicsr.models.base_model', 'BaseModel.model_to_device', ('self', 'net'))],
    ADDON_RUNS: [
        ('basicsr.utils.options', 'parse_options', ('root_path', 'is_train')),
        ('basicsr.train', 'train_pipeline', ('root_path',)),
        ('basicsr.test', 'test_pipeline', ('root_path',)),
        ('basicsr.train', 'build_dataset', ('dataset_opt',)),
        ('basicsr.test', 'build_dataset', ('dataset_opt',)),
        ('basicsr.train', 'build_model', ('opt',)),
        ('basicsr.test', 'build_model', ('opt',)),
        ('basicsr.train', 'MessageLogger.__init__', ('self', 'opt', 'start_iter', 'tb_logger')),
        ('basicsr.train', 'MessageLogger.__call__', ('self', 'log_vars')),
        ('basicsr.train', 'EnlargedSampler.__init__', ('self', 'dataset', 'num_replicas', 'rank', 'ratio')),
        ('basicsr.train', 'CPUPrefetcher.__init__', ('self', 'loader')),
        ('basicsr.train', 'CUDAPrefetcher.__init__', ('self', 'loader', 'opt')),
        ('basicsr.models.base_model', 'BaseModel.save_network',
         ('self', 'net', 'net_label', 'current_iter', 'param_key')),
        ('basicsr.models.base_model', 'BaseModel.save_training_state', ('self', 'epoch', 'current_iter')),
        ('basicsr.models.base_model', 'BaseModel.get_bare_model', ('self', 'net')),
    ],
}


def parse_version(text):
    """'1.4.2' / '1.4.2+abc' / '1.5.0rc1' -> (1, 4, 2) / (1, 4, 2) / (1, 5, 0); None if unreadable."""
    parts = []
    for piece in str(text).split('.')[:3]:
        digits = ''
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) if parts else None


def version_in_range(version, tested=TESTED_RANGE):
    low, high = tested
    return version is not None and low <= version < high


def _resolve(module_name, path):
    obj = sys.modules.get(module_name)
    if obj is None:
        raise LookupError(f'{module_name} is not imported')
    for name in path.split('.'):
        if not hasattr(obj, name):
            raise LookupError(f'{module_name}.{path} does not exist')
        obj = getattr(obj, name)
    return obj


def check_targets(targets):
    """None if every target exists with the expected parameters, else the first problem."""
    import inspect
    for module_name, path, params in targets:
        try:
            found = tuple(inspect.signature(_resolve(module_name, path)).parameters)
        except LookupError as e:
            return str(e)
        except (TypeError, ValueError):
            return f'{module_name}.{path} has no readable signature'
        if found != params:
            return f'{module_name}.{path}{found} is not {path}{params}'
    return None


def plan(version):
    """{workaround: None (apply) or the reason to skip it} for the imported BasicSR."""
    untested = not version_in_range(parse_version(version))
    forced = os.environ.get(FORCE_ENV, '').strip().lower() == 'force'
    decisions = {}
    for name in FIXES + (ADDON_RUNS,):
        if untested and not forced:
            decisions[name] = (f'BasicSR {version} is outside the tested range '
                               f'>={".".join(map(str, TESTED_RANGE[0]))},<{".".join(map(str, TESTED_RANGE[1]))}')
        else:
            decisions[name] = check_targets(TARGETS[name])
    return decisions


# --------------------------------------------------------------------------- apply
def _apply_w2():
    from basicsr.utils import dist_util, options
    dist_util.init_dist = init_dist
    options.init_dist = init_dist


def _apply_w3():
    from basicsr.utils import options
    options.parse_options = wrap_parse_options(options.parse_options)
    _rebind('parse_options', options.parse_options)


def _apply_w4():
    _rebind('load_resume_state', load_resume_state, ('basicsr.train',))


def _apply_w5():
    from basicsr.models.base_model import BaseModel
    BaseModel.model_to_device = wrap_model_to_device(BaseModel.model_to_device)


def _apply_addon_runs():
    """Nothing to patch: the start-up hook binds W6-W12 per option file when :data:`STATUS` allows it."""


_APPLY = {'W2 CPU launcher': _apply_w2, 'W3 --local-rank': _apply_w3, 'W4 resume states': _apply_w4,
          'W5 DDP on CPU': _apply_w5, ADDON_RUNS: _apply_addon_runs}


def _warn_skipped(version, skipped):
    global _WARNED
    if _WARNED:
        return
    _WARNED = True
    import warnings
    lines = '; '.join(f'{name} ({why})' for name, why in skipped.items())
    warnings.warn(f'mclir_basicsr: BasicSR {version}: skipped {lines}. Set {FORCE_ENV}=force to apply them on '
                  'an untested version.', BasicSRCompatWarning, stacklevel=3)


def apply(addon_runs=True):
    """Apply W2-W5 to an imported BasicSR, and decide whether the add-on's run behaviour (W6-W12) may be used
    (not when ``addon_runs`` is False or ``MCLIR_BASICSR_ADDON=0``). Each workaround whole or not at all (see
    :func:`plan`); warns once per process. Idempotent."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    import basicsr
    import basicsr.test  # noqa: F401  (imported by basicsr/__init__; named for the guard)
    import basicsr.train  # noqa: F401
    version = getattr(basicsr, '__version__', 'unknown')
    decisions = plan(version)
    if not addon_runs or os.environ.get(ADDON_ENV, '').strip().lower() in OFF_VALUES:
        decisions[ADDON_RUNS] = 'not requested'
    for name, why in decisions.items():
        if STATUS.get(name) == 'applied':  # already (a second apply() checks the patched BasicSR)
            continue
        if why is None:
            _APPLY[name]()
        STATUS[name] = 'applied' if why is None else f'skipped: {why}'
    skipped = {n: why for n, why in decisions.items() if STATUS[n].startswith('skipped') and why != 'not requested'}
    if skipped:
        _warn_skipped(version, skipped)
