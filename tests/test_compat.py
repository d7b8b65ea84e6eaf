"""One test (at least) per workaround in mclir_basicsr/compat.py; W2/W5/W7/W8/W9 also run end to end
in test_resume.py, test_autoload.py and test_robustness.py."""
import importlib
import os
import sys

import pytest
import torch

from mclir_basicsr import compat

from helpers import PY, run


def test_w1_torchvision_alias_serves_the_removed_module_only_when_missing(tmp_path):
    import torchvision.transforms.functional as F
    ft = importlib.import_module('torchvision.transforms.functional_tensor')
    assert ft.rgb_to_grayscale is F.rgb_to_grayscale
    # where the real module exists (an older torchvision), the alias steps aside
    pkg = tmp_path / 'torchvision' / 'transforms'
    pkg.mkdir(parents=True)
    (pkg / 'functional_tensor.py').write_text('REAL = True\n')
    assert compat._FunctionalTensorAlias().find_spec(compat._FT_NAME, [str(pkg)]) is None
    assert compat._FunctionalTensorAlias().find_spec('torchvision.other', None) is None


def test_w2_launcher_initialises_gloo_on_cpu(tmp_path):
    code = ('import os, mclir_basicsr.compat as c, torch.distributed as d\n'
            "c.init_dist('pytorch')\n"
            'print(d.get_backend(), d.get_world_size()); d.destroy_process_group()\n')
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '29537',
           'CUDA_VISIBLE_DEVICES': ''}
    assert run([PY, '-c', code], cwd=tmp_path, env=env).stdout.split() == ['gloo', '1']


def test_w2_slurm_launcher_on_cpu(tmp_path):
    code = ('import mclir_basicsr.compat as c, torch.distributed as d\n'
            "c.init_dist('slurm', port=29538)\n"
            'print(d.get_backend(), d.get_rank(), d.get_world_size()); d.destroy_process_group()\n')
    env = {'SLURM_PROCID': '0', 'SLURM_NTASKS': '1', 'SLURM_NODELIST': 'localhost', 'MASTER_ADDR': '127.0.0.1',
           'CUDA_VISIBLE_DEVICES': ''}
    assert run([PY, '-c', code], cwd=tmp_path, env=env).stdout.split() == ['gloo', '0', '1']


def test_w3_local_rank_from_the_deprecated_launcher(monkeypatch, tmp_path):
    assert compat.normalise_argv(['-opt', 'x', '--local-rank=3']) == ['-opt', 'x', '--local_rank=3']
    assert compat.normalise_argv(['--local-rank', '2']) == ['--local_rank', '2']
    from basicsr.utils import options
    (tmp_path / 'o.yml').write_text('name: t\nnum_gpu: 0\ndatasets: {}\npath: {}\nmanual_seed: 1\n')
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(tmp_path / 'o.yml'), '--local-rank=0'])
    opt, args = options.parse_options(str(tmp_path), is_train=False)
    assert args.local_rank == 0 and options.parse_options._mclir_wrapped


def test_w4_resume_state_loads_on_cpu_and_ignores_partial_files(tmp_path):
    states = tmp_path / 'training_states'
    states.mkdir()
    for it in (4, 12):
        torch.save({'iter': it, 'epoch': 0, 'x': torch.ones(2)}, states / f'{it}.state')
    (states / '.20.state.123.tmp').write_bytes(b'partial')
    opt = {'auto_resume': True, 'num_gpu': 0, 'name': 'n',
           'path': {'training_states': str(states), 'models': str(tmp_path), 'resume_state': None}}
    state = compat.load_resume_state(opt)
    assert state['iter'] == 12 and state['x'].device.type == 'cpu'
    assert opt['path']['resume_state'].endswith('12.state')


def test_w5_cpu_ddp_gets_no_device_ids():
    class Fake:
        opt = {'dist': True}
        device = torch.device('cpu')

    calls = []
    wrapped = compat.wrap_model_to_device(lambda self, net: calls.append(net))
    with pytest.raises((RuntimeError, ValueError), match='(?i)process group|init'):
        wrapped(Fake(), torch.nn.Linear(1, 1))  # DDP without device ids: needs a process group, not CUDA
    assert calls == []
    Fake.opt = {'dist': False}
    wrapped(Fake(), 'net')
    assert calls == ['net']


def test_w6_atomic_save_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    target = tmp_path / 'net_g_4.pth'
    compat.atomic_torch_save({'a': torch.ones(3)}, str(target))
    real_save = torch.save

    def crash(obj, f, *a, **k):
        with open(f, 'wb') as fh:
            fh.write(b'half a checkpoint')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt):
        compat.atomic_torch_save({'a': torch.zeros(3)}, str(target))
    monkeypatch.setattr(torch, 'save', real_save)
    assert torch.equal(torch.load(target)['a'], torch.ones(3))
    assert os.listdir(tmp_path) == ['net_g_4.pth']
    from basicsr.models import base_model
    assert base_model.torch.save is compat.atomic_torch_save and base_model.torch.nn is torch.nn


def test_apply_is_idempotent_and_wraps_once():
    from basicsr.utils import options
    before = options.parse_options
    compat._APPLIED = False
    try:
        compat.apply()
    finally:
        compat._APPLIED = True
    assert options.parse_options is before
    assert compat.wrap_parse_options(before) is before
