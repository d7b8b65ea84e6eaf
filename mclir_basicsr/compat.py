"""Every workaround for upstream breakage, in one place.

BasicSR 1.4.2 (the current PyPI release) was written for torch 1.x and CUDA. Each workaround
below is small, is applied once, is tested in ``tests/test_compat.py``, and is a no-op when
upstream is fixed (each checks for the broken thing before it replaces anything).

=====  ==================================================================================
 W1    ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17; BasicSR
       imports ``rgb_to_grayscale`` from it. A meta-path finder serves an alias of
       ``torchvision.transforms.functional`` under the old name, only if the real module is
       missing, and only when something imports it (no torch import at start-up).
 W2    ``--launcher pytorch`` calls ``torch.cuda.set_device`` unconditionally and defaults to
       nccl: on CPU use gloo (``dist_params.backend`` in the YAML overrides), pin the GPU
       from ``LOCAL_RANK`` (correct on multi-node).
 W3    ``python -m torch.distributed.launch`` passes ``--local-rank=N``, which BasicSR's
       argument parser rejects; it is rewritten to ``--local_rank``.
 W4    ``load_resume_state`` maps every storage to CUDA and looks for auto-resume states
       relative to the working directory instead of the experiment folder: states load on
       the model's device, found where BasicSR wrote them.
 W5    ``BaseModel.model_to_device`` passes a CUDA device id to DistributedDataParallel even
       on CPU: no device ids on CPU.
 W6    Checkpoints and training states are written with a bare ``torch.save`` (a crash
       while saving truncates the file): every save goes to a temporary file that is
       ``os.replace``-d into place.
 W7    An installed BasicSR's ``basicsr/train.py`` writes ``experiments/`` next to its own
       package, i.e. into site-packages: outputs go to the working directory instead.
 W8    BasicSR restarts the current epoch's data order on resume and does not save RNG
       states: the classes in :mod:`mclir_basicsr.resume` replace its sampler and prefetchers.
 W9    An unreadable image makes BasicSR's datasets fail with ``'NoneType' object has no
       attribute 'astype'``, and a LR/HR size mismatch names no file: every dataset built by
       ``build_dataset`` re-raises loading errors as :class:`DataLoadError` naming its files.
=====  ==================================================================================

This module imports only ``os`` and ``sys`` at import time: the start-up hook
(:mod:`mclir_basicsr._autoload`) uses it in every Python process, before torch is loaded.
"""
import os
import sys

_APPLIED = False

# --------------------------------------------------------------------------- W1 (torchvision)
_FT_NAME = 'torchvision.transforms.functional_tensor'


class _FunctionalTensorAlias:
    """Serve ``torchvision.transforms.functional_tensor`` when torchvision no longer has it.

    A meta-path finder and loader (duck-typed: importlib.abc costs 15 ms to import)."""

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
_DIST_PARAMS = {}  # dist_params of the option file being parsed (BasicSR ignores them for pytorch)


def init_dist(launcher, backend=None, **kwargs):
    """Drop-in for ``basicsr.utils.dist_util.init_dist`` that works on CPU (gloo) and GPU."""
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from basicsr.utils import dist_util

    params = dict(_DIST_PARAMS)
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


# --------------------------------------------------------------------------- W3 + parse hook
def normalise_argv(argv):
    """``--local-rank=N`` / ``--local-rank N`` (torch.distributed.launch) -> ``--local_rank``."""
    return ['--local_rank' + a[len('--local-rank'):] if a.startswith('--local-rank') else a for a in argv]


def _read_dist_params(argv):
    """The ``dist_params`` of the ``-opt`` file, so W2 can honour them for the pytorch launcher."""
    import yaml
    for flag in ('-opt', '--opt'):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            try:
                with open(argv[argv.index(flag) + 1]) as f:
                    return dict((yaml.safe_load(f) or {}).get('dist_params') or {})
            except (OSError, yaml.YAMLError, AttributeError):
                return {}  # BasicSR's own parser reports a bad -opt with its message
    return {}


def wrap_parse_options(parse_options):
    """Wrap ``basicsr.utils.options.parse_options``: W3, dist_params for W2, early validation."""
    if getattr(parse_options, '_mclir_wrapped', False):
        return parse_options

    def wrapped(root_path, is_train=True):
        sys.argv[:] = normalise_argv(sys.argv)
        _DIST_PARAMS.clear()
        _DIST_PARAMS.update(_read_dist_params(sys.argv))
        opt, args = parse_options(root_path, is_train)
        if opt.get('model_type') == 'ModelContrastiveModel' and is_train:
            from mclir_basicsr.losses.vgg import find_weights
            from mclir_basicsr.options import parse_mclir_options
            spn = parse_mclir_options(opt).spn  # fail before any dataset is built
            if spn['feature'] != 'pixel' and not spn['download']:
                find_weights(spn['feature'], spn['pretrained'])
        _rebind_main_script()
        return opt, args

    wrapped._mclir_wrapped = True
    wrapped.__wrapped__ = parse_options
    wrapped.__doc__ = parse_options.__doc__
    return wrapped


# --------------------------------------------------------------------------- W4 (resume)
def load_resume_state(opt):
    """Drop-in for ``basicsr.train.load_resume_state`` that loads on the model's device."""
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
    if opt['num_gpu'] != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    state = torch.load(path, map_location=device, weights_only=False)
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
    return wrapped


# --------------------------------------------------------------------------- W6 (atomic saves)
def atomic_torch_save(obj, f, *args, **kwargs):
    """``torch.save`` that never leaves a truncated file at ``f``."""
    import torch
    if not isinstance(f, (str, os.PathLike)):
        return torch.save(obj, f, *args, **kwargs)
    f = os.fspath(f)
    tmp = os.path.join(os.path.dirname(f) or '.', f'.{os.path.basename(f)}.{os.getpid()}.tmp')
    try:
        torch.save(obj, tmp, *args, **kwargs)
        with open(tmp, 'rb') as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, f)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _TorchWithAtomicSave:
    """Stands in for the ``torch`` module inside ``basicsr.models.base_model`` only."""

    def __init__(self, torch):
        self._torch = torch
        self.save = atomic_torch_save

    def __getattr__(self, name):
        return getattr(self._torch, name)


# --------------------------------------------------------------------------- W7 (output root)
def _installed_basicsr_dir():
    import sysconfig

    import basicsr
    pkg = os.path.realpath(os.path.dirname(basicsr.__file__))
    roots = {sysconfig.get_paths()[k] for k in ('purelib', 'platlib')}
    try:
        import site
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # virtualenv's old site module
        pass
    roots = {os.path.realpath(r) for r in roots}
    return pkg if os.path.dirname(pkg) in roots else None


def _main_basicsr_script():
    """'train' or 'test' when ``__main__`` is BasicSR's own train.py / test.py, else None."""
    main = sys.modules.get('__main__')
    main_file = getattr(main, '__file__', None)
    if not main_file:
        return None
    import basicsr
    pkg = os.path.realpath(os.path.dirname(basicsr.__file__))
    name = os.path.basename(main_file)
    if name in ('train.py', 'test.py') and os.path.realpath(os.path.dirname(main_file)) == pkg:
        return name[:-3]
    return None


def redirect_installed_script_outputs():
    """BasicSR's scripts use ``root = dirname(dirname(__main__.__file__))`` for experiments/,
    results/ and tb_logger/. For an installed basicsr that is site-packages; point it at the
    working directory. A BasicSR git clone keeps BasicSR's behaviour (outputs in the clone)."""
    if _main_basicsr_script() and _installed_basicsr_dir() and os.environ.get('MCLIR_BASICSR_ROOT', '') != 'package':
        main = sys.modules['__main__']
        main.__file__ = os.path.join(os.getcwd(), 'basicsr', os.path.basename(main.__file__))


# --------------------------------------------------------------------------- W9 (data errors)
class DataLoadError(RuntimeError):
    """A sample that cannot be loaded; the message names its files."""


_GUARDED = {}


def _sample_files(dataset, index):
    paths = getattr(dataset, 'paths', None)
    try:
        entry = paths[index % len(paths)]
    except (TypeError, IndexError, ZeroDivisionError, KeyError):
        return ''
    if isinstance(entry, dict):
        return ', '.join(f'{k}: {v}' for k, v in entry.items() if isinstance(v, str))
    return str(entry)


def _guarded_class(cls):
    if cls not in _GUARDED:
        def __getitem__(self, index):
            try:
                return super(guarded, self).__getitem__(index)
            except Exception as e:
                reason = str(e)
                if isinstance(e, AttributeError) and 'NoneType' in reason:
                    reason = 'the image cannot be decoded (corrupt, truncated or not an image file)'
                where = _sample_files(self, index)
                raise DataLoadError(f'{type(self).__name__} sample {index} ({where or "files unknown"}): '
                                    f'{reason}') from e

        def __reduce__(self):  # picklable for spawned DataLoader workers
            return _restore_guarded, (cls, self.__dict__)

        guarded = type(cls.__name__, (cls,), {'__getitem__': __getitem__, '__reduce__': __reduce__,
                                                '__module__': cls.__module__, '__qualname__': cls.__qualname__})
        _GUARDED[cls] = guarded
    return _GUARDED[cls]


def _restore_guarded(cls, state):
    obj = object.__new__(_guarded_class(cls))
    obj.__dict__.update(state)
    return obj


def wrap_build_dataset(build_dataset):
    if getattr(build_dataset, '_mclir_wrapped', False):
        return build_dataset

    def wrapped(dataset_opt):
        dataset = build_dataset(dataset_opt)
        if type(dataset) not in _GUARDED.values():
            dataset.__class__ = _guarded_class(type(dataset))
        return dataset

    wrapped._mclir_wrapped = True
    return wrapped


# --------------------------------------------------------------------------- apply
_NAMESPACES = ('basicsr.train', 'basicsr.test', 'basicsr.utils.options')


def _rebind(name, value, modules=_NAMESPACES):
    for mod_name in modules:
        mod = sys.modules.get(mod_name)
        if mod is not None and hasattr(mod, name):
            setattr(mod, name, value)


def _rebind_main_script():
    """BasicSR's train.py run as a script defines load_resume_state in ``__main__`` and binds
    the sampler/prefetcher names there: rebind them once the script has run its imports."""
    if _main_basicsr_script():
        main = sys.modules['__main__']
        for name, value in _main_replacements().items():
            if hasattr(main, name):
                setattr(main, name, value)


def _main_replacements():
    from mclir_basicsr import resume
    return {
        'load_resume_state': load_resume_state,
        'EnlargedSampler': resume.ResumableSampler,
        'CPUPrefetcher': resume.ResumableCPUPrefetcher,
        'CUDAPrefetcher': resume.ResumableCUDAPrefetcher,
    }


def apply():
    """Apply W2-W8 to an imported BasicSR. Idempotent."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    import basicsr.data
    import torch
    from basicsr.data import data_sampler, prefetch_dataloader
    from basicsr.models import base_model
    from basicsr.utils import dist_util, options

    from mclir_basicsr import resume

    for module in (dist_util, options):
        module.init_dist = init_dist
    options.parse_options = wrap_parse_options(options.parse_options)
    _rebind('parse_options', options.parse_options)
    base_model.BaseModel.model_to_device = wrap_model_to_device(base_model.BaseModel.model_to_device)
    if getattr(base_model, 'torch', None) is torch:
        base_model.torch = _TorchWithAtomicSave(torch)
    basicsr.data.build_dataset = wrap_build_dataset(basicsr.data.build_dataset)
    _rebind('build_dataset', basicsr.data.build_dataset)
    data_sampler.EnlargedSampler = resume.ResumableSampler
    prefetch_dataloader.CPUPrefetcher = resume.ResumableCPUPrefetcher
    prefetch_dataloader.CUDAPrefetcher = resume.ResumableCUDAPrefetcher
    for name, value in _main_replacements().items():
        _rebind(name, value, ('basicsr.train', 'basicsr.data', 'basicsr.data.prefetch_dataloader'))
    redirect_installed_script_outputs()
