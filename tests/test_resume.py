"""Exact resume (negatives, RNG, position in the epoch), mismatch errors, and 2-process DDP on CPU."""
import glob
import os
import shutil

import pytest
import torch

from helpers import (
    PY,
    assert_nothing_overwritten,
    free_port,
    load_output,
    run,
    snapshot,
    train_options,
    train_run,
    write_yaml,
)

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 3], 'decay': [0.5, 0.9], 'init_decay': 0.2}
pytestmark = pytest.mark.slow


def opts(name, data, total_iter, **kw):
    # 6 images, batch 2: 3 batches per epoch, so iteration 4 is in the middle of epoch 1
    opt = train_options(name, data, total_iter=total_iter, spn=SPN, negatives=dict(NEG), **kw)
    opt['logger']['save_checkpoint_freq'] = 4
    if 'val' in opt:
        opt['val'] = dict(opt['val'], val_freq=2)  # validation must not change the training trajectory
    return opt


def test_resume_is_exact(workdir, data_x2):
    train_run(workdir, opts('straight', data_x2, 8))
    train_run(workdir, opts('stopped', data_x2, 4))
    mid = load_output(workdir, 'stopped', 'training_states/4.state')
    net4 = load_output(workdir, 'stopped', 'models/net_g_4.pth')['params']
    for neg in mid['negatives']['negatives']:  # the history differs from the net at the resume point
        assert any(not torch.equal(neg[k], net4[k]) for k in net4)
    assert mid['epoch_batches'] == 1 and mid['epoch'] == 1
    proc = train_run(workdir, opts('stopped', data_x2, 8), '--auto_resume')
    assert 'Resuming training from epoch: 1, iter: 4' in proc.stdout + proc.stderr

    a = load_output(workdir, 'straight', 'models/net_g_8.pth')['params']
    b = load_output(workdir, 'stopped', 'models/net_g_8.pth')['params']
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = load_output(workdir, 'straight', 'training_states/8.state')
    sb = load_output(workdir, 'stopped', 'training_states/8.state')
    for na, nb in zip(sa['negatives']['negatives'], sb['negatives']['negatives']):
        for k in na:
            assert torch.equal(na[k], nb[k]), k
    assert sa['negatives']['refreshes'] == sb['negatives']['refreshes'] == [8, 2]
    for ka, kb in zip(sa['optimizers'][0]['state'].values(), sb['optimizers'][0]['state'].values()):
        assert torch.equal(ka['exp_avg'], kb['exp_avg'])


@pytest.fixture(scope='module')
def run_to_4(tmp_path_factory, data_x2):
    """experiments/run of opts('run', data_x2, 4, val=False), trained once; each test copies it (_stopped_at_4)."""
    root = tmp_path_factory.mktemp('run_to_4')
    train_run(root, opts('run', data_x2, 4, val=False))
    return root / 'experiments' / 'run'


def _stopped_at_4(workdir, run_to_4, name):
    """workdir/experiments/<name>: a copy of that run, as if this test had trained it."""
    shutil.copytree(run_to_4, workdir / 'experiments' / name)


def test_resume_state_path_option_on_cpu(workdir, data_x2, run_to_4):
    _stopped_at_4(workdir, run_to_4, 'first')
    opt = opts('first', data_x2, 5, val=False)
    opt['path']['resume_state'] = str(workdir / 'experiments' / 'first' / 'training_states' / '4.state')
    proc = train_run(workdir, opt)
    assert 'iter: 4' in proc.stdout + proc.stderr
    assert (workdir / 'experiments' / 'first' / 'models' / 'net_g_latest.pth').is_file()
    latest, at_4 = (load_output(workdir, 'first', f'models/net_g_{it}.pth')['params'] for it in ('latest', 4))
    assert any(not torch.equal(latest[k], at_4[k]) for k in at_4)  # iteration 5 trained and saved (not the copy)


@pytest.mark.parametrize('change,message', [
    ({'negatives': {'update_every': [1, 3, 5], 'decay': 0.5}}, 'holds 2 negative model.*options define 3'),
    ({'network_g': {'num_feat': 8}}, 'does not fit network_g .EDSR.'),
])
def test_resume_with_mismatched_options_is_a_clear_error(workdir, data_x2, run_to_4, change, message):
    import re
    _stopped_at_4(workdir, run_to_4, 'run')
    before = snapshot(workdir / 'experiments')
    opt = opts('run', data_x2, 8, val=False)
    if 'negatives' in change:
        opt['train']['negatives'] = change['negatives']
    else:
        opt['network_g'].update(change['network_g'])
    proc = train_run(workdir, opt, '--auto_resume', check=False)
    assert proc.returncode != 0 and re.search(message, proc.stderr), proc.stderr[-2000:]
    assert_nothing_overwritten(before, snapshot(workdir / 'experiments'))


@pytest.mark.skipif(shutil.which('torchrun') is None and not os.path.exists(os.path.join(
    os.path.dirname(PY), 'torchrun')), reason='torchrun not installed')
def test_two_process_gloo_ddp(workdir, data_x2):
    opt = opts('ddp', data_x2, 4)
    opt['datasets']['train']['batch_size_per_gpu'] = 1
    write_yaml(workdir / 'ddp.yml', opt)
    torchrun = os.path.join(os.path.dirname(PY), 'torchrun')
    run([torchrun, '--nproc_per_node=2', f'--master_port={free_port()}', '-m', 'mclir_basicsr.train', '-opt', 'ddp.yml',
         '--launcher', 'pytorch'], cwd=workdir, env={'OMP_NUM_THREADS': '1'})
    state = load_output(workdir, 'ddp', 'training_states/4.state')
    assert len(state['negatives_fingerprints']) == 2
    assert state['negatives_fingerprints'][0] == state['negatives_fingerprints'][1]  # identical on both ranks
    assert len(state['rng']) == 2
    assert sorted(os.listdir(workdir / 'experiments')) == ['ddp']  # one set of files
    assert sorted(os.listdir(workdir / 'experiments' / 'ddp' / 'models')) == ['net_g_4.pth', 'net_g_latest.pth']
    assert len(glob.glob(str(workdir / 'experiments' / 'ddp' / 'train_ddp_*.log'))) == 1
    assert 'world_size: 2' in open(glob.glob(str(workdir / 'experiments' / 'ddp' / 'train_ddp_*.log'))[0]).read()
