"""CPU threads per training process: seconds per iteration of the demo configuration through
BasicSR's own ``train.py``, with torch's default threads and with OMP_NUM_THREADS=N, one run alone
and several runs side by side.

    python scripts/dev/bench_threads.py [--opt options/demo/train_demo_SPN.yml] [--iters 150]
                                        [--threads default 1 2] [--parallel 1 2] [--rounds 1] [--json]

Each configuration starts ``parallel`` copies of ``python $BASICSR/train.py -opt X`` at once (no
validation, print_freq 10) and reads seconds per iteration from the timestamps of BasicSR's log
lines, from the first logged iteration to the last (start-up and the first ``print_freq``
iterations excluded). It also records the machine's load while it ran: the 1-minute load average
before it started, and the CPU cores used by *other* processes (all CPU time from /proc/stat minus
this benchmark's children), so a figure taken on a shared machine says so. The demo data is built
under --data (``python -m mclir_basicsr.demo --data-only`` builds the same) if it is missing.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from mclir_basicsr import compare as cmp  # noqa: E402

THREAD_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
STAMP = r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: '
LOG_LINE = re.compile(STAMP + r'\[.*?iter:\s*([\d,]+),')
START_LINE = re.compile(STAMP + r'Start training from epoch')
PRINT_FREQ = 10


def basicsr_train_script():
    import basicsr
    return os.path.join(os.path.dirname(basicsr.__file__), 'train.py')


def ensure_data(data_root):
    if not os.path.isdir(os.path.join(data_root, 'train', 'gt')):
        from mclir_basicsr import demo
        demo.build_dataset(data_root)
    return data_root


def bench_options(src, data_root, name, iters):
    """The option file with the data at ``data_root``, ``iters`` iterations, no validation."""
    opt = cmp.load_options(src)
    opt['name'] = name
    for phase in list(opt['datasets']):
        if phase != 'train':
            del opt['datasets'][phase]
    for kind in ('gt', 'lq'):
        opt['datasets']['train'][f'dataroot_{kind}'] = os.path.join(data_root, 'train', kind)
    opt.pop('val', None)
    opt['train']['total_iter'] = iters
    opt['logger'].update(print_freq=PRINT_FREQ, save_checkpoint_freq=10 ** 9, use_tb_logger=False)
    return opt


def _stamp(text):
    return datetime.strptime(text, '%Y-%m-%d %H:%M:%S,%f').timestamp()


def seconds_per_iter(log_text, stopped_at=None):
    """(s/it, iterations it covers, is a lower bound) from a BasicSR log: between the first and the
    last logged iteration; for a run stopped (at time ``stopped_at``) before it logged twice, a lower
    bound: it did fewer than (last logged + print_freq) iterations since training started."""
    start, points = None, []
    for line in log_text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            points.append((int(m.group(2).replace(',', '')), _stamp(m.group(1))))
        elif START_LINE.match(line):
            start = _stamp(START_LINE.match(line).group(1))
    if len(points) >= 2 and points[-1][0] > points[0][0]:
        (i0, t0), (i1, t1) = points[0], points[-1]
        return (t1 - t0) / (i1 - i0), i1 - i0, False
    if stopped_at is not None and start is not None:
        done = points[-1][0] if points else 0
        return (stopped_at - start) / (done + PRINT_FREQ), done, True
    return None, 0, False


def cpu_busy_seconds():
    """CPU seconds spent by the whole machine so far (all cores, /proc/stat), or None."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def child_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def child_env(threads):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if threads != 'default':
        env.update({k: str(threads) for k in THREAD_VARS})
    env['PYTHONUNBUFFERED'] = '1'
    return env


def run_config(args, threads, parallel, round_no):
    """Start ``parallel`` training processes at once; return one result dict for the configuration."""
    work = os.path.join(os.path.abspath(args.out), f'r{round_no}_t{threads}_p{parallel}')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    procs, logs = [], []
    load_before = os.getloadavg()[0]
    busy0, ours0, t0 = cpu_busy_seconds(), child_cpu_seconds(), time.time()
    for j in range(parallel):
        opt_file = cmp.save_options(os.path.join(work, f'run{j}.yml'),
                                    bench_options(args.opt, args.data, f'bench_run{j}', args.iters))
        logs.append(os.path.join(work, f'run{j}.out'))
        with open(logs[-1], 'w') as out:
            procs.append(subprocess.Popen([sys.executable, basicsr_train_script(), '-opt', opt_file], cwd=work,
                                          env=child_env(threads), stdout=out, stderr=subprocess.STDOUT))
    timed_out, stopped_at = False, None
    for p in procs:
        try:
            p.wait(timeout=max(1.0, args.timeout - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            timed_out, stopped_at = True, stopped_at or time.time()
            p.terminate()
            p.wait()
    wall = time.time() - t0
    busy1, ours1 = cpu_busy_seconds(), child_cpu_seconds()
    others = None if busy0 is None else max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall
    runs = []
    for p, log in zip(procs, logs):
        with open(log, encoding='utf-8', errors='replace') as f:
            text = f.read()
        s_it, covered, bound = seconds_per_iter(text, stopped_at)
        runs.append({'s_per_iter': s_it, 'iters_timed': covered, 'lower_bound': bound, 'returncode': p.returncode,
                     'tail': '' if p.returncode == 0 or timed_out else text[-2000:]})
    return {'threads': threads, 'parallel': parallel, 'round': round_no, 'runs': runs, 'wall_s': wall,
            'timed_out': timed_out, 'load1_before': load_before, 'other_cores_busy': others}


def fmt(v, digits=3):
    return '-' if v is None else f'{v:.{digits}f}'


def table(results, cores):
    lines = [f'CPU cores: {cores}; torch default threads = {default_threads()}', '',
             '| OMP_NUM_THREADS | runs side by side | s/iter per run | iterations timed | load avg (1 min) before | '
             'cores busy with other work |', '| --- | ---: | --- | ---: | ---: | ---: |']
    for r in results:
        its = ', '.join(('> ' if x['lower_bound'] else '') + fmt(x['s_per_iter']) for x in r['runs'])
        covered = min(x['iters_timed'] for x in r['runs'])
        note = ' (stopped at --timeout)' if r['timed_out'] else ''
        lines.append(f'| {r["threads"]} | {r["parallel"]} | {its}{note} | {covered} | {r["load1_before"]:.2f} | '
                     f'{fmt(r["other_cores_busy"], 2)} |')
    return '\n'.join(lines)


def default_threads():
    out = subprocess.run([sys.executable, '-c', 'import torch; print(torch.get_num_threads())'],
                         env=child_env('default'), capture_output=True, text=True)
    return out.stdout.strip() or '?'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--opt', default=os.path.join(REPO, 'options', 'demo', 'train_demo_SPN.yml'))
    p.add_argument('--data', default='demo_output/data', help='demo data root (built if missing)')
    p.add_argument('--iters', type=int, default=150, help='iterations per run (default %(default)s)')
    p.add_argument('--threads', nargs='+', default=['default', '1', '2'],
                   help="OMP_NUM_THREADS values; 'default' leaves them unset (torch: one thread per core)")
    p.add_argument('--parallel', type=int, nargs='+', default=[1, 2], help='runs side by side')
    p.add_argument('--rounds', type=int, default=1, help='repeat every configuration (default %(default)s)')
    p.add_argument('--timeout', type=float, default=300, help='stop a configuration after this many seconds '
                   '(its s/iter then covers the iterations logged so far)')
    p.add_argument('--out', default='bench_threads_output')
    p.add_argument('--json', action='store_true', help='print the results as JSON instead of a table')
    args = p.parse_args(argv)
    args.data = os.path.abspath(ensure_data(args.data))
    results = []
    for round_no in range(args.rounds):
        for parallel in args.parallel:
            for threads in args.threads:
                results.append(run_config(args, threads, parallel, round_no))
                r = results[-1]
                print(f'threads {threads}, {parallel} side by side: s/iter '
                      f'{[fmt(x["s_per_iter"]) for x in r["runs"]]}, other work {fmt(r["other_cores_busy"], 2)} '
                      f'cores', file=sys.stderr, flush=True)
                for x in r['runs']:
                    if x['tail']:
                        print(x['tail'], file=sys.stderr)
    shutil.rmtree(os.path.abspath(args.out), ignore_errors=True)
    print(json.dumps(results, indent=1) if args.json else table(results, os.cpu_count()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
