"""torch.compile of the training forward (train.compile / traiNNer-redux's use_compile): plain checkpoint keys
that load strictly into a vanilla SRModel, one compiled function for the K negatives, the eager fallback with one
warning, and (slow) inductor through BasicSR's pipeline."""
import logging

import pytest
import torch

from mclir_basicsr.history import NegativePool
from mclir_basicsr.models.compiling import CompiledOrEager, compiled_forward

from helpers import load_output, train_options, train_run

PIXEL = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 2, 3], 'decay': 0.5, 'init_decay': 0.2, 'split_batch': True}


class _Counting:
    """A torch.compile backend that counts the graphs it is given and runs them as traced."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _build(tmp_path, data, compile_opts=None, top=None):
    from basicsr.models import build_model
    tmp_path.mkdir(parents=True, exist_ok=True)
    opt = train_options('c', data, spn=dict(PIXEL), negatives=dict(NEG), val=False, extra_train=compile_opts or {},
                        **(top or {}))
    opt['datasets']['train']['batch_size_per_gpu'] = 3
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path),
               path=dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path),
                         training_states=str(tmp_path), log=str(tmp_path), visualization=str(tmp_path)))
    torch.manual_seed(0)
    return build_model(opt)


def _train(model, steps=2):
    g = torch.Generator().manual_seed(3)
    for it in range(1, steps + 1):
        model.feed_data({'lq': torch.rand(3, 3, 8, 8, generator=g), 'gt': torch.rand(3, 3, 16, 16, generator=g)})
        model.optimize_parameters(it)


def test_one_compiled_function_serves_the_k_negatives():
    from basicsr.archs.edsr_arch import EDSR
    net = EDSR(3, 3, num_feat=8, num_block=1, upscale=2)
    pool = NegativePool(net, [1, 2, 3], [0.5] * 3, 0.0, split_batch=True)
    backend = _Counting()
    pool.use_forward(CompiledOrEager(type(net).forward, 'negatives', backend=backend))
    x = torch.rand(6, 3, 8, 8)
    for it in range(3):  # each negative runs 2 samples per step: one graph for all three copies
        out = pool.outputs(x, pool.route(6, it))
    assert backend.graphs == 1
    routing = pool.route(6, 2)
    eager = torch.stack([n(x) for n in pool.negatives])
    torch.testing.assert_close(out, eager[routing.owners, torch.arange(6)])


def test_compiled_training_keeps_plain_keys_and_loads_into_srmodel(tmp_path, data_x2):
    from basicsr.models import build_model
    eager, compiled = _build(tmp_path / 'e', data_x2), _build(tmp_path / 'c', data_x2, {'compile': True,
                                                                                         'compile_backend': 'eager'})
    assert compiled.compiled_g is not None and compiled.compiled_g.failed is None
    _train(eager)
    _train(compiled)
    assert compiled.compiled_g.seconds is not None  # the first compiled call was timed
    bare = compiled.get_bare_model(compiled.net_g)
    assert 'forward' not in vars(bare)  # compiled for the step only: validation runs the module eagerly
    assert type(compiled.net_g) is type(eager.net_g)
    for a, b in zip(eager.net_g.parameters(), compiled.net_g.parameters()):
        torch.testing.assert_close(b, a)
    compiled.save(0, 2)
    params = torch.load(tmp_path / 'c' / 'net_g_2.pth', weights_only=True)['params']
    assert params and not any('_orig_mod' in k for k in params)
    state = torch.load(tmp_path / 'c' / '2.state', weights_only=False)
    assert not any('_orig_mod' in k for neg in state['negatives']['negatives'] for k in neg)
    opt = train_options('plain', data_x2, val=False)  # a vanilla SRModel, strict load
    opt.update(is_train=False, dist=False, rank=0, world_size=1)
    opt['path'] = {'pretrain_network_g': str(tmp_path / 'c' / 'net_g_2.pth'), 'strict_load_g': True,
                   'param_key_g': 'params'}
    plain = build_model(opt)
    assert type(plain).__name__ == 'SRModel'
    for k, v in plain.net_g.state_dict().items():
        assert torch.equal(v, params[k])


def test_traiNNer_redux_top_level_use_compile(tmp_path, data_x2):
    model = _build(tmp_path, data_x2, {'compile_backend': 'eager'}, top={'use_compile': True,
                                                                        'compile_mode': 'default'})
    assert model.mclir.compile.model_dump() == {'mode': 'default', 'backend': 'eager'}
    assert model.compiled_g is not None


def test_unavailable_compilation_falls_back_to_eager_with_one_warning(tmp_path, data_x2, caplog):
    eager = _build(tmp_path / 'e', data_x2)
    with caplog.at_level(logging.WARNING, logger='basicsr'):
        model = _build(tmp_path / 'c', data_x2, {'compile': True, 'compile_backend': 'no_such_backend'})
        _train(model)
        _train(eager)
    warnings = [r.getMessage() for r in caplog.records if 'torch.compile' in r.getMessage()]
    assert len(warnings) == 2  # network_g and the negatives: one each, at set-up
    assert all('no_such_backend' in w and 'runs it eagerly' in w for w in warnings)
    for a, b in zip(eager.net_g.parameters(), model.net_g.parameters()):
        assert torch.equal(a, b)


def test_a_compilation_failing_at_its_first_call_falls_back_once(caplog):
    def broken(gm, example_inputs):
        raise RuntimeError('no C++ compiler found')
    net = torch.nn.Linear(3, 2)
    calls = CompiledOrEager(type(net).forward, 'network_g (Linear)', backend=broken)
    x = torch.rand(4, 3)
    with caplog.at_level(logging.WARNING, logger='basicsr'):
        for _ in range(3):
            torch.testing.assert_close(calls(net, x), net(x))
    warnings = [r.getMessage() for r in caplog.records if 'torch.compile' in r.getMessage()]
    assert len(warnings) == 1 and 'no C++ compiler found' in warnings[0] and calls.failed


def test_compiled_forward_is_removed_after_the_block():
    net = torch.nn.Linear(3, 2)
    seen = []
    with compiled_forward(net, lambda module, x: seen.append(1) or type(module).forward(module, x)):
        net(torch.rand(1, 3))
    net(torch.rand(1, 3))
    assert seen == [1] and 'forward' not in vars(net)


@pytest.mark.slow
def test_inductor_run_through_the_pipeline_logs_compile_time_and_saves_plain_keys(workdir, data_x2):
    opt = train_options('ind', data_x2, total_iter=2, spn=dict(PIXEL), negatives=dict(NEG), val=False,
                        use_compile=True)
    opt['datasets']['train']['batch_size_per_gpu'] = 3
    proc = train_run(workdir, opt)
    out = proc.stdout + proc.stderr
    assert 'torch.compile of network_g (EDSR) (mode default, backend inductor): first call' in out or \
        'torch.compile of network_g (EDSR) is not available here' in out
    params = load_output(workdir, 'ind', 'models/net_g_latest.pth')['params']
    assert params and not any('_orig_mod' in k for k in params)


@pytest.mark.slow
def test_two_process_gloo_ddp_compiled_and_accumulated(workdir, data_x2):
    """DDP with the compiled forward inside DDP's eager wrapper and 2 micro-batches per step: the ranks stay in
    sync, and the weights equal an eager run's (backend eager: the same operations)."""
    from helpers import has_torchrun, train_on_two_ranks
    if not has_torchrun():
        pytest.skip('torchrun not installed')
    params = {}
    for name, extra in (('ddp_c', {'compile': True, 'compile_backend': 'eager'}), ('ddp_e', {})):
        opt = train_options(name, data_x2, total_iter=2, spn=dict(PIXEL), negatives=dict(NEG), val=False,
                            extra_train=dict(extra, accumulate=2))
        opt['datasets']['train'].update(batch_size_per_gpu=2, dataset_enlarge_ratio=4)
        proc = train_on_two_ranks(workdir, opt)
        assert ('first call, compilation included' in proc.stdout + proc.stderr) == (name == 'ddp_c')
        state = load_output(workdir, name, 'training_states/2.state')
        assert state['negatives_fingerprints'][0] == state['negatives_fingerprints'][1]
        params[name] = load_output(workdir, name, 'models/net_g_latest.pth')['params']
    assert not any('_orig_mod' in k for k in params['ddp_c'])
    for k, v in params['ddp_e'].items():
        torch.testing.assert_close(params['ddp_c'][k], v)
