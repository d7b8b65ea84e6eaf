"""3-iteration trainings through BasicSR's real train pipeline, then its test pipeline on the checkpoint."""
import glob
import os

import pytest
import torch
from basicsr.archs import build_network

from helpers import PY, REPO, run, test_options, train_options, write_yaml

ARCH_CASES = [('EDSR', 2), ('SwinIR', 2), ('RRDBNet', 4), ('MSRResNet', 4), ('EDSR', 3)]


def train_and_test(workdir, data, arch, scale, spn, name, entry=('-m', 'mclir_basicsr.train'), **kw):
    opt = train_options(name, data, scale=scale, arch=arch, spn=spn, **kw)
    write_yaml(workdir / 'train.yml', opt)
    proc = run([PY, *entry, '-opt', 'train.yml'], cwd=workdir)
    ckpt = workdir / 'experiments' / name / 'models' / 'net_g_latest.pth'
    assert ckpt.is_file(), proc.stdout[-3000:]
    return opt, ckpt, proc


@pytest.mark.slow
@pytest.mark.parametrize('arch,scale', ARCH_CASES)
def test_train_then_test_every_arch(workdir, data_x2, data_x3, data_x4, vgg16_file, arch, scale):
    data = {2: data_x2, 3: data_x3, 4: data_x4}[scale]
    spn = {'type': 'SPNLoss', 'loss_weight': 0.01, 'feature': 'vgg16', 'pretrained': vgg16_file,
           'layer_weights': {'relu1_2': 0.5, 'relu2_2': 0.5}}
    opt, ckpt, proc = train_and_test(workdir, data, arch, scale, spn, f'spn_{arch}', gt_size=8 * scale)
    log = proc.stdout + proc.stderr
    for key in ('l_pix:', 'l_spn:', 'd_neg0:', 'd_neg1:', '# psnr:'):
        assert key in log
    state = glob.glob(str(workdir / 'experiments' / f'spn_{arch}' / 'training_states' / '*.state'))
    assert state and 'negatives' in torch.load(state[0], weights_only=False)
    assert glob.glob(str(workdir / 'tb_logger' / f'spn_{arch}' / 'events.*'))

    # BasicSR's test pipeline on the checkpoint (our model, and vanilla SRModel)
    for model_type in ('ModelContrastiveModel', 'SRModel' if arch != 'SwinIR' else 'SwinIRModel'):
        name = f'test_{arch}_{model_type}'
        write_yaml(workdir / 'test.yml', test_options(name, data, str(ckpt), scale=scale, arch=arch,
                                                      model_type=model_type))
        test_proc = run([PY, '-m', 'mclir_basicsr.test', '-opt', 'test.yml'], cwd=workdir)
        assert '# psnr:' in test_proc.stdout + test_proc.stderr
        pngs = glob.glob(str(workdir / 'results' / name / 'visualization' / 'tinytest' / '*.png'))
        assert len(pngs) == len(os.listdir(os.path.join(data, 'gt')))

    # the plain network loads the saved params strictly
    net = build_network(dict(opt['network_g']))
    net.load_state_dict(torch.load(ckpt, weights_only=True)['params'], strict=True)


def test_swinir_test_time_padding_matches_swinirmodel(workdir, data_x2):
    """Validation images that are not multiples of window_size are padded, then cropped back."""
    from basicsr.models import build_model
    opt = test_options('pad', data_x2, None, scale=2, arch='SwinIR')
    opt.update(is_train=False, dist=False, rank=0, world_size=1)
    opt['path'] = {'pretrain_network_g': None, 'results_root': str(workdir), 'log': str(workdir),
                   'visualization': str(workdir)}
    torch.manual_seed(0)
    ours = build_model(dict(opt, model_type='ModelContrastiveModel'))
    theirs = build_model(dict(opt, model_type='SwinIRModel'))
    theirs.net_g.load_state_dict(ours.net_g.state_dict())
    lq = torch.rand(1, 3, 13, 10)  # window_size 4 -> padded to 16 x 12
    for m in (ours, theirs):
        m.feed_data({'lq': lq})
        m.test()
    assert ours.output.shape == (1, 3, 26, 20)
    torch.testing.assert_close(ours.output, theirs.output)


@pytest.mark.slow
def test_scale1_restoration_and_ema(workdir, data_x1):
    spn = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
    opt, ckpt, _ = train_and_test(workdir, data_x1, 'SwinIR', 1, spn, 'denoise',
                                  extra_train={'ema_decay': 0.9}, logger={'print_freq': 1, 'save_checkpoint_freq': 1,
                                                                          'use_tb_logger': False, 'wandb': None})
    saved = torch.load(ckpt, weights_only=True)
    assert set(saved) == {'params', 'params_ema'}
    # BasicSR's EMA after every step: ema_i = 0.9 ema_(i-1) + 0.1 params_i, from the checkpoints of iterations 1..3
    ckpts = [torch.load(ckpt.parent / f'net_g_{i}.pth', weights_only=True) for i in (1, 2, 3)]
    for prev, cur in zip(ckpts, ckpts[1:]):
        for k, p in cur['params'].items():
            if p.is_floating_point():
                torch.testing.assert_close(cur['params_ema'][k], 0.9 * prev['params_ema'][k] + 0.1 * p,
                                           rtol=1e-5, atol=1e-7)
    params, ema = saved['params'], saved['params_ema']
    moved = [k for k, p in params.items() if p.is_floating_point() and not torch.equal(p, ema[k])]
    assert moved and all(torch.equal(saved[key][k], ckpts[-1][key][k]) for key in saved for k in saved[key])


@pytest.mark.slow
def test_official_fork_keys_train(workdir, data_x2, vgg16_file):
    extra = {'neg_iter': [1, 2], 'neg_decay': [0.1, 0.1], 'neg_start': 0.1,
             'perceptual_opt': {'type': 'PerceptualLoss', 'layer_weights': {'relu1_2': 0.2, 'relu2_2': 0.3,
                                                                           'relu3_3': 0.5},
                                'vgg_type': 'vgg16', 'use_input_norm': True, 'range_norm': False,
                                'perceptual_weight': 0.001, 'style_weight': 0, 'criterion': 'l1',
                                'pretrained': vgg16_file}}
    opt = train_options('official', data_x2, extra_train=extra)
    assert opt['model_type'] == 'ModelContrastiveModel'
    write_yaml(workdir / 'train.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'train.yml'], cwd=workdir)
    log = proc.stdout + proc.stderr
    assert 'l_spn:' in log and 'l_percep' not in log and 'mode=subtract' in log
    assert (workdir / 'experiments' / 'official' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.slow
def test_entry_points_as_file_and_module_write_to_cwd(workdir, data_x2):
    spn = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
    train_and_test(workdir, data_x2, 'EDSR', 2, spn, 'as_file',
                   entry=(os.path.join(REPO, 'mclir_basicsr', 'train.py'),), val=False)
    assert not os.path.exists(os.path.join(REPO, 'experiments', 'as_file'))
    assert not os.path.exists(os.path.join(REPO, 'mclir_basicsr', 'experiments'))
