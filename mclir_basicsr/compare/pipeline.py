"""The comparison end to end: check the two option sets, train and test every run (at equal
iterations, and at equal time when asked), evaluate, write tables, plots, checkpoints and summary.

The second arm is "the method": whatever the add-on adds over the baseline (SPN, CR, the
uncertainty-weighted loss, or several; :func:`~mclir_basicsr.compare.options.method_name`). Its runs keep
the label ``spn`` in the files (runs.csv, summary.json, ``checkpoints/spn_seed<S>.pth``, the ``*_spn``
columns) as before other methods existed; titles, tables and plots name the method."""
import json
import os
import re
import sys
import time
from collections import OrderedDict

from mclir_basicsr.compare.equal_time import budget_iters, calibrate, eqtime_run, measured_eqtime_runs
from mclir_basicsr.compare.evaluation import collect, evaluate, load_val_images
from mclir_basicsr.compare.options import (
    CompareError,
    has_method,
    method_name,
    metric_settings,
    rewrite_options,
    spn_description,
    stretch_schedule,
    train_amp,
    val_datasets,
)
from mclir_basicsr.compare.plots import plot_crops, plot_curves, require_demo_extra
from mclir_basicsr.compare.report import markdown, summarize, write_csv
from mclir_basicsr.compare.runner import plan_runs, run_all

OUTPUT_FILES = (('table_csv', 'table.csv'), ('table_md', 'table.md'), ('runs_csv', 'runs.csv'),
                ('curve_png', 'psnr_curve.png'), ('crops_png', 'crops.png'))


def check_pair(baseline_opt, spn_opt, iters=None, budget_seconds=None, calibration_iters=30):
    """Raise :class:`CompareError` if the two option sets cannot be compared; return warnings (text).
    ``spn_opt``: the method's options (SPN, CR, ...), not necessarily SPN's."""
    if has_method(baseline_opt):
        raise CompareError(f'the baseline option file uses {method_name(baseline_opt)} (train.spn_opt, the official '
                           'neg_* keys, train.cr_opt or train.uncertainty_opt); pass the method\'s file second, or '
                           'one file with --spn off')
    if not has_method(spn_opt):
        raise CompareError('the second option file adds nothing over the baseline (model_type ModelContrastiveModel '
                           'with train.spn_opt, train.cr_opt or train.uncertainty_opt)')
    if [v for _, v in val_datasets(baseline_opt)] != [v for _, v in val_datasets(spn_opt)]:
        raise CompareError('the two option files validate on different datasets: the comparison needs the same ones')
    if not val_datasets(baseline_opt):
        raise CompareError('the option files have no validation set (datasets.val): nothing to compare')
    if budget_seconds is not None:
        if iters is not None:
            raise CompareError('--budget-seconds chooses the iterations of every run: drop --iters')
        if not budget_seconds > 0:
            raise CompareError(f'--budget-seconds: expected a number of seconds > 0, got {budget_seconds}')
        if not calibration_iters >= 1:
            raise CompareError(f'--calibration-iters: expected a positive integer, got {calibration_iters}')
    elif iters is None and int(spn_opt['train']['total_iter']) != int(baseline_opt['train']['total_iter']):
        raise CompareError('the two option files have different train.total_iter; pass --iters')
    amp, method = (train_amp(baseline_opt), train_amp(spn_opt)), method_name(spn_opt)
    if amp[0] != amp[1]:
        return [f'train.amp differs (baseline {amp[0]!r}, {method} {amp[1]!r}): the arms train in different '
                f'precisions, so the deltas and the time ratio mix {method} with precision']
    return []


def _train_equal_iters(sources, out, base_dir, seeds, prefix, iters, val_freq, equal_time, run_kw, method):
    """The baseline/method pair of every seed; with ``equal_time``, then a baseline per seed given the
    method run's measured training time."""
    pairs = plan_runs(out, base_dir, sources, seeds, prefix, iters, val_freq)
    run_all(pairs, out, **run_kw)
    if not equal_time:
        return pairs
    for run in pairs:
        run.result = collect(run, out)
    extra = measured_eqtime_runs(out, base_dir, pairs, prefix, run_kw['stream'], method)
    run_all(extra, out, **run_kw)
    return pairs + extra


def _train_budget(sources, out, base_dir, seeds, prefix, val_freq, budget_s, calibration_iters, run_kw, method):
    """Calibrate both arms' s/iter, then per seed: the method and the baseline at the iterations that fit
    the method in the budget, and the baseline at the iterations that fit it in the budget."""
    s_per_iter = calibrate(sources, out, base_dir, seeds[0], calibration_iters, prefix, **run_kw)
    n_spn, n_base = budget_iters(budget_s, s_per_iter)
    print(f'budget {budget_s:g} s of training per arm; calibrated s/iteration: baseline {s_per_iter["baseline"]:.4f}, '
          f'{method} {s_per_iter["spn"]:.4f} -> {method} {n_spn} iterations (the equal-iteration baseline too), '
          f'baseline {n_base} iterations; learning-rate schedules stretched to them', file=run_kw['stream'], flush=True)
    stretched = OrderedDict((label, stretch_schedule(src, n_spn)) for label, src in sources.items())
    runs = []
    for run in plan_runs(out, base_dir, stretched, seeds, prefix, None, val_freq):
        runs.append(run)
        if run.label == 'baseline':
            runs.append(eqtime_run(out, base_dir, run, n_base, prefix))
    run_all(runs, out, **run_kw)
    info = OrderedDict(budget_s=budget_s, calibration_iters=calibration_iters, calibration_s_per_iter=s_per_iter)
    return runs, n_spn, info


def _write_tables(out, runs, images, info):
    table, per_seed, stats = summarize(runs, images)
    write_csv(os.path.join(out, 'table.csv'), table)
    with open(os.path.join(out, 'table.md'), 'w', encoding='utf-8') as f:
        f.write(markdown(table, per_seed, stats, info))
    write_csv(os.path.join(out, 'runs.csv'), [OrderedDict(
        seed=r.seed, run=r.label, name=r.name, iterations=r.total_iter, s_per_iter=r.result['s_per_iter'],
        wall_s=r.wall_s, psnr=r.result['psnr'], ssim=r.result['ssim'], checkpoint=r.result['checkpoint'])
        for r in runs])
    return table, per_seed, stats


def _write_outputs(out, runs, images, info, scale, crop, train_wall):
    table, per_seed, stats = _write_tables(out, runs, images, info)
    plot_curves(os.path.join(out, 'psnr_curve.png'), runs, title=info['title'], method=info['method'])
    first = min(stats['seeds'])
    by = {(r.label, r.seed): r for r in runs}
    plot_crops(os.path.join(out, 'crops.png'), images, by['baseline', first].result['images'],
               by['spn', first].result['images'], scale, crop=crop, method=info['method'])
    summary = OrderedDict(
        info=info, stats=stats, table=table, per_seed=per_seed, wall_s=train_wall,
        runs=[OrderedDict(label=r.label, seed=r.seed, name=r.name, wall_s=r.wall_s, iterations=r.total_iter,
                          **r.result) for r in runs],
        files={k: os.path.join(out, v) for k, v in OUTPUT_FILES})
    with open(os.path.join(out, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1, default=str)
    return summary


def compare(baseline_opt, spn_opt, out, seeds=(0,), iters=None, val_freq=None, jobs=2, threads=None, base_dir=None,
            prefix=None, title=None, verbose=False, progress_interval=15.0, crop=64, stream=None, equal_time=False,
            budget_seconds=None, calibration_iters=30):
    """Train and test both runs (the baseline, the method: SPN, CR, ...) for every seed (and, with
    ``equal_time`` or ``budget_seconds``, a baseline at the method run's training time); write the tables,
    plots and checkpoints into ``out``. Returns the summary dict (also written as summary.json)."""
    stream = stream or sys.stdout
    out, base_dir = os.path.abspath(out), os.path.abspath(base_dir or os.getcwd())
    warnings = check_pair(baseline_opt, spn_opt, iters, budget_seconds, calibration_iters)
    require_demo_extra('matplotlib')  # the plots come after the training: fail before it
    for w in warnings:
        print(f'mclir-compare: warning: {w}', file=stream, flush=True)
    prefix = prefix or re.sub(r'\W+', '_', str(baseline_opt.get('name', 'run'))).replace('debug', 'dbg')
    os.makedirs(os.path.join(out, 'options'), exist_ok=True)  # after the checks: nothing written on an error
    run_kw = dict(jobs=jobs, threads=threads, verbose=verbose, progress_interval=progress_interval, stream=stream)
    sources, method = OrderedDict(baseline=baseline_opt, spn=spn_opt), method_name(spn_opt)
    t0 = time.time()
    if budget_seconds is not None:
        runs, iters, budget_info = _train_budget(sources, out, base_dir, list(seeds), prefix, val_freq,
                                                 budget_seconds, calibration_iters, run_kw, method)
    else:
        iters, budget_info = int(iters or baseline_opt['train']['total_iter']), {}
        runs = _train_equal_iters(sources, out, base_dir, seeds, prefix, iters, val_freq, equal_time, run_kw,
                                  method)
    train_wall = time.time() - t0
    images = load_val_images(rewrite_options(baseline_opt, 'x', 0, base_dir))
    psnr_kw, ssim_kw = metric_settings(baseline_opt)
    evaluate(runs, out, images, psnr_kw, ssim_kw)
    y = ', Y channel' if psnr_kw.get('test_y_channel') else ', RGB'
    info = OrderedDict(title=title or f'{method} vs baseline: {prefix}', baseline_name=baseline_opt.get('name'),
                       method=method, spn_name=spn_opt.get('name'), spn=spn_description(spn_opt), iters=iters,
                       metric_note=f'{len(images)} images, crop border {psnr_kw["crop_border"]}{y}',
                       warnings=warnings, **budget_info)
    return _write_outputs(out, runs, images, info, baseline_opt.get('scale', 1), crop, train_wall)
