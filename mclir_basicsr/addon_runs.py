"""Behaviour the add-on adds to BasicSR, for add-on runs only.

=====  ==================================================================================
 W6    BasicSR writes checkpoints and training states with a bare ``torch.save`` (a crash
       while saving truncates the file): :class:`AtomicSaveMixin` overrides the model's own
       ``save_network`` / ``save_training_state`` to write a temporary file that is
       ``os.replace``-d into place (the add-on's models inherit it; in an opted-in run of
       another model, BaseModel's two methods are swapped for the mixin's for that run).
 W7    An installed BasicSR's ``basicsr/train.py`` writes ``experiments/`` next to its own
       package, i.e. into site-packages: outputs go to the working directory instead. This
       one is decided when BasicSR is imported (the script computes its root before it parses
       the option file): :func:`mclir_basicsr.compat.redirect_installed_script_outputs`.
 W8    BasicSR restarts the current epoch's data order on resume and does not save RNG
       states: the classes in :mod:`mclir_basicsr.resumable_data` stand in for its sampler and
       prefetchers in the training pipeline's namespace.
 W9    An unreadable image makes BasicSR's datasets fail with ``'NoneType' object has no
       attribute 'astype'``, and a LR/HR size mismatch names no file: datasets built by the
       pipelines are wrapped in :class:`NamedDataErrors`, which re-raises loading errors as
       :class:`DataLoadError` naming the sample's files (the dataset's own class is untouched).
=====  ==================================================================================

:func:`use` is called by the ``parse_options`` wrapper of :mod:`mclir_basicsr.compat` for every
option file: ``use(True)`` for an add-on run (an add-on model, or ``MCLIR_BASICSR_ADDON=1``),
``use(False)`` for any other run, which restores BasicSR's own names. Nothing here is replaced
at import time; a Real-ESRGAN or plain SRModel run never meets these classes.

This module imports nothing from BasicSR at import time (BasicSR's objects are looked up when
used): the add-on's models inherit :class:`AtomicSaveMixin`, and the start-up hook imports them
while ``import basicsr`` finishes, so importing this module first must not import basicsr.
"""
import functools
import logging
import os
import sys
import time

import torch.distributed as dist
from torch.utils.data import Dataset

from mclir_basicsr.compat import atomic_torch_save, main_basicsr_script

logger = logging.getLogger('basicsr')  # BasicSR's root logger (basicsr.utils.get_root_logger)


# --------------------------------------------------------------------------- W6 (atomic saves)
def _save(obj, path, what):
    """Atomic save with BasicSR's three tries (a failure after them is logged, as BasicSR does)."""
    for attempt in (2, 1, 0):
        try:
            atomic_torch_save(obj, path)
            return
        except Exception as e:
            logger.warning(f'Save {what} error: {e}, remaining retry times: {attempt}')
            if attempt:
                time.sleep(1)
    logger.warning(f'Still cannot save {path}. Just ignore it.')


def master_only(fn):
    """Run on rank 0 only (BasicSR's ``master_only``, without importing BasicSR)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            return fn(*args, **kwargs)
    return wrapper


def cpu_state_dict(net):
    """A network's state dict on CPU, keys without DDP's ``module.`` prefix (BasicSR's format)."""
    state = net.state_dict()
    for key, value in list(state.items()):
        if key.startswith('module.'):
            del state[key]
            key = key[len('module.'):]
        state[key] = value.cpu()
    return state


class AtomicSaveMixin:
    """BaseModel's ``save_network`` / ``save_training_state``, written atomically.

    Put it before BasicSR's model class: ``class MyModel(AtomicSaveMixin, SRModel)``. The files
    are the ones BaseModel writes (same names, same content)."""

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys')
        save_dict = {key: cpu_state_dict(self.get_bare_model(n)) for n, key in zip(nets, keys)}
        label = 'latest' if current_iter == -1 else current_iter
        _save(save_dict, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'), 'model')

    @master_only
    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers]}
        _save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'), 'training state')


# --------------------------------------------------------------------------- W9 (data errors)
class DataLoadError(RuntimeError):
    """A sample that cannot be loaded; the message names its files."""


def _sample_files(dataset, index):
    paths = getattr(dataset, 'paths', None)
    try:
        entry = paths[index % len(paths)]
    except (TypeError, IndexError, ZeroDivisionError, KeyError):
        return ''
    if isinstance(entry, dict):
        return ', '.join(f'{k}: {v}' for k, v in entry.items() if isinstance(v, str))
    return str(entry)


class NamedDataErrors(Dataset):
    """A dataset whose loading errors name the sample's files; every attribute is the dataset's.

    Picklable (spawned DataLoader workers): it holds only the dataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except Exception as e:
            reason = str(e)
            if isinstance(e, AttributeError) and 'NoneType' in reason:
                reason = 'the image cannot be decoded (corrupt, truncated or not an image file)'
            where = _sample_files(self.dataset, index)
            raise DataLoadError(f'{type(self.dataset).__name__} sample {index} ({where or "files unknown"}): '
                                f'{reason}') from e

    def __getattr__(self, name):  # only called for names not found on the wrapper
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_dataset(dataset_opt):
    """BasicSR's ``build_dataset``, the dataset wrapped in :class:`NamedDataErrors`."""
    return NamedDataErrors(sys.modules['basicsr.data'].build_dataset(dataset_opt))


# --------------------------------------------------------------------------- the switch
_PIPELINES = ('basicsr.train', 'basicsr.test')
_BASE_MODEL = ('basicsr.models.base_model', 'BaseModel')
ORIGINALS = {}   # (namespace name, attribute) -> BasicSR's object, recorded before the first switch


def replacements():
    """{name in the pipelines' namespaces: the add-on's object} (W8, W9)."""
    from mclir_basicsr import resumable_data as rd  # imports basicsr: at first use, not when this module is imported
    return {'EnlargedSampler': rd.ResumableSampler, 'CPUPrefetcher': rd.ResumableCPUPrefetcher,
            'CUDAPrefetcher': rd.ResumableCUDAPrefetcher, 'build_dataset': build_dataset}


def _namespaces():
    found = {name: sys.modules[name] for name in _PIPELINES if name in sys.modules}
    if main_basicsr_script():
        found['__main__'] = sys.modules['__main__']
    return found


def remember_originals(new):
    """Record BasicSR's objects in the pipelines' namespaces and BaseModel's save methods (idempotent)."""
    for ns_name, ns in _namespaces().items():
        for attr in new:
            value = getattr(ns, attr, None)
            if value is not None and value is not new[attr]:
                ORIGINALS.setdefault((ns_name, attr), value)
    base = getattr(sys.modules[_BASE_MODEL[0]], _BASE_MODEL[1])
    for name in ('save_network', 'save_training_state'):
        if base.__dict__[name] is not AtomicSaveMixin.__dict__[name]:
            ORIGINALS.setdefault((_BASE_MODEL, name), base.__dict__[name])


def _saves_atomically(model_type):
    from basicsr.utils.registry import MODEL_REGISTRY
    return model_type in MODEL_REGISTRY and issubclass(MODEL_REGISTRY.get(model_type), AtomicSaveMixin)


def use(on, model_type=None):
    """Bind W8 and W9 in the pipelines' namespaces when ``on``, and W6 on BaseModel's save methods
    for a ``model_type`` that does not save atomically itself; restore BasicSR's objects otherwise."""
    new = replacements()
    remember_originals(new)
    for ns_name, ns in _namespaces().items():
        for attr, replacement in new.items():
            if (ns_name, attr) in ORIGINALS:
                setattr(ns, attr, replacement if on else ORIGINALS[(ns_name, attr)])
    patch = on and not _saves_atomically(model_type)
    base = getattr(sys.modules[_BASE_MODEL[0]], _BASE_MODEL[1])
    for name in ('save_network', 'save_training_state'):
        setattr(base, name, AtomicSaveMixin.__dict__[name] if patch else ORIGINALS[(_BASE_MODEL, name)])
