"""Adaptive refresh of the negatives: the trigger on synthetic error sequences, the same decision on every rank,
exact resume, and a training run that logs the statistic and its refreshes."""
import glob

import pytest
import torch
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from mclir_basicsr.history import AdaptiveRefresh, NegativePool, PeriodicRefresh, error_statistic
from mclir_basicsr.options import MCLIROptionError, parse_mclir_options

from helpers import free_port, load_output, train_options, train_run


def decisions(trigger, statistics, start=1):
    """{iteration: refreshed negative} over a sequence of per-step statistics."""
    fired = {}
    for it, value in enumerate(statistics, start):
        for k, decay in trigger.due(it, value):
            fired[it] = k
            assert decay == trigger.decay
    return fired


def test_adaptive_trigger_fires_when_and_only_when_expected():
    trigger = AdaptiveRefresh(num_negatives=3, threshold=0.5, decay=0.001, min_gap=1)
    stats = [0.1, 0.6, 0.5, 0.7, 0.9, 0.2, 0.51, 0.4]  # above 0.5 (strictly): iterations 2, 4, 5, 7
    assert decisions(trigger, stats) == {2: 0, 4: 1, 5: 2, 7: 0}  # round robin over the K negatives
    assert trigger.state_dict() == {'count': 4, 'last_iter': 7}


def test_adaptive_trigger_respects_the_minimum_gap():
    trigger = AdaptiveRefresh(num_negatives=2, threshold=0.0, min_gap=3)
    assert decisions(trigger, [1.0] * 10) == {1: 0, 4: 1, 7: 0, 10: 1}
    trigger = AdaptiveRefresh(num_negatives=2, threshold=0.5, min_gap=3)
    assert decisions(trigger, [0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9]) == {1: 0, 6: 1}


def test_periodic_schedule_is_the_published_one():
    assert [PeriodicRefresh([2, 3], [0.1, 0.2]).due(it) for it in (1, 2, 3, 6)] == [
        [], [(0, 0.1)], [(1, 0.2)], [(0, 0.1), (1, 0.2)]]


def test_error_statistic_is_the_official_one():
    torch.manual_seed(0)
    out, gt = torch.rand(3, 3, 5, 4, dtype=torch.float64), torch.rand(3, 3, 5, 4, dtype=torch.float64)
    per_sample = [torch.std(2 * (out[i] - gt[i])) for i in range(3)]  # unbiased, over C, H, W
    assert float(error_statistic(out, gt)) == pytest.approx(float(sum(per_sample) / 3), rel=1e-6)
    assert float(error_statistic(out, gt, 'residual_abs')) == pytest.approx(float((out - gt).abs().mean()), rel=1e-6)


def test_pool_refreshes_one_negative_with_the_adaptive_decay():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3, padding=1)
    pool = NegativePool(net, [10, 20], [0.1, 0.1], init_decay=0.0,
                        schedule=AdaptiveRefresh(2, threshold=0.0, decay=0.25))
    before = [n.weight.clone() for n in pool.negatives]
    with torch.no_grad():
        net.weight.add_(1.0)
    x = torch.rand(2, 3, 8, 8)
    assert pool.step(1, net, net(x), x) == [0]
    assert torch.allclose(pool.negatives[0].weight, 0.25 * before[0] + 0.75 * net.weight)
    assert torch.equal(pool.negatives[1].weight, before[1])
    assert pool.last_statistic == pytest.approx(float(error_statistic(net(x), x)))
    state = pool.state_dict()
    assert state['schedule'] == {'kind': 'adaptive', 'count': 1, 'last_iter': 1}
    other = NegativePool(net, [10, 20], [0.1, 0.1], init_decay=0.0, schedule=AdaptiveRefresh(2, threshold=0.0))
    other.load_state_dict(state)
    assert other.schedule.state_dict() == {'count': 1, 'last_iter': 1}


def _rank_decisions(rank, port, results):
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    trigger = AdaptiveRefresh(num_negatives=2, threshold=0.5, min_gap=1)
    fired = []
    for it in range(1, 7):  # rank 0's errors are small at odd iterations, rank 1's at even ones
        local = 0.2 if (it + rank) % 2 else 1.0
        out = torch.full((1, 1, 2, 2), 0.0)
        out[0, 0, 0, 0] = local  # std of 2*(out - 0) over 4 values: grows with `local`
        value = trigger.measure(out, torch.zeros_like(out))
        fired.append((round(value, 6), trigger.due(it, value)))
    results[rank] = fired
    torch.distributed.destroy_process_group()


def test_every_rank_takes_the_same_decision():
    results = mp.Manager().dict()
    mp.spawn(_rank_decisions, args=(free_port(), results), nprocs=2)
    assert results[0] == results[1]
    local = [float(error_statistic(torch.tensor([[[[v, 0.0], [0.0, 0.0]]]]), torch.zeros(1, 1, 2, 2)))
             for v in (0.2, 1.0)]
    assert all(value == pytest.approx(sum(local) / 2, abs=1e-6) for value, _ in results[0])  # the mean, not local


@pytest.mark.parametrize('negatives,message', [
    ({'refresh': 'adaptve'}, "did you mean 'adaptive'"),
    ({'refresh': 'adaptive', 'adaptive_min_gap': 0}, 'adaptive_min_gap: expected a positive integer'),
    ({'refresh': 'adaptive', 'adaptive_statistic': 'std'}, 'adaptive_statistic'),
    ({'adaptive_decay': 2}, 'adaptive_decay: expected a number in [0, 1]'),
])
def test_adaptive_options_are_checked(negatives, message):
    with pytest.raises(MCLIROptionError, match=message.replace('[', r'\[').replace(']', r'\]')):
        parse_mclir_options({'train': {'spn_opt': {'type': 'SPNLoss', 'feature': 'pixel'}, 'negatives': negatives}})


def test_official_neg_t_means_adaptive():
    cfg = parse_mclir_options({'train': {'neg_iter': [100, 200], 'neg_t': 0.03, 'perceptual_opt': {
        'type': 'PerceptualLoss', 'layer_weights': {'relu1_2': 1.0}, 'vgg_type': 'vgg16'}}})
    assert cfg.negatives.refresh == 'adaptive' and cfg.negatives.adaptive_threshold == 0.03
    assert cfg.num_negatives == 2


# --------------------------------------------------------------------------- through BasicSR
SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
ADAPTIVE = {'update_every': [1, 1], 'decay': 0.5, 'init_decay': 0.2, 'refresh': 'adaptive',
            'adaptive_threshold': 0.0, 'adaptive_decay': 0.3, 'adaptive_min_gap': 3}
UNCERTAINTY = {'type': 'UncertaintyWeightedLoss', 'loss_weight': 0.5, 'floor': 0.2, 'cap': 2.0}


def opts(name, data, total_iter):
    opt = train_options(name, data, total_iter=total_iter, spn=SPN, negatives=dict(ADAPTIVE), val=False,
                        extra_train={'uncertainty_opt': UNCERTAINTY})
    opt['logger']['save_checkpoint_freq'] = 4
    return opt


@pytest.mark.slow
def test_adaptive_refresh_and_uncertainty_resume_exactly(workdir, data_x2):
    """min_gap 3, threshold 0: refreshes at 1, 4, 7. A resume at 4 that forgot the last refresh would refresh at 5."""
    train_run(workdir, opts('straight', data_x2, 8))
    train_run(workdir, opts('stopped', data_x2, 4))
    train_run(workdir, opts('stopped', data_x2, 8), '--auto_resume')
    a = load_output(workdir, 'straight', 'training_states/8.state')
    b = load_output(workdir, 'stopped', 'training_states/8.state')
    assert a['negatives']['schedule'] == b['negatives']['schedule'] == {'kind': 'adaptive', 'count': 3, 'last_iter': 7}
    assert a['negatives']['refreshes'] == b['negatives']['refreshes'] == [2, 1]
    for na, nb in zip(a['negatives']['negatives'], b['negatives']['negatives']):
        assert all(torch.equal(na[k], nb[k]) for k in na)
    pa = load_output(workdir, 'straight', 'models/net_g_8.pth')['params']
    pb = load_output(workdir, 'stopped', 'models/net_g_8.pth')['params']
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    log = open(glob.glob(str(workdir / 'experiments' / 'straight' / 'train_straight_*.log'))[0]).read()
    assert 'neg_statistic' in log and 'l_uncertainty' in log
    assert [line.split('iteration ')[1].split(':')[0] for line in log.splitlines() if 'refreshed negative' in line] == [
        '1', '4', '7']
    events = EventAccumulator(str(workdir / 'tb_logger' / 'straight')).Reload()
    assert {'neg_statistic', 'neg_refreshes', 'losses/l_uncertainty'} <= set(events.Tags()['scalars'])
    assert [(e.step, e.value) for e in events.Scalars('negatives/refreshed')] == [(1, 0), (4, 1), (7, 0)]
    assert [e.step for e in events.Scalars('negatives/statistic')] == list(range(1, 9))

