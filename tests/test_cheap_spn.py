"""Issue 11: split-batch negatives, whole-step mixed precision (train.amp), ModelContrastiveModel without SPN."""

import pytest
import torch
from torch import nn

from mclir_basicsr.history import NegativePool
from mclir_basicsr.losses.spn_loss import SPNLoss
from mclir_basicsr.options import MCLIROptionError, parse_mclir_options

from helpers import (
    first_conv_dtypes_of_one_step,
    has_torchrun,
    load_output,
    train_on_two_ranks,
    train_options,
    train_run,
)

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 3], 'decay': [0.5, 0.9], 'init_decay': 0.2}


# --------------------------------------------------------------------------- the split estimator
def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1)).double()


def _pool(net, k):
    fresh = _small_net
    return NegativePool(net, update_every=list(range(1, k + 1)), decay=[0.5] * k, init_decay=0.7,
                        make_fresh=fresh, dtype=torch.float64)


@pytest.mark.parametrize('feature,batch,k,mode', [
    ('pixel', 5, 3, 'subtract'), ('vgg16', 4, 2, 'subtract'), ('pixel', 6, 4, 'ratio')])
def test_split_gradient_averaged_over_rotations_equals_full(feature, batch, k, mode, vgg16_file):
    net = _small_net()
    for p in net.parameters():  # make the negatives differ from the net, as after some training
        p.data.add_(0.01)
    pool = _pool(net, k)
    extra = {'pretrained': vgg16_file, 'layer_weights': {'relu1_2': 0.4, 'relu2_2': 0.6}} if feature != 'pixel' else {}
    loss = SPNLoss(loss_weight=0.7, feature=feature, mode=mode, channels_last=False, **extra).double()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(batch, 3, 12, 12, dtype=torch.float64, generator=g)
    gt = torch.rand(batch, 3, 12, 12, dtype=torch.float64, generator=g)

    def grads(l_spn):
        return torch.autograd.grad(l_spn, list(net.parameters()))

    full, d_full = loss(net(x), pool(x), gt)
    g_full = grads(full)
    split_terms, g_split, logged = [], None, torch.zeros(k, dtype=torch.float64)
    for r in range(k):
        negs, owners = pool.split(x, rotation=r)
        assert owners.tolist() == [(i + r) % k for i in range(batch)]
        term, d = loss(net(x), negs, gt, owners=owners, num_negatives=k)
        split_terms.append(term.detach())
        logged += d / k
        g = grads(term)
        g_split = g if g_split is None else [a + b for a, b in zip(g_split, g)]
    if mode == 'subtract':  # exact: a mean over the K rotations of a term linear in the per-sample distances
        torch.testing.assert_close(torch.stack(split_terms).mean(), full.detach(), rtol=0, atol=1e-10)
        for a, b in zip(g_split, g_full):
            torch.testing.assert_close(a / k, b, rtol=0, atol=1e-10)
    assert d_full.shape == logged.shape == (k,)
    assert all(t.isfinite() for t in split_terms)


def test_split_logs_per_negative_means_over_the_samples_each_saw():
    net = _small_net()
    pool = _pool(net, 3)
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    loss = SPNLoss(loss_weight=1.0, feature='pixel').double()
    negs, owners = pool.split(x, rotation=1)
    out = net(x).detach()
    _, d = loss(out, negs, owners=owners, num_negatives=3)
    per_sample = (out - negs).abs().flatten(1).mean(1)
    for kk in range(3):
        torch.testing.assert_close(d[kk], per_sample[owners == kk].mean())
    full_negs = pool(x)  # each sample's split output is what its own negative gives in the full pass
    for i, o in enumerate(owners.tolist()):
        torch.testing.assert_close(negs[i], full_negs[o, i])


def test_split_negatives_run_one_batch_in_total():
    net = _small_net()
    pool = _pool(net, 4)
    seen = []
    for neg in pool.negatives:
        neg.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    pool.split(torch.rand(8, 3, 8, 8, dtype=torch.float64), rotation=2)
    assert seen == [2, 2, 2, 2]
    seen.clear()
    pool(torch.rand(8, 3, 8, 8, dtype=torch.float64))
    assert seen == [8, 8, 8, 8]


def test_batch_smaller_than_k_is_rejected_at_parse_time():
    negatives = dict(NEG, update_every=[1, 2, 3], decay=0.5, split_batch=True)
    opt = train_options('x', '/nowhere', spn=SPN, negatives=negatives)
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    with pytest.raises(MCLIROptionError, match=r'split_batch: needs datasets.train.batch_size_per_gpu \(2\) >= '
                                               r'the number of negatives K \(3\)'):
        parse_mclir_options(opt)
    opt['datasets']['train']['batch_size_per_gpu'] = 3
    assert parse_mclir_options(opt).negatives.split_batch is True


def test_amp_options_and_what_follows_it():
    opt = train_options('x', '/nowhere', spn=SPN, negatives=dict(NEG), extra_train={'amp': 'bfloat16'})
    cfg = parse_mclir_options(opt)
    assert cfg.amp == 'bfloat16' and cfg.negatives.autocast == 'bfloat16' and cfg.spn.autocast == 'bfloat16'
    opt['train']['negatives']['autocast'] = None  # explicitly float32 negatives under an amp step
    cfg = parse_mclir_options(opt)
    assert cfg.negatives.autocast is None and cfg.spn.autocast == 'bfloat16'
    opt['train']['amp'] = 'half'
    with pytest.raises(MCLIROptionError, match='train.amp: expected one of bfloat16, float16, null'):
        parse_mclir_options(opt)
    off = train_options('x', '/nowhere', extra_train={'amp': 'float16'})
    cfg = parse_mclir_options(off)
    assert not cfg.spn_on and cfg.amp == 'float16' and cfg.num_negatives == 0
    off['train']['negatives'] = dict(NEG)
    with pytest.raises(MCLIROptionError, match='train.negatives: set, but neither train.spn_opt nor'):
        parse_mclir_options(off)


# --------------------------------------------------------------------------- through BasicSR's pipeline
def _train(workdir, opt, *args):
    return train_run(workdir, opt, *args, env={'OMP_NUM_THREADS': '1'})


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_without_spn_opt_trains_bitwise_as_srmodel(workdir, data_x2):
    sr = train_options('sr', data_x2, total_iter=4, val=False)
    assert sr['model_type'] == 'SRModel'
    off = train_options('off', data_x2, total_iter=4, val=False, model_type='ModelContrastiveModel')
    _train(workdir, sr)
    proc = _train(workdir, off)
    assert 'MCLIR: SPN is off' in proc.stdout + proc.stderr
    _assert_same_weights(load_output(workdir, 'sr', 'models/net_g_4.pth')['params'],
                         load_output(workdir, 'off', 'models/net_g_4.pth')['params'])
    state = load_output(workdir, 'off', 'training_states/4.state')
    assert state['negatives'] is None and state['rng']  # still the add-on's exact-resume state


def _resume_matches(workdir, make, total=8, stop=4):
    _train(workdir, make('straight', total))
    _train(workdir, make('stopped', stop))
    proc = _train(workdir, make('stopped', total), '--auto_resume')
    assert f'iter: {stop}' in proc.stdout + proc.stderr
    _assert_same_weights(load_output(workdir, 'straight', f'models/net_g_{total}.pth')['params'],
                         load_output(workdir, 'stopped', f'models/net_g_{total}.pth')['params'])
    return load_output(workdir, 'straight', f'training_states/{total}.state'), \
        load_output(workdir, 'stopped', f'training_states/{total}.state')


def _opts(data, extra_train=None, negatives=None, batch=2, spn=SPN):
    """make(name, total_iter) -> a tiny training option dict (6 images, batch 2: 3 batches an epoch)."""
    def make(name, total_iter):
        opt = train_options(name, data, total_iter=total_iter, spn=spn, negatives=dict(negatives or NEG),
                            val=False, extra_train=extra_train)
        opt['datasets']['train']['batch_size_per_gpu'] = batch
        opt['logger']['save_checkpoint_freq'] = 4
        if spn is None:
            opt['model_type'] = 'ModelContrastiveModel'
        return opt
    return make


@pytest.mark.slow
def test_exact_resume_with_split_batch(workdir, data_x2):
    a, b = _resume_matches(workdir, _opts(data_x2, negatives=dict(NEG, split_batch=True)))
    for na, nb in zip(a['negatives']['negatives'], b['negatives']['negatives']):
        _assert_same_weights(na, nb)


@pytest.mark.slow
def test_exact_resume_with_float16_scaler_on_cpu(workdir, data_x2):
    a, b = _resume_matches(workdir, _opts(data_x2, extra_train={'amp': 'float16'}))
    assert a['amp_scaler'] == b['amp_scaler'] and a['amp_scaler']['scale'] > 0
    assert a['amp_skipped'] == b['amp_skipped']
    log = open(next((workdir / 'experiments' / 'straight').glob('train_*.log'))).read()
    assert 'amp_scale' in log and 'amp_skipped' in log


@pytest.mark.slow
def test_bfloat16_amp_without_spn_and_with_split(workdir, data_x2):
    makes = {'off': _opts(data_x2, extra_train={'amp': 'bfloat16'}, spn=None),
             'on': _opts(data_x2, extra_train={'amp': 'bfloat16'}, negatives=dict(NEG, split_batch=True))}
    logs = {name: _train(workdir, make(name, 3)) for name, make in makes.items()}
    assert 'training as SRModel, amp bfloat16' in logs['off'].stdout + logs['off'].stderr
    assert 'amp=bfloat16' in logs['on'].stdout + logs['on'].stderr
    for name in ('off', 'on'):  # float32 master weights, as BasicSR saves them
        params = load_output(workdir, name, 'models/net_g_latest.pth')['params']
        assert all(v.dtype == torch.float32 and v.isfinite().all() for v in params.values())
        # the same options' step in this process: the convolutions ran in bfloat16 (float32 without amp), the
        # weights the optimiser stepped stayed float32
        computed, model = first_conv_dtypes_of_one_step(workdir / f'{name}_step', makes[name](name, 3))
        assert computed['net_g'] == [torch.bfloat16], name
        assert computed['negatives'] == ([torch.bfloat16] * 2 if name == 'on' else []), name
        assert all(p.dtype == torch.float32 for p in model.net_g.parameters())


def test_float16_overflow_is_skipped_but_nan_stops(tmp_path, data_x2):
    from basicsr.models import build_model

    from mclir_basicsr.models.model_contrastive_model import NonFiniteError
    opt = train_options('amp16', data_x2, spn=SPN, negatives=dict(NEG), val=False, extra_train={'amp': 'float16'})
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path),
               path=dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path),
                         training_states=str(tmp_path), log=str(tmp_path), visualization=str(tmp_path)))
    model = build_model(opt)
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    model.feed_data({'lq': lq, 'gt': gt})
    before = [p.detach().clone() for p in model.net_g.parameters()]
    real_pix = model.cri_pix
    model.cri_pix = lambda out, target: real_pix(out, target) * float('inf')
    model.optimize_parameters(1)  # an overflow: the scaler skips the step, training goes on
    assert model.amp_skipped == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))
    model.cri_pix = lambda out, target: real_pix(out, target) * float('nan')
    with pytest.raises(NonFiniteError, match='iteration 2: non-finite loss'):
        model.optimize_parameters(2)


@pytest.mark.slow
@pytest.mark.skipif(not has_torchrun(), reason='torchrun not installed')
def test_two_process_gloo_ddp_with_split_stays_in_sync(workdir, data_x2):
    opt = _opts(data_x2, negatives=dict(NEG, split_batch=True))('ddp', 4)
    opt['datasets']['train']['dataset_enlarge_ratio'] = 4  # 2 ranks x batch 2: enough batches for 4 iterations
    train_on_two_ranks(workdir, opt)
    state = load_output(workdir, 'ddp', 'training_states/4.state')
    assert len(state['negatives_fingerprints']) == 2
    assert state['negatives_fingerprints'][0] == state['negatives_fingerprints'][1]
    assert state['negatives']['refreshes'] == [4, 1]
