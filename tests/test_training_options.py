"""Training options the add-on reads besides SPN: torch's optimisers (the fork's AdamW) and schedulers (its
TrueCosineAnnealingLR), train.use_grad_clip, and num_gpu on a machine without CUDA; checked at parse time and
applied through BasicSR's pipeline."""
import re

import pytest
import torch

from mclir_basicsr.models.optim import TorchOptimMixin
from mclir_basicsr.options import MCLIROptionError, parse_mclir_options
from mclir_basicsr.preflight.optim import accepted_types, check_optimizer, check_scheduler, torch_class

from helpers import PY, run, train_options, write_yaml


@pytest.mark.parametrize('scheduler,message', [
    ({'type': 'CosineAnealingLR', 'T_max': 5}, "unknown scheduler 'CosineAnealingLR' .did you mean 'CosineAnnealing"),
    ({'type': 'TrueCosineAnnealingLR', 'Tmax': 5}, "train.scheduler.Tmax: not an argument of TrueCosineAnnealingLR .*"
                                                   "did you mean 'T_max'"),
    ({'type': 'ReduceLROnPlateau'}, 'needs a metric at every step'),
    ({'T_max': 5}, 'expected a mapping with a `type`'),
])
def test_bad_scheduler_is_a_one_line_error(scheduler, message):
    with pytest.raises(MCLIROptionError, match=message):
        check_scheduler({'scheduler': scheduler})


@pytest.mark.parametrize('optim,message', [
    ({'type': 'Adam', 'lr': '2e-4'}, "train.optim_g.lr: expected a number > 0, got '2e-4' (YAML reads 2e-4 as a "
                                     "string: write !!float 2e-4)"),
    ({'type': 'Adam', 'lr': 0}, 'train.optim_g.lr: expected a number > 0, got 0'),
    ({'type': 'Adam', 'lr': -1e-4}, 'train.optim_g.lr: expected a number > 0, got -0.0001'),
    ({'type': 'Adam'}, 'train.optim_g.lr: not set'),
    ({'type': 'AdamW', 'lr': 1e-4, 'betas': [0.9]}, 'train.optim_g.betas: expected a list of 2 numbers, got [0.9]'),
    ({'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, '0.99']}, "train.optim_g.betas[1]: expected a number in [0, 1), "
                                                           "got '0.99' (a string: write it without quotes)"),
    ({'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 1.0]}, 'train.optim_g.betas[1]: expected a number in [0, 1), got 1.0'),
    ({'type': 'Adam', 'lr': 1e-4, 'eps': '1e-8'}, "train.optim_g.eps: expected a number >= 0, got '1e-8' (YAML reads "
                                                  "1e-8 as a string: write !!float 1e-8)"),
    ({'type': 'AdamW', 'lr': 1e-4, 'weight_decay': -0.01}, 'train.optim_g.weight_decay: expected a number >= 0'),
    ({'type': 'SGD', 'lr': 0.1, 'momentum': 'high'}, "train.optim_g.momentum: expected a number >= 0, got 'high'"),
    ({'type': 'Adam', 'lr': float('nan')}, 'train.optim_g.lr: expected a number > 0, got nan'),
])
def test_optimizer_numbers_are_checked(optim, message):
    with pytest.raises(MCLIROptionError) as err:
        check_optimizer({'optim_g': optim})
    assert str(err.value).startswith(message) and '\n' not in str(err.value)


@pytest.mark.parametrize('optim', [
    {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
    {'type': 'AdamW', 'lr': 1, 'betas': (0.9, 0.9), 'eps': 0},
    {'type': 'SGD', 'lr': 0.1, 'momentum': 0.9, 'nesterov': True},
    {'type': 'RMSprop', 'lr': 1e-3, 'alpha': 0.99},
])
def test_good_optimizer_numbers_pass(optim):
    check_optimizer({'optim_g': optim})


@pytest.mark.parametrize('scheduler,message', [
    ({'type': 'CosineAnnealingRestartLR', 'periods': [10], 'eta_min': '1e-7'}, "train.scheduler.eta_min: expected a "
     "number >= 0, got '1e-7' (YAML reads 1e-7 as a string: write !!float 1e-7)"),
    ({'type': 'MultiStepLR', 'milestones': [10], 'gamma': '0.5'}, "train.scheduler.gamma: expected a number > 0"),
    ({'type': 'TrueCosineAnnealingLR', 'T_max': 10, 'eta_min': -1.0},
     'train.scheduler.eta_min: expected a number >= 0'),
    ({'type': 'MultiStepRestartLR', 'milestones': [10], 'restart_weights': [1, 'half']},
     "train.scheduler.restart_weights[1]: expected a number, got 'half'"),
])
def test_scheduler_numbers_are_checked(scheduler, message):
    with pytest.raises(MCLIROptionError) as err:
        check_scheduler({'scheduler': scheduler})
    assert str(err.value).startswith(message)


def test_scheduler_lists_of_any_length_pass():
    check_scheduler({'scheduler': {'type': 'MultiStepRestartLR', 'milestones': [10, 20], 'gamma': 0.5,
                                   'restarts': [0, 15, 30], 'restart_weights': [1, 0.5, 0.25]}})
    check_scheduler({'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [10, 20],
                                   'restart_weights': [1, 1], 'eta_min': 1e-7}})


def test_accepted_schedulers():
    types = accepted_types()
    assert types[:4] == ['MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR', 'TrueCosineAnnealingLR']
    assert 'CosineAnnealingLR' in types and 'StepLR' in types and 'LambdaLR' not in types
    check_scheduler({'scheduler': {'type': 'TrueCosineAnnealingLR', 'T_max': 100, 'eta_min': 1e-8}})
    check_scheduler({'scheduler': {'type': 'MultiStepLR', 'milestones': [5], 'gamma': 0.5}})  # BasicSR's own
    assert torch_class('TrueCosineAnnealingLR') is torch.optim.lr_scheduler.CosineAnnealingLR  # the fork's name
    assert torch_class('StepLR') is torch.optim.lr_scheduler.StepLR and torch_class('MultiStepLR') is None


@pytest.mark.parametrize('optim,message', [
    ({'type': 'AdamX', 'lr': 1e-3}, "unknown optimizer 'AdamX' .did you mean 'Adam"),
    ({'type': 'AdamW', 'lr': 1e-3, 'beta': [0.9, 0.9]}, "train.optim_g.beta: not an argument of AdamW .*did you mean "
                                                        "'betas'"),
    ({'lr': 1e-3}, 'expected a mapping with a `type`'),
])
def test_bad_optimizer_is_a_one_line_error(optim, message):
    with pytest.raises(MCLIROptionError, match=message):
        check_optimizer({'optim_g': optim})


def test_torch_optimizers_by_name():
    for optim in ({'type': 'AdamW', 'lr': 2e-4, 'weight_decay': 0.0, 'betas': [0.9, 0.9]},
                  {'type': 'Adam', 'lr': 1e-3}, {'type': 'SGD', 'lr': 0.1, 'momentum': 0.9}):
        check_optimizer({'optim_g': optim})
        # built as BasicSR's setup_optimizers asks the model for it: that torch.optim class, with those settings
        kwargs = {k: v for k, v in optim.items() if k != 'type'}
        built = TorchOptimMixin().get_optimizer(optim['type'], [torch.nn.Parameter(torch.zeros(2))], **kwargs)
        assert type(built) is getattr(torch.optim, optim['type'])
        group = built.param_groups[0]
        assert {k: list(group[k]) if isinstance(v, list) else group[k] for k, v in kwargs.items()} == kwargs


def test_grad_clip_option_is_checked():
    with pytest.raises(MCLIROptionError, match='train.use_grad_clip: expected null or a finite number > 0'):
        parse_mclir_options({'train': {'use_grad_clip': -1}})


def _run(workdir, data, name, lr, clip=None):
    opt = train_options(name, data, total_iter=2, val=False)
    opt['model_type'] = 'ModelContrastiveModel'
    # SGD moves each weight by lr * its gradient (BasicSR 1.4.2 builds Adam only; torch.optim's SGD is the add-on's)
    opt['train'].update(optim_g={'type': 'SGD', 'lr': lr}, use_grad_clip=clip, use_grad_norm=0.05,
                        scheduler={'type': 'TrueCosineAnnealingLR', 'T_max': 2, 'eta_min': 0.0})
    write_yaml(workdir / f'{name}.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', f'{name}.yml'], cwd=workdir)
    params = torch.load(workdir / 'experiments' / name / 'models' / 'net_g_2.pth', weights_only=True)['params']
    return params, proc.stdout + proc.stderr


@pytest.mark.slow
def test_grad_clip_and_torch_scheduler_through_basicsr(workdir, data_x2):
    """With the gradient norm clipped to 1e-9 the weights hardly move from the init (= a run with lr 1e-30: the
    parse-time check names lr <= 0)."""
    init, _ = _run(workdir, data_x2, 'lr0', lr=1e-30)
    clipped, log = _run(workdir, data_x2, 'clipped', lr=0.1, clip=1e-9)
    free, _ = _run(workdir, data_x2, 'free', lr=0.1)
    assert max(float((clipped[k] - init[k]).abs().max()) for k in init) <= 2 * 0.1 * 1e-9
    assert max(float((free[k] - init[k]).abs().max()) for k in init) > 1e-4
    lrs = [float(x) for x in re.findall(r'lr:\(([0-9.e+-]+),?\)', log)]
    assert lrs[:2] == pytest.approx([0.1, 0.05])  # cosine over T_max 2: 0.1, then 0.1 * (1 + cos(pi/2)) / 2
    assert 'train.use_grad_norm is not read' in log


@pytest.mark.slow
def test_bad_optimizer_fails_when_the_file_is_parsed(workdir, data_x2):
    opt = train_options('badopt', data_x2, total_iter=2, val=False)
    opt['model_type'] = 'ModelContrastiveModel'
    opt['train']['optim_g'] = {'type': 'AdamW', 'lr': 1e-3, 'beta': [0.9, 0.9]}
    write_yaml(workdir / 'badopt.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'badopt.yml'], cwd=workdir, check=False)
    assert proc.returncode != 0
    assert "train.optim_g.beta: not an argument of AdamW (torch.optim.adamw.AdamW) (did you mean 'betas'?)" in (
        proc.stderr)
    assert not (workdir / 'experiments').exists()  # before BasicSR creates anything


@pytest.mark.parametrize('scheduler,message', [
    ({'type': 'TrueCosineAnnealingLR', 'eta_min': 1e-7}, r'^train\.scheduler\.T_max: not set \(required by '
                                                         r'TrueCosineAnnealingLR\)$'),
    ({'type': 'MultiStepRestartLR', 'milestone': [10]}, r"^train\.scheduler\.milestone: not an argument of "
                                                        r"MultiStepRestartLR \(basicsr\.models\.lr_scheduler\."
                                                        r"MultiStepRestartLR\) \(did you mean 'milestones'\?\)$"),
    ({'type': 'CosineAnnealingRestartLR', 'eta_min': 0}, r'^train\.scheduler\.periods: not set \(required by '),
])
def test_scheduler_arguments_bind_to_the_signature(scheduler, message):
    """BasicSR's own schedulers too: an argument the class does not take, or one it needs, is named."""
    with pytest.raises(MCLIROptionError, match=message):
        check_scheduler({'scheduler': scheduler})


@pytest.mark.parametrize('scheduler,message', [
    ({'type': 'TrueCosineAnnealingLR', 'T_max': '1e5'}, r"^train\.scheduler\.T_max: expected a positive integer, got "
                                                        r"'1e5' \(YAML reads 1e5 as a string: write 100000\)$"),
    ({'type': 'MultiStepLR', 'milestones': [100, '2e5']}, r"^train\.scheduler\.milestones\[1\]: expected a positive "
                                                          r"integer, got '2e5' \(YAML reads 2e5 as a string: write "
                                                          r"200000\)$"),
    ({'type': 'CosineAnnealingRestartLR', 'periods': '250000'}, r"^train\.scheduler\.periods: expected a list of "
                                                                r"iterations, got '250000'"),
    ({'type': 'StepLR', 'step_size': 0}, r'^train\.scheduler\.step_size: expected a positive integer, got 0$'),
    ({'type': 'CosineAnnealingRestartLR', 'periods': [10, 20], 'restart_weights': [1]},
     r'^train\.scheduler\.restart_weights: expected one weight per entry of periods \(2\), got 1$'),
    ({'type': 'MultiStepRestartLR', 'milestones': [10], 'restarts': [0, 15]},
     r'^train\.scheduler\.restart_weights: expected one weight per entry of restarts \(2\), got 1$'),
])
def test_scheduler_iterations_are_checked(scheduler, message):
    """The iteration counts of a scheduler, which YAML reads as strings when written 1e5: a string T_max stops the
    run at its first step, a string milestone never matches (the learning rate silently never decays)."""
    with pytest.raises(MCLIROptionError, match=message):
        check_scheduler({'scheduler': scheduler})


def _steps_until_failure(scheduler, total_iter):
    """The iteration at which BasicSR's loop (a scheduler step at every iteration after the first) fails, or None."""
    import torch
    from basicsr.models import lr_scheduler as basicsr_schedulers
    from torch.optim import lr_scheduler as torch_schedulers
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    arguments = {k: v for k, v in scheduler.items() if k != 'type'}
    built = getattr(basicsr_schedulers, scheduler['type'], None) or getattr(torch_schedulers, scheduler['type'])
    built = built(optimizer, **arguments)
    for current_iter in range(2, total_iter + 1):
        optimizer.step()
        try:
            built.step()
        except (TypeError, ValueError):
            return current_iter
    return None


@pytest.mark.parametrize('scheduler,key,end', [
    ({'type': 'CosineAnnealingRestartLR', 'periods': [6, 4], 'restart_weights': [1, 1]}, 'periods', 10),
    ({'type': 'OneCycleLR', 'max_lr': 0.1, 'total_steps': 10}, 'total_steps', 10),
    ({'type': 'OneCycleLR', 'max_lr': 0.1, 'epochs': 2, 'steps_per_epoch': 5}, 'epochs', 10),
])
def test_a_scheduler_that_ends_before_total_iter_is_named(scheduler, key, end):
    """A scheduler with an end fails once stepped past it (BasicSR's restart cosine: TypeError; torch's one-cycle:
    ValueError), hours into the run: the longest run that works passes, one iteration more is named, and both agree
    with the scheduler itself driven as BasicSR's loop drives it."""
    assert _steps_until_failure(scheduler, end + 1) is None
    assert _steps_until_failure(scheduler, end + 2) == end + 2
    check_scheduler({'scheduler': scheduler, 'total_iter': end + 1})
    with pytest.raises(MCLIROptionError, match=rf'^train\.scheduler\.{key}: {scheduler["type"]} ends after {end} '
                                               rf'iterations .*train\.total_iter is {end + 2}: .*fails at iteration '
                                               rf'{end + 2}; make it last train\.total_iter iterations$'):
        check_scheduler({'scheduler': scheduler, 'total_iter': end + 2})
    check_scheduler({'scheduler': scheduler, 'total_iter': float(end + 1)})  # YAML's !!float
    check_scheduler({'scheduler': scheduler})  # no total_iter: nothing to compare


def test_a_one_cycle_scheduler_without_an_end_is_named():
    """torch refuses OneCycleLR without total_steps (or epochs and steps_per_epoch) when BasicSR builds it, after
    the run's folders exist; the check names it, and agrees with torch."""
    import torch
    scheduler = {'type': 'OneCycleLR', 'max_lr': 0.1, 'epochs': 2}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match='total_steps'):
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=2)
    with pytest.raises(MCLIROptionError, match=r'^train\.scheduler\.total_steps: not set \(OneCycleLR needs'):
        check_scheduler({'scheduler': scheduler, 'total_iter': 10})


def test_scheduler_iterations_as_yaml_floats_pass():
    check_scheduler({'scheduler': {'type': 'TrueCosineAnnealingLR', 'T_max': 1e5, 'eta_min': 1e-7}})
    check_scheduler({'scheduler': {'type': 'MultiStepLR', 'milestones': [2e5, 4e5], 'gamma': 0.5}})
    check_scheduler({'scheduler': {'type': 'OneCycleLR', 'max_lr': 0.01, 'total_steps': None, 'epochs': 2,
                                   'steps_per_epoch': 10}})
