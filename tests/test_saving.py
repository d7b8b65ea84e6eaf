"""One save path: checkpoints and training states of the add-on's models and of opted-in BasicSR models are written
by the same function, atomically, with BasicSR's three tries."""
import os

import torch

from mclir_basicsr import io_utils
from mclir_basicsr.runs.saving import AtomicSaveMixin

from helpers import train_options

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}


def _model(tmp_path, data, spn=SPN):
    from basicsr.models import build_model
    opt = train_options('saves', data, spn=spn, val=False, model_type='ModelContrastiveModel')
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path),
               path=dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path),
                         training_states=str(tmp_path), log=str(tmp_path), visualization=str(tmp_path)))
    return build_model(opt)


def _flaky_save(monkeypatch, failures):
    """io_utils.atomic_torch_save failing ``failures`` times, then saving; returns the paths it was asked for."""
    real, calls = io_utils.atomic_torch_save, []

    def flaky(obj, path):
        calls.append(os.path.basename(path))
        if len(calls) <= failures:
            raise OSError('disk busy')
        real(obj, path)

    monkeypatch.setattr(io_utils, 'atomic_torch_save', flaky)
    monkeypatch.setattr(io_utils.time, 'sleep', lambda s: None)
    return calls


def test_training_states_of_the_add_on_model_are_saved_with_retries(tmp_path, data_x2, monkeypatch):
    model = _model(tmp_path, data_x2)
    assert type(model).save_training_state is AtomicSaveMixin.save_training_state  # one save path
    calls, warned = _flaky_save(monkeypatch, failures=2), []
    monkeypatch.setattr(io_utils.logger, 'warning', warned.append)
    model.save_training_state(0, 3)
    assert calls == ['3.state'] * 3
    assert warned == [
        'Save training state error: disk busy, remaining retry times: 2',
        'Save training state error: disk busy, remaining retry times: 1']
    state = torch.load(tmp_path / '3.state', weights_only=False)
    assert state['iter'] == 3 and state['negatives'] is not None and 'rng' in state  # the whole add-on state


def test_checkpoints_use_the_same_path(tmp_path, data_x2, monkeypatch):
    model = _model(tmp_path, data_x2, spn=None)
    calls = _flaky_save(monkeypatch, failures=1)
    model.save(0, 5)
    assert calls == ['net_g_5.pth', 'net_g_5.pth', '5.state']  # one failed try of the checkpoint, then both saved
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in ('.pth', '.state')) == ['5.state', 'net_g_5.pth']
