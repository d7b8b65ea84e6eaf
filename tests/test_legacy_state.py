"""Training states written by an earlier release of the add-on (tests/data/legacy_states, made by make.py there
with the commit named in COMMIT) still resume: every tensor of the state is restored bitwise, and training
continues to iteration 8 from it. Where this CPU reproduces the earlier run's arithmetic (its own iteration-4
checkpoint equals the stored one), the resumed run must also end bitwise where the earlier code ended."""
import importlib.util
import os
import shutil

import numpy as np
import pytest
import torch

from helpers import REPO, load_output, train_run

HERE = os.path.join(REPO, 'tests', 'data', 'legacy_states')
pytestmark = pytest.mark.slow


def _make_module():
    spec = importlib.util.spec_from_file_location('legacy_make', os.path.join(HERE, 'make.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _equal_tree(a, b, where='state'):
    """Bitwise equality of nested dicts/lists of tensors, arrays and plain values: the first difference, or None."""
    if isinstance(a, torch.Tensor):
        return None if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else where
    if isinstance(a, np.ndarray):
        return None if isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b) else where
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return where
        return next((d for k in a for d in [_equal_tree(a[k], b[k], f'{where}.{k}')] if d), None)
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return where
        return next((d for i, (x, y) in enumerate(zip(a, b)) for d in [_equal_tree(x, y, f'{where}[{i}]')] if d), None)
    return None if a == b else where


def _legacy_experiment(workdir, name):
    """workdir/experiments/<name> holding the stored iteration-4 state and checkpoint, as the earlier run left it."""
    exp = workdir / 'experiments' / name
    (exp / 'training_states').mkdir(parents=True)
    (exp / 'models').mkdir()
    shutil.copy(os.path.join(HERE, name, '4.state'), exp / 'training_states' / '4.state')
    shutil.copy(os.path.join(HERE, name, 'net_g_4.pth'), exp / 'models' / 'net_g_4.pth')


@pytest.mark.parametrize('name', ['periodic', 'adaptive'])
def test_a_state_of_the_earlier_release_resumes_bitwise(workdir, data_x2, name):
    make = _make_module()
    legacy = torch.load(os.path.join(HERE, name, '4.state'), weights_only=False)
    _legacy_experiment(workdir, name)
    proc = train_run(workdir, make.options(name, data_x2), '--auto_resume')
    assert 'Resuming training from epoch: 1, iter: 4' in proc.stdout + proc.stderr

    # what the resumed run restored: the negatives, their schedule, the scaler, optimiser and scheduler states
    # are saved again at iteration 8; the parts that do not change while training must be the stored ones
    resumed = load_output(workdir, name, 'training_states/8.state')
    assert sorted(resumed) == sorted(legacy)
    assert resumed['negatives']['arch'] == legacy['negatives']['arch']
    assert resumed['negatives']['update_every'] == legacy['negatives']['update_every']
    assert resumed['epoch'] >= legacy['epoch']

    # straight through with this code. Where its iteration-4 checkpoint equals the stored one bitwise (this CPU
    # reproduces the earlier run's arithmetic), its iteration-4 state must equal the stored state, and the resumed
    # run must end bitwise where this code and the earlier code end without stopping.
    train_run(workdir, make.options(name, data_x2) | {'name': f'{name}_straight'})
    straight4 = load_output(workdir, f'{name}_straight', 'models/net_g_4.pth')
    if _equal_tree(straight4, torch.load(os.path.join(HERE, name, 'net_g_4.pth'), weights_only=True)) is not None:
        pytest.skip('this CPU does not reproduce the stored run bitwise: the restore is checked, not the continuation')
    state4 = load_output(workdir, f'{name}_straight', 'training_states/4.state')
    assert _equal_tree(state4, legacy) is None, _equal_tree(state4, legacy)
    final = load_output(workdir, name, 'models/net_g_8.pth')
    assert _equal_tree(final, load_output(workdir, f'{name}_straight', 'models/net_g_8.pth')) is None
    assert _equal_tree(final, torch.load(os.path.join(HERE, name, 'net_g_8.pth'), weights_only=True)) is None
