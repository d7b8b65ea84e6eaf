"""Does SPN help, and what does it cost? Train a baseline and an SPN run with the same seed and budget.

    python -m mclir_basicsr.compare BASELINE.yml SPN.yml [--out DIR] [--seeds 0 1 2] [--iters N]
    python -m mclir_basicsr.compare OPT.yml --spn on     # OPT.yml is the baseline: the SPN run adds SPN
    python -m mclir_basicsr.compare OPT.yml --spn off    # OPT.yml uses SPN: the baseline run drops it

Both runs (per seed) go through BasicSR's own pipeline as subprocesses
(``python -m mclir_basicsr.train`` then ``python -m mclir_basicsr.test``) with the output folder as
working directory, so ``experiments/``, ``tb_logger/`` and ``results/`` land there. Of the option
files only ``name``, ``manual_seed``, ``train.total_iter`` (``--iters``), ``val.val_freq``
(``--val-freq``) and paths (made absolute; ``resume_state`` cleared) are rewritten, so any
architecture and task (SR or scale-1 restoration) works. Metrics come from BasicSR's outputs: the
validation curve from the training log, per-image PSNR/SSIM (``basicsr.metrics``) from the images
the test pipeline saves for the final checkpoint, seconds per iteration from the logged iteration
times (validation excluded). Written into ``--out``:

    table.csv / table.md      per validation image and mean (mean over seeds): PSNR, SSIM, deltas
    runs.csv                  per run: seed, mean PSNR/SSIM, seconds per iteration, wall time
    psnr_curve.png            validation PSNR against iterations (top), SPN - baseline delta (bottom)
    crops.png                 input (upscaled), baseline, SPN, ground truth side by side
    checkpoints/              the final network of every run (<baseline|spn>_seed<S>.pth)
    summary.json              all of the above as data
"""
import argparse
import copy
import csv
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import yaml

RUN_LABELS = ('baseline', 'spn')
# The SPN settings added by ``--spn on`` unless given: the demo's, measured by scripts/sweep_demo.py.
DEFAULT_SPN = OrderedDict([('type', 'SPNLoss'), ('loss_weight', 0.1), ('feature', 'pixel'), ('criterion', 'l1'),
                           ('mode', 'subtract')])
DEFAULT_NEGATIVES = OrderedDict([('update_every', [50, 200]), ('decay', [0.1, 0.1]), ('init_decay', 0.1)])
_OFFICIAL_KEYS = ('neg_iter', 'neg_decay', 'neg_start')


class CompareError(RuntimeError):
    """A run failed or the option files cannot be compared; the message says which and why."""


# --------------------------------------------------------------------------- option files
def _yaml_loader_dumper():
    from basicsr.utils.options import ordered_yaml
    return ordered_yaml()


def load_options(path):
    loader, _ = _yaml_loader_dumper()
    with open(path, encoding='utf-8') as f:
        opt = yaml.load(f, Loader=loader)
    if not isinstance(opt, dict):
        raise CompareError(f'{path}: not a BasicSR option file (a mapping)')
    return opt


def save_options(path, opt):
    _, dumper = _yaml_loader_dumper()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        yaml.dump(_to_plain(opt), f, Dumper=dumper, sort_keys=False, default_flow_style=None)
    return path


def _to_plain(obj):
    if isinstance(obj, dict):
        return OrderedDict((k, _to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def has_spn(opt):
    train = opt.get('train') or {}
    return opt.get('model_type') == 'ModelContrastiveModel' or 'spn_opt' in train or \
        any(k in train for k in _OFFICIAL_KEYS)


def strip_spn(opt):
    """The same options without SPN: SRModel, no negatives, no SPN term."""
    opt = copy.deepcopy(opt)
    train = opt.get('train') or {}
    official = any(k in train for k in _OFFICIAL_KEYS)
    for key in ('spn_opt', 'negatives') + _OFFICIAL_KEYS:
        train.pop(key, None)
    if official:  # the official fork's subtracted perceptual_opt is the SPN term
        train.pop('perceptual_opt', None)
    if opt.get('model_type') == 'ModelContrastiveModel':
        opt['model_type'] = 'SRModel'
    return opt


def add_spn(opt, spn_opt=None, negatives=None):
    """The same options with SPN (ModelContrastiveModel is SRModel plus SPN, so only SRModel-based
    model types can be switched)."""
    if opt.get('model_type') not in ('SRModel', 'SwinIRModel', 'ModelContrastiveModel'):
        raise CompareError(
            f'--spn on: model_type {opt.get("model_type")!r} cannot be switched to ModelContrastiveModel (an SRModel '
            'with SPN); write the SPN option file yourself and pass both files')
    opt = copy.deepcopy(opt)
    opt['model_type'] = 'ModelContrastiveModel'
    opt['train']['spn_opt'] = OrderedDict(spn_opt or DEFAULT_SPN)
    opt['train']['negatives'] = OrderedDict(negatives or DEFAULT_NEGATIVES)
    return opt


def _absolute(path, base):
    if not isinstance(path, str) or not path or '://' in path:
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def rewrite_options(opt, name, seed, base_dir, iters=None, val_freq=None):
    """Only what a fair, self-contained run needs: name, seed, budget, absolute paths, no resume."""
    opt = copy.deepcopy(opt)
    opt['name'] = name
    opt['manual_seed'] = int(seed)
    if iters is not None:
        opt['train']['total_iter'] = int(iters)
    if val_freq is not None and opt.get('val') is not None:
        opt['val']['val_freq'] = int(val_freq)
    for dataset in (opt.get('datasets') or {}).values():
        for key in list(dataset):
            if key.startswith('dataroot') or key.startswith('meta_info'):
                dataset[key] = _absolute(dataset[key], base_dir)
    path = opt.setdefault('path', OrderedDict())
    for key in list(path):
        if key.startswith('pretrain_network'):
            path[key] = _absolute(path[key], base_dir)
    path['resume_state'] = None
    for key in ('experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root'):
        path.pop(key, None)
    for spn_key in ('spn_opt', 'perceptual_opt'):
        section = opt['train'].get(spn_key)
        if isinstance(section, dict) and section.get('pretrained'):
            section['pretrained'] = _absolute(section['pretrained'], base_dir)
    return opt


def val_datasets(opt):
    return [(k, v) for k, v in (opt.get('datasets') or {}).items() if k.split('_')[0] in ('val', 'test')]


def test_options(train_opt, name, checkpoint):
    """A test option file for a trained run: its network, its validation sets, images saved."""
    ema = (train_opt.get('train') or {}).get('ema_decay', 0) or 0
    val = train_opt.get('val') or {}
    test = OrderedDict(name=name, model_type=train_opt['model_type'], scale=train_opt.get('scale', 1),
                       num_gpu=train_opt.get('num_gpu', 0), manual_seed=train_opt.get('manual_seed', 0))
    test['datasets'] = OrderedDict((k, copy.deepcopy(v)) for k, v in val_datasets(train_opt))
    test['network_g'] = copy.deepcopy(train_opt['network_g'])
    test['path'] = OrderedDict(pretrain_network_g=checkpoint, strict_load_g=True,
                               param_key_g='params_ema' if ema > 0 else 'params')
    test['val'] = OrderedDict(save_img=True, suffix=None)
    if val.get('metrics'):
        test['val']['metrics'] = copy.deepcopy(val['metrics'])
    return test


def metric_settings(opt):
    """(psnr kwargs, ssim kwargs) as the option file's validation metrics define them."""
    scale = opt.get('scale', 1)
    psnr = ssim = None
    for m in ((opt.get('val') or {}).get('metrics') or {}).values():
        kwargs = {k: v for k, v in m.items() if k in ('crop_border', 'test_y_channel')}
        if m.get('type') == 'calculate_psnr' and psnr is None:
            psnr = kwargs
        if m.get('type') == 'calculate_ssim' and ssim is None:
            ssim = kwargs
    default = {'crop_border': scale if scale > 1 else 0, 'test_y_channel': False}
    psnr = dict(default, **(psnr or {}))
    ssim = dict(psnr, **(ssim or {}))
    return psnr, ssim


def spn_description(opt):
    if not has_spn(opt):
        return 'none'
    train = opt['train']
    if 'spn_opt' in train:
        from mclir_basicsr.options import parse_mclir_options
        cfg = parse_mclir_options(opt)
        s, n = cfg.spn, cfg.negatives
        extra = f', max_distance {s["max_distance"]}' if s['max_distance'] else ''
        return (f'feature {s["feature"]}, lambda {s["loss_weight"]:g}, mode {s["mode"]}, criterion {s["criterion"]}'
                f'{extra}; K={len(n["update_every"])} negatives, update_every {n["update_every"]}, '
                f'decay {n["decay"]}, init_decay {n["init_decay"]:g}')
    return 'official fork keys (neg_iter / subtracted perceptual_opt)'


# --------------------------------------------------------------------------- logs
_ITER_RE = re.compile(r'iter:\s*([\d,]+).*?\[eta: ([^,\]]+), time \(data\): ([\d.]+) \(([\d.]+)\)\]\s*(.*)')
_LOSS_RE = re.compile(r'(\w+): ([-+\d.eE]+|nan|inf)')
_START_RE = re.compile(r'Start training from epoch: \d+, iter: (\d+)')
_VAL_RE = re.compile(r'Validation (\S+)')
_METRIC_RE = re.compile(r'# (\w+): ([-+\d.eE]+|nan|inf)')


def parse_iter_line(line):
    """(iteration, eta string, seconds per iteration, {loss: value}) of a BasicSR log line, or None."""
    m = _ITER_RE.search(line)
    if not m:
        return None
    losses = {k: float(v) for k, v in _LOSS_RE.findall(m.group(5))}
    return int(m.group(1).replace(',', '')), m.group(2).strip(), float(m.group(3)), losses


def parse_train_log(text, val_freq, total_iter):
    """From a BasicSR training log: {'curves': {dataset: {metric: [(iter, value)]}}, 'iter_times': [...],
    'losses': [(iter, {name: value})]}. Validations happen at multiples of val_freq and once more at
    the end (counted as total_iter; a duplicate of the last one is dropped)."""
    curves, iter_times, losses = OrderedDict(), [], []
    last_val, ended, current = OrderedDict(), False, 0
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _START_RE.search(line)
        if m:
            current = int(m.group(1))
            last_val = OrderedDict()
        parsed = parse_iter_line(line)
        if parsed:
            iter_times.append(parsed[2])
            losses.append((parsed[0], parsed[3]))
        if 'End of training' in line:
            ended = True
        m = _VAL_RE.search(line)
        if m and 'INFO' in line:
            dataset = m.group(1)
            prev = last_val.get(dataset, current)
            it = total_iter if ended else (prev // val_freq + 1) * val_freq
            values = {}
            j = i + 1
            while j < len(lines) and _METRIC_RE.search(lines[j]) and 'INFO' not in lines[j]:
                k, v = _METRIC_RE.search(lines[j]).groups()
                values[k] = float(v)
                j += 1
            i = j - 1
            last_val[dataset] = it
            for k, v in values.items():
                points = curves.setdefault(dataset, OrderedDict()).setdefault(k, [])
                if points and points[-1][0] == it:
                    continue
                points.append((it, v))
        i += 1
    return {'curves': curves, 'iter_times': iter_times, 'losses': losses}


def latest_file(pattern):
    files = glob.glob(pattern)
    return max(files, key=os.path.getmtime) if files else None


# --------------------------------------------------------------------------- running
@dataclass
class Run:
    label: str                      # 'baseline' or 'spn'
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
        shown = [k for k in ('l_pix', 'l_spn') if k in losses] or list(losses)[:2]
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
        m = _METRIC_RE.search(line)
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
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1, errors='replace')
            procs[run.name] = proc
            tail = []
            for line in proc.stdout:
                log.write(line)
                line = line.rstrip('\n')
                tail = (tail + [line])[-60:]
                progress.line(run, line)
            rc = proc.wait()
            if phase == 'train':
                run.wall_s = time.time() - t0
            if rc != 0:
                run.state['error'] = (f'{run.title}: `{" ".join(cmd)}` failed with exit code {rc} (cwd {cwd}); '
                                      f'full output in {log_path}; last lines:\n' + '\n'.join(tail[-40:]))
                stop.set()
                return
    run.state.update(done=True, phase=f'{time.time() - start:.0f}s')


def run_all(runs, out, jobs=2, threads=None, verbose=False, progress_interval=15.0, stream=None, test=True):
    """Train then (``test``) test every run, ``jobs`` at a time, each child with ``threads`` CPU threads."""
    jobs = max(1, int(jobs))
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    env = _child_env(threads)
    os.makedirs(os.path.join(out, 'logs'), exist_ok=True)
    progress = Progress(runs, stream=stream, interval=progress_interval, verbose=verbose)
    pending, active, procs, stop = list(runs), [], {}, threading.Event()
    try:
        while pending or active:
            while pending and len(active) < jobs and not stop.is_set():
                run = pending.pop(0)
                steps = [('train', [sys.executable, '-m', 'mclir_basicsr.train', '-opt', run.option_file])]
                if test:
                    steps.append(('test', [sys.executable, '-m', 'mclir_basicsr.test', '-opt', run.test_option_file]))
                log_path = os.path.join(out, 'logs', f'{run.label}_seed{run.seed}.log')
                t = threading.Thread(target=_run_steps, args=(run, steps, out, env, progress, log_path, procs, stop),
                                     daemon=True)
                t.start()
                active.append((run, t))
                progress.message(f'started {run.title} ({run.name}, {run.total_iter} iterations, '
                                 f'{threads} thread(s)); log: {log_path}')
            if stop.is_set():
                pending.clear()
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.terminate()
            for run, t in list(active):
                if not t.is_alive():
                    active.remove((run, t))
                    if 'error' not in run.state:
                        progress.message(f'finished {run.title}: {run.total_iter} iterations in {run.wall_s:.0f}s')
            progress.redraw([r for r, _ in active])
            time.sleep(0.5)
    except KeyboardInterrupt:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        raise
    progress.message('')
    errors = [r.state['error'] for r in runs if 'error' in r.state and not r.state['error'].startswith('stopped')]
    if errors:
        raise CompareError('\n\n'.join(errors))


# --------------------------------------------------------------------------- metrics
def load_val_images(opt):
    """[(dataset name, image name, gt uint8 BGR, lq uint8 BGR)] of the validation sets, as BasicSR's
    validation sees them (the dataset classes of the option file)."""
    from basicsr.data import build_dataset
    from basicsr.utils import tensor2img
    items = []
    scale = opt.get('scale', 1)
    for key, dataset_opt in val_datasets(opt):
        dataset_opt = copy.deepcopy(dataset_opt)
        dataset_opt.setdefault('phase', key.split('_')[0])
        dataset_opt.setdefault('scale', scale)
        dataset = build_dataset(dataset_opt)
        for idx in range(len(dataset)):
            data = dataset[idx]
            if 'gt' not in data:
                raise CompareError(f'validation set {dataset_opt["name"]} has no ground truth: nothing to compare')
            name = os.path.splitext(os.path.basename(data['lq_path']))[0]
            items.append((dataset_opt['name'], name, tensor2img([data['gt']]), tensor2img([data['lq']])))
    if not items:
        raise CompareError('the option file has no validation set (datasets.val): nothing to compare')
    return items


def image_metrics(run, out, images, psnr_kw, ssim_kw):
    """Per-image PSNR/SSIM of the test pipeline's saved outputs of a run."""
    import cv2
    from basicsr.metrics import calculate_psnr, calculate_ssim
    test_name = f'{run.name}_test'
    rows = []
    for dataset, name, gt, _ in images:
        path = os.path.join(out, 'results', test_name, 'visualization', dataset, f'{name}_{test_name}.png')
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise CompareError(f'{run.title}: the test pipeline did not save {path}')
        if img.ndim == 2 and gt.ndim == 3:
            img = img[..., None]
        rows.append({'dataset': dataset, 'image': name, 'path': path,
                     'psnr': float(calculate_psnr(img, gt, **psnr_kw)),
                     'ssim': float(calculate_ssim(img, gt, **ssim_kw))})
    return rows


def collect(run, out):
    """Parse the run's BasicSR training log and gather timings and the validation curve."""
    log = latest_file(os.path.join(out, 'experiments', run.name, f'train_{run.name}_*.log'))
    if log is None:
        raise CompareError(f'{run.title}: no training log in {os.path.join(out, "experiments", run.name)}')
    with open(log, encoding='utf-8', errors='replace') as f:
        parsed = parse_train_log(f.read(), run.val_freq or run.total_iter, run.total_iter)
    curve, metric_name, final = [], None, {}
    if parsed['curves']:
        dataset, metrics = next(iter(parsed['curves'].items()))
        metric_name = 'psnr' if 'psnr' in metrics else next(iter(metrics))
        curve = metrics[metric_name]
        final = {k: v[-1][1] for k, v in metrics.items() if v}  # the end-of-training validation
    times = parsed['iter_times']
    # no iteration line logged (print_freq > total_iter): fall back to the wall time of the training process
    s_per_iter = statistics.fmean(times) if times else run.wall_s / max(1, run.total_iter)
    return {'log': log, 'curve': curve, 'curve_metric': metric_name, 'final_val': final, 's_per_iter': s_per_iter,
            'final_losses': parsed['losses'][-1][1] if parsed['losses'] else {}}


# --------------------------------------------------------------------------- outputs
def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else float('nan')


def _std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs, images):
    """Per-image table (mean over seeds) and per-seed statistics."""
    seeds = sorted({r.seed for r in runs})
    by = {(r.label, r.seed): r for r in runs}
    keys = [(d, n) for d, n, _, _ in images]
    multi = len({d for d, _ in keys}) > 1
    table = []
    for i, (dataset, name) in enumerate(keys):
        row = OrderedDict(image=f'{dataset}/{name}' if multi else name)
        for metric in ('psnr', 'ssim'):
            for label in RUN_LABELS:
                row[f'{metric}_{label}'] = _mean([by[label, s].result['images'][i][metric] for s in seeds])
            row[f'{metric}_delta'] = row[f'{metric}_spn'] - row[f'{metric}_baseline']
        table.append(row)
    mean = OrderedDict(image='mean')
    for key in table[0]:
        if key != 'image':
            mean[key] = _mean([r[key] for r in table])
    per_seed = []
    for s in seeds:
        b, p = by['baseline', s].result, by['spn', s].result
        per_seed.append(OrderedDict(
            seed=s, psnr_baseline=b['psnr'], psnr_spn=p['psnr'], psnr_delta=p['psnr'] - b['psnr'],
            ssim_baseline=b['ssim'], ssim_spn=p['ssim'], ssim_delta=p['ssim'] - b['ssim'],
            s_per_iter_baseline=b['s_per_iter'], s_per_iter_spn=p['s_per_iter'],
            wall_s_baseline=by['baseline', s].wall_s, wall_s_spn=by['spn', s].wall_s))
    deltas = [r['psnr_delta'] for r in per_seed]
    ssim_deltas = [r['ssim_delta'] for r in per_seed]
    stats = OrderedDict(
        seeds=seeds, psnr_delta_mean=_mean(deltas), psnr_delta_std=_std(deltas),
        ssim_delta_mean=_mean(ssim_deltas), ssim_delta_std=_std(ssim_deltas),
        spn_wins=sum(d > 0 for d in deltas),
        s_per_iter_baseline=_mean([r['s_per_iter_baseline'] for r in per_seed]),
        s_per_iter_spn=_mean([r['s_per_iter_spn'] for r in per_seed]))
    stats['time_ratio'] = stats['s_per_iter_spn'] / stats['s_per_iter_baseline']
    return table + [mean], per_seed, stats


def write_csv(path, rows):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f'{v:.6f}' if isinstance(v, float) else v) for k, v in row.items()})


def markdown(table, per_seed, stats, info):
    seeds = stats['seeds']
    over = f'mean over {len(seeds)} seeds' if len(seeds) > 1 else f'seed {seeds[0]}'
    lines = [f'## {info["title"]}', '',
             f'- baseline: `{info["baseline_name"]}`; SPN: `{info["spn_name"]}` ({info["spn"]})',
             f'- {info["iters"]} iterations each, same seed(s) {seeds}, same data order and initialisation',
             f'- PSNR/SSIM of the final networks on the validation images ({info["metric_note"]}), {over}', '',
             '| image | PSNR baseline | PSNR SPN | Δ PSNR (dB) | SSIM baseline | SSIM SPN | Δ SSIM |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in table:
        b = '**' if r['image'] == 'mean' else ''
        lines.append(f'| {b}{r["image"]}{b} | {r["psnr_baseline"]:.3f} | {r["psnr_spn"]:.3f} | '
                     f'{b}{r["psnr_delta"]:+.3f}{b} | {r["ssim_baseline"]:.4f} | {r["ssim_spn"]:.4f} | '
                     f'{r["ssim_delta"]:+.4f} |')
    lines += ['', '| run | seconds / iteration | wall time of training (s) |', '| --- | ---: | ---: |',
              f'| baseline | {stats["s_per_iter_baseline"]:.4f} | '
              f'{_mean([r["wall_s_baseline"] for r in per_seed]):.0f} |',
              f'| SPN | {stats["s_per_iter_spn"]:.4f} | {_mean([r["wall_s_spn"] for r in per_seed]):.0f} |', '',
              f'SPN costs {stats["time_ratio"]:.2f}x the baseline\'s time per iteration '
              '(logged iteration times, validation excluded).']
    if len(seeds) > 1:
        lines += ['', '| seed | PSNR baseline | PSNR SPN | Δ PSNR (dB) | Δ SSIM |',
                  '| ---: | ---: | ---: | ---: | ---: |']
        for r in per_seed:
            lines.append(f'| {r["seed"]} | {r["psnr_baseline"]:.3f} | {r["psnr_spn"]:.3f} | {r["psnr_delta"]:+.3f} | '
                         f'{r["ssim_delta"]:+.4f} |')
        lines += ['', f'Δ PSNR over {len(seeds)} seeds: {stats["psnr_delta_mean"]:+.3f} ± '
                      f'{stats["psnr_delta_std"]:.3f} dB (mean ± std); SPN better in {stats["spn_wins"]}/{len(seeds)} '
                      f'seeds. Δ SSIM: {stats["ssim_delta_mean"]:+.4f} ± {stats["ssim_delta_std"]:.4f}.']
    else:
        lines += ['', 'One seed: differences of a few hundredths of a dB are within seed-to-seed noise at this '
                      'scale; use several seeds (`--seeds 0 1 2`) before concluding.']
    return '\n'.join(lines) + '\n'


def _matplotlib():
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt


def plot_curves(path, runs, title=''):
    """Validation PSNR against iterations (thin: each seed, thick: mean) and the SPN - baseline delta."""
    plt = _matplotlib()
    seeds = sorted({r.seed for r in runs})
    by = {(r.label, r.seed): r for r in runs}
    fig, (ax, ax_d) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={'height_ratios': [3, 2]})
    colors = {'baseline': 'tab:blue', 'spn': 'tab:red'}
    names = {'baseline': 'baseline (L1)', 'spn': 'SPN'}
    metric = next((r.result['curve_metric'] for r in runs if r.result.get('curve_metric')), 'psnr')
    common = None
    for label in RUN_LABELS:
        curves = [dict(by[label, s].result['curve']) for s in seeds]
        for c in curves:
            if c and len(seeds) > 1:
                ax.plot(list(c), list(c.values()), color=colors[label], alpha=0.3, lw=0.8)
        its = sorted(set.intersection(*[set(c) for c in curves])) if all(curves) else []
        common = its if common is None else [i for i in common if i in its]
        if its:
            ax.plot(its, [_mean([c[i] for c in curves]) for i in its], color=colors[label], lw=2,
                    marker='o' if len(its) < 30 else None, ms=3,
                    label=names[label] + (f' (mean of {len(seeds)} seeds)' if len(seeds) > 1 else ''))
    ax.set_ylabel(f'validation {metric} (dB)')
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or 'validation during training')
    deltas = []
    for s in seeds:
        b, p = dict(by['baseline', s].result['curve']), dict(by['spn', s].result['curve'])
        its = [i for i in (common or []) if i in b and i in p]
        d = [p[i] - b[i] for i in its]
        deltas.append(d)
        if its:
            ax_d.plot(its, d, color='gray', alpha=0.5, lw=0.8, label='per seed' if s == seeds[0] else None)
    if common and deltas and all(len(d) == len(common) for d in deltas):
        mean = [_mean(col) for col in zip(*deltas)]
        std = [_std(list(col)) for col in zip(*deltas)]
        ax_d.plot(common, mean, color='black', lw=2, label='mean' + (' ± std' if len(seeds) > 1 else ''))
        if len(seeds) > 1:
            ax_d.fill_between(common, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                              color='black', alpha=0.15)
    ax_d.axhline(0, color='k', lw=0.5)
    ax_d.set_xlabel('iteration')
    ax_d.set_ylabel(f'Δ {metric}, SPN - baseline (dB)')
    ax_d.grid(alpha=0.3)
    ax_d.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _crop_box(err, size):
    """Top-left corner of the size x size window with the largest summed error (integral image)."""
    import numpy as np
    h, w = err.shape
    size = min(size, h, w)
    ii = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x), size


def plot_crops(path, images, base_rows, spn_rows, scale, crop=64, max_images=6):
    """Side by side crops: input (bicubic-upscaled for SR), baseline, SPN, ground truth. The window is
    where the baseline's error is largest (chosen without looking at SPN)."""
    import cv2
    import numpy as np
    plt = _matplotlib()
    n = min(len(images), max_images)
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n + 0.4), squeeze=False)
    for row in range(n):
        _, name, gt, lq = images[row]
        base = cv2.imread(base_rows[row]['path'], cv2.IMREAD_UNCHANGED)
        spn = cv2.imread(spn_rows[row]['path'], cv2.IMREAD_UNCHANGED)
        inp = cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC) if lq.shape != gt.shape \
            else lq
        err = np.abs(base.astype(np.float32) - gt.astype(np.float32)).reshape(gt.shape[0], gt.shape[1], -1).mean(-1)
        y, x, size = _crop_box(err, crop)
        panels = [('input (bicubic)' if scale > 1 else 'input', inp), ('baseline', base), ('SPN', spn),
                  ('ground truth', gt)]
        for col, (title, img) in enumerate(panels):
            patch = img[y:y + size, x:x + size]
            patch = patch[..., ::-1] if patch.ndim == 3 and patch.shape[2] == 3 else patch.squeeze()
            ax = axes[row][col]
            ax.imshow(patch, interpolation='nearest', cmap='gray' if patch.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if col in (1, 2):
                from basicsr.metrics import calculate_psnr
                p = calculate_psnr(img[y:y + size, x:x + size], gt[y:y + size, x:x + size], 0)
                title = f'{title}\ncrop {p:.2f} dB'
            elif col == 0:
                title = f'{name}: {title}\n({x},{y}) {size}x{size}'
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _link_or_copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        os.remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


# --------------------------------------------------------------------------- orchestration
def compare(baseline_opt, spn_opt, out, seeds=(0,), iters=None, val_freq=None, jobs=2, threads=None, base_dir=None,
            prefix=None, title=None, verbose=False, progress_interval=15.0, crop=64, stream=None):
    """Train and test both runs for every seed; write the tables, plots and checkpoints into ``out``.
    Returns the summary dict (also written as summary.json)."""
    stream = stream or sys.stdout
    out = os.path.abspath(out)
    base_dir = os.path.abspath(base_dir or os.getcwd())
    if has_spn(baseline_opt):
        raise CompareError('the baseline option file uses SPN (ModelContrastiveModel / train.spn_opt); '
                           'pass the SPN file second, or one file with --spn off')
    if not has_spn(spn_opt):
        raise CompareError('the SPN option file has no SPN (model_type ModelContrastiveModel with train.spn_opt)')
    if [v for _, v in val_datasets(baseline_opt)] != [v for _, v in val_datasets(spn_opt)]:
        raise CompareError('the two option files validate on different datasets: the comparison needs the same ones')
    if not val_datasets(baseline_opt):
        raise CompareError('the option files have no validation set (datasets.val): nothing to compare')
    prefix = prefix or re.sub(r'\W+', '_', str(baseline_opt.get('name', 'run'))).replace('debug', 'dbg')
    if iters is None and int(spn_opt['train']['total_iter']) != int(baseline_opt['train']['total_iter']):
        raise CompareError('the two option files have different train.total_iter; pass --iters')
    iters = int(iters or baseline_opt['train']['total_iter'])
    runs = []
    os.makedirs(os.path.join(out, 'options'), exist_ok=True)  # after the checks: nothing written on an error
    for seed in seeds:
        for label, src in zip(RUN_LABELS, (baseline_opt, spn_opt)):
            name = f'{prefix}_{label}_seed{seed}'
            opt = rewrite_options(src, name, seed, base_dir, iters, val_freq)
            ckpt = os.path.join(out, 'experiments', name, 'models', 'net_g_latest.pth')
            opt_file = save_options(os.path.join(out, 'options', f'{name}.yml'), opt)
            test_file = save_options(os.path.join(out, 'options', f'{name}_test.yml'),
                                     test_options(opt, f'{name}_test', ckpt))
            runs.append(Run(label, seed, name, opt_file, test_file, iters,
                            (opt.get('val') or {}).get('val_freq')))
    t0 = time.time()
    run_all(runs, out, jobs=jobs, threads=threads, verbose=verbose, progress_interval=progress_interval,
            stream=stream)
    train_wall = time.time() - t0

    images = load_val_images(rewrite_options(baseline_opt, 'x', 0, base_dir))
    psnr_kw, ssim_kw = metric_settings(baseline_opt)
    for run in runs:
        run.result = collect(run, out)
        run.result['images'] = image_metrics(run, out, images, psnr_kw, ssim_kw)
        run.result['psnr'] = _mean([r['psnr'] for r in run.result['images']])
        run.result['ssim'] = _mean([r['ssim'] for r in run.result['images']])
        ckpt = os.path.join(out, 'experiments', run.name, 'models', 'net_g_latest.pth')
        run.result['checkpoint'] = _link_or_copy(ckpt, os.path.join(out, 'checkpoints',
                                                                     f'{run.label}_seed{run.seed}.pth'))

    table, per_seed, stats = summarize(runs, images)
    y = ', Y channel' if psnr_kw.get('test_y_channel') else ', RGB'
    info = {'title': title or f'SPN vs baseline: {prefix}', 'baseline_name': baseline_opt.get('name'),
            'spn_name': spn_opt.get('name'), 'spn': spn_description(spn_opt), 'iters': iters,
            'metric_note': f'{len(images)} images, crop border {psnr_kw["crop_border"]}{y}'}
    md = markdown(table, per_seed, stats, info)
    write_csv(os.path.join(out, 'table.csv'), table)
    with open(os.path.join(out, 'table.md'), 'w', encoding='utf-8') as f:
        f.write(md)
    write_csv(os.path.join(out, 'runs.csv'), [OrderedDict(
        seed=r.seed, run=r.label, name=r.name, iterations=r.total_iter, s_per_iter=r.result['s_per_iter'],
        wall_s=r.wall_s, psnr=r.result['psnr'], ssim=r.result['ssim'], checkpoint=r.result['checkpoint'])
        for r in runs])
    plot_curves(os.path.join(out, 'psnr_curve.png'), runs, title=info['title'])
    first = min(seeds)
    by = {(r.label, r.seed): r for r in runs}
    plot_crops(os.path.join(out, 'crops.png'), images, by['baseline', first].result['images'],
               by['spn', first].result['images'], baseline_opt.get('scale', 1), crop=crop)
    summary = OrderedDict(
        info=info, stats=stats, table=table, per_seed=per_seed, wall_s=train_wall,
        runs=[OrderedDict(label=r.label, seed=r.seed, name=r.name, wall_s=r.wall_s,
                          **{k: v for k, v in r.result.items()}) for r in runs],
        files={k: os.path.join(out, v) for k, v in (('table_csv', 'table.csv'), ('table_md', 'table.md'),
                                                    ('runs_csv', 'runs.csv'), ('curve_png', 'psnr_curve.png'),
                                                    ('crops_png', 'crops.png'))})
    with open(os.path.join(out, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1, default=str)
    return summary


def _json_or_file(text):
    if text is None:
        return None
    if os.path.isfile(text):
        with open(text, encoding='utf-8') as f:
            return yaml.safe_load(f)
    return yaml.safe_load(text)


def build_parser():
    p = argparse.ArgumentParser(
        prog='mclir-compare', description='Train a baseline and an SPN run with identical seeds and budgets and '
        'compare them (per-image PSNR/SSIM, deltas, seconds per iteration, curves, crops).')
    p.add_argument('options', nargs='+', metavar='OPT.yml',
                   help='BASELINE.yml SPN.yml, or one option file with --spn on/off')
    p.add_argument('--spn', choices=['on', 'off'],
                   help='with one option file: "on" = it is the baseline, the SPN run adds SPN (see --spn-opt); '
                        '"off" = it uses SPN, the baseline drops it. Default: off if the file uses SPN, else on')
    p.add_argument('--spn-opt', help='with --spn on: train.spn_opt as YAML/JSON text or a file '
                                     f'(default {dict(DEFAULT_SPN)})')
    p.add_argument('--negatives', help='with --spn on: train.negatives as YAML/JSON text or a file '
                                       f'(default {dict(DEFAULT_NEGATIVES)})')
    p.add_argument('--out', default='compare_output', help='output folder (default: ./compare_output)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='paired seeds (default: 0)')
    p.add_argument('--iters', type=int, help='train.total_iter of every run (default: the option file\'s)')
    p.add_argument('--val-freq', type=int, help='val.val_freq of every run (default: the option file\'s)')
    p.add_argument('--jobs', type=int, default=2, help='runs at a time (default 2: a baseline/SPN pair together)')
    p.add_argument('--threads', type=int, help='CPU threads per run (default: CPU count / jobs)')
    p.add_argument('--name', help='prefix of the run names (default: the baseline\'s name)')
    p.add_argument('--crop', type=int, default=64, help='size of the crops in crops.png (default 64)')
    p.add_argument('--verbose', action='store_true', help='stream the runs\' BasicSR logs')
    return p


def main(argv=None):
    """Console entry point (``mclir-compare``): exit status 0, the summary is in the output folder."""
    run_cli(argv)
    return 0


def run_cli(argv=None):
    """The command line, returning the summary dict."""
    args = build_parser().parse_args(argv)
    if len(args.options) > 2:
        raise SystemExit('mclir-compare: give BASELINE.yml SPN.yml, or one option file with --spn on/off')
    try:
        opts = [load_options(p) for p in args.options]
        if len(opts) == 2:
            if args.spn:
                raise CompareError('--spn is for a single option file')
            baseline, spn = opts
        else:
            mode = args.spn or ('off' if has_spn(opts[0]) else 'on')
            if mode == 'off':
                if not has_spn(opts[0]):
                    raise CompareError(f'--spn off: {args.options[0]} does not use SPN')
                baseline, spn = strip_spn(opts[0]), opts[0]
            else:
                if has_spn(opts[0]):
                    raise CompareError(f'--spn on: {args.options[0]} already uses SPN (use --spn off)')
                baseline = opts[0]
                spn = add_spn(opts[0], _json_or_file(args.spn_opt), _json_or_file(args.negatives))
        summary = compare(baseline, spn, args.out, seeds=args.seeds, iters=args.iters, val_freq=args.val_freq,
                          jobs=args.jobs, threads=args.threads, prefix=args.name, verbose=args.verbose,
                          crop=args.crop)
    except CompareError as e:
        raise SystemExit(f'mclir-compare: {e}') from None
    with open(summary['files']['table_md'], encoding='utf-8') as f:
        print(f.read())
    checkpoints = os.path.join(os.path.abspath(args.out), 'checkpoints')
    print('Written: ' + ', '.join(summary['files'].values()) + f', {checkpoints}')
    return summary


if __name__ == '__main__':
    sys.exit(main())
