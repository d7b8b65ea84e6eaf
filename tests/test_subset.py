"""negatives.samples_per_step: the SPN term on a random subset of the batch. Unbiased (averaged over every subset,
and over the K rotations when split, the term and its gradient are the full-batch ones), deterministic (the
run's seed and the iteration, never the global RNG), rejected below K with split, and through BasicSR's pipeline:
exact resume and two gloo ranks in sync."""
import itertools

import pytest
import torch
from torch import nn

from mclir_basicsr.history import NegativePool, Routing
from mclir_basicsr.ignored_options import ignored_options
from mclir_basicsr.losses.spn_loss import SPNLoss
from mclir_basicsr.losses.uncertainty_loss import UncertaintyWeightedLoss, uncertainty_weights
from mclir_basicsr.options import MCLIROptionError, parse_mclir_options

from helpers import has_torchrun, load_output, train_on_two_ranks, train_options, train_run

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 3], 'decay': [0.5, 0.9], 'init_decay': 0.2}


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1)).double()


def _pool(net, k, **kw):
    return NegativePool(net, update_every=list(range(1, k + 1)), decay=[0.5] * k, init_decay=0.7, make_fresh=_net,
                        dtype=torch.float64, **kw)


def _term_and_grads(net, pool, loss, x, gt, routing, k):
    out = net(x)
    term, logged = loss(routing.select(out), pool.outputs(x, routing), routing.select(gt), owners=routing.owners,
                        num_negatives=k)
    return term.detach(), torch.autograd.grad(term, list(net.parameters())), logged


@pytest.mark.parametrize('feature,batch,n,k,split', [
    ('pixel', 4, 2, 3, False), ('pixel', 5, 3, 3, True), ('pixel', 4, 2, 2, True), ('vgg16', 4, 3, 2, True)])
def test_subset_term_and_gradient_average_to_the_full_batch_ones(feature, batch, n, k, split, vgg16_file):
    net = _net()
    for p in net.parameters():  # negatives that differ from the net, as after some training
        p.data.add_(0.01)
    pool = _pool(net, k, split_batch=split, samples_per_step=n)
    extra = {'pretrained': vgg16_file, 'layer_weights': {'relu1_2': 0.4, 'relu2_2': 0.6}} if feature != 'pixel' else {}
    loss = SPNLoss(loss_weight=0.7, feature=feature, channels_last=False, **extra).double()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(batch, 3, 12, 12, dtype=torch.float64, generator=g)
    gt = torch.rand(batch, 3, 12, 12, dtype=torch.float64, generator=g)
    full, g_full, _ = _term_and_grads(net, pool, loss, x, gt, Routing(), k)
    terms, grads = [], None
    rotations = range(k) if split else [None]
    for subset, r in itertools.product(itertools.combinations(range(batch), n), rotations):
        routing = Routing(torch.tensor(subset), pool.owners(n, r) if split else None)
        term, grad, logged = _term_and_grads(net, pool, loss, x, gt, routing, k)
        assert logged.shape == (k,)
        terms.append(term)
        grads = grad if grads is None else [a + b for a, b in zip(grads, grad)]
    torch.testing.assert_close(torch.stack(terms).mean(), full, rtol=0, atol=1e-10)
    for a, b in zip(grads, g_full):
        torch.testing.assert_close(a / len(terms), b, rtol=0, atol=1e-10)


def test_route_draws_from_the_seed_and_iteration_only():
    pool = _pool(_net(), 2, split_batch=True, samples_per_step=3)
    rng = torch.get_rng_state()
    first = [pool.route(8, it, seed=5) for it in range(1, 41)]
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is untouched
    again = [pool.route(8, it, seed=5) for it in range(1, 41)]
    assert all(torch.equal(a.samples, b.samples) and torch.equal(a.owners, b.owners) for a, b in zip(first, again))
    assert not torch.equal(pool.route(8, 1, seed=6).samples, first[0].samples) or \
        not torch.equal(pool.route(8, 2, seed=6).samples, first[1].samples)
    for it, r in enumerate(first, start=1):
        assert r.samples.tolist() == sorted(set(r.samples.tolist())) and len(r.samples) == 3
        assert r.owners.tolist() == [(j + it) % 2 for j in range(3)]  # the used samples rotate over K
    assert set().union(*(set(r.samples.tolist()) for r in first)) == set(range(8))  # every sample gets its turn
    whole = _pool(_net(), 2, samples_per_step=8).route(8, 1)
    assert whole.samples is None and whole.owners is None  # not fewer than the batch: the whole batch


def test_only_the_used_samples_meet_the_negatives():
    net = _net()
    pool = _pool(net, 3, split_batch=True, samples_per_step=3)
    seen = []
    for neg in pool.negatives:
        neg.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    x = torch.rand(8, 3, 6, 6, dtype=torch.float64)
    routing = pool.route(8, 7, seed=1)
    negs = pool.outputs(x, routing)
    assert negs.shape == (3, 3, 6, 6) and seen == [1, 1, 1]
    full = pool(x)
    for j, (i, o) in enumerate(zip(routing.samples.tolist(), routing.owners.tolist())):
        torch.testing.assert_close(negs[j], full[o, i])


def test_uncertainty_weights_are_one_for_samples_without_negatives():
    torch.manual_seed(4)
    out, gt, negs = torch.rand(5, 3, 6, 6), torch.rand(5, 3, 6, 6), torch.rand(2, 2, 3, 6, 6)
    samples = torch.tensor([1, 3])
    loss = UncertaintyWeightedLoss()
    w = loss.weights(out, negs, samples)
    assert torch.equal(w[[0, 2, 4]], torch.ones(3, 1, 6, 6))
    torch.testing.assert_close(w[samples], uncertainty_weights(out[samples], negs))
    torch.testing.assert_close(loss(out, gt, negs, samples), (w * (out - gt).abs()).mean())


def _opt(**negatives):
    return {'datasets': {'train': {'batch_size_per_gpu': 8}},
            'train': {'spn_opt': dict(SPN), 'negatives': dict(NEG, **negatives)}}


def test_fewer_samples_than_negatives_with_split_is_rejected_at_parse_time():
    with pytest.raises(MCLIROptionError, match=r'^train\.negatives\.samples_per_step: 1 is fewer than the number of '
                                               r'negatives K \(2\).*samples_per_step >= 2'):
        parse_mclir_options(_opt(split_batch=True, samples_per_step=1))
    assert parse_mclir_options(_opt(split_batch=True, samples_per_step=2)).negatives.samples_per_step == 2
    assert parse_mclir_options(_opt(samples_per_step=1)).negatives.samples_per_step == 1  # without split: fine
    for bad in (0, 2.5, 'two', True):
        with pytest.raises(MCLIROptionError, match='samples_per_step: expected null or a positive integer'):
            parse_mclir_options(_opt(samples_per_step=bad))


def test_a_subset_as_large_as_the_batch_is_named_as_having_no_effect():
    opt = _opt(samples_per_step=8)
    assert ignored_options(opt, parse_mclir_options(opt)) == [
        'train.negatives.samples_per_step: 8 is not fewer than datasets.train.batch_size_per_gpu (8): the whole '
        'batch is used']


# --------------------------------------------------------------------------- through BasicSR's pipeline
def _make(data, negatives):
    def make(name, total_iter):
        opt = train_options(name, data, total_iter=total_iter, spn=SPN, negatives=dict(NEG, **negatives), val=False)
        opt['datasets']['train']['batch_size_per_gpu'] = 3  # 6 images: 2 batches an epoch
        opt['logger']['save_checkpoint_freq'] = 4
        return opt
    return make


@pytest.mark.slow
def test_exact_resume_with_a_subset(workdir, data_x2):
    make = _make(data_x2, {'split_batch': True, 'samples_per_step': 2})
    env = {'OMP_NUM_THREADS': '1'}
    train_run(workdir, make('straight', 8), env=env)
    train_run(workdir, make('stopped', 4), env=env)
    proc = train_run(workdir, make('stopped', 8), '--auto_resume', env=env)
    assert 'iter: 4' in proc.stdout + proc.stderr and 'samples_per_step=2' in proc.stdout + proc.stderr
    a = load_output(workdir, 'straight', 'models/net_g_8.pth')['params']
    b = load_output(workdir, 'stopped', 'models/net_g_8.pth')['params']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (load_output(workdir, n, 'training_states/8.state') for n in ('straight', 'stopped'))
    for na, nb in zip(sa['negatives']['negatives'], sb['negatives']['negatives']):
        assert all(torch.equal(na[k], nb[k]) for k in na)


@pytest.mark.slow
@pytest.mark.skipif(not has_torchrun(), reason='torchrun not installed')
def test_two_process_gloo_ddp_with_a_subset_stays_in_sync(workdir, data_x2):
    opt = _make(data_x2, {'samples_per_step': 1})('ddp', 4)
    opt['datasets']['train']['dataset_enlarge_ratio'] = 4
    train_on_two_ranks(workdir, opt)
    state = load_output(workdir, 'ddp', 'training_states/4.state')
    assert len(state['negatives_fingerprints']) == 2
    assert state['negatives_fingerprints'][0] == state['negatives_fingerprints'][1]  # the same negatives on both
    assert state['negatives']['refreshes'] == [4, 1]


def test_the_demo_offers_the_cheapest_setting(tmp_path):
    from mclir_basicsr import demo
    from mclir_basicsr.compare.options import load_options
    written = demo.run(['--quick', '--data-only', '--cheap', '--feature', 'pixel', '--out', str(tmp_path)])['options']
    spn = load_options(next(p for p in written if p.endswith('demo_spn.yml')))
    assert spn['train']['negatives']['split_batch'] is True and spn['train']['negatives']['samples_per_step'] == 2
    cfg = parse_mclir_options(spn)  # a valid setting for the demo's K and batch
    assert cfg.negatives.samples_per_step == 2 and cfg.num_negatives == 2
    written = demo.run(['--quick', '--data-only', '--feature', 'pixel', '--out', str(tmp_path / 'p')])['options']
    plain = load_options(next(p for p in written
                              if p.endswith('demo_spn.yml')))
    assert 'samples_per_step' not in plain['train']['negatives']
