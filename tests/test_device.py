"""Device-dependent code paths, marked ``device`` (``pytest -m device``; ``scripts/dev/gpu_check.py`` runs them).

On a machine with CUDA every test runs there (num_gpu: 1). Without CUDA the parts that mean something on CPU
run on CPU (bfloat16 autocast of the negatives and VGG, ``train.amp: bfloat16`` with VGG features); the
CUDA-only parts (``prefetch_mode: cuda``, nccl, cuDNN determinism, float16 as the GPU precision) skip and name
the CPU test that already covers their CPU form (tests/test_train_pipeline.py, test_resume.py,
test_cheap_spn.py, test_spn_loss.py, test_history.py), so nothing is run twice on CPU.
"""
import math
import os
import re

import pytest
import torch

from mclir_basicsr.history import NegativePool
from mclir_basicsr.losses import SPNLoss

from helpers import PY, REPO, first_conv_dtypes_of_one_step, free_port, load_output, run, train_options, write_yaml

CUDA = torch.cuda.is_available()
DEVICE = 'cuda' if CUDA else 'cpu'
pytestmark = pytest.mark.device

NO_CUDA = 'needs CUDA (torch.cuda.is_available() is false)'
ON_CPU_ELSEWHERE = 'CUDA only; its CPU form is {}'

# Resume on CUDA: cuDNN deterministic and not autotuned (BasicSR's train_pipeline sets cudnn.benchmark = True,
# so the launcher makes that assignment a no-op), deterministic algorithms where PyTorch has them, and a fixed
# cuBLAS workspace. With these the resumed run is expected to be bitwise equal; the test allows RESUME_ATOL.
RESUME_ATOL = 1e-6
DETERMINISTIC_TRAIN = '''import torch
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
type(torch.backends.cudnn).benchmark = property(lambda self: False, lambda self, value: None)
torch.use_deterministic_algorithms(True, warn_only=True)
from mclir_basicsr.train import main
main()
'''

VGG_SPN = {'type': 'SPNLoss', 'loss_weight': 0.01, 'feature': 'vgg16',
           'layer_weights': {'relu1_2': 0.5, 'relu2_2': 0.5}}
PIXEL_SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 3], 'decay': [0.5, 0.9], 'init_decay': 0.2}


def cuda_only(where):
    return pytest.mark.skipif(not CUDA, reason=ON_CPU_ELSEWHERE.format(where) if where else NO_CUDA)


def float16_param(*values, where='tests/test_cheap_spn.py (float16 amp and its scaler on CPU)'):
    """Parametrize values; float16 (the GPU's half precision, slow on CPU) runs on CUDA only."""
    return [pytest.param(v, marks=cuda_only(where)) if v == 'float16' else v for v in values]


def device_options(name, data, **kw):
    """train_options on this machine's device: num_gpu 1 and nccl on CUDA, CPU otherwise."""
    opt = train_options(name, data, **kw)
    opt['num_gpu'] = 1 if CUDA else 0
    opt['dist_params']['backend'] = 'nccl' if CUDA else 'gloo'
    return opt


def train(workdir, opt, *args, entry=('-m', 'mclir_basicsr.train'), env=None):
    write_yaml(workdir / f'{opt["name"]}.yml', opt)
    proc = run([PY, *entry, '-opt', f'{opt["name"]}.yml', *args], cwd=workdir, env=env)
    return proc.stdout + proc.stderr


def logged(log, key):
    """Every value BasicSR's MessageLogger printed for `key` (e.g. 'l_spn')."""
    return [float(v) for v in re.findall(rf'\b{key}: ([-+0-9.e]+|nan|inf)', log)]


def assert_trained_on_device(workdir, name, log, iters):
    assert (workdir / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file(), log[-3000:]
    state = load_output(workdir, name, f'training_states/{iters}.state')
    exp_avg = next(iter(state['optimizers'][0]['state'].values()))['exp_avg']
    assert exp_avg.device.type == DEVICE  # BasicSR saves the optimiser state where it lives
    for neg in (state.get('negatives') or {}).get('negatives', []):
        assert all(torch.isfinite(t.float()).all() for t in neg.values() if t.is_floating_point())
    return state


@cuda_only('tests/test_spn_loss.py::test_bfloat16_and_channels_last_close_to_fp32')
@pytest.mark.parametrize('autocast', [None, 'bfloat16', 'float16'])
def test_spn_loss_on_cuda_close_to_cpu_fp32(vgg16_file, autocast):
    """The SPN loss, its distances and its gradient on CUDA (fp32, bf16, fp16 autocast) against CPU fp32."""
    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 24, 24, generator=g)
    negs = (out + 0.1 * torch.randn(3, 2, 3, 24, 24, generator=g)).clamp(0, 1)
    results = []
    for device, kw in (('cpu', {}), ('cuda', {'autocast': autocast})):
        loss_fn = SPNLoss(loss_weight=1.0, feature='vgg16', pretrained=vgg16_file, **kw).to(device)
        o = out.clone().to(device).requires_grad_(True)
        loss, d = loss_fn(o, negs.to(device), None)
        loss.backward()
        results.append((loss.detach().cpu(), d.detach().cpu(), o.grad.cpu()))
    (ref_loss, ref_d, ref_grad), (loss, d, grad) = results
    # fp32 on CUDA: cuDNN convolutions use TF32 by default (10-bit mantissa), hence 5e-3, not float32 rounding
    tol = {None: (5e-3, 1e-4), 'bfloat16': (0.03, 1e-3), 'float16': (0.02, 1e-3)}[autocast]
    torch.testing.assert_close(d, ref_d, rtol=tol[0], atol=tol[1])
    torch.testing.assert_close(loss, ref_loss, rtol=tol[0], atol=tol[1])
    assert torch.isfinite(grad).all()
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), ref_grad.flatten(), dim=0)
    assert cos > (0.999 if autocast is None else 0.98), cos


@cuda_only('tests/test_history.py::test_bfloat16_storage_and_autocast_close_to_fp32')
def test_negative_pool_on_cuda_close_to_cpu_fp32():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 3, 3, padding=1))
    x = torch.rand(2, 3, 16, 16)
    ref = NegativePool(net, [1], [0.5], init_decay=0.0)(x)
    net = net.cuda()
    for kwargs in ({}, {'dtype': torch.bfloat16}, {'autocast': torch.bfloat16}, {'autocast': torch.float16},
                   {'dtype': torch.float16, 'autocast': torch.float16}, {'channels_last': True}):
        pool = NegativePool(net, [1], [0.5], init_decay=0.0, **kwargs)
        out = pool(x.cuda())
        assert out.dtype == torch.float32 and out.device.type == 'cuda', kwargs
        tol = 5e-3 if not kwargs or 'channels_last' in kwargs else 0.05  # fp32: TF32 convolutions
        torch.testing.assert_close(out.cpu(), ref, rtol=tol, atol=tol, msg=str(kwargs))
        pool.step(1, net)
        assert torch.isfinite(pool(x.cuda())).all(), kwargs


@pytest.mark.slow
@cuda_only('tests/test_train_pipeline.py::test_train_then_test_every_arch')
@pytest.mark.parametrize('arch,scale', [('EDSR', 2), ('SwinIR', 4)])
def test_train_with_spn_on_cuda_with_cuda_prefetcher(workdir, data_x2, data_x4, vgg16_file, arch, scale):
    data = {2: data_x2, 4: data_x4}[scale]
    name = f'cuda_{arch}'
    opt = device_options(name, data, scale=scale, arch=arch, total_iter=3, gt_size=8 * scale,
                         spn=dict(VGG_SPN, pretrained=vgg16_file), negatives=dict(NEG))
    opt['datasets']['train'].update(prefetch_mode='cuda', pin_memory=True)
    log = train(workdir, opt)
    assert 'Use cuda prefetch dataloader' in log
    losses = logged(log, 'l_spn')
    assert losses and all(math.isfinite(v) for v in losses), log[-3000:]
    assert logged(log, 'd_neg1') and '# psnr:' in log  # validation ran on CUDA too
    assert_trained_on_device(workdir, name, log, 3)


@pytest.mark.slow
@pytest.mark.parametrize('dtype', float16_param('bfloat16', 'float16', where="this test's bfloat16 case"))
def test_autocast_of_negatives_and_vgg(workdir, data_x2, vgg16_file, dtype):
    spn = dict(VGG_SPN, pretrained=vgg16_file, autocast=dtype)
    opt = device_options('autocast', data_x2, total_iter=2, spn=spn, negatives=dict(NEG, autocast=dtype), val=False)
    log = train(workdir, opt)
    d_neg = logged(log, 'd_neg0')
    assert d_neg and all(math.isfinite(v) and v > 0 for v in d_neg), log[-3000:]
    assert_trained_on_device(workdir, 'autocast', log, 2)
    # what the autocast changes, in the same options' step in this process: the negatives and VGG compute in
    # `dtype`, net_g (no train.amp) in float32
    computed, _ = first_conv_dtypes_of_one_step(workdir / 'step', opt)
    assert computed['net_g'] == [torch.float32] and computed['negatives'] == [getattr(torch, dtype)] * 2
    assert computed['vgg'] and set(computed['vgg']) == {getattr(torch, dtype)}


@pytest.mark.slow
@pytest.mark.parametrize('dtype', float16_param('bfloat16', 'float16'))
def test_amp_whole_step(workdir, data_x2, vgg16_file, dtype):
    """train.amp: the network's forward and every loss (VGG features) under autocast, split-batch negatives;
    float16 with the GradScaler."""
    opt = device_options('amp', data_x2, total_iter=3, spn=dict(VGG_SPN, pretrained=vgg16_file),
                         negatives=dict(NEG, split_batch=True), val=False, extra_train={'amp': dtype})
    log = train(workdir, opt)
    losses = logged(log, 'l_pix')
    assert losses and all(math.isfinite(v) for v in losses), log[-3000:]
    state = assert_trained_on_device(workdir, 'amp', log, 3)
    if dtype == 'float16':
        scales = logged(log, 'amp_scale')
        assert scales and all(v > 0 for v in scales), log[-3000:]
        assert state['amp_scaler'] is not None and state['amp_scaler']['scale'] > 0
    else:
        assert 'amp_scale' not in log and state.get('amp_scaler') is None
    # what train.amp changes, in the same options' step in this process: net_g, the negatives and VGG compute in
    # `dtype`; the weights the optimiser steps stay float32
    computed, model = first_conv_dtypes_of_one_step(workdir / 'step', opt)
    assert computed['net_g'] == [getattr(torch, dtype)] and computed['negatives'] == [getattr(torch, dtype)] * 2
    assert computed['vgg'] and set(computed['vgg']) == {getattr(torch, dtype)}
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())


@pytest.mark.slow
@cuda_only('tests/test_resume.py::test_resume_is_exact and tests/test_cheap_spn.py::test_exact_resume_with_* '
           '(bitwise)')
@pytest.mark.parametrize('amp', [None, 'bfloat16', 'float16'])
def test_resume_is_exact_on_the_device(workdir, data_x2, amp):
    """Stopped at 4 and resumed to 8 == straight to 8, within RESUME_ATOL, with deterministic settings."""
    (workdir / 'det_train.py').write_text(DETERMINISTIC_TRAIN)
    env = {'CUBLAS_WORKSPACE_CONFIG': ':4096:8',
           'PYTHONPATH': os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)}

    def opts(name, total_iter):
        opt = device_options(name, data_x2, total_iter=total_iter, spn=PIXEL_SPN, negatives=dict(NEG), val=False,
                             extra_train={'amp': amp} if amp else None)
        opt['logger']['save_checkpoint_freq'] = 4
        return opt

    train(workdir, opts('straight', 8), entry=('det_train.py',), env=env)
    train(workdir, opts('stopped', 4), entry=('det_train.py',), env=env)
    log = train(workdir, opts('stopped', 8), '--auto_resume', entry=('det_train.py',), env=env)
    assert 'Resuming training from epoch: 1, iter: 4' in log
    a, b = (load_output(workdir, n, 'models/net_g_8.pth')['params'] for n in ('straight', 'stopped'))
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= RESUME_ATOL, f'resumed weights differ by up to {worst:.3g} (> {RESUME_ATOL})'
    sa, sb = (load_output(workdir, n, 'training_states/8.state') for n in ('straight', 'stopped'))
    for na, nb in zip(sa['negatives']['negatives'], sb['negatives']['negatives']):
        for k in na:
            torch.testing.assert_close(na[k], nb[k], rtol=0, atol=RESUME_ATOL, msg=k)
    if amp == 'float16':
        assert sa['amp_scaler'] == sb['amp_scaler']


@pytest.mark.slow
@cuda_only('tests/test_resume.py::test_two_process_gloo_ddp (2 processes, gloo)')
def test_torchrun_one_process_nccl(workdir, data_x2):
    opt = device_options('ddp', data_x2, total_iter=2, spn=PIXEL_SPN, negatives=dict(NEG), val=False)
    write_yaml(workdir / 'ddp.yml', opt)
    torchrun = os.path.join(os.path.dirname(PY), 'torchrun')
    cmd = [torchrun] if os.path.exists(torchrun) else [PY, '-m', 'torch.distributed.run']
    proc = run([*cmd, '--nproc_per_node=1', f'--master_port={free_port()}', '-m', 'mclir_basicsr.train',
                '-opt', 'ddp.yml', '--launcher', 'pytorch'], cwd=workdir)
    log = proc.stdout + proc.stderr
    with open(next((workdir / 'experiments' / 'ddp').glob('train_ddp_*.log'))) as f:
        file_log = f.read()
    assert 'world_size: 1' in file_log and 'backend: nccl' in file_log, file_log[-3000:]
    state = assert_trained_on_device(workdir, 'ddp', log, 2)
    assert len(state['negatives_fingerprints']) == 1
