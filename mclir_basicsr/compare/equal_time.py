"""Equal training time instead of equal iterations: how many iterations an arm gets, the calibration
runs that measure seconds per iteration before a ``--budget-seconds`` comparison, and the extra
baseline run (``baseline_eqtime``) of ``--equal-time``.

Training time is what BasicSR logs: seconds per iteration (validation excluded) x iterations.
"""
import statistics

from mclir_basicsr.compare.evaluation import collect
from mclir_basicsr.compare.options import load_options, rewrite_options, stretch_schedule
from mclir_basicsr.compare.report import EQTIME
from mclir_basicsr.compare.runner import plan_run, run_all


def equal_time_iters(seconds, s_per_iter, floor=1):
    """The iterations that fit in ``seconds`` at ``s_per_iter``, rounded, never fewer than ``floor``."""
    if not s_per_iter > 0:
        return int(floor)
    return max(int(floor), int(round(seconds / s_per_iter)))


def calibration_options(opt, name, seed, base_dir, iters):
    """A short run of ``opt`` to measure its seconds per iteration: ``iters`` iterations (schedule
    stretched to them), no validation, one log line at the end (BasicSR logs the average iteration
    time since the start, so that line is the mean over the whole run)."""
    opt = stretch_schedule(rewrite_options(opt, name, seed, base_dir), iters)
    opt.pop('val', None)
    logger = opt.setdefault('logger', {})
    logger['print_freq'] = iters
    logger['save_checkpoint_freq'] = iters
    return opt


def calibrate(sources, out, base_dir, seed, iters, prefix, **run_kw):
    """Run every arm of ``sources`` ({label: options}) for ``iters`` iterations side by side, as the
    comparison runs them; {label: seconds per iteration}."""
    runs = []
    for label, src in sources.items():
        name = f'{prefix}_calibrate_{label}'
        runs.append(plan_run(out, f'calibrate_{label}', seed, name,
                             calibration_options(src, name, seed, base_dir, iters)))
    run_all(runs, out, test=False, **run_kw)
    return {label: collect(run, out)['s_per_iter'] for label, run in zip(sources, runs)}


def eqtime_run(out, base_dir, baseline_run, total_iter, prefix):
    """The equal-time baseline of a seed: the equal-iteration baseline's options stretched to ``total_iter``."""
    opt = stretch_schedule(load_options(baseline_run.option_file), total_iter)
    name = f'{prefix}_{EQTIME}_seed{baseline_run.seed}'
    return plan_run(out, EQTIME, baseline_run.seed, name, rewrite_options(opt, name, baseline_run.seed, base_dir))


def pooled_s_per_iter(runs):
    """The median of every logged iteration time of ``runs`` (one arm, all its seeds: the same work per
    iteration), so that neither one reading nor one seed's run under a burst of load sets the budget; the runs'
    own ``s_per_iter`` where no times were logged."""
    times = [t for r in runs for t in r.result.get('iter_times') or []]
    return statistics.median(times) if times else statistics.median(r.result['s_per_iter'] for r in runs)


def measured_eqtime_runs(out, base_dir, pairs, prefix, stream, method='SPN'):
    """Per seed, a baseline run with as many iterations as fit in the method run's (label ``spn``) training time,
    from the arms' pooled median iteration times (``pairs`` have run and been collected)."""
    by = {(r.label, r.seed): r for r in pairs}
    spn_s = pooled_s_per_iter([r for r in pairs if r.label == 'spn'])
    base_s = pooled_s_per_iter([r for r in pairs if r.label == 'baseline'])
    runs = []
    for (label, seed), spn in by.items():
        if label != 'spn':
            continue
        seconds = spn_s * spn.total_iter
        iters = equal_time_iters(seconds, base_s, floor=spn.total_iter)
        print(f'equal time, seed {seed}: {method} trains {spn.total_iter} iterations x {spn_s:.4f} s = '
              f'{seconds:.1f} s; the baseline ({base_s:.4f} s/iteration) gets {iters} iterations (each the median '
              'of its arm\'s logged iteration times over all seeds; learning-rate schedule stretched to them)',
              file=stream, flush=True)
        runs.append(eqtime_run(out, base_dir, by['baseline', seed], iters, prefix))
    return runs


def budget_iters(budget_s, s_per_iter):
    """(method iterations, baseline iterations) that fit in ``budget_s`` at the calibrated s/iter (keys
    'spn', the method arm, and 'baseline'); the baseline never gets fewer than the method."""
    spn = equal_time_iters(budget_s, s_per_iter['spn'])
    return spn, equal_time_iters(budget_s, s_per_iter['baseline'], floor=spn)
