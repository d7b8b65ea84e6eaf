"""Issue 15: data paths checked when the option file is parsed; unreadable states and checkpoints."""
import os
import shutil
import sys
import zipfile

import pytest
import torch

from mclir_basicsr import preflight
from mclir_basicsr.preflight import PreflightError, check_dataroot, check_paths, readable_resume_state, unreadable
from mclir_basicsr.validate import MCLIROptionError

from helpers import PY, make_paired_dataset, run, test_options, train_options, write_yaml

SPN = {'type': 'SPNLoss', 'loss_weight': 0.1, 'feature': 'pixel'}


def _damage(root, kind):
    """Make ``root`` a missing path, an empty folder or a file instead of a folder."""
    if kind == 'empty':
        os.makedirs(root)
        open(os.path.join(root, 'notes.txt'), 'w').write('no images here')
    elif kind == 'file':
        os.makedirs(os.path.dirname(root), exist_ok=True)
        open(root, 'w').write('not a folder')
    return root


EXPECTED = {'missing': 'does not exist', 'empty': 'has no image files', 'file': 'is a file, not a folder'}


# --------------------------------------------------------------------------- data roots (unit)
@pytest.mark.parametrize('kind', ['missing', 'empty', 'file'])
def test_bad_dataroot_names_option_and_path(tmp_path, kind):
    root = _damage(str(tmp_path / 'gt'), kind)
    with pytest.raises(PreflightError) as e:
        check_dataroot('datasets.train.dataroot_gt', root)
    assert str(e.value) == f'datasets.train.dataroot_gt: {root} {EXPECTED[kind]}' + \
        (f' ({", ".join(preflight.IMAGE_EXTENSIONS)})' if kind == 'empty' else '')


def test_dataroot_with_images_at_any_depth_passes(tmp_path, data_x2):
    check_dataroot('datasets.train.dataroot_gt', os.path.join(data_x2, 'gt'))
    nested = tmp_path / 'clips' / '000'
    nested.mkdir(parents=True)
    shutil.copy(os.path.join(data_x2, 'gt', '000.png'), nested / '00000000.png')
    check_dataroot('datasets.train.dataroot_gt', str(tmp_path / 'clips'), dataset_type='REDSDataset')


def test_relative_dataroot_says_where_it_resolves(workdir):
    with pytest.raises(PreflightError, match=r'^datasets\.val\.dataroot_lq: nowhere/lq \(relative to .+\) does not'):
        check_dataroot('datasets.val.dataroot_lq', 'nowhere/lq')


def test_lmdb_roots(tmp_path):
    root = tmp_path / 'train_HR.lmdb'
    root.mkdir()
    with pytest.raises(PreflightError, match=r'dataroot_gt: .*train_HR\.lmdb is not an LMDB folder \(no data\.mdb'):
        check_dataroot('datasets.train.dataroot_gt', str(root), 'lmdb', 'PairedImageDataset')
    (root / 'data.mdb').write_bytes(b'\0' * 16)
    with pytest.raises(PreflightError, match='has no meta_info.txt'):
        check_dataroot('datasets.train.dataroot_gt', str(root), 'lmdb', 'PairedImageDataset')
    (root / 'meta_info.txt').write_text('0001.png (480,480,3) 1\n')
    check_dataroot('datasets.train.dataroot_gt', str(root), 'lmdb', 'PairedImageDataset')


def _opt(data, **dataset):
    opt = train_options('pf', data, spn=SPN)
    opt['datasets']['train'].update(dataset)
    return opt


def test_every_dataset_and_meta_info_file_are_checked(tmp_path, data_x2):
    check_paths(_opt(data_x2))
    opt = _opt(data_x2)
    opt['datasets']['val']['dataroot_lq'] = str(tmp_path / 'gone')
    with pytest.raises(PreflightError, match=r'^datasets\.val\.dataroot_lq: .*gone does not exist$'):
        check_paths(opt)
    opt = _opt(data_x2)
    del opt['datasets']['train']['dataroot_lq']
    with pytest.raises(PreflightError, match=r'^datasets\.train\.dataroot_lq: required by PairedImageDataset'):
        check_paths(opt)
    with pytest.raises(PreflightError, match=r'^datasets\.train\.meta_info_file: .*meta\.txt does not exist$'):
        check_paths(_opt(data_x2, meta_info_file=str(tmp_path / 'meta.txt')))
    (tmp_path / 'meta.txt').write_text('')
    with pytest.raises(PreflightError, match=r'meta_info_file: .*meta\.txt is empty$'):
        check_paths(_opt(data_x2, meta_info_file=str(tmp_path / 'meta.txt')))
    single = {'test_1': {'type': 'SingleImageDataset', 'dataroot_lq': os.path.join(data_x2, 'lq'),
                         'io_backend': {'type': 'disk'}}}
    check_paths({'datasets': single, 'path': {}})  # no dataroot_gt needed


# --------------------------------------------------------------------------- data roots (through the scripts)
@pytest.mark.parametrize('kind', ['missing', 'empty', 'file'])
def test_bad_dataroot_stops_before_experiments_folder(workdir, data_x2, kind, monkeypatch):
    """BasicSR's train_pipeline in this process: the one-line error, and no experiments/ folder."""
    from basicsr.train import train_pipeline
    root = _damage(str(workdir / 'bad_gt'), kind)
    write_yaml(workdir / 'o.yml', _opt(data_x2, dataroot_gt=root))
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', 'o.yml'])
    with pytest.raises(PreflightError) as e:
        train_pipeline(str(workdir))
    assert str(e.value).startswith(f'datasets.train.dataroot_gt: {root} {EXPECTED[kind]}')
    assert '\n' not in str(e.value)
    assert not (workdir / 'experiments').exists() and not (workdir / 'tb_logger').exists()


@pytest.mark.slow
def test_bad_dataroot_through_basicsr_script(workdir, data_x2):
    """The installed basicsr/train.py: the error is the last line of stderr; nothing written."""
    import basicsr
    write_yaml(workdir / 'o.yml', _opt(data_x2, dataroot_gt='data/HR'))
    proc = run([PY, os.path.join(os.path.dirname(basicsr.__file__), 'train.py'), '-opt', 'o.yml'], cwd=workdir,
               check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f'mclir_basicsr.preflight.PreflightError: datasets.train.dataroot_gt: data/HR (relative to {workdir}) '
        'does not exist')
    assert os.listdir(workdir) == ['o.yml']


# --------------------------------------------------------------------------- files torch reads
def test_unreadable_reasons(tmp_path, data_x2):
    good = tmp_path / 'good.pth'
    torch.save({'params': {'w': torch.ones(3)}}, good)
    assert unreadable(str(good)) is None
    raw = good.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(raw[:len(raw) // 2])
    assert 'truncated' in unreadable(str(tmp_path / 'cut.pth'))
    with zipfile.ZipFile(good) as archive:
        pkl = next(i for i in archive.infolist() if i.filename.endswith('data.pkl'))
    off = pkl.header_offset  # local header: 30 bytes, then the name and the extra field, then the data
    name_len, extra_len = (int.from_bytes(raw[off + i:off + i + 2], 'little') for i in (26, 28))
    start = off + 30 + name_len + extra_len
    flipped = bytearray(raw)
    flipped[start + 5] ^= 0xFF  # one byte of the pickle: the zip directory is intact, the CRC is not
    (tmp_path / 'flip.pth').write_bytes(bytes(flipped))
    assert unreadable(str(tmp_path / 'flip.pth')) == f'damaged: {pkl.filename} fails its CRC check'
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert unreadable(str(tmp_path / 'empty.pth')) == 'the file is empty'
    assert unreadable(str(tmp_path / 'none.pth')) == 'no such file'
    assert unreadable(os.path.join(data_x2, 'gt', '000.png')).startswith('not a torch file')
    legacy = tmp_path / 'legacy.pth'
    torch.save({'params': {'w': torch.ones(3)}}, legacy, _use_new_zipfile_serialization=False)
    assert unreadable(str(legacy)) is None


def test_unreadable_pretrain_network_is_named(tmp_path, data_x2):
    bad = tmp_path / 'net_g.pth'
    bad.write_bytes(b'PK\x03\x04 cut short')
    opt = _opt(data_x2)
    opt['path']['pretrain_network_g'] = str(bad)
    with pytest.raises(PreflightError, match=rf'^path\.pretrain_network_g: {bad} cannot be read: truncated'):
        check_paths(opt)
    opt['path']['resume_state'] = 'x.state'  # resuming: BasicSR ignores pretrain_network_g
    check_paths(opt)


def test_a_test_run_without_weights_is_said(tmp_path, data_x2, capsys):
    opt = test_options('t', data_x2, None)
    opt.update(is_train=False, path={'pretrain_network_g': None, 'results_root': str(tmp_path / 'r')})
    preflight.check_run(opt, False)
    assert capsys.readouterr().err.endswith('mclir-basicsr: warning: path.pretrain_network_g is not set: this test '
                                            'run evaluates a randomly initialised network_g\n')
    opt['val']['metrics'] = {'psnr': {'type': 'calculate_PSNR'}}  # a run that stops says only why
    with pytest.raises(MCLIROptionError):
        preflight.check_run(opt, False)
    assert 'warning' not in capsys.readouterr().err


def _fake_run(tmp_path, iters, damaged=()):
    """experiments-like folders with states and checkpoints at ``iters``; ``damaged`` files cut in half."""
    states, models = tmp_path / 'training_states', tmp_path / 'models'
    states.mkdir()
    models.mkdir()
    for it in iters:
        torch.save({'iter': it}, states / f'{it}.state')
        torch.save({'params': {'w': torch.ones(2)}}, models / f'net_g_{it}.pth')
    for name in damaged:
        f = tmp_path / name
        f.write_bytes(f.read_bytes()[:100])
    return {'auto_resume': True, 'rank': 0, 'network_g': {}, 'path': {
        'training_states': str(states), 'models': str(models), 'resume_state': str(states / f'{max(iters)}.state')}}


def test_auto_resume_skips_unreadable_state_and_checkpoint(tmp_path, capsys):
    opt = _fake_run(tmp_path, [2, 4, 6], damaged=['training_states/6.state', 'models/net_g_4.pth'])
    chosen = readable_resume_state(opt, opt['path']['resume_state'])
    assert chosen == str(tmp_path / 'training_states' / '2.state') == opt['path']['resume_state']
    err = capsys.readouterr().err
    assert f'skipping {tmp_path / "training_states" / "6.state"}: cannot be read (truncated' in err
    assert f'skipping {tmp_path / "models" / "net_g_4.pth"}: cannot be read' in err
    assert 'resuming from' in err and err.count('\n') == 3


def test_auto_resume_with_no_readable_state_refuses_to_restart(tmp_path):
    opt = _fake_run(tmp_path, [2], damaged=['training_states/2.state'])
    with pytest.raises(PreflightError, match=r'no readable training state .*2\.state.*start again from iteration 0'):
        readable_resume_state(opt, opt['path']['resume_state'])


def test_explicit_unreadable_resume_state_is_named(tmp_path):
    opt = dict(_fake_run(tmp_path, [2, 4], damaged=['training_states/4.state']), auto_resume=False)
    path = opt['path']['resume_state']
    with pytest.raises(PreflightError, match=rf'^path\.resume_state: {path} cannot be read: truncated'):
        readable_resume_state(opt, path)
    assert readable_resume_state(opt, str(tmp_path / 'training_states' / '2.state')).endswith('2.state')


# --------------------------------------------------------------------------- resume through the pipeline
def _net(path):
    return torch.load(path, map_location='cpu', weights_only=True)['params']


def _train(cwd, opt_file, *extra):
    return run([PY, '-m', 'mclir_basicsr.train', '-opt', opt_file, *extra], cwd=cwd, check=False)


@pytest.fixture(scope='module')
def fallback_runs(tmp_path_factory):
    """What both cases start from and compare with, trained once: first/, the run to 6 (a state and a checkpoint
    every 2 iterations), and direct/, a copy of it resumed from its 4.state to 6 (each case copies first/)."""
    root = tmp_path_factory.mktemp('fallback')
    data = make_paired_dataset(str(root / 'data'), 2)
    opt = train_options('fallback', data, spn=SPN, total_iter=6, val=False)
    opt['logger'].update(save_checkpoint_freq=2, use_tb_logger=False)
    first = root / 'first'
    first.mkdir()
    write_yaml(first / 'o.yml', opt)
    assert _train(first, 'o.yml').returncode == 0
    direct = root / 'direct'
    shutil.copytree(first, direct)
    opt['path']['resume_state'] = str(direct / 'experiments' / 'fallback' / 'training_states' / '4.state')
    write_yaml(direct / 'o.yml', opt)
    assert _train(direct, 'o.yml').returncode == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize('damaged', ['training_states/6.state', 'models/net_g_6.pth'])
def test_truncated_newest_state_falls_back_to_previous(tmp_path, fallback_runs, damaged):
    """--auto_resume past a truncated newest state (or its checkpoint) ends where resuming from the
    previous state directly ends, and where the uninterrupted run ended (exact resume)."""
    first = tmp_path / 'first'
    shutil.copytree(fallback_runs / 'first', first)
    exp = first / 'experiments' / 'fallback'
    uninterrupted = _net(exp / 'models' / 'net_g_latest.pth')
    target = exp / damaged
    target.write_bytes(target.read_bytes()[:len(target.read_bytes()) // 2])

    proc = _train(first, 'o.yml', '--auto_resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'skipping {target}: cannot be read' in proc.stderr
    resumed, from_4 = _net(exp / 'models' / 'net_g_latest.pth'), _net(
        fallback_runs / 'direct' / 'experiments' / 'fallback' / 'models' / 'net_g_latest.pth')
    for k in uninterrupted:
        assert torch.equal(resumed[k], from_4[k]) and torch.equal(resumed[k], uninterrupted[k]), k


@pytest.mark.slow
def test_explicit_unreadable_resume_state_one_line(workdir, data_x2):
    opt = train_options('badstate', data_x2, spn=SPN, val=False)
    state = workdir / '9.state'
    state.write_bytes(b'not a training state')
    opt['path']['resume_state'] = str(state)
    write_yaml(workdir / 'o.yml', opt)
    proc = _train(workdir, 'o.yml')
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'mclir_basicsr.preflight.PreflightError: path.resume_state: {state} cannot be read: '), last
