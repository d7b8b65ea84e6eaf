"""Several method arms (SPN, CR, ...) against ONE shared baseline, over paired seeds, at equal iterations.

Every arm and the baseline train once per seed through BasicSR's pipeline (:mod:`runner`, no test
pass); each arm's score is BasicSR's own end-of-training validation (the option file's metrics, read
from the training log), so the baseline is trained once per seed however many arms there are. Per arm:
Δ PSNR against the baseline of the same seed (mean ± std over seeds, per seed), the seeds it is better
in, and its seconds per iteration relative to the baseline's (logged iteration times, validation
excluded; runs side by side share the CPU, so the ratio is indicative). Written into ``out``:
methods.md (the table) and methods.json (the table and every run's numbers).
"""
import json
import os
import re
from collections import OrderedDict

from mclir_basicsr.compare.evaluation import collect
from mclir_basicsr.compare.options import CompareError, has_method, method_name, spn_description
from mclir_basicsr.compare.pipeline import check_pair
from mclir_basicsr.compare.report import mean, std
from mclir_basicsr.compare.runner import plan_runs, run_all

BASELINE = 'baseline'
_ARM_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')


def check_arms(baseline, arms, iters=None):
    """Raise :class:`CompareError` unless every arm ({name: options}) compares with the baseline; warnings."""
    if not arms:
        raise CompareError('no method arm to compare with the baseline')
    if has_method(baseline):
        raise CompareError(f'the baseline uses {method_name(baseline)}; it must be plain L1 training')
    warnings = []
    for name, opt in arms.items():
        if name == BASELINE or not _ARM_NAME.fullmatch(name):
            raise CompareError(f'arm name {name!r}: letters, digits and _.+- only, and not "{BASELINE}"')
        try:
            warnings += [f'{name}: {w}' for w in check_pair(baseline, opt, iters)]
        except CompareError as e:
            raise CompareError(f'arm {name}: {e}') from None
    return warnings


def _metric(run):
    final = run.result['final_val']
    if 'psnr' not in final:
        raise CompareError(f'{run.title}: no end-of-training PSNR in its log (val.metrics needs a calculate_psnr '
                           'entry named psnr)')
    return final['psnr']


def arm_rows(runs, arms):
    """One row per arm (and the baseline first): PSNR, Δ PSNR per seed, mean, std, wins, s/iter and ratio."""
    by = {(r.label, r.seed): r for r in runs}
    seeds = sorted({r.seed for r in runs})
    rows = []
    for label in [BASELINE] + list(arms):
        psnr = [_metric(by[label, s]) for s in seeds]
        delta = [_metric(by[label, s]) - _metric(by[BASELINE, s]) for s in seeds]
        ratio = [by[label, s].result['s_per_iter'] / by[BASELINE, s].result['s_per_iter'] for s in seeds]
        rows.append(OrderedDict(
            arm=label, method='L1 only' if label == BASELINE else method_name(arms[label]),
            settings='' if label == BASELINE else spn_description(arms[label]), psnr=mean(psnr), delta=delta,
            delta_mean=mean(delta), delta_std=std(delta), wins=sum(d > 0 for d in delta),
            s_per_iter=mean([by[label, s].result['s_per_iter'] for s in seeds]), time_ratio=mean(ratio)))
    return rows


def markdown(rows, seeds, iters, title):
    n = len(seeds)
    lines = [f'### {title}', '',
             f'{iters} iterations each, paired seeds {list(seeds)} (same initialisation and batches per seed); Δ PSNR '
             '= arm - baseline of the same seed (BasicSR\'s end-of-training validation); time = s/iter relative to '
             'the baseline.', '',
             '| arm | method | PSNR (dB) | Δ PSNR mean ± std (dB) | Δ per seed | better | s/iter | time |',
             '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |']
    for r in rows:
        if r['arm'] == BASELINE:
            lines.append(f'| {BASELINE} | L1 only | {r["psnr"]:.3f} | | | | {r["s_per_iter"]:.4f} | 1.00x |')
            continue
        per = ', '.join(f'{d:+.3f}' for d in r['delta'])
        lines.append(f'| {r["arm"]} | {r["method"]} | {r["psnr"]:.3f} | {r["delta_mean"]:+.3f} ± {r["delta_std"]:.3f} '
                     f'| {per} | {r["wins"]}/{n} | {r["s_per_iter"]:.4f} | {r["time_ratio"]:.2f}x |')
    lines += [''] + [f'- {r["arm"]}: {r["settings"]}' for r in rows if r['arm'] != BASELINE]
    return '\n'.join(lines) + '\n'


def compare_methods(baseline, arms, out, seeds=(0,), iters=None, val_freq=None, jobs=2, threads=None,
                    base_dir=None, prefix='methods', title='Methods vs the L1 baseline', verbose=False, stream=None):
    """Train the baseline and every arm ({name: options}) per seed, jobs at a time; write methods.md and
    methods.json into ``out``; return {'rows', 'markdown', 'runs', 'warnings'}."""
    out, base_dir = os.path.abspath(out), os.path.abspath(base_dir or os.getcwd())
    warnings = check_arms(baseline, arms, iters)
    sources = OrderedDict([(BASELINE, baseline)] + list(arms.items()))
    os.makedirs(os.path.join(out, 'options'), exist_ok=True)
    runs = plan_runs(out, base_dir, sources, list(seeds), prefix, iters, val_freq)
    run_all(runs, out, jobs=jobs, threads=threads, verbose=verbose, stream=stream, test=False, progress_interval=60)
    for run in runs:
        run.result = collect(run, out)
    rows = arm_rows(runs, arms)
    md = markdown(rows, sorted(seeds), runs[0].total_iter, title)
    with open(os.path.join(out, 'methods.md'), 'w', encoding='utf-8') as f:
        f.write(md)
    result = OrderedDict(rows=rows, markdown=md, warnings=warnings,
                         runs=[OrderedDict(label=r.label, seed=r.seed, name=r.name, iterations=r.total_iter,
                                           wall_s=r.wall_s, **r.result) for r in runs])
    with open(os.path.join(out, 'methods.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1, default=str)
    return result
