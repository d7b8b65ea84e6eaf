"""Checks of ``train.optim_g`` and ``train.scheduler`` for the add-on's models, which build any ``torch.optim``
optimiser and torch's learning-rate schedulers by name (:class:`mclir_basicsr.models.optim.TorchOptimMixin`):
a misspelt type or argument, or a number YAML read as a string (``lr: 2e-4``) or out of its range, is a one-line
error naming the option, before any network is built.
"""
import inspect
from typing import Annotated, Any, ClassVar, Optional

import torch
from pydantic import BeforeValidator, Field, create_model
from torch.optim import lr_scheduler as torch_schedulers

from mclir_basicsr.options import Finite, Section, expect
from mclir_basicsr.preflight.sections import Count, as_int
from mclir_basicsr.validate import MCLIROptionError, did_you_mean, is_number

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


def _typed_section(train, key):
    """``train.<key>`` (None when absent), which must be a mapping with a ``type``."""
    section = train.get(key)
    if section is not None and (not isinstance(section, dict) or 'type' not in section):
        raise MCLIROptionError(f'train.{key}: expected a mapping with a `type`, got {section!r}')
    return section


def _listed(value):
    return list(value) if isinstance(value, tuple) else value  # a tuple, as given from Python


def _number(expected, **bounds):
    return Annotated[Finite, Field(**bounds), expect(expected, hint=True)]


# Bounds of the optimisers' numbers that torch checks only when the optimiser is built (after experiments/ exists).
OPTIMIZER_BOUNDS = {'lr': _number('a number > 0', gt=0), 'rho': _number('a number in [0, 1]', ge=0, le=1)}
OPTIMIZER_BOUNDS.update(dict.fromkeys(('eps', 'weight_decay', 'momentum', 'dampening', 'alpha', 'lr_decay'),
                                      _number('a number >= 0', ge=0)))
BETA, ANY_NUMBER = _number('a number in [0, 1)', ge=0, lt=1), _number('a number')


def _iterations(item):
    return Annotated[list[item], BeforeValidator(_listed), expect('a list of iterations')]


# Iteration counts: what YAML reads as a string (T_max: 1e5) makes the scheduler fail at its first step, or never
# match (milestones: [2e5]: the learning rate silently never decays). Integer-valued floats work as they are.
Restart = Annotated[int, BeforeValidator(as_int), Field(ge=0), expect('an integer >= 0', hint=True)]
SCHEDULER_BOUNDS = {'eta_min': _number('a number >= 0', ge=0), 'gamma': _number('a number > 0', gt=0),
                    'milestones': _iterations(Count), 'periods': _iterations(Count), 'restarts': _iterations(Restart)}
SCHEDULER_BOUNDS.update(dict.fromkeys(('T_max', 'T_0', 'T_mult', 'step_size', 'total_iters', 'total_steps',
                                       'step_size_up', 'step_size_down', 'epochs', 'steps_per_epoch'), Count))
# BasicSR's restart schedulers: one weight per restart (per period), or an AssertionError when they are built
PER_RESTART = {'MultiStepLR': 'restarts', 'MultiStepRestartLR': 'restarts', 'CosineAnnealingRestartLR': 'periods'}


class _Arguments(Section):
    """The arguments of an optimiser or scheduler class (:func:`check_arguments`)."""
    missing = 'not set'
    owner: ClassVar[str] = ''  # the class, as messages name it

    @classmethod
    def _unknown(cls, where, key, known):
        return f'{where}: not an argument of {cls.owner}{did_you_mean(key, [k for k in known if k != "type"])}'


def check_arguments(path, kind, cls, given, skip, bounds, pairs=False, required=None):
    """``given`` (the section, ``type`` included) against a model made from ``cls``'s signature: every key one of its
    arguments (unless it takes ``**kwargs``), those without a default (and those in ``required``: {name: why}) set,
    and the numbers in range: each argument named in ``bounds`` of its type there (null too where the default is),
    one whose default is a number a finite number, one whose default is a tuple of numbers (``betas``) a list of
    numbers, of the default's length with ``pairs`` (a scheduler's ``restart_weights`` has any length). A string YAML
    read from a number (``lr: 2e-4``) is named with the ``!!float`` hint."""
    params, fields, required = inspect.signature(cls.__init__).parameters, {'type': (Any, None)}, required or {}
    for key, param in params.items():
        if key in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default
        needed = key in required or default is param.empty
        field = Field(description=required.get(key, f'required by {kind}')) if needed else None
        if key in bounds or is_number(default):
            number = bounds.get(key, ANY_NUMBER)
            fields[key] = (Optional[number] if default is None else number, field)
        elif isinstance(default, tuple) and default and all(is_number(d) for d in default):
            size = Field(min_length=len(default), max_length=len(default)) if pairs else Field()
            item = BETA if key == 'betas' else ANY_NUMBER
            what = f'a list of {len(default) if pairs else "some"} numbers'
            fields[key] = (Annotated[list[item], size, BeforeValidator(_listed), expect(what)], field)
        else:
            fields[key] = (Any, field)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        given = {k: v for k, v in given.items() if k in fields}
    model = create_model(f'{cls.__name__}Arguments', __base__=_Arguments, **fields)
    model.owner = f'{kind} ({cls.__module__}.{cls.__name__})'
    model.parse(given, path)


def check_optimizer(train):
    """Validate ``train.optim_g``: a torch.optim class and its arguments (``lr`` required, as BasicSR's
    ``get_optimizer`` takes it); nothing to check without one."""
    optim = _typed_section(train, 'optim_g')
    if optim is None:
        return
    names = optimizer_names()
    if optim['type'] not in names:
        raise MCLIROptionError(f'train.optim_g.type: unknown optimizer {optim["type"]!r}'
                               f'{did_you_mean(optim["type"], names)}; accepted: {", ".join(names)} (torch.optim)')
    check_arguments('train.optim_g', optim['type'], getattr(torch.optim, optim['type']), optim, ('self', 'params'),
                    OPTIMIZER_BOUNDS, pairs=True, required={'lr': 'expected the learning rate, a number > 0, e.g. '
                                                                  '!!float 2e-4'})


def check_optim(train):
    """Validate ``train.optim_g`` and ``train.scheduler``."""
    check_optimizer(train)
    check_scheduler(train)


def check_scheduler(train):
    """Validate ``train.scheduler``: a scheduler BasicSR's loop can drive, and its arguments; nothing to check
    without one."""
    sched = _typed_section(train, 'scheduler')
    if sched is None:
        return
    kind, accepted = sched['type'], accepted_types()
    if kind in UNSUPPORTED:
        raise MCLIROptionError(f'train.scheduler.type: {kind} cannot be used with BasicSR\'s training loop '
                               f'({UNSUPPORTED[kind]}); accepted: {", ".join(accepted)}')
    if kind not in accepted:
        raise MCLIROptionError(f'train.scheduler.type: unknown scheduler {kind!r}{did_you_mean(kind, accepted)}; '
                               f'accepted: {", ".join(accepted)}')
    cls = torch_class(kind)
    if cls is None:
        from basicsr.models import lr_scheduler as basicsr_schedulers  # BasicSR's own three
        cls = getattr(basicsr_schedulers, 'MultiStepRestartLR' if kind == 'MultiStepLR' else kind)
    check_arguments('train.scheduler', kind, cls, sched, ('self', 'optimizer'), SCHEDULER_BOUNDS)
    if kind in PER_RESTART:
        key, default = PER_RESTART[kind], inspect.signature(cls.__init__).parameters[PER_RESTART[kind]].default
        restarts, weights = sched.get(key, default), sched.get('restart_weights', [1])
        if len(restarts) != len(weights):
            raise MCLIROptionError(f'train.scheduler.restart_weights: expected one weight per entry of {key} '
                                   f'({len(restarts)}), got {len(weights)}')
    _check_end(kind, sched, as_int(train.get('total_iter')))


def _check_end(kind, sched, total):
    """The schedulers that have an end fail when stepped past it (BasicSR's restart cosine with a TypeError, torch's
    one-cycle with a ValueError), hours into a run; BasicSR steps the scheduler at every iteration after the first."""
    if kind == 'CosineAnnealingRestartLR':
        key, how, end = 'periods', 'the sum of periods', sum(map(as_int, sched['periods']))
    elif kind == 'OneCycleLR' and sched.get('total_steps') is not None:
        key, how, end = 'total_steps', 'total_steps', as_int(sched['total_steps'])
    elif kind == 'OneCycleLR' and sched.get('epochs') is not None and sched.get('steps_per_epoch') is not None:
        key, how, end = 'epochs', 'epochs x steps_per_epoch', as_int(sched['epochs']) * as_int(sched['steps_per_epoch'])
    elif kind == 'OneCycleLR':  # torch's ValueError when BasicSR builds it, after the run's folders exist
        raise MCLIROptionError('train.scheduler.total_steps: not set (OneCycleLR needs total_steps, or epochs and '
                               'steps_per_epoch), e.g. total_steps: the value of train.total_iter')
    else:
        return
    if is_number(total) and total - 1 > end:
        raise MCLIROptionError(f'train.scheduler.{key}: {kind} ends after {end} iterations ({how}), but '
                               f'train.total_iter is {total}: stepped past its end, it fails at iteration {end + 2}; '
                               'make it last train.total_iter iterations')
