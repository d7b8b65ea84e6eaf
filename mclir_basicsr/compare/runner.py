"""Running the training and test subprocesses of a comparison, a few at a time, and showing their
progress (iteration, ETA, seconds per iteration, losses) from BasicSR's log lines."""
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from mclir_basicsr.compare.logs import METRIC_RE, parse_iter_line
from mclir_basicsr.compare.options import CompareError, rewrite_options, save_options, test_options


@dataclass
class Run:
    label: str                      # 'baseline', 'spn', 'baseline_eqtime', ...
    seed: int
    name: str                       # BasicSR name (experiments/<name>)
    option_file: str
    test_option_file: str
    total_iter: int
    val_freq: Optional[int]
    state: dict = field(default_factory=dict)   # progress, filled from the child's log lines
    wall_s: float = 0.0
    result: dict = field(default_factory=dict)

    @property
    def title(self):
        return f'{self.label} seed {self.seed}'


def checkpoint_path(out, name):
    """Where BasicSR saves the final network of run ``name`` (the runs work in ``out``)."""
    return os.path.join(out, 'experiments', name, 'models', 'net_g_latest.pth')


def plan_run(out, label, seed, name, opt):
    """Write a run's training option file (``opt``, already rewritten) and its test option file into
    out/options and return the :class:`Run`."""
    ckpt = checkpoint_path(out, name)
    opt_file = save_options(os.path.join(out, 'options', f'{name}.yml'), opt)
    test_file = save_options(os.path.join(out, 'options', f'{name}_test.yml'), test_options(opt, f'{name}_test', ckpt))
    return Run(label, seed, name, opt_file, test_file, int(opt['train']['total_iter']),
               (opt.get('val') or {}).get('val_freq'))


def plan_runs(out, base_dir, sources, seeds, prefix, iters=None, val_freq=None):
    """One :class:`Run` per seed and ``sources`` entry ({label: options}), seed-major."""
    runs = []
    for seed in seeds:
        for label, src in sources.items():
            name = f'{prefix}_{label}_seed{seed}'
            runs.append(plan_run(out, label, seed, name, rewrite_options(src, name, seed, base_dir, iters, val_freq)))
    return runs


class Progress:
    """One status line per run: iteration, ETA, seconds per iteration and the current losses.
    On a terminal it redraws one line; otherwise it prints a line per run every ``interval`` s."""

    def __init__(self, runs, stream=None, interval=15.0, verbose=False):
        self.runs, self.stream, self.interval, self.verbose = runs, stream or sys.stdout, interval, verbose
        self.tty = self.stream.isatty() and not verbose
        self.lock = threading.Lock()
        self.last_print = {}
        self.width = 0

    @staticmethod
    def describe(run, short=False):
        st = run.state
        if st.get('done'):
            return f'{run.title}: done ({st.get("phase", "")})'
        if 'iter' not in st:
            return f'{run.title}: {st.get("phase", "starting")}'
        losses = st.get('losses', {})
        shown = [k for k in ('l_pix', 'l_spn', 'l_cr') if k in losses] or list(losses)[:2]
        loss = ' '.join(f'{k} {losses[k]:.4g}' for k in shown)
        text = f'{run.title}: iter {st["iter"]}/{run.total_iter} eta {st["eta"]} {st["s_per_iter"]:.3f}s/it {loss}'
        if 'psnr' in st and not short:
            text += f' | val psnr {st["psnr"]:.3f}'
        return text

    def line(self, run, line):
        if self.verbose:
            with self.lock:
                print(f'[{run.label} s{run.seed}] {line}', file=self.stream, flush=True)
        parsed = parse_iter_line(line)
        if parsed:
            run.state.update(iter=parsed[0], eta=parsed[1], s_per_iter=parsed[2], losses=parsed[3])
        m = METRIC_RE.search(line)
        if m and m.group(1) == 'psnr':
            run.state['psnr'] = float(m.group(2))
        if parsed and not self.tty and not self.verbose:
            now = time.time()
            if now - self.last_print.get(run.name, 0) >= self.interval or parsed[0] >= run.total_iter:
                self.last_print[run.name] = now
                with self.lock:
                    print(self.describe(run), file=self.stream, flush=True)

    def redraw(self, active):
        if not self.tty or not active:
            return
        text = ' | '.join(self.describe(r, short=True) for r in active)
        cols = shutil.get_terminal_size((160, 20)).columns - 1
        text = text[:cols]
        with self.lock:
            self.stream.write('\r' + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)

    def message(self, text):
        with self.lock:
            if self.tty and self.width:
                self.stream.write('\r' + ' ' * self.width + '\r')
                self.width = 0
            print(text, file=self.stream, flush=True)


def _child_env(threads):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if threads:
        for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
            env[var] = str(threads)
    return env


def _run_command(run, phase, cmd, cwd, env, progress, log, procs):
    """One child process, its output to the log and the progress; (exit code, last lines)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, errors='replace')
    procs[run.name] = proc
    tail = []
    for line in proc.stdout:
        log.write(line)
        line = line.rstrip('\n')
        tail = (tail + [line])[-60:]
        progress.line(run, line)
    return proc.wait(), tail


def _run_steps(run, steps, cwd, env, progress, log_path, procs, stop):
    """Run the commands of one run in sequence; the outcome lands in run.state."""
    start = time.time()
    with open(log_path, 'w', encoding='utf-8') as log:
        for phase, cmd in steps:
            if stop.is_set():
                run.state['error'] = 'stopped (another run failed)'
                return
            run.state['phase'] = phase
            t0 = time.time()
            rc, tail = _run_command(run, phase, cmd, cwd, env, progress, log, procs)
            if phase == 'train':
                run.wall_s = time.time() - t0
            if rc != 0:
                run.state['error'] = (f'{run.title}: `{" ".join(cmd)}` failed with exit code {rc} (cwd {cwd}); '
                                      f'full output in {log_path}; last lines:\n' + '\n'.join(tail[-40:]))
                stop.set()
                return
    run.state.update(done=True, phase=f'{time.time() - start:.0f}s')


class _Pool:
    """The runs of one :func:`run_all` call: started ``jobs`` at a time, each in a thread."""

    def __init__(self, runs, out, jobs, threads, test, progress):
        self.pending, self.active, self.procs, self.stop = list(runs), [], {}, threading.Event()
        self.out, self.jobs, self.threads, self.test, self.progress = out, jobs, threads, test, progress
        self.env = _child_env(threads)

    def start_next(self):
        while self.pending and len(self.active) < self.jobs and not self.stop.is_set():
            run = self.pending.pop(0)
            steps = [('train', [sys.executable, '-m', 'mclir_basicsr.train', '-opt', run.option_file])]
            if self.test:
                steps.append(('test', [sys.executable, '-m', 'mclir_basicsr.test', '-opt', run.test_option_file]))
            log_path = os.path.join(self.out, 'logs', f'{run.label}_seed{run.seed}.log')
            t = threading.Thread(target=_run_steps, daemon=True, args=(
                run, steps, self.out, self.env, self.progress, log_path, self.procs, self.stop))
            t.start()
            self.active.append((run, t))
            self.progress.message(f'started {run.title} ({run.name}, {run.total_iter} iterations, '
                                  f'{self.threads} thread(s)); log: {log_path}')

    def reap(self):
        for run, t in list(self.active):
            if not t.is_alive():
                self.active.remove((run, t))
                if 'error' not in run.state:
                    self.progress.message(f'finished {run.title}: {run.total_iter} iterations in {run.wall_s:.0f}s')

    def terminate(self):
        self.pending.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()


def run_all(runs, out, jobs=2, threads=None, verbose=False, progress_interval=15.0, stream=None, test=True):
    """Train then (``test``) test every run, ``jobs`` at a time, each child with ``threads`` CPU threads."""
    jobs = max(1, int(jobs))
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    os.makedirs(os.path.join(out, 'logs'), exist_ok=True)
    progress = Progress(runs, stream=stream, interval=progress_interval, verbose=verbose)
    pool = _Pool(runs, out, jobs, threads, test, progress)
    try:
        while pool.pending or pool.active:
            pool.start_next()
            if pool.stop.is_set():
                pool.terminate()
            pool.reap()
            progress.redraw([r for r, _ in pool.active])
            time.sleep(0.5)
    except KeyboardInterrupt:
        pool.terminate()
        raise
    progress.message('')
    errors = [r.state['error'] for r in runs if 'error' in r.state and not r.state['error'].startswith('stopped')]
    if errors:
        raise CompareError('\n\n'.join(errors))
