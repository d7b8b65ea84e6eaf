"""Runs that lose nothing: Ctrl-C / SIGTERM save a resumable state (one process and 2 gloo ranks), a second signal
aborts the save, a failed save stops the run, training states cannot run code, and the log of an add-on run gives
the speed, peak memory and learning rate."""
import gc
import os
import pickle
import signal
import subprocess
import time

import pytest
import torch

from mclir_basicsr import io_utils
from mclir_basicsr.errors import MCLIRError

from helpers import (
    PY,
    REPO,
    TORCHRUN,
    free_port,
    has_torchrun,
    load_output,
    run,
    train_options,
    train_run,
    write_yaml,
)

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}
NEG = {'update_every': [1, 3], 'decay': [0.5, 0.9], 'init_decay': 0.2}
TESTS = os.path.join(REPO, 'tests')


def opts(name, data, total_iter=10, **kw):
    # 6 images, batch 2: 3 batches per epoch; states every 4 iterations, so a stop at 7 is between two of them
    opt = train_options(name, data, total_iter=total_iter, spn=SPN, negatives=dict(NEG), **kw)
    opt['logger']['save_checkpoint_freq'] = 4
    if 'val' in opt:
        opt['val'] = dict(opt['val'], val_freq=2)
    return opt


def signalled_env(sig, at, **extra):
    path = os.pathsep.join(p for p in (TESTS, os.environ.get('PYTHONPATH')) if p)
    return dict({'STOP_SIGNAL': sig, 'STOP_AT': str(at), 'PYTHONPATH': path}, **extra)


def train_signalled(workdir, opt, sig, at, **extra):
    """Train ``opt`` with the process sending itself ``sig`` inside iteration ``at`` (tests/train_with_signal.py)."""
    write_yaml(workdir / f'{opt["name"]}.yml', opt)
    return run([PY, '-m', 'train_with_signal', '-opt', f'{opt["name"]}.yml'], cwd=workdir, check=False,
               env=signalled_env(sig, at, **extra))


def files_of(workdir, name):
    exp = workdir / 'experiments' / name
    return sorted(str(p.relative_to(exp)) for p in exp.glob('*/*') if p.suffix in ('.pth', '.state', '.tmp')
                  or p.name.endswith('.tmp'))


def _equal_states(a, b):
    for k in a['params']:
        assert torch.equal(a['params'][k], b['params'][k]), k


@pytest.fixture(scope='module')
def straight(tmp_path_factory, data_x2):
    """An uninterrupted run to iteration 10."""
    workdir = tmp_path_factory.mktemp('straight')
    train_run(workdir, opts('run', data_x2))
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize('sig', ['SIGINT', 'SIGTERM'])
def test_a_signal_saves_a_state_and_resume_is_bitwise(workdir, data_x2, straight, sig):
    proc = train_signalled(workdir, opts('run', data_x2), sig, 7)
    assert proc.returncode == 128 + getattr(signal, sig), proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    state = workdir / 'experiments' / 'run' / 'training_states' / '7.state'
    line = [x for x in proc.stderr.splitlines() if f'Interrupted by {sig}' in x]
    assert len(line) == 1 and str(state) in line[0] and '--auto_resume' in line[0], proc.stderr[-3000:]
    assert files_of(workdir, 'run') == ['models/net_g_4.pth', 'models/net_g_7.pth',
                                        'training_states/4.state', 'training_states/7.state']
    proc = train_run(workdir, opts('run', data_x2), '--auto_resume')
    assert 'Resuming training from epoch: 2, iter: 7' in proc.stderr
    for what in ('models/net_g_latest.pth', 'models/net_g_8.pth'):
        _equal_states(load_output(workdir, 'run', what), load_output(straight, 'run', what))
    a, b = (load_output(w, 'run', 'training_states/8.state') for w in (workdir, straight))
    for na, nb in zip(a['negatives']['negatives'], b['negatives']['negatives']):
        assert all(torch.equal(na[k], nb[k]) for k in na)
    assert a['rng'][0]['torch'].equal(b['rng'][0]['torch'])


@pytest.mark.slow
def test_a_signal_during_validation_drops_it_and_saves(workdir, data_x2):
    proc = train_signalled(workdir, opts('run', data_x2), 'SIGINT', 'validation')  # the first: at iteration 2
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert 'Validation at iteration 2 abandoned' in proc.stderr and '# psnr' not in proc.stderr
    assert files_of(workdir, 'run') == ['models/net_g_2.pth', 'training_states/2.state']


@pytest.mark.slow
def test_a_second_signal_during_the_save_aborts_and_keeps_the_earlier_files(workdir, data_x2):
    proc = train_signalled(workdir, opts('run', data_x2), 'SIGINT', 7, STOP_SECOND='1')
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert 'second signal (SIGINT): stopping now, the save under way is dropped' in proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert files_of(workdir, 'run') == ['models/net_g_4.pth', 'training_states/4.state']  # no temporary file
    assert load_output(workdir, 'run', 'training_states/4.state')['iter'] == 4
    proc = train_run(workdir, opts('run', data_x2, total_iter=5), '--auto_resume')
    assert 'Resuming training from epoch: 1, iter: 4' in proc.stderr


@pytest.mark.slow
def test_sigterm_to_every_process_with_dataloader_workers_saves(workdir, data_x2):
    """Slurm signals every process of a job step, Ctrl-C the whole process group: the workers leave the stop to
    the main process, which saves."""
    opt = opts('workers', data_x2, total_iter=100000, val=False)
    opt['logger'].update(save_checkpoint_freq=5, print_freq=1000)
    opt['datasets']['train']['num_worker_per_gpu'] = 2
    write_yaml(workdir / 'workers.yml', opt)
    err = workdir / 'workers.err'
    states = workdir / 'experiments' / 'workers' / 'training_states'
    with open(err, 'w') as f:
        proc = subprocess.Popen([PY, '-m', 'mclir_basicsr.train', '-opt', 'workers.yml'], cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
    try:
        while not (states / '5.state').exists():
            assert proc.poll() is None, err.read_text()[-3000:]
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err.read_text()
    assert proc.returncode == 143 and 'Traceback' not in text, text[-3000:]
    saved = max(int(p.stem) for p in states.glob('*.state'))
    assert f'after iteration {saved}: saved the training state {states / f"{saved}.state"}' in text


class _Dispositions(torch.utils.data.Dataset):
    """Each item: whether SIGINT and SIGTERM are ignored in the worker, and the loader's own init function ran."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor([signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                             signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, os.environ.get('INIT') == 'ran'])


def _set_init_ran(worker_id):
    os.environ['INIT'] = 'ran'


def test_prefetcher_workers_ignore_the_stop_signals_from_their_init_function():
    from mclir_basicsr.runs.resumable_data import ResumableCPUPrefetcher
    loader = torch.utils.data.DataLoader(_Dispositions(), batch_size=2, num_workers=2, worker_init_fn=_set_init_ran)
    prefetcher = ResumableCPUPrefetcher(loader)
    for _ in range(2):  # a second epoch: wrapped once, the loader's own init function still runs
        prefetcher.reset()
        batches = [prefetcher.next(), prefetcher.next()]
        assert prefetcher.next() is None and all(bool(b.all()) for b in batches)
    assert loader.worker_init_fn.args == (_set_init_ran,)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the main process is untouched


class _KilledByTheStop(torch.utils.data.Dataset):
    """Once ``kill`` is set (in the workers forked after that), the stop signal reaching the main process, then a
    worker that dies of it (as one forked just before a process group's SIGTERM, before its init function ran)."""
    kill = False

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if not self.kill:
            return torch.zeros(1)
        time.sleep(0.5)  # the main process waits for this batch
        os.kill(os.getppid(), signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


class _DeadWorkersLoader:
    batch_size, worker_init_fn, sampler, dead = 1, None, None, False

    def __iter__(self):
        if not self.dead:
            return iter(())
        raise RuntimeError('DataLoader worker (pid 1234) is killed by signal: Terminated.')


@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')  # torch's report from __del__
def test_a_worker_killed_by_the_stop_signal_stops_the_run_as_asked(tmp_path):
    from mclir_basicsr.runs.interrupts import INTERRUPTS, RunInterrupted
    from mclir_basicsr.runs.resumable_data import ResumableCPUPrefetcher
    opt = {'path': {'training_states': str(tmp_path), 'models': str(tmp_path)}, 'dist': False}
    INTERRUPTS.arm(_Model(), opt)
    try:
        INTERRUPTS.begin(0)
        loader = torch.utils.data.DataLoader(_KilledByTheStop(), batch_size=1, num_workers=1)
        prefetcher = ResumableCPUPrefetcher(loader)  # BasicSR's prefetcher starts workers when it is built
        loader.dataset.kill = True
        prefetcher.reset()
        with pytest.raises(RunInterrupted) as stop:  # not torch's "DataLoader worker ... killed by signal"
            prefetcher.next()
        assert stop.value.code == 143
        del prefetcher, loader
        gc.collect()  # the iterator with the dead worker is gone without a report

        dead = ResumableCPUPrefetcher(_DeadWorkersLoader())
        dead.ori_loader.dead = True
        with pytest.raises(RuntimeError, match='killed by signal'):
            dead.reset()  # no stop asked: the error stands
        INTERRUPTS.arm(_Model(), opt)
        INTERRUPTS.begin(0)
        os.kill(os.getpid(), signal.SIGTERM)
        dead.reset()  # the stop asked: it comes at the next request for a batch
        with pytest.raises(RunInterrupted):
            dead.next()
    finally:
        INTERRUPTS.disarm()


def test_a_worker_reported_dead_while_the_stop_shuts_the_workers_down_is_the_stops(tmp_path, monkeypatch):
    """The stop saves, disarms and raises; shutting the loader's workers down, torch's SIGCHLD handler may then report
    a worker that the process group's SIGTERM killed. That report is the stop's: the run exits 143, not 1."""
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    from mclir_basicsr.runs.interrupts import INTERRUPTS, RunInterrupted
    from mclir_basicsr.runs.resumable_data import ResumableCPUPrefetcher
    opt = {'path': {'training_states': str(tmp_path), 'models': str(tmp_path)}, 'dist': False}
    prefetcher = ResumableCPUPrefetcher(torch.utils.data.DataLoader(_Dispositions(), batch_size=1, num_workers=1))
    shut_down = _MultiProcessingDataLoaderIter._shutdown_workers

    def reported(iterator):
        shut_down(iterator)
        raise RuntimeError('DataLoader worker (pid 1234) is killed by signal: Terminated.')

    model = _Model()
    INTERRUPTS.arm(model, opt)
    try:
        INTERRUPTS.begin(0)
        prefetcher.reset()
        assert prefetcher.next() is not None
        monkeypatch.setattr(_MultiProcessingDataLoaderIter, '_shutdown_workers', reported)
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(RunInterrupted) as stop:
            prefetcher.next()
        assert stop.value.code == 143 and [iteration for _, iteration in model.saved] == [1]
    finally:
        INTERRUPTS.disarm()


class _Model:
    def __init__(self):
        self.saved = []

    def save(self, epoch, current_iter):
        self.saved.append((epoch, current_iter))


@pytest.fixture(autouse=True)
def python_default_sigint():
    """Python's own SIGINT handler during each test, as in a terminal: a shell that starts the suite in the
    background hands its processes SIGINT ignored, and the tests check that the handlers found are restored."""
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)

def test_the_first_signal_asks_the_second_aborts_and_a_relayed_one_is_the_same_request(tmp_path, monkeypatch):
    from mclir_basicsr.runs.interrupts import INTERRUPTS, RELAYED_WITHIN_S, RunInterrupted
    opt = {'path': {'training_states': str(tmp_path), 'models': str(tmp_path)}, 'dist': False}
    model = _Model()
    INTERRUPTS.arm(model, opt)
    try:
        INTERRUPTS.begin(4)
        INTERRUPTS.poll(1)  # nothing asked: the run goes on
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: a request
        os.kill(os.getpid(), signal.SIGTERM)  # at once: a launcher relaying it
        assert INTERRUPTS.requested and INTERRUPTS.signum == signal.SIGINT
        with pytest.raises(RunInterrupted) as stop:
            INTERRUPTS.poll(1)  # no iteration since the start (4): nothing new to save
        assert stop.value.code == 130 and model.saved == []
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers found are back

        INTERRUPTS.arm(model, opt)
        INTERRUPTS.begin(4)
        INTERRUPTS.count()
        INTERRUPTS.count()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(RunInterrupted) as stop:
            INTERRUPTS.poll(2)
        assert stop.value.code == 143 and model.saved == [(2, 6)]  # the state of iteration 6 through model.save

        INTERRUPTS.arm(model, opt)
        INTERRUPTS.training_ended()  # the final network is saved: a signal in the final validation stops at once
        with pytest.raises(RunInterrupted) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
        assert stop.value.code == 143 and signal.getsignal(signal.SIGINT) is signal.default_int_handler

        INTERRUPTS.arm(model, opt)
        os.kill(os.getpid(), signal.SIGINT)
        monkeypatch.setattr(INTERRUPTS, 'received_at', INTERRUPTS.received_at - RELAYED_WITHIN_S - 1)
        with pytest.raises(RunInterrupted) as stop:
            os.kill(os.getpid(), signal.SIGINT)  # a second request: at once
        assert stop.value.code == 130 and io_utils._ABORT  # and every save under way or to come is dropped
        with pytest.raises(RunInterrupted):
            io_utils.save_with_retries({}, str(tmp_path / 'x.pth'), 'model')
        assert not list(tmp_path.iterdir())
    finally:
        io_utils.abort_saves(None)
        INTERRUPTS.disarm()


@pytest.mark.slow
@pytest.mark.skipif(not has_torchrun(), reason='torchrun not installed')
def test_a_signal_on_one_rank_stops_every_rank_at_the_same_iteration(workdir, data_x2):
    def torchrun(opt, env, *args):
        write_yaml(workdir / f'{opt["name"]}.yml', opt)
        return run([TORCHRUN, '--nproc_per_node=2', f'--master_port={free_port()}', *args, '-opt',
                    f'{opt["name"]}.yml', '--launcher', 'pytorch'], cwd=workdir, check=False,
                   env=dict(env, OMP_NUM_THREADS='1'))

    def two_rank(name, total_iter=6):
        opt = opts(name, data_x2, total_iter=total_iter, val=False)
        opt['datasets']['train']['batch_size_per_gpu'] = 1
        return opt

    proc = torchrun(two_rank('ddp'), signalled_env('SIGTERM', 3, STOP_RANK='1'), '-m', 'train_with_signal')
    assert proc.returncode != 0
    assert 'Interrupted by SIGTERM after iteration 3' in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert files_of(workdir, 'ddp') == ['models/net_g_3.pth', 'training_states/3.state']
    state = load_output(workdir, 'ddp', 'training_states/3.state')
    assert state['iter'] == 3 and len(state['rng']) == 2  # both ranks took part, rank 0 wrote
    assert torchrun(two_rank('ddp'), {}, '-m', 'mclir_basicsr.train', '--auto_resume').returncode == 0
    assert torchrun(two_rank('straight'), {}, '-m', 'mclir_basicsr.train').returncode == 0
    _equal_states(load_output(workdir, 'ddp', 'models/net_g_latest.pth'),
                  load_output(workdir, 'straight', 'models/net_g_latest.pth'))


# --------------------------------------------------------------------------- saves that fail
def _model(tmp_path, data):
    from basicsr.models import build_model
    opt = train_options('saves', data, spn=SPN, val=False)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path),
               path=dict(opt['path'], experiments_root=str(tmp_path), models=str(tmp_path),
                         training_states=str(tmp_path), log=str(tmp_path), visualization=str(tmp_path)))
    return build_model(opt)


def test_a_save_that_fails_after_the_retries_stops_the_run(tmp_path, data_x2, monkeypatch):
    model = _model(tmp_path, data_x2)
    model.save(0, 1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    real = torch.save

    def disk_full(obj, f, *args, **kwargs):
        f.write(b'partial')  # a half-written temporary file, then the write fails
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(torch, 'save', disk_full)
    monkeypatch.setattr(io_utils.time, 'sleep', lambda s: None)
    with pytest.raises(io_utils.SaveError) as err:
        model.save(0, 2)
    monkeypatch.setattr(torch, 'save', real)
    message = str(err.value)
    assert isinstance(err.value, MCLIRError) and '\n' not in message
    assert message.startswith(str(tmp_path / 'net_g_2.pth')) and '[Errno 28] No space left on device' in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # no partial file


def _mount_tiny_tmpfs(folder, size):
    folder.mkdir()
    try:
        proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f'mount failed: {e}'
    return None if proc.returncode == 0 else f'cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}'


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_line(workdir, data_x2):
    reason = _mount_tiny_tmpfs(workdir / 'experiments', '2m')
    if reason:
        pytest.skip(reason)
    try:
        opt = opts('full', data_x2, total_iter=1000, val=False)
        opt['logger'].update(save_checkpoint_freq=1, print_freq=100)
        proc = train_run(workdir, opt, check=False)
        assert proc.returncode == 1, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith('mclir_basicsr.io_utils.SaveError: ') and 'No space left on device' in last, last
        assert 'Just ignore it' not in proc.stderr  # (the log file on the full disk may report its own errors)
        files = files_of(workdir, 'full')
        assert files and not [f for f in files if f.endswith('.tmp')], files
        for f in files:
            torch.load(workdir / 'experiments' / 'full' / f, weights_only=False)  # every file left is whole
    finally:
        subprocess.run(['umount', '-l', str(workdir / 'experiments')], capture_output=True)


# --------------------------------------------------------------------------- states that cannot run code
class _RunsCode:
    """Unpickled, it creates the folder ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_state_from_elsewhere_cannot_run_code(tmp_path, data_x2):
    from mclir_basicsr.runs.state_files import UnsafeStateError, load_training_state
    marker = tmp_path / 'ran'
    bad = tmp_path / '5.state'
    torch.save({'iter': 5, 'payload': _RunsCode(marker)}, bad)
    with pytest.raises(UnsafeStateError, match=r'5\.state: refused as a training state: it needs posix\.mkdir'):
        load_training_state(bad)
    assert not marker.exists()
    model = _model(tmp_path, data_x2)  # a real state, RNG states included, loads with the allow-list
    state = model.training_state(0, 3)
    torch.save(state, tmp_path / '3.state')
    loaded = load_training_state(tmp_path / '3.state')
    assert loaded['rng'][0]['numpy'][1].tolist() == state['rng'][0]['numpy'][1].tolist()
    assert issubclass(UnsafeStateError, pickle.UnpicklingError)


@pytest.mark.slow
def test_resume_state_from_elsewhere_is_refused_in_one_line(workdir, data_x2):
    exp = workdir / 'elsewhere'
    exp.mkdir()
    torch.save({'iter': 5, 'payload': _RunsCode(workdir / 'ran')}, exp / 'shared.state')
    opt = opts('refused', data_x2)
    opt['path']['resume_state'] = str(exp / 'shared.state')
    proc = train_run(workdir, opt, check=False)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert 'UnsafeStateError' in proc.stderr.strip().splitlines()[-1]
    assert not (workdir / 'ran').exists()


# --------------------------------------------------------------------------- one line for every error
def test_every_error_the_add_on_raises_is_an_mclir_error():
    from mclir_basicsr.compare.options import CompareError
    from mclir_basicsr.history import NegativePoolStateError
    from mclir_basicsr.models.guards import CheckpointMismatchError, NonFiniteError
    from mclir_basicsr.runs.data_errors import DataLoadError
    from mclir_basicsr.runs.state_files import UnsafeStateError
    for cls in (CheckpointMismatchError, NonFiniteError, NegativePoolStateError, CompareError, DataLoadError,
                io_utils.SaveError, UnsafeStateError):
        assert issubclass(cls, MCLIRError), cls
    assert issubclass(NonFiniteError, FloatingPointError) and issubclass(CheckpointMismatchError, RuntimeError)


def test_an_output_folder_occupied_by_a_file_is_named(tmp_path):
    from mclir_basicsr.preflight import PreflightError, check_outputs
    (tmp_path / 'experiments').write_text('not a folder')
    opt = {'path': {'experiments_root': str(tmp_path / 'experiments' / 'x'), 'strict_load_g': True,
                    'models': str(tmp_path / 'experiments' / 'x' / 'models'), 'resume_state': None}}
    with pytest.raises(PreflightError, match=r'path\.experiments_root: .*experiments is a file, but the run writes'):
        check_outputs(opt)
    (tmp_path / 'experiments').unlink()
    check_outputs(opt)


def test_a_validation_pair_of_another_scale_names_its_files(tmp_path, data_x2):
    import shutil

    import cv2

    from mclir_basicsr.runs.data_errors import DataLoadError, build_dataset
    data = tmp_path / 'val'
    shutil.copytree(data_x2, data)
    lq = cv2.imread(str(data / 'lq' / '003.png'))
    cv2.imwrite(str(data / 'lq' / '003.png'), cv2.resize(lq, (lq.shape[1] * 2, lq.shape[0] * 2)))
    dataset = build_dataset({'type': 'PairedImageDataset', 'name': 'v', 'phase': 'val', 'scale': 2,
                             'dataroot_gt': str(data / 'gt'), 'dataroot_lq': str(data / 'lq'),
                             'io_backend': {'type': 'disk'}, 'filename_tmpl': '{}'})
    bad = next(i for i, p in enumerate(dataset.paths) if p['lq_path'].endswith('003.png'))
    dataset[(bad + 1) % len(dataset)]
    with pytest.raises(DataLoadError, match=rf'sample {bad} \(.*003\.png.*\): LQ is 48x48 and GT is 48x48, but scale '
                                            r'is 2 \(expected GT 96x96\)'):
        dataset[bad]


# --------------------------------------------------------------------------- the log
class _Writer:
    def __init__(self):
        self.tags = {}

    def add_scalar(self, tag, value, step=None):
        self.tags[tag] = value


def test_the_log_gives_speed_memory_and_the_learning_rate(monkeypatch):
    from mclir_basicsr.runs.progress_log import RunLogger, speed
    opt = {'name': 'run', 'logger': {'print_freq': 1, 'use_tb_logger': True}, 'train': {'total_iter': 10}}
    writer, lines = _Writer(), []
    log = RunLogger(opt, 0, writer)
    monkeypatch.setattr(log.logger, 'info', lines.append)  # BasicSR's logger, whatever its handlers
    log({'epoch': 0, 'iter': 2, 'lrs': [1e-3], 'time': 0.25, 'data_time': 0.01, 'l_pix': 0.5, 'd_neg0': 0.1})
    line = lines[-1]
    assert 'time (data): 0.250 (0.010), 4 it/s, peak mem: ' in line and 'GiB RSS]' in line
    assert 'l_pix: 5.0000e-01 d_neg0: 1.0000e-01' in line
    from mclir_basicsr.compare.logs import parse_iter_line  # the comparison tool still reads the line
    assert parse_iter_line(line) == (2, '0:00:00', 0.25, {'l_pix': 0.5, 'd_neg0': 0.1})
    assert set(writer.tags) == {'losses/l_pix', 'distances/d_neg0', 'train/lr', 'train/it_per_s',
                                'train/peak_rss_gib'}
    assert writer.tags['train/lr'] == 1e-3 and writer.tags['train/it_per_s'] == 4
    assert speed(2.5) == '2.50 s/it'


def test_runs_of_other_models_keep_basicsrs_logger_and_loop():
    import basicsr.train

    from mclir_basicsr import runs
    from mclir_basicsr.runs.progress_log import RunLogger
    runs.use(True, 'ModelContrastiveModel')
    try:
        assert basicsr.train.MessageLogger is RunLogger
    finally:
        runs.use(False, 'SRModel')
    from basicsr.models import build_model
    from basicsr.utils import MessageLogger
    assert basicsr.train.MessageLogger is MessageLogger and basicsr.train.build_model is build_model
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

