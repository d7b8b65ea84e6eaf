#!/usr/bin/env python
"""The CUDA path, checked in one command: device tests, the step benchmark, an equal-iteration comparison.

    python scripts/gpu_check.py OUT_DIR              # on a machine with one GPU: about 8 minutes
    python scripts/gpu_check.py --cpu OUT_DIR        # the same stages at tiny sizes on CPU (the suite runs this)
    python scripts/gpu_check.py --fetch-wheels .whl  # here, with PyPI: the wheels a machine without PyPI needs

Stages, each in child processes with its own time budget (a stage that hangs is killed and the next one
still runs):

* ``setup``: what is installed (python, torch, CUDA, the modules the stages import). With ``--wheels DIR``
  it installs the wheels there first (``pip install --no-index --no-deps``); when ``mclir_basicsr`` is not
  importable it runs ``pip install --no-index --no-deps --no-build-isolation -e .`` (nothing is
  downloaded), or falls back to PYTHONPATH. It says what is still missing and how to bring it.
* ``tests``: ``pytest -m device tests`` (tests/test_device.py: on CUDA everything; on CPU the CPU forms).
* ``bench``: ``scripts/bench_step.py`` for ``edsr_light_x2`` and ``swinir_light_x4`` (baseline, SPN K=4,
  split batch, whole-step amp; float16 amp too on CUDA) -> ``bench/bench_<arch>.json`` and ``.log``.
* ``compare``: the demo's data (``mclir_basicsr.demo --data-only``), EDSR 64x16 x2, L1 vs L1 + SPN for 3000
  iterations and seeds 0 1 through ``python -m mclir_basicsr.compare`` -> ``compare/result/table.md``.

``--cpu``: tiny networks, one or two iterations, the demo's ``--quick`` data, a few iterations; about two
minutes on two CPU cores. OUT_DIR gets ``summary.json`` and ``summary.txt`` (rewritten after every stage)
and one folder per stage with its logs. This process uses the standard library only, so it runs before
anything is installed.
"""
import argparse
import glob
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
STAGES = ('setup', 'tests', 'bench', 'compare')
REQUIRED = ('torch', 'torchvision', 'basicsr', 'cv2', 'skimage', 'scipy', 'yaml', 'pytest', 'matplotlib',
            'tensorboard')
BASICSR_WHEEL = 'basicsr==1.4.2'  # pure Python (py3-none-any); the only dependency the GPU image lacks
KILL_GRACE_S = 5

TINY_EDSR = ['--arch-opt', '{num_feat: 8, num_block: 1}', '--batch', '4', '--patch', '12']
TINY_SWINIR = ['--arch-opt', '{embed_dim: 12, depths: [1], num_heads: [2], img_size: 8, window_size: 4}',
               '--batch', '4', '--patch', '8']
MODES = {
    'gpu': {
        'budgets': {'setup': 45, 'tests': 150, 'bench': 115, 'compare': 150},
        'bench_args': ['--device', 'cuda', '--repeats', '5', '--iters', '10', '--warmup', '3'],
        'bench_archs': {'edsr_light_x2': [], 'swinir_light_x4': []},
        'bench_variants': 'baseline,spn_k4,spn_k4+split,spn_k4+split+amp,baseline+amp,spn_k4+split+amp16,'
                          'baseline+amp16',
        'compare': {'quick': False, 'network': {'num_feat': 64, 'num_block': 16}, 'lr': 2e-4, 'iters': 3000,
                    'val_freq': 500, 'seeds': [0, 1], 'jobs': 4, 'num_gpu': 1,
                    'train_set': {'gt_size': 96, 'batch_size_per_gpu': 16, 'num_worker_per_gpu': 2}},
    },
    'cpu': {
        # CPU: about 2 CPU-minutes in all; the budgets only catch a hang on a loaded CI machine
        'budgets': {'setup': 120, 'tests': 480, 'bench': 360, 'compare': 360},
        'bench_args': ['--device', 'cpu', '--repeats', '1', '--iters', '1', '--warmup', '1', '--threads', '1',
                       '--layers', 'relu1_2:1'],
        'bench_archs': {'edsr_light_x2': TINY_EDSR, 'swinir_light_x4': TINY_SWINIR},
        'bench_variants': 'baseline,spn_k4,spn_k4+split,spn_k4+split+amp,baseline+amp',
        'compare': {'quick': True, 'network': None, 'lr': None, 'iters': 20, 'val_freq': 10, 'seeds': [0],
                    'jobs': 2, 'num_gpu': 0},
    },
}


# =========================================================================== child processes
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


def child_env(ctx):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if ctx['cpu']:
        for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env.setdefault(var, '1')
    if ctx.get('pythonpath'):
        env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, env.get('PYTHONPATH')) if p)
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

    def step(self, label, cmd, timeout=None, cwd=REPO):
        """Run one command of this stage; False (and the stage marked) when it failed or ran out of time."""
        timeout = self.left() if timeout is None else min(timeout, self.left())
        res = run_step(cmd, os.path.join(self.out, f'{label}.log'), timeout, child_env(self.ctx), cwd)
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


# =========================================================================== stage: setup
PROBE = r'''
import importlib.util, json, platform, sys
info = {'python': platform.python_version(), 'executable': sys.executable,
        'missing': [m for m in sys.argv[1].split(',') if importlib.util.find_spec(m) is None],
        'xdist': importlib.util.find_spec('xdist') is not None}
spec = importlib.util.find_spec('mclir_basicsr')
info['mclir_basicsr'] = spec.origin if spec else None
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.cuda.is_available())
    if info['cuda']:
        info.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpu_count=torch.cuda.device_count())
except Exception as e:
    info['torch_error'] = f'{type(e).__name__}: {e}'
try:
    import mclir_basicsr, basicsr.train
    info['basicsr'] = basicsr.__version__
except Exception as e:
    info['import_error'] = f'{type(e).__name__}: {e}'
print('PROBE ' + json.dumps(info))
'''


def probe(st, label):
    """What the stages' interpreter has, as seen from outside the repo (so an install is what counts)."""
    with tempfile.TemporaryDirectory() as cwd:
        if not st.step(label, [PY, '-c', PROBE, ','.join(REQUIRED)], timeout=120, cwd=cwd):
            return None
    with open(os.path.join(st.out, f'{label}.log')) as f:
        lines = [line for line in f if line.startswith('PROBE ')]
    return json.loads(lines[-1][6:]) if lines else None


def install(st, info):
    """Bring what is missing without an index: the given wheels, then the repo itself (editable)."""
    ctx, changed = st.ctx, False
    if ctx['wheels'] and (info['missing'] or info.get('import_error')):
        wheels = sorted(glob.glob(os.path.join(ctx['wheels'], '*.whl')))
        if not wheels:
            st.fail('failed', f'--wheels {ctx["wheels"]}: no .whl file there')
        else:
            changed = st.step('pip_wheels', [PY, '-m', 'pip', 'install', '--no-index', '--no-deps', '--no-compile',
                                             *wheels], timeout=120)
    if info['mclir_basicsr'] is None:
        cmd = [PY, '-m', 'pip', 'install', '--no-index', '--no-deps', '--no-build-isolation', '-e', REPO]
        res = run_step(cmd, os.path.join(st.out, 'pip_editable.log'), min(120, st.left()), child_env(ctx))
        st.record['logs'].append('setup/pip_editable.log')
        print(f'  [setup] pip install -e . : rc {res["rc"]}, {res["seconds"]:.1f} s', flush=True)
        if res['rc'] != 0:
            ctx['pythonpath'] = True
            st.record['notes'].append('pip install -e . failed (setup/pip_editable.log): the stages import the repo '
                                      'through PYTHONPATH instead (only BasicSR\'s own scripts need the install)')
        changed = True
    return changed


def stage_setup(st):
    info = probe(st, 'probe')
    if info is None:
        return
    if not st.ctx['no_install'] and install(st, info):
        info = probe(st, 'probe_after_install') or info
    st.ctx['xdist'] = info.get('xdist', False)
    keys = ('python', 'executable', 'torch', 'cuda', 'gpu', 'gpu_count', 'cuda_version', 'cudnn', 'basicsr',
            'mclir_basicsr', 'missing')
    st.record['numbers'] = {k: info.get(k) for k in keys if k in info}
    problems = []
    if info['missing']:
        problems.append(f'missing Python modules: {", ".join(info["missing"])}'
                        + ('; for basicsr run `python scripts/gpu_check.py --fetch-wheels .whl` where PyPI is '
                           'reachable and pass --wheels .whl here' if 'basicsr' in info['missing'] else ''))
    for key in ('torch_error', 'import_error'):
        if info.get(key):
            problems.append(f'{key.replace("_", " ")}: {info[key]}')
    if not st.ctx['cpu'] and not info.get('cuda'):
        problems.append('torch.cuda.is_available() is false: no usable GPU here (use --cpu for the CPU form)')
    for problem in problems:
        st.fail('failed', problem)
    gpu = (f'{info.get("gpu")} (CUDA {info.get("cuda_version")}, cuDNN {info.get("cudnn")})'
           if info.get('cuda') else 'none')
    st.record['brief'] = (f'python {info.get("python")}, torch {info.get("torch")}, basicsr {info.get("basicsr")}, '
                          f'GPU: {gpu}')


# =========================================================================== stage: tests
def junit_counts(path):
    """{'tests', 'passed', 'failed', 'skipped', 'failures': [...], 'skip_reasons': {reason: n}} of a junit file."""
    counts = {'tests': 0, 'passed': 0, 'failed': 0, 'skipped': 0, 'failures': [], 'skip_reasons': {}}
    for case in ET.parse(path).getroot().iter('testcase'):
        name = f'{case.get("classname", "")}::{case.get("name")}'
        counts['tests'] += 1
        bad = case.find('failure') if case.find('failure') is not None else case.find('error')
        skip = case.find('skipped')
        if bad is not None:
            counts['failed'] += 1
            counts['failures'].append(name)
        elif skip is not None:
            counts['skipped'] += 1
            reason = (skip.get('message') or '').replace('Skipped: ', '')
            counts['skip_reasons'][reason] = counts['skip_reasons'].get(reason, 0) + 1
        else:
            counts['passed'] += 1
    return counts


def stage_tests(st):
    junit = os.path.join(st.out, 'junit.xml')
    cmd = [PY, '-m', 'pytest', '-m', 'device', 'tests', '-q', '-rs', '-p', 'no:cacheprovider',
           '--continue-on-collection-errors', f'--junitxml={junit}']
    if not st.ctx['cpu'] and st.ctx.get('xdist'):
        cmd += ['-n', '4']  # the trainings are separate processes: 4 at a time on one GPU
    st.step('pytest', cmd)
    if not os.path.exists(junit):
        return
    counts = junit_counts(junit)
    st.record['numbers'] = counts
    if counts['passed'] == 0:
        st.fail('failed', 'no device test passed')
    st.record['brief'] = f'{counts["passed"]} passed, {counts["failed"]} failed, {counts["skipped"]} skipped'


# =========================================================================== stage: bench
def bench_rows(path):
    with open(path) as f:
        report = json.load(f)
    rows = {}
    for r in report['results']:
        rows[f'{r["device"]}:{r["variant"]}' if len(report['devices']) > 1 else r['variant']] = (
            {'error': r['error']} if 'error' in r else
            {'s_per_iter': r['median_s'], 'x_baseline': r.get('ratio_baseline'), 'x_floor': r.get('ratio_floor'),
             'peak_mem_mb': r.get('peak_mem_mb')})
    return rows


def stage_bench(st):
    mode = MODES[st.ctx['mode']]
    archs = list(mode['bench_archs'].items())
    briefs = []
    for i, (arch, extra) in enumerate(archs):
        path = os.path.join(st.out, f'bench_{arch}.json')
        cmd = [PY, os.path.join(REPO, 'scripts', 'dev', 'bench_step.py'), '--arch', arch, '--variants',
               mode['bench_variants'], *mode['bench_args'], *extra, '--json', path]
        st.step(f'bench_{arch}', cmd, timeout=st.left() / (len(archs) - i))
        if not os.path.exists(path):
            continue
        rows = bench_rows(path)
        st.record['numbers'][arch] = rows
        for variant, row in rows.items():
            if 'error' in row:
                st.fail('failed', f'{arch} {variant}: {row["error"]}')
        base = rows.get('baseline', {}).get('s_per_iter')
        ratios = ', '.join(f'{v} {r["x_baseline"]:.2f}x' for v, r in rows.items()
                           if v != 'baseline' and r.get('x_baseline'))
        briefs.append(f'{arch}: baseline {base:.4f} s/iter; {ratios}' if base else f'{arch}: no baseline row')
    st.record['brief'] = ' | '.join(briefs)


# =========================================================================== stage: compare
def comparison_options(st, demo_out, cfg):
    """The demo's two option files, with the check's network, device, learning rate and batch."""
    import yaml  # here: this module must start without PyYAML (setup reports it missing)
    paths = []
    for label in ('baseline', 'spn'):
        with open(os.path.join(demo_out, 'options', f'demo_{label}.yml')) as f:
            opt = yaml.safe_load(f)
        opt['name'] = f'check_{label}'
        opt['num_gpu'] = cfg['num_gpu']
        opt['network_g'].update(cfg['network'] or {})
        if cfg['lr']:
            opt['train']['optim_g']['lr'] = cfg['lr']
            opt['train']['scheduler']['eta_min'] = cfg['lr'] / 100
        opt['datasets']['train'].update(cfg.get('train_set', {}))
        path = os.path.join(st.out, f'check_{label}.yml')
        with open(path, 'w') as f:
            yaml.safe_dump(opt, f, sort_keys=False)
        paths.append(path)
    return paths


def stage_compare(st):
    cfg = MODES[st.ctx['mode']]['compare']
    demo_out = os.path.join(st.out, 'demo')
    if not st.step('demo_data', [PY, '-m', 'mclir_basicsr.demo', '--data-only', '--out', demo_out]
                   + (['--quick'] if cfg['quick'] else [])):
        return
    base, spn = comparison_options(st, demo_out, cfg)
    result = os.path.join(st.out, 'result')
    st.step('compare', [PY, '-m', 'mclir_basicsr.compare', base, spn, '--seeds', *map(str, cfg['seeds']),
                        '--iters', str(cfg['iters']), '--val-freq', str(cfg['val_freq']), '--jobs', str(cfg['jobs']),
                        '--out', result, '--name', 'check'])
    summary = os.path.join(result, 'summary.json')
    if not os.path.exists(summary):
        return
    with open(summary) as f:
        stats = json.load(f)['stats']
    keys = ('seeds', 'psnr_delta_mean', 'psnr_delta_std', 'ssim_delta_mean', 'spn_wins', 's_per_iter_baseline',
            's_per_iter_spn', 'time_ratio')
    st.record['numbers'] = dict({k: stats.get(k) for k in keys}, iterations=cfg['iters'],
                                network=cfg['network'] or 'demo --quick', table='compare/result/table.md')
    st.record['brief'] = (f'dPSNR {stats["psnr_delta_mean"]:+.3f} +- {stats["psnr_delta_std"]:.3f} dB over seeds '
                          f'{stats["seeds"]} ({cfg["iters"]} it), SPN better in {stats["spn_wins"]}; s/iter '
                          f'{stats["s_per_iter_baseline"]:.4f} vs {stats["s_per_iter_spn"]:.4f} '
                          f'({stats["time_ratio"]:.2f}x)')


STAGE_FUNCS = {'setup': stage_setup, 'tests': stage_tests, 'bench': stage_bench, 'compare': stage_compare}


# =========================================================================== summary, archive, wheels
def summary_text(summary):
    lines = [f'gpu_check ({summary["mode"]} mode) in {summary["total_s"]:.0f} s, output {summary["out"]}',
             f'{"stage":<8} {"status":<8} {"seconds":>8} {"budget":>7}  key numbers']
    for r in summary['stages']:
        lines.append(f'{r["stage"]:<8} {r["status"]:<8} {r["seconds"]:>8.1f} {r["budget_s"]:>7}  {r.get("brief", "")}')
        lines.extend(f'{"":<8} note: {n}' for n in r['notes'])
    return '\n'.join(lines)


def write_summary(summary):
    summary['total_s'] = round(time.time() - summary['started_unix'], 1)
    with open(os.path.join(summary['out'], 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(summary['out'], 'summary.txt'), 'w') as f:
        f.write(summary_text(summary) + '\n')


def archive(out, path, max_bytes=4 << 20):
    """OUT_DIR as one .tar.gz, without checkpoints, training states, the demo's generated images (and no file
    over max_bytes)."""
    def keep(info):
        skip = (info.name.endswith(('.pth', '.state', '/demo/data'))  # hard links to checkpoints too
                or (info.isfile() and info.size > max_bytes))
        return None if skip else info
    with tarfile.open(path, 'w:gz') as tar:
        tar.add(out, arcname=os.path.basename(os.path.normpath(out)), filter=keep)
    return path


def fetch_wheels(folder):
    """Where PyPI is reachable: put the wheels the GPU image lacks (basicsr) into `folder`, git-ignored."""
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    rc = subprocess.call([PY, '-m', 'pip', 'wheel', '--no-deps', '-w', folder, BASICSR_WHEEL])
    if rc != 0:
        print(f'pip wheel {BASICSR_WHEEL} failed (exit status {rc})', file=sys.stderr)
        return rc
    rel = os.path.relpath(folder, REPO)
    if not rel.startswith('..') and subprocess.call(['git', 'check-ignore', '-q', rel], cwd=REPO) == 1:
        exclude = os.path.join(REPO, '.git', 'info', 'exclude')
        with open(exclude, 'a') as f:
            f.write(f'/{rel}/\n')
        print(f'added /{rel}/ to {exclude} (a local ignore, so the wheels are never committed)')
    print(f'wheels in {folder}: {", ".join(sorted(os.listdir(folder)))}')
    if rel.startswith('..'):
        print('to carry them to the GPU machine, put them in a git-ignored folder inside the repo, e.g. .whl')
    else:
        print(f'on the GPU machine: python3 scripts/gpu_check.py --wheels {rel} OUT_DIR (carry {rel})')
    return 0


# =========================================================================== main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', nargs='?', help='output folder (created)')
    p.add_argument('--cpu', action='store_true', help='tiny sizes on CPU (what the test suite runs)')
    p.add_argument('--stages', default=','.join(STAGES), help=f'comma list of {", ".join(STAGES)} (default: all)')
    p.add_argument('--budget', action='append', default=[], metavar='STAGE=SECONDS',
                   help='override a stage\'s time budget, e.g. --budget compare=200')
    p.add_argument('--wheels', help='folder of wheels to install (no index, no deps) when modules are missing')
    p.add_argument('--no-install', action='store_true', help='never pip install anything (setup only reports)')
    p.add_argument('--archive', metavar='PATH.tar.gz', help='also pack OUT_DIR (without checkpoints) into PATH')
    p.add_argument('--fetch-wheels', metavar='DIR', help='only fetch the wheels the GPU image lacks into DIR')
    return p


def make_context(args, parser):
    mode = 'cpu' if args.cpu else 'gpu'
    budgets = dict(MODES[mode]['budgets'])
    for item in args.budget:
        stage, _, seconds = item.partition('=')
        if stage not in budgets or not seconds.replace('.', '', 1).isdigit():
            parser.error(f'--budget {item!r}: expected STAGE=SECONDS with STAGE one of {", ".join(STAGES)}')
        budgets[stage] = float(seconds)
    stages = [s.strip() for s in args.stages.split(',') if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f'--stages: unknown stage(s) {", ".join(unknown)} (known: {", ".join(STAGES)})')
    if args.wheels and not os.path.isdir(args.wheels):
        parser.error(f'--wheels {args.wheels}: no such folder')
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    return {'mode': mode, 'cpu': args.cpu, 'budgets': budgets, 'stages': stages, 'out': out,
            'wheels': args.wheels and os.path.abspath(args.wheels), 'no_install': args.no_install}


def run_stages(ctx):
    summary = {'mode': ctx['mode'], 'out': ctx['out'], 'started_unix': time.time(), 'host': platform.node(),
               'budgets_s': ctx['budgets'], 'stages': []}
    for name in ctx['stages']:
        st = Stage(name, ctx)
        setup = next((r for r in summary['stages'] if r['stage'] == 'setup'), None)
        print(f'== {name} (budget {st.budget:.0f} s)', flush=True)
        if setup is not None and setup['status'] != 'ok':
            st.fail('skipped', 'setup failed (see its notes)')
        else:
            try:
                STAGE_FUNCS[name](st)
            except Exception as e:  # a broken stage must not cost the others their turn
                st.fail('failed', f'{type(e).__name__}: {e}')
        summary['stages'].append(st.done())
        print(f'   {name}: {st.record["status"]} in {st.record["seconds"]:.1f} s  {st.record.get("brief", "")}',
              flush=True)
        write_summary(summary)
    return summary


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(args.fetch_wheels)
    if not args.out:
        parser.error('OUT_DIR is required (or --fetch-wheels DIR)')
    ctx = make_context(args, parser)
    summary = run_stages(ctx)
    print('\n' + summary_text(summary), flush=True)
    if args.archive:
        print(f'archive: {archive(ctx["out"], os.path.abspath(args.archive))}')
    return 0 if all(r['status'] == 'ok' for r in summary['stages']) else 1


if __name__ == '__main__':
    sys.exit(main())
