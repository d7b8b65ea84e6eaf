"""Gradient accumulation (train.accumulate / datasets.train.accum_iter): N micro-batches of B are one batch of
N x B (float64, losses without batch statistics), options and their traiNNer-redux spellings, the loader's
N x B batches, and exact resume through BasicSR's pipeline."""
import pytest
import torch

from mclir_basicsr.models.model_contrastive_model import StepLog, micro_batches
from mclir_basicsr.options import MCLIROptionError, accumulation, compile_options, parse_mclir_options

from helpers import load_output, train_options, train_run

PIXEL = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 2], 'decay': [0.5, 0.9], 'init_decay': 0.2}
ESTIMATORS = {'full': {}, 'split': {'split_batch': True}, 'subset': {'samples_per_step': 3},
              'split_subset': {'split_batch': True, 'samples_per_step': 3}}


def _build(tmp_path, data, spn, negatives, accumulate, batch, extra=None):
    from basicsr.models import build_model
    opt = train_options('acc', data, spn=spn, negatives=dict(NEG, **negatives), val=False,
                        extra_train=dict({'accumulate': accumulate}, **(extra or {})))
    opt['datasets']['train']['batch_size_per_gpu'] = batch
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path),
               path=dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path),
                         training_states=str(tmp_path), log=str(tmp_path), visualization=str(tmp_path)))
    torch.manual_seed(0)
    return build_model(opt)


def _steps(model, batches):
    logs = []
    for it, (lq, gt) in enumerate(batches, 1):
        model.feed_data({'lq': lq, 'gt': gt})
        model.optimize_parameters(it)
        logs.append(dict(model.log_dict))
    return logs


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize('feature', ['pixel', 'vgg16'])
@pytest.mark.parametrize('estimator', list(ESTIMATORS))
@pytest.mark.parametrize('n', [2, 4])
def test_n_micro_batches_of_b_are_one_batch_of_n_times_b(tmp_path, data_x2, vgg16_file, float64, feature,
                                                         estimator, n):
    spn = dict(PIXEL) if feature == 'pixel' else {'type': 'SPNLoss', 'loss_weight': 0.01, 'feature': 'vgg16',
                                                   'pretrained': vgg16_file}
    b = 2
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(n * b, 3, 8, 8, generator=g), torch.rand(n * b, 3, 16, 16, generator=g)) for _ in range(3)]
    one = _build(tmp_path / 'one', data_x2, spn, ESTIMATORS[estimator], 1, n * b)
    acc = _build(tmp_path / 'acc', data_x2, spn, ESTIMATORS[estimator], n, b)
    assert acc.mclir.accumulate == n
    for a, c in zip(one.net_g.parameters(), acc.net_g.parameters()):
        assert torch.equal(a, c) and a.dtype == torch.float64
    logs_one, logs_acc = _steps(one, batches), _steps(acc, batches)
    for a, c in zip(one.net_g.parameters(), acc.net_g.parameters()):
        torch.testing.assert_close(c, a, rtol=0, atol=1e-6)  # equal up to the order of the sums
    for na, nc in zip(one.negatives.negatives, acc.negatives.negatives):
        for ta, tc in zip(na.state_dict().values(), nc.state_dict().values()):
            torch.testing.assert_close(tc, ta, rtol=0, atol=1e-6)
    assert one.negatives.refreshes == acc.negatives.refreshes
    for la, lc in zip(logs_one, logs_acc):
        assert set(la) == set(lc)
        for key in la:
            torch.testing.assert_close(torch.as_tensor(lc[key]), torch.as_tensor(la[key]), rtol=1e-9, atol=1e-9)
    assert acc.output.shape == one.output.shape == (n * b, 3, 16, 16)


def test_float16_scaler_sums_the_micro_batches_at_one_scale(tmp_path, data_x2):
    """float16 AMP: the scaled micro-batch gradients add up to the scaled one-batch gradient; one unscale and one
    scaler update per step (CPU float16 autocast, as the rest of the suite)."""
    g = torch.Generator().manual_seed(2)
    batch = (torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 3, 16, 16, generator=g))
    one = _build(tmp_path / 'one', data_x2, dict(PIXEL), {}, 1, 4, {'amp': 'float16'})
    acc = _build(tmp_path / 'acc', data_x2, dict(PIXEL), {}, 2, 2, {'amp': 'float16'})
    scale = one.precision.scaler.get_scale()
    for model in (one, acc):
        calls = []
        real_update = model.precision.scaler.update
        model.precision.scaler.update = lambda *a, calls=calls, real=real_update: (calls.append(1), real(*a))[1]
        _steps(model, [batch])
        assert len(calls) == 1
    assert one.precision.scaler.get_scale() == acc.precision.scaler.get_scale() == scale
    grads = [(a.grad, c.grad) for a, c in zip(one.net_g.parameters(), acc.net_g.parameters())]
    for ga, gc in grads:  # unscaled by the step; float16 rounding apart, the same gradient
        torch.testing.assert_close(gc, ga, rtol=2e-2, atol=2e-3 * float(ga.abs().max()))


def test_micro_batches_and_step_log():
    assert micro_batches(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert micro_batches(5, 2) == [(0, 2), (2, 5)]
    assert micro_batches(2, 4) == [(0, 1), (1, 2)]  # never an empty micro-batch
    assert micro_batches(6, 1) == [(0, 6)]
    log = StepLog(2, 1)
    terms = {'l_pix': torch.tensor(1.0)}
    log.add(terms, {'sample': 1.0, 'spn': 1.0}, None, 4)
    assert log.result() is terms  # one micro-batch: logged as it is


def _opt(**train_set):
    opt = {'datasets': {'train': dict({'batch_size_per_gpu': 2}, **train_set)},
           'train': {'spn_opt': dict(PIXEL), 'negatives': dict(NEG)}}
    return opt


def test_options_and_trainner_redux_spellings():
    assert parse_mclir_options(_opt()).accumulate == 1
    assert parse_mclir_options(_opt(accum_iter=4)).accumulate == 4
    opt = _opt()
    opt['train']['accumulate'] = 3
    assert parse_mclir_options(opt).accumulate == 3
    opt['datasets']['train']['accum_iter'] = 3  # both, equal: fine
    assert accumulation(opt) == 3
    opt['datasets']['train']['accum_iter'] = 2
    with pytest.raises(MCLIROptionError, match=r'^train\.accumulate \(3\) and datasets\.train\.accum_iter \(2\)'):
        parse_mclir_options(opt)
    for bad in (0, -1, 1.5, 'two'):
        with pytest.raises(MCLIROptionError, match=r'^datasets\.train\.accum_iter: expected a positive integer'):
            parse_mclir_options(_opt(accum_iter=bad))
    assert compile_options(_opt()) is None
    opt = _opt()
    opt.update(use_compile=True, compile_mode='max-autotune')
    assert parse_mclir_options(opt).compile.model_dump() == {'mode': 'max-autotune', 'backend': 'inductor'}
    opt = _opt()
    opt['train'].update(compile=True, compile_backend='aot_eager')
    assert compile_options(opt).model_dump() == {'mode': 'default', 'backend': 'aot_eager'}
    opt['compile_mode'] = 'fastest'
    with pytest.raises(MCLIROptionError, match=r'^compile_mode: expected one of'):
        parse_mclir_options(opt)


def test_split_needs_k_samples_per_step_not_per_micro_batch():
    opt = _opt(batch_size_per_gpu=1, accum_iter=2)
    opt['train']['negatives']['split_batch'] = True
    assert parse_mclir_options(opt).negatives.split_batch  # 1 x 2 samples per step >= K = 2
    opt['datasets']['train']['accum_iter'] = 1
    with pytest.raises(MCLIROptionError, match=r'split_batch: needs datasets.train.batch_size_per_gpu \(1\)'):
        parse_mclir_options(opt)


# --------------------------------------------------------------------------- through BasicSR's pipeline
def _run_opts(name, data, total_iter, accumulate=2, batch=1, **kw):
    opt = train_options(name, data, total_iter=total_iter, spn=dict(PIXEL),
                        negatives=dict(NEG, split_batch=True, samples_per_step=3), val=False, **kw)
    # 6 images x 2: 3 steps of 2 x 2 per epoch (a multiple of the step: BasicSR counts an epoch's iterations with
    # ceil() while its loader drops the last incomplete batch)
    opt['datasets']['train'].update(batch_size_per_gpu=batch, accum_iter=accumulate, dataset_enlarge_ratio=2)
    opt['logger']['save_checkpoint_freq'] = 2
    return opt


@pytest.mark.slow
def test_pipeline_counts_optimiser_steps_and_resumes_exactly(workdir, data_x2):
    """2 micro-batches of 2 per step, 3 steps per epoch: stopped at step 2 (mid-epoch) and resumed across the
    epoch's end, the run ends bitwise where an uninterrupted run ends."""
    proc = train_run(workdir, _run_opts('straight', data_x2, 4, batch=2))
    out = proc.stdout + proc.stderr
    assert 'each iteration is one optimiser step on 2 x 2 = 4 samples per GPU' in out
    state = load_output(workdir, 'straight', 'training_states/4.state')
    assert state['iter'] == 4 and state['optimizers'][0]['state'][0]['step'] == 4  # 4 optimiser steps
    train_run(workdir, _run_opts('stopped', data_x2, 2, batch=2))
    proc = train_run(workdir, _run_opts('stopped', data_x2, 4, batch=2), '--auto_resume')
    assert 'Resuming training from epoch' in proc.stdout + proc.stderr
    a = load_output(workdir, 'straight', 'models/net_g_4.pth')['params']
    b = load_output(workdir, 'stopped', 'models/net_g_4.pth')['params']
    assert all(torch.equal(a[k], b[k]) for k in a)
    sb = load_output(workdir, 'stopped', 'training_states/4.state')
    for na, nb in zip(state['negatives']['negatives'], sb['negatives']['negatives']):
        assert all(torch.equal(na[k], nb[k]) for k in na)
    assert state['negatives']['refreshes'] == sb['negatives']['refreshes'] == [4, 2]


@pytest.mark.slow
def test_pipeline_accumulated_run_matches_one_batch_of_n_times_b(workdir, data_x2):
    """The same data order and crops as one batch of N x B: the two runs' weights agree to float32 rounding."""
    train_run(workdir, _run_opts('acc', data_x2, 3, accumulate=2, batch=2))
    train_run(workdir, _run_opts('one', data_x2, 3, accumulate=1, batch=4))
    a = load_output(workdir, 'acc', 'models/net_g_latest.pth')['params']
    b = load_output(workdir, 'one', 'models/net_g_latest.pth')['params']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_ddp_all_reduces_once_per_optimiser_step(tmp_path, data_x2):
    """DDP (one gloo rank in this process): the gradient all-reduce runs with the step's last micro-batch only."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from helpers import free_port
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)
    try:
        model = _build(tmp_path, data_x2, dict(PIXEL), {'split_batch': True}, 4, 1)
        model.net_g = DistributedDataParallel(model.net_g)
        reduced = []

        def hook(state, bucket):
            reduced.append(bucket.index())
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut
        model.net_g.register_comm_hook(None, hook)
        g = torch.Generator().manual_seed(4)
        for it in (1, 2):
            model.feed_data({'lq': torch.rand(4, 3, 8, 8, generator=g), 'gt': torch.rand(4, 3, 16, 16, generator=g)})
            model.optimize_parameters(it)
            assert reduced == [0] * it  # one bucket, reduced once per step (4 micro-batches)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_ddp_accumulated_run_matches_one_batch(workdir, data_x2):
    from helpers import has_torchrun, train_on_two_ranks
    if not has_torchrun():
        pytest.skip('torchrun not installed')
    runs = {}
    for name, accumulate, batch in (('ddp_acc', 2, 1), ('ddp_one', 1, 2)):
        opt = _run_opts(name, data_x2, 3, accumulate=accumulate, batch=batch)
        opt['datasets']['train']['dataset_enlarge_ratio'] = 4  # 2 ranks x 2 samples per step: 6 steps per epoch
        train_on_two_ranks(workdir, opt)
        runs[name] = load_output(workdir, name, 'training_states/2.state')
    fingerprints = runs['ddp_acc']['negatives_fingerprints']
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    a = load_output(workdir, 'ddp_acc', 'models/net_g_latest.pth')['params']
    b = load_output(workdir, 'ddp_one', 'models/net_g_latest.pth')['params']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
