"""Checks of ``train.optim_g`` and ``train.scheduler`` for the add-on's models, which build any ``torch.optim``
optimiser and torch's learning-rate schedulers by name (:class:`mclir_basicsr.models.optim.TorchOptimMixin`):
a misspelt type or argument is a one-line error naming the option, before any network is built.
"""
import inspect

import torch
from torch.optim import lr_scheduler as torch_schedulers

from mclir_basicsr.validate import MCLIROptionError, did_you_mean

BASICSR_SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')
ALIASES = {'TrueCosineAnnealingLR': 'CosineAnnealingLR'}  # the official fork's (and NAFNet's) name
# torch schedulers that cannot be driven by BasicSR's ``scheduler.step()`` once per iteration or built from YAML.
UNSUPPORTED = {
    'ReduceLROnPlateau': 'it needs a metric at every step',
    'LambdaLR': 'it needs a Python function', 'MultiplicativeLR': 'it needs a Python function',
    'SequentialLR': 'it needs scheduler objects', 'ChainedScheduler': 'it needs scheduler objects',
}


def _torch_scheduler_names():
    base = getattr(torch_schedulers, 'LRScheduler', None) or torch_schedulers._LRScheduler
    return sorted(name for name, obj in vars(torch_schedulers).items()
                  if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith('_')
                  and name not in UNSUPPORTED and name not in BASICSR_SCHEDULERS)


def accepted_types():
    return list(BASICSR_SCHEDULERS) + list(ALIASES) + _torch_scheduler_names()


def torch_class(scheduler_type):
    """The torch scheduler class built for ``scheduler_type``; None for BasicSR's own three."""
    if scheduler_type in BASICSR_SCHEDULERS:
        return None
    return getattr(torch_schedulers, ALIASES.get(scheduler_type, scheduler_type))


def optimizer_names():
    base = torch.optim.Optimizer
    return sorted(name for name, obj in vars(torch.optim).items()
                  if inspect.isclass(obj) and issubclass(obj, base) and obj is not base)


def _check_arguments(path, kind, cls, given, skip):
    params = inspect.signature(cls.__init__).parameters
    for key in given:
        if key != 'type' and key not in params:
            raise MCLIROptionError(
                f'{path}.{key}: not an argument of {kind} ({cls.__module__}.{cls.__name__})'
                f'{did_you_mean(key, [p for p in params if p not in skip])}')


def _typed_section(train, key):
    """``train.<key>`` (None when absent), which must be a mapping with a ``type``."""
    section = train.get(key)
    if section is not None and (not isinstance(section, dict) or 'type' not in section):
        raise MCLIROptionError(f'train.{key}: expected a mapping with a `type`, got {section!r}')
    return section


def check_optimizer(train):
    """Validate ``train.optim_g`` (a torch.optim class and its argument names); nothing to check without one."""
    optim = _typed_section(train, 'optim_g')
    if optim is None:
        return
    names = optimizer_names()
    if optim['type'] not in names:
        raise MCLIROptionError(f'train.optim_g.type: unknown optimizer {optim["type"]!r}'
                               f'{did_you_mean(optim["type"], names)}; accepted: {", ".join(names)} (torch.optim)')
    _check_arguments('train.optim_g', optim['type'], getattr(torch.optim, optim['type']), optim, ('self', 'params'))


def check_optim(train):
    """Validate ``train.optim_g`` and ``train.scheduler``."""
    check_optimizer(train)
    check_scheduler(train)


def check_scheduler(train):
    """Validate ``train.scheduler`` (type and argument names); nothing to check without one."""
    sched = _typed_section(train, 'scheduler')
    if sched is None:
        return
    kind = sched['type']
    if kind in UNSUPPORTED:
        raise MCLIROptionError(f'train.scheduler.type: {kind} cannot be used with BasicSR\'s training loop '
                               f'({UNSUPPORTED[kind]}); accepted: {", ".join(accepted_types())}')
    accepted = accepted_types()
    if kind not in accepted:
        raise MCLIROptionError(f'train.scheduler.type: unknown scheduler {kind!r}{did_you_mean(kind, accepted)}; '
                               f'accepted: {", ".join(accepted)}')
    cls = torch_class(kind)
    if cls is not None:
        _check_arguments('train.scheduler', kind, cls, sched, ('self', 'optimizer'))
