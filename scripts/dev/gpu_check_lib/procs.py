"""Child processes under a time budget, and one stage's record."""
import os
import signal
import subprocess
import time

from .where import REPO

KILL_GRACE_S = 5


def run_step(cmd, log_path, timeout, env, cwd=REPO):
    """Run `cmd` with its output in `log_path`; kill its whole process group at `timeout` seconds.
    Returns {'rc', 'seconds', 'timed_out', 'log'}."""
    t0 = time.time()
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        log.write('+ ' + ' '.join(cmd) + '\n')
        log.flush()
        if timeout <= 0:
            return {'rc': None, 'seconds': 0.0, 'timed_out': True, 'log': log_path}
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc, timed_out = proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            rc, timed_out = _kill_group(proc), True
    return {'rc': rc, 'seconds': time.time() - t0, 'timed_out': timed_out, 'log': log_path}


def _kill_group(proc):
    """SIGTERM the process group this script started (it unwinds: BasicSR runs leave whole files), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def tail(path, lines=25):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def child_env(ctx, extra=None):
    """The stages' environment: unbuffered output, one thread per process in CPU mode, and PYTHONPATH with the
    repo (when it could not be installed) and the folder the --wheels were installed into."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if ctx['cpu']:
        for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env.setdefault(var, '1')
    paths = [REPO if ctx.get('pythonpath') else None, ctx.get('site'), env.get('PYTHONPATH')]
    if any(paths[:2]):
        env['PYTHONPATH'] = os.pathsep.join(p for p in paths if p)
    env.update(extra or {})
    return env


class Stage:
    """One stage's record: status (ok | failed | timeout | skipped), seconds, key numbers, notes, logs."""

    def __init__(self, name, ctx):
        self.name, self.ctx = name, ctx
        self.budget = ctx['budgets'][name]
        self.t0 = time.time()
        self.out = os.path.join(ctx['out'], name)
        os.makedirs(self.out, exist_ok=True)
        self.record = {'stage': name, 'status': 'ok', 'seconds': 0.0, 'budget_s': self.budget, 'numbers': {},
                       'notes': [], 'logs': []}

    def left(self):
        return self.budget - (time.time() - self.t0)

    def step(self, label, cmd, timeout=None, cwd=REPO, env=None):
        """Run one command of this stage (`env`: variables added to the stages' environment); False (and the
        stage marked) when it failed or ran out of time."""
        timeout = self.left() if timeout is None else min(timeout, self.left())
        res = run_step(cmd, os.path.join(self.out, f'{label}.log'), timeout, child_env(self.ctx, env), cwd)
        self.record['logs'].append(os.path.relpath(res['log'], self.ctx['out']))
        print(f'  [{self.name}] {label}: rc {res["rc"]}, {res["seconds"]:.1f} s'
              f'{" (killed at its time budget)" if res["timed_out"] else ""}', flush=True)
        if res['timed_out'] or res['rc'] != 0:
            self.fail('timeout' if res['timed_out'] else 'failed',
                      f'{label}: ' + ('ran out of its time budget' if res['timed_out'] else f'exit status {res["rc"]}'))
            print(tail(res['log']), flush=True)
            return False
        return True

    def fail(self, status, note):
        if self.record['status'] == 'ok' or status == 'timeout':
            self.record['status'] = status
        self.record['notes'].append(note)

    def done(self):
        self.record['seconds'] = round(time.time() - self.t0, 1)
        return self.record
