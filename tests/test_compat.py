"""One test (at least) per workaround: the global fixes (W1-W5) in mclir_basicsr/compat.py, the guard,
and the scoping of the add-on's behaviour (W6-W9, mclir_basicsr/runs/) to add-on runs. W2/W5/W7/W8/W9
also run end to end in test_resume.py, test_autoload.py and test_robustness.py."""
import importlib
import os
import sys

import pytest
import torch

from mclir_basicsr import compat, io_utils
from mclir_basicsr.runs import data_errors, resumable_data, saving

from helpers import PY, free_port, run, train_options, write_yaml

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
# BasicSR's current master imports rgb_to_grayscale from torchvision.transforms.functional: a process in
# which the old module exists stands in for it (the alias must step aside, nothing may assume the breakage)
FIXED_UPSTREAM = (
    'import sys, types\n'
    'import torchvision.transforms.functional as F\n'
    "m = types.ModuleType('torchvision.transforms.functional_tensor')\n"
    'm.rgb_to_grayscale = F.rgb_to_grayscale\n'
    "sys.modules['torchvision.transforms.functional_tensor'] = m\n")


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
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1',
           'MASTER_PORT': str(free_port()), 'CUDA_VISIBLE_DEVICES': ''}
    assert run([PY, '-c', code], cwd=tmp_path, env=env).stdout.split() == ['gloo', '1']


def test_w2_gloo_group_is_destroyed_at_exit(tmp_path):
    """BasicSR's pipeline never destroys the group; the add-on's gloo group is gone before the interpreter tears
    down (an exit handler registered before init_dist runs after the add-on's, and sees no group)."""
    code = ('import atexit, mclir_basicsr.compat as c, torch.distributed as d\n'
            "atexit.register(lambda: print('at exit, initialised:', d.is_initialized()))\n"
            "c.init_dist('pytorch')\n"
            "print('trained, initialised:', d.is_initialized())\n")
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1',
           'MASTER_PORT': str(free_port()), 'CUDA_VISIBLE_DEVICES': ''}
    out = run([PY, '-c', code], cwd=tmp_path, env=env).stdout
    assert 'trained, initialised: True' in out and 'at exit, initialised: False' in out


def test_w2_the_exit_handler_pauses_without_the_gil_after_destroying_the_group(monkeypatch):
    """gloo's worker threads outlive the group and may still have to take the GIL to free a finished collective's
    work; one that takes it while the interpreter finalises aborts the process, so the handler pauses (a sleep
    releases the GIL) once the group is gone. ``scripts/dev/ddp_exit_aborts.py --minimal`` measures the aborts."""
    import time

    import torch.distributed as dist

    from mclir_basicsr import compat
    store = dist.HashStore()
    dist.init_process_group('gloo', store=store, rank=0, world_size=1)
    pauses = []
    monkeypatch.setattr(time, 'sleep', lambda s: pauses.append((s, dist.is_initialized())))
    compat._destroy_process_group()
    assert not dist.is_initialized() and len(pauses) == 1
    assert pauses[0][0] >= 0.01 and pauses[0][1] is False  # after the group is gone
    compat._destroy_process_group()  # no group: nothing to do
    assert len(pauses) == 1


def test_w2_slurm_launcher_on_cpu(tmp_path):
    code = ('import mclir_basicsr.compat as c, torch.distributed as d\n'
            f"c.init_dist('slurm', port={free_port()})\n"
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
    io_utils.atomic_torch_save({'a': torch.ones(3)}, str(target))
    real_save = torch.save

    def crash(obj, f, *a, **k):  # f: the temporary file's path or its open file object
        if isinstance(f, (str, os.PathLike)):
            with open(f, 'wb') as fh:
                fh.write(b'half a checkpoint')
        else:
            f.write(b'half a checkpoint')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt):
        io_utils.atomic_torch_save({'a': torch.zeros(3)}, str(target))
    monkeypatch.setattr(torch, 'save', real_save)
    assert torch.equal(torch.load(target)['a'], torch.ones(3))
    assert os.listdir(tmp_path) == ['net_g_4.pth']
    from basicsr.models import base_model
    assert base_model.torch is torch  # no stand-in module inside BasicSR


def _sr_model(tmp_path, data_x2, cls):
    opt = train_options('m', data_x2, val=False)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'))
    os.makedirs(opt['path']['models'])
    os.makedirs(opt['path']['training_states'])
    return cls(opt)


def test_w6_mixin_writes_what_basicsr_writes(tmp_path, data_x2, monkeypatch):
    from basicsr.models.sr_model import SRModel

    class Atomic(saving.AtomicSaveMixin, SRModel):
        pass

    ours, theirs = _sr_model(tmp_path / 'a', data_x2, Atomic), _sr_model(tmp_path / 'b', data_x2, SRModel)
    theirs.net_g.load_state_dict(ours.net_g.state_dict())
    for m in (ours, theirs):
        m.save(0, 3)
    for what in ('models/net_g_3.pth', 'states/3.state'):
        a, b = (torch.load(tmp_path / d / what, weights_only=False) for d in 'ab')
        assert repr(a) == repr(b), what  # same keys, same values, same order
    saved = []
    monkeypatch.setattr(io_utils, 'atomic_torch_save', lambda obj, path: saved.append(path))
    ours.save(-1, -1)
    assert [os.path.basename(p) for p in saved] == ['net_g_latest.pth']  # no state for 'latest', as BaseModel


def _namespace_objects():
    import basicsr.test
    import basicsr.train
    from basicsr.models.base_model import BaseModel
    names = ('EnlargedSampler', 'CPUPrefetcher', 'CUDAPrefetcher', 'build_dataset')
    return ({n: getattr(basicsr.train, n) for n in names}, basicsr.test.build_dataset,
            BaseModel.__dict__['save_network'])


def _parse(tmp_path, monkeypatch, opt):
    from basicsr.utils import options
    write_yaml(tmp_path / 'o.yml', opt)
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(tmp_path / 'o.yml')])
    options.parse_options(str(tmp_path), is_train=True)
    return _namespace_objects()


@pytest.mark.slow
def test_any_add_on_module_can_be_imported_first():
    for module in ('mclir_basicsr.runs.resume', 'mclir_basicsr.runs.resumable_data', 'mclir_basicsr.runs',
                   'mclir_basicsr.models.model_contrastive_model', 'mclir_basicsr.losses.spn_loss'):
        run([PY, '-c', f'import {module}; from basicsr.utils.registry import MODEL_REGISTRY; '
                       'assert "ModelContrastiveModel" in MODEL_REGISTRY'], cwd=os.getcwd())


def test_addon_behaviour_only_for_addon_runs_or_opt_in(tmp_path, data_x2, monkeypatch):
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.data.prefetch_dataloader import CPUPrefetcher
    plain, plain_test, plain_save = _namespace_objects()
    assert plain['EnlargedSampler'] is EnlargedSampler and plain['CPUPrefetcher'] is CPUPrefetcher
    sr = train_options('sr', data_x2, val=False)
    assert _parse(tmp_path, monkeypatch, sr) == (plain, plain_test, plain_save)

    ours, ours_test, ours_save = _parse(tmp_path, monkeypatch, train_options('mc', data_x2, spn=SPN, val=False))
    assert ours == dict(zip(plain, (resumable_data.ResumableSampler, resumable_data.ResumableCPUPrefetcher,
                                    resumable_data.ResumableCUDAPrefetcher, data_errors.build_dataset)))
    assert ours_test is data_errors.build_dataset
    from mclir_basicsr.models.model_contrastive_model import ModelContrastiveModel
    own = issubclass(ModelContrastiveModel, saving.AtomicSaveMixin)  # else BaseModel's is patched for the run
    assert ours_save is (plain_save if own else saving.AtomicSaveMixin.__dict__['save_network'])

    assert _parse(tmp_path, monkeypatch, sr) == (plain, plain_test, plain_save)  # the next run is BasicSR's again
    monkeypatch.setenv(compat.ADDON_ENV, '1')
    opted, _, opted_save = _parse(tmp_path, monkeypatch, sr)
    assert opted == ours and opted_save is saving.AtomicSaveMixin.__dict__['save_network']
    monkeypatch.delenv(compat.ADDON_ENV)
    assert _parse(tmp_path, monkeypatch, sr) == (plain, plain_test, plain_save)


def test_data_errors_wrapper_delegates_and_pickles(data_x2):
    import pickle

    from basicsr.data import build_dataset
    opt = {'type': 'PairedImageDataset', 'name': 'x', 'phase': 'val', 'scale': 2, 'io_backend': {'type': 'disk'},
           'dataroot_gt': os.path.join(data_x2, 'gt'), 'dataroot_lq': os.path.join(data_x2, 'lq')}
    plain = build_dataset(opt)
    assert type(plain).__name__ == 'PairedImageDataset'  # BasicSR's own build_dataset is untouched
    ds = data_errors.build_dataset(opt)
    assert type(ds.dataset) is type(plain) and ds.opt['name'] == 'x' and ds.paths == plain.paths
    again = pickle.loads(pickle.dumps(ds))  # spawned DataLoader workers
    assert type(again.dataset) is type(plain) and len(again) == len(plain) == 6
    torch.testing.assert_close(again[0]['gt'], plain[0]['gt'])
    ds.dataset.paths[1]['lq_path'] = '/nonexistent.png'
    with pytest.raises(data_errors.DataLoadError, match=r'PairedImageDataset sample 7 .*gt_path: .*001\.png'):
        ds[7]


# --------------------------------------------------------------------------- the guard
def test_guard_versions_and_signatures(monkeypatch):
    assert compat.parse_version('1.4.2') == (1, 4, 2) and compat.parse_version('1.5.0rc1+g1') == (1, 5, 0)
    assert compat.version_in_range((1, 4, 2)) and compat.version_in_range((1, 4, 9))
    assert not compat.version_in_range((1, 5, 0)) and not compat.version_in_range((1, 4, 1))
    assert not compat.version_in_range(compat.parse_version('unknown'))
    assert compat.STATUS == dict.fromkeys(compat.FIXES + (compat.ADDON_RUNS,), 'applied')  # all applied here
    skipped = compat.plan('2.0.0')
    assert set(skipped) == set(compat.FIXES + (compat.ADDON_RUNS,))
    assert all('BasicSR 2.0.0 is outside the tested range >=1.4.2,<1.5' == why for why in skipped.values())
    monkeypatch.setenv(compat.FORCE_ENV, 'force')  # forced: the attribute checks decide (against the patched BasicSR)
    assert compat.plan('2.0.0')['W4 resume states'] is None
    missing = compat.check_targets([('basicsr.train', 'no_such_thing', ())])
    assert missing == 'basicsr.train.no_such_thing does not exist'
    assert "('opt',) is not load_resume_state('opt', 'device')" in compat.check_targets(
        [('basicsr.train', 'load_resume_state', ('opt', 'device'))])


GUARD_CHILD = '''
import sys, warnings
import basicsr, basicsr.train as t
from basicsr.utils import options, dist_util
from basicsr.models.base_model import BaseModel
orig = (options.parse_options, dist_util.init_dist, t.load_resume_state, BaseModel.model_to_device)
{fake}
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter('always')
    import mclir_basicsr  # registers and applies (basicsr is already imported)
    import mclir_basicsr.compat as c
    c._APPLIED = False; c.apply()  # a second apply (as after a reload) does not warn again
now = (options.parse_options, dist_util.init_dist, t.load_resume_state, BaseModel.model_to_device)
print('UNCHANGED', *[a is b for a, b in zip(orig, now)])
print('WARNINGS', len([x for x in w if issubclass(x.category, c.BasicSRCompatWarning)]))
print('TEXT', *[str(x.message) for x in w if issubclass(x.category, c.BasicSRCompatWarning)])
print('STATUS', ' | '.join(k + '=' + v for k, v in c.STATUS.items()))
{after}
'''


def _fixed_upstream_path(tmp_path):
    shim = tmp_path / 'shim'
    shim.mkdir(exist_ok=True)
    (shim / 'sitecustomize.py').write_text(FIXED_UPSTREAM)
    return str(shim)


def _guard_child(tmp_path, fake, after='', args=()):
    proc = run([PY, '-c', GUARD_CHILD.format(fake=fake, after=after), *args], cwd=tmp_path,
               env={'MCLIR_BASICSR_AUTOLOAD': '0', 'PYTHONPATH': _fixed_upstream_path(tmp_path)})
    return {line.split(' ', 1)[0]: line.split(' ', 1)[1] for line in proc.stdout.splitlines() if ' ' in line}


def test_guard_unknown_basicsr_version_patches_nothing_and_warns_once(tmp_path):
    out = _guard_child(tmp_path, "basicsr.__version__ = '1.7.0'")
    assert out['UNCHANGED'] == 'True True True True'
    assert out['WARNINGS'] == '1'  # the second apply() (a reload) does not warn again
    for name in compat.FIXES + (compat.ADDON_RUNS,):
        assert f'{name} (BasicSR 1.7.0 is outside the tested range' in out['TEXT'], name
    assert 'MCLIR_BASICSR_COMPAT=force' in out['TEXT']


def test_guard_changed_attribute_skips_that_workaround_whole(tmp_path):
    # a CUDAPrefetcher with another signature: W6-W9 are skipped entirely, the fixes apply
    fake = 'class P(t.CUDAPrefetcher):\n    def __init__(self, loader, opt, device): pass\nt.CUDAPrefetcher = P'
    out = _guard_child(tmp_path, fake)
    assert out['UNCHANGED'] == 'False False False False'
    assert out['WARNINGS'] == '1'
    assert "W6-W9 add-on runs (basicsr.train.CUDAPrefetcher.__init__('self', 'loader', 'opt', 'device') is not" \
        in out['TEXT']
    assert 'W6-W9 add-on runs=skipped' in out['STATUS'] and 'W2 CPU launcher=applied' in out['STATUS']


@pytest.mark.slow
def test_guard_skipped_addon_runs_are_never_half_applied(tmp_path, data_x2):
    # W6-W9 skipped: an add-on option file still trains, on BasicSR's own sampler, prefetcher and datasets
    write_yaml(tmp_path / 'o.yml', train_options('half', data_x2, spn=SPN, val=False, total_iter=2))
    fake = 'class P(t.CUDAPrefetcher):\n    def __init__(self, loader, opt, device): pass\nt.CUDAPrefetcher = P'
    after = ('import os; t.train_pipeline(os.getcwd())\n'
             "print('NAMES', t.EnlargedSampler.__module__, t.CPUPrefetcher.__module__, t.build_dataset.__module__, "
             "BaseModel.save_network.__module__)\n")
    out = _guard_child(tmp_path, fake, after, ('-opt', 'o.yml'))
    assert 'W6-W9 add-on runs=skipped' in out['STATUS']
    assert out['NAMES'] == 'basicsr.data.data_sampler basicsr.data.prefetch_dataloader basicsr.data ' \
        'basicsr.models.base_model'
    assert (tmp_path / 'experiments' / 'half' / 'models' / 'net_g_latest.pth').is_file()


# --------------------------------------------------------------------------- BasicSR's own runs unchanged
SR_RUN = '''
import os, sys
{setup}
from basicsr.train import train_pipeline
train_pipeline(os.getcwd())
import basicsr.train as t, basicsr.models.base_model as b
print('NAMES', t.EnlargedSampler.__module__, t.CPUPrefetcher.__module__, t.build_dataset.__module__,
      b.BaseModel.save_network.__module__)
'''


@pytest.mark.slow
def test_plain_srmodel_run_is_bitwise_basicsr_with_only_the_fixes(tmp_path, data_x2):
    write_yaml(tmp_path / 'sr.yml', train_options('sr', data_x2, total_iter=3))
    compat_file = compat.__file__  # the fixes alone: compat.py loaded without the add-on package
    runs = {'hook': ('', {}),
            'fixes': ('import importlib.util as u\n'
                      f"spec = u.spec_from_file_location('fixes_only', {compat_file!r})\n"
                      'c = u.module_from_spec(spec); spec.loader.exec_module(c); c.install_torchvision_alias()\n'
                      "import basicsr; c.apply(addon_runs=False); assert 'mclir_basicsr' not in sys.modules\n",
                      {'MCLIR_BASICSR_AUTOLOAD': '0'})}
    for name, (setup, env) in runs.items():
        (tmp_path / name).mkdir()
        proc = run([PY, '-c', SR_RUN.format(setup=setup), '-opt', str(tmp_path / 'sr.yml')], cwd=tmp_path / name,
                   env=dict(env, OMP_NUM_THREADS='1'))
        names = [line for line in proc.stdout.splitlines() if line.startswith('NAMES')]
        assert names == ['NAMES basicsr.data.data_sampler basicsr.data.prefetch_dataloader basicsr.data '
                         'basicsr.models.base_model'], (name, names)
    for what in ('models/net_g_latest.pth', 'models/net_g_3.pth'):
        a, b = (torch.load(tmp_path / n / 'experiments' / 'sr' / what, weights_only=True)['params'] for n in runs)
        assert list(a) == list(b)
        for k in a:
            assert torch.equal(a[k], b[k]), (what, k)
    a, b = (torch.load(tmp_path / n / 'experiments' / 'sr' / 'training_states' / '3.state', weights_only=False)
            for n in runs)
    assert sorted(a) == sorted(b) == ['epoch', 'iter', 'optimizers', 'schedulers']  # BasicSR's state, no extras
    for sa, sb in zip(a['optimizers'][0]['state'].values(), b['optimizers'][0]['state'].values()):
        assert torch.equal(sa['exp_avg'], sb['exp_avg']) and torch.equal(sa['exp_avg_sq'], sb['exp_avg_sq'])


@pytest.mark.slow
def test_works_where_upstream_fixed_the_torchvision_import(tmp_path, data_x2):
    # a finder that serves the module (as an older torchvision, or a fixed stack, would) after the add-on's alias:
    # the alias must see it and step aside
    shim = tmp_path / 'shim'
    shim.mkdir()
    (shim / 'sitecustomize.py').write_text(
        'import importlib.machinery, sys\n'
        'class Real:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        "        if name == 'torchvision.transforms.functional_tensor':\n"
        '            return importlib.machinery.ModuleSpec(name, self)\n'
        '    def create_module(self, spec):\n'
        '        return None\n'
        '    def exec_module(self, module):\n'
        '        from torchvision.transforms.functional import rgb_to_grayscale\n'
        '        module.rgb_to_grayscale, module.REAL = rgb_to_grayscale, True\n'
        'sys.meta_path.append(Real())\n')
    write_yaml(tmp_path / 'o.yml', train_options('fixed', data_x2, spn=SPN, total_iter=3))
    code = ('import sys, os, basicsr\n'
            "print('REAL', getattr(sys.modules['torchvision.transforms.functional_tensor'], 'REAL', False))\n"
            'from basicsr.utils.registry import MODEL_REGISTRY, LOSS_REGISTRY\n'
            "print('REGISTERED', 'ModelContrastiveModel' in MODEL_REGISTRY, 'SPNLoss' in LOSS_REGISTRY)\n"
            'from basicsr.train import train_pipeline; train_pipeline(os.getcwd())\n')
    proc = run([PY, '-c', code, '-opt', 'o.yml'], cwd=tmp_path, env={'PYTHONPATH': str(shim)})
    assert 'REAL True' in proc.stdout  # the real module, not the add-on's alias
    assert 'REGISTERED True True' in proc.stdout and 'l_spn:' in proc.stdout + proc.stderr
    state = torch.load(tmp_path / 'experiments' / 'fixed' / 'training_states' / '3.state', weights_only=False)
    assert state['iter'] == 3 and 'negatives' in state


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
