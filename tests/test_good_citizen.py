"""The add-on next to other BasicSR programs: its registrations never make another program's fail nor replace
another program's component (the published fork's own basicsr, a user project registering FFANet / CRLoss after
``import basicsr``), its errors are one line through BasicSR's own scripts, and its run checks what BasicSR
would only meet later (the network's scale, options that have no effect)."""
import os
import shutil
import sys

import basicsr
import pytest
import torch
from basicsr.utils.registry import Registry

from mclir_basicsr import registration
from mclir_basicsr.archs import FFANet

from helpers import PY, load_output, run, train_options, write_yaml

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
BASICSR_DIR = os.path.dirname(basicsr.__file__)
TINY_FFANET = {'gps': 3, 'blocks': 1, 'num_feat': 8}


# --------------------------------------------------------------------------- registration (unit)
@pytest.fixture
def registry(monkeypatch):
    """A fresh registry in place of BasicSR's, and the module's bookkeeping emptied for the test."""
    reg = Registry('arch')
    monkeypatch.setattr(registration, '_registry', lambda kind: reg)
    monkeypatch.setattr(registration, '_YIELDING', {})
    monkeypatch.setattr(registration, 'YIELDED', {})
    return reg


def _cls(name, module='someone_else'):
    return type(name, (), {'__module__': module})


def test_own_name_always_short_name_while_free(registry):
    ours = _cls('FFANet', 'mclir_basicsr.archs.ffanet_arch')
    registration.register(ours, 'arch')
    assert registry.get('MCLIR_FFANet') is ours and registry.get('FFANet') is ours
    theirs = _cls('FFANet')
    registry.register(theirs)  # a later registration by another program succeeds, and the name is theirs
    assert registry.get('FFANet') is theirs and registry.get('MCLIR_FFANet') is ours
    assert registration.YIELDED == {('arch', 'FFANet'): 'someone_else'}
    with pytest.raises(AssertionError, match='already registered'):  # BasicSR's rule between other programs stands
        registry.register(_cls('FFANet', 'a_third'))


def test_a_name_registered_first_by_another_program_is_never_touched(registry):
    theirs = _cls('CRLoss')
    registry.register(theirs)
    ours = _cls('CRLoss', 'mclir_basicsr.losses.cr_loss')
    registration.register(ours, 'arch')
    assert registry.get('CRLoss') is theirs and registry.get('MCLIR_CRLoss') is ours
    assert registration.owner('arch', 'CRLoss') == 'someone_else'


def test_a_registry_that_cannot_yield_gets_only_the_own_names(registry, monkeypatch):
    monkeypatch.setattr(registration, '_can_yield', lambda reg: False)
    ours = _cls('SPNLoss', 'mclir_basicsr.losses.spn_loss')
    registration.register(ours, 'arch')
    assert 'SPNLoss' not in registry and registry.get('MCLIR_SPNLoss') is ours


def test_the_add_on_is_registered_under_both_names():
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

    from mclir_basicsr.losses import CRLoss, SPNLoss, UncertaintyWeightedLoss
    from mclir_basicsr.models import ModelContrastiveModel
    for reg, cls in ((ARCH_REGISTRY, FFANet), (LOSS_REGISTRY, SPNLoss), (LOSS_REGISTRY, CRLoss),
                     (LOSS_REGISTRY, UncertaintyWeightedLoss), (MODEL_REGISTRY, ModelContrastiveModel)):
        assert reg.get(f'MCLIR_{cls.__name__}') is cls and reg.get(cls.__name__) is cls


# --------------------------------------------------------------------------- other programs (end to end)
FORK_ARCH = '''from torch import nn
from basicsr.utils.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class FFANet(nn.Module):
    """The fork's own FFA-Net (a stand-in: one conv, its own arguments)."""

    def __init__(self, gps, blocks):
        super().__init__()
        self.fork_conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + self.fork_conv(x)
'''
FORK_LOSS = '''from torch import nn
from torch.nn import functional as F
from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class CRLoss(nn.Module):
    """The other program's CRLoss: an L1 under another name."""

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred, target, **kwargs):
        print('THEIR CRLoss', flush=True)
        return self.loss_weight * F.l1_loss(pred, target)
'''


def _scale1_options(name, data, arch, model_type='SRModel', **train):
    opt = train_options(name, data, scale=1, total_iter=2, val=False, extra_train=train)
    opt['network_g'], opt['model_type'] = dict(arch), model_type
    return opt


def _checkpoint_keys(root, name):
    return sorted(load_output(root, name, 'models/net_g_latest.pth')['params'])


def _fork(tmp_path, version):
    """A fork's own basicsr package (the published MCLIR code is one): BasicSR's code, its own version, an FFANet
    in archs/ and a CRLoss in losses/, which BasicSR's folder scans register when basicsr is imported."""
    root = tmp_path / 'fork'
    shutil.copytree(BASICSR_DIR, root / 'basicsr', ignore=shutil.ignore_patterns('__pycache__'))
    (root / 'basicsr' / 'archs' / 'ffanet_arch.py').write_text(FORK_ARCH)
    (root / 'basicsr' / 'losses' / 'cr_loss.py').write_text(FORK_LOSS)
    text = (root / 'basicsr' / 'version.py').read_text().replace("__version__ = '1.4.2'", f"__version__ = '{version}'")
    (root / 'basicsr' / 'version.py').write_text(text)
    return root


@pytest.mark.slow
@pytest.mark.parametrize('version', ['1.4.2', '1.3.5'])
def test_a_fork_with_its_own_basicsr_imports_and_trains_next_to_the_add_on(workdir, data_x1, version):
    fork = _fork(workdir, version)
    env = {'PYTHONPATH': str(fork), 'OMP_NUM_THREADS': '1'}
    write_yaml(workdir / 'fork.yml', _scale1_options('fork', data_x1, {'type': 'FFANet', 'gps': 3, 'blocks': 1},
                                                     pixel_opt={'type': 'CRLoss'}))
    proc = run([PY, 'fork/basicsr/train.py', '-opt', 'fork.yml'], cwd=workdir, env=env)
    # a script of a basicsr that is not installed (a clone, a fork) writes next to its package, as BasicSR's does
    assert 'THEIR CRLoss' in proc.stdout and _checkpoint_keys(fork, 'fork') == ['fork_conv.bias', 'fork_conv.weight']
    warnings = [line for line in proc.stderr.splitlines() if 'BasicSRCompatWarning' in line]
    assert len(warnings) == (1 if version == '1.3.5' else 0)  # an unknown release: one warning, the fixes skipped

    ours = _scale1_options('ours', data_x1, dict(TINY_FFANET, type='MCLIR_FFANet'), 'ModelContrastiveModel')
    ours['train'].update(spn_opt=SPN, negatives={'update_every': [1], 'init_decay': 0.0})
    write_yaml(workdir / 'ours.yml', ours)
    proc = run([PY, 'fork/basicsr/train.py', '-opt', 'ours.yml'], cwd=workdir, env=env)
    assert 'l_spn:' in proc.stdout + proc.stderr
    FFANet(**TINY_FFANET).load_state_dict(load_output(fork, 'ours', 'models/net_g_latest.pth')['params'])

    theirs = dict(ours, name='theirs', network_g={'type': 'FFANet', 'gps': 3, 'blocks': 1})
    write_yaml(workdir / 'theirs.yml', theirs)  # the short name is the fork's: an add-on run builds the fork's net
    proc = run([PY, 'fork/basicsr/train.py', '-opt', 'theirs.yml'], cwd=workdir, env=env)
    assert _checkpoint_keys(fork, 'theirs') == ['fork_conv.bias', 'fork_conv.weight']
    if version == '1.4.2':  # (an unknown release gets no parse-time wiring: only the registrations)
        assert "network_g.type: FFANet is registered by basicsr.archs.ffanet_arch, which this run builds; the " \
               "add-on's is MCLIR_FFANet" in proc.stderr


USER_TRAIN = '''import os, sys
import basicsr  # first, as BasicSR projects do: the add-on registers now
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import user_components  # noqa: E402  registers FFANet and CRLoss after the add-on
from basicsr.train import train_pipeline  # noqa: E402
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY  # noqa: E402
print('OWNERS', ARCH_REGISTRY.get('FFANet').__module__, LOSS_REGISTRY.get('CRLoss').__module__,
      ARCH_REGISTRY.get('MCLIR_FFANet').__module__, flush=True)
train_pipeline(os.getcwd())
'''


@pytest.mark.slow
def test_a_user_project_registering_ffanet_and_crloss_after_basicsr(workdir, data_x1):
    (workdir / 'project').mkdir()
    (workdir / 'project' / 'user_components.py').write_text(FORK_ARCH + '\n\n' + FORK_LOSS.replace(
        'from torch import nn\n', ''))
    (workdir / 'project' / 'train.py').write_text(USER_TRAIN)
    write_yaml(workdir / 'user.yml', _scale1_options('user', data_x1, {'type': 'FFANet', 'gps': 3, 'blocks': 1},
                                                     pixel_opt={'type': 'CRLoss'}))
    proc = run([PY, 'project/train.py', '-opt', 'user.yml'], cwd=workdir)
    assert 'OWNERS user_components user_components mclir_basicsr.archs.ffanet_arch' in proc.stdout
    assert 'THEIR CRLoss' in proc.stdout and _checkpoint_keys(workdir, 'user') == ['fork_conv.bias', 'fork_conv.weight']

    ours = _scale1_options('ours', data_x1, dict(TINY_FFANET, type='MCLIR_FFANet'), 'ModelContrastiveModel',
                           cr_opt={'type': 'CRLoss', 'feature': 'pixel', 'loss_weight': 0.1})
    write_yaml(workdir / 'ours.yml', ours)  # in the same environment: the add-on builds its own net and CR loss
    proc = run([PY, 'project/train.py', '-opt', 'ours.yml'], cwd=workdir)
    assert 'l_cr:' in proc.stdout + proc.stderr and 'THEIR CRLoss' not in proc.stdout
    FFANet(**TINY_FFANET).load_state_dict(load_output(workdir, 'ours', 'models/net_g_latest.pth')['params'])


# --------------------------------------------------------------------------- one-line errors
@pytest.mark.slow
def test_errors_are_one_line_through_basicsr_scripts_and_a_traceback_on_request(workdir, data_x2):
    opt = train_options('bad', data_x2, spn=dict(SPN, mode='substract'))
    write_yaml(workdir / 'bad.yml', opt)
    runs = ((os.path.join(BASICSR_DIR, 'train.py'), {}), ('-m', {}),  # the fixes only: the checks still run
            (os.path.join(BASICSR_DIR, 'train.py'), {'MCLIR_BASICSR_ADDON': '0'}))
    for script, env in runs:
        cmd = [PY, '-m', 'mclir_basicsr.train'] if script == '-m' else [PY, script]
        proc = run(cmd + ['-opt', 'bad.yml'], cwd=workdir, check=False, env=env)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            "mclir_basicsr.validate.MCLIROptionError: train.spn_opt.mode: expected one of subtract, ratio; got "
            "'substract' (did you mean 'subtract'?)"], proc.stderr
        assert not (workdir / 'experiments').exists()
    proc = run([PY, os.path.join(BASICSR_DIR, 'train.py'), '-opt', 'bad.yml'], cwd=workdir, check=False,
               env={'MCLIR_BASICSR_TRACEBACK': '1'})
    assert proc.returncode == 1 and 'Traceback (most recent call last)' in proc.stderr


def test_other_exceptions_keep_their_traceback(capsys):
    from mclir_basicsr._autoload import one_line_errors
    seen = []
    hook = one_line_errors(lambda *exc: seen.append(exc[0]))
    try:
        raise KeyError('not ours')
    except KeyError:
        hook(*sys.exc_info())
    assert seen == [KeyError] and capsys.readouterr().err == ''
    assert one_line_errors(hook) is hook  # installed once


# --------------------------------------------------------------------------- what BasicSR would meet later
def _model_opt(tmp_path, data, **network):
    opt = train_options('scale', data, spn=SPN, val=False)
    opt['network_g'].update(network)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path),
               path=dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path),
                         training_states=str(tmp_path), log=str(tmp_path), visualization=str(tmp_path)))
    return opt


def test_a_network_whose_scale_is_not_the_option_files_is_named_before_training(tmp_path, data_x2):
    from basicsr.models import build_model

    from mclir_basicsr.validate import MCLIROptionError
    with pytest.raises(MCLIROptionError, match=r'^network_g\.upscale \(3\): the network turns a 8x8 input into '
                                               r'24x24, but scale is 2 \(expected 16x16\)'):
        build_model(_model_opt(tmp_path, data_x2, upscale=3))
    model = build_model(_model_opt(tmp_path, data_x2))  # the right scale: built, nothing moved by the check
    assert model.net_g.training


@pytest.mark.parametrize('network, color, message', [
    ({'num_in_ch': 1}, None, r'^network_g\.num_in_ch \(1\): the network cannot take a 3x8x8 training LQ patch, the '
                             r'training images have 3 channels \(datasets\.train\.color: null, RGB\): .*channels'),
    # EDSR adds its RGB mean to the output: a 1-channel network gives 3 equal channels, which the loss accepts
    ({'num_out_ch': 1}, None, r'^network_g\.num_out_ch \(1\): the network gives 1 channel, but the training images '
                              r'have 3 channels .* the pixel loss would broadcast one over the other'),
    ({}, 'y', r'^network_g\.num_out_ch \(3\): the network gives 3 channels, but the training images have 1 channel '
              r'\(datasets\.train\.color: y\)'),
])
def test_a_network_that_does_not_fit_the_images_channels_is_named_before_training(tmp_path, data_x2, network, color,
                                                                                 message):
    """BasicSR's paired datasets give 3 channels (1 with color: y). Without the check the first case stops at the
    first iteration with torch's RuntimeError, and the other two train: EDSR broadcasts its RGB mean over a 1-channel
    image, and the L1 loss broadcasts a 3-channel output over a 1-channel GT."""
    from basicsr.models import build_model

    from mclir_basicsr.validate import MCLIROptionError
    opt = _model_opt(tmp_path, data_x2, **network)
    opt['datasets']['train']['color'] = color
    with pytest.raises(MCLIROptionError, match=message):
        build_model(opt)
    opt = _model_opt(tmp_path, data_x2)
    opt['network_g'] = {'type': 'MSRResNet', 'num_in_ch': 1, 'num_out_ch': 1, 'num_feat': 8, 'num_block': 1,
                        'upscale': 2}
    opt['datasets']['train']['color'] = 'y'
    assert build_model(opt).net_g.training  # a Y-channel network on Y-channel data


def test_the_scale_check_leaves_the_network_untouched(tmp_path, data_x2):
    from mclir_basicsr.models.guards import check_output_scale
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    check_output_scale(net, {'network_g': {'type': 'X'}, 'scale': 1}, torch.device('cpu'))
    assert net.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm's statistics too
    class Unfit(torch.nn.Module):  # an input this guess gets wrong: the check steps aside
        def forward(self, x):
            raise RuntimeError('expected 1 channel')

    check_output_scale(Unfit(), {'network_g': {'type': 'X'}, 'scale': 2}, torch.device('cpu'))


def test_options_without_effect_get_a_warning_naming_them():
    from mclir_basicsr.ignored_options import ignored_options
    from mclir_basicsr.options import parse_mclir_options
    opt = {'datasets': {'train': {'batch_size_per_gpu': 4}}, 'val': {'save_img': False},
           'train': {'spn_otp': {}, 'use_grad_norm': 0.05, 'pixel_opt': {'type': 'L1Loss'},
                     'spn_opt': dict(SPN, layer_weights={'relu1_1': 1.0}),
                     'negatives': {'update_every': [1, 2], 'adaptive_threshold': 0.1},
                     'uncertainty_opt': {'type': 'UncertaintyWeightedLoss', 'save_map': True},
                     'cr_opt': {'type': 'CRLoss', 'feature': 'pixel', 'pretrained': 'x.pth'}}}
    assert ignored_options(opt, parse_mclir_options(opt)) == [
        "train.spn_otp: not read by ModelContrastiveModel (did you mean 'spn_opt'?); ignored",
        'train.use_grad_norm is not read (nor was it by the official fork, whose example files carry it): no '
        'gradient clipping; train.use_grad_clip: <max norm> clips.',
        'train.spn_opt.layer_weights: has no effect with feature: pixel (no VGG pass); ignored',
        'train.negatives.adaptive_threshold: has no effect with refresh: periodic; ignored',
        'train.cr_opt.pretrained: has no effect with feature: pixel (no VGG pass); ignored',
        'train.uncertainty_opt.save_map: has no effect without val.save_img: true; ignored']
    clean = {'train': {'pixel_opt': {'type': 'L1Loss'}, 'spn_opt': dict(SPN), 'ema_decay': 0, 'total_iter': 3}}
    assert ignored_options(clean, parse_mclir_options(clean)) == []
