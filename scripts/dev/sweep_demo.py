"""Benchmark behind the demo's SPN defaults: several SPN settings against the L1 baseline, paired seeds.

    python scripts/dev/sweep_demo.py [--out sweep_output] [--iters 1000] [--seeds 0 1 2] [--variants ...] [--jobs 2]

Same data, network, optimiser and schedule as ``python -m mclir_basicsr.demo`` (scikit-image photos,
EDSR x2 16x4, Adam 1e-3 with cosine decay, batch 8, HR patches 48). For every seed, the baseline and
each SPN variant start from the same initialisation and see the same batches, so the per-seed
difference isolates SPN. The final PSNR/SSIM are BasicSR's end-of-training validation on the demo's
held-out images (Y channel, crop border 2), read from the training logs. Writes sweep.md (the table
below is printed too), sweep.json and the runs' BasicSR folders into --out.

Columns: Δ final = SPN - baseline PSNR after the last iteration, per seed and mean ± std;
Δ curve = the same averaged over all validation points of the run (is SPN ahead during training?);
time = seconds per iteration relative to the baseline, measured in the same sweep.

What chose the demo's defaults (2 shared CPU cores, 22.9 min CPU in all):
    python scripts/dev/sweep_demo.py --iters 1000 --seeds 0 1 2            # 5 variants: 18 runs, 16.0 min CPU
    python scripts/dev/sweep_demo.py --iters 1000 --seeds 3 4 5 --variants sub_w0.1_K2 sub_w0.05_K2   # 6.9 min CPU
sub_w0.1_K2 (pixel, subtract, lambda 0.1, K=2 [50, 200]) was the best on seeds 0-2 and, over all six
seeds, +0.030 +- 0.034 dB (4/6 better) at 1.55x the time per iteration.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo

from mclir_basicsr import demo  # noqa: E402
from mclir_basicsr.compare.evaluation import collect  # noqa: E402
from mclir_basicsr.compare.options import rewrite_options, save_options  # noqa: E402
from mclir_basicsr.compare.runner import Run, run_all  # noqa: E402


def spn(weight, mode='subtract', update_every=(50, 200), decay=0.1, feature='pixel', **extra):
    s = OrderedDict(type='SPNLoss', loss_weight=weight, feature=feature, criterion='l1', mode=mode, **extra)
    n = OrderedDict(update_every=list(update_every), decay=[decay] * len(update_every), init_decay=0.1)
    return s, n


VARIANTS = OrderedDict([
    ('sub_w0.05_K2', spn(0.05)),
    ('sub_w0.1_K2', spn(0.1)),
    ('sub_w0.3_K2', spn(0.3)),
    ('sub_w1.0_K2', spn(1.0)),
    ('sub_w0.3_K1', spn(0.3, update_every=(50,))),
    ('sub_w0.3_K4', spn(0.3, update_every=(25, 50, 100, 200))),
    ('ratio_w0.01_K2', spn(0.01, mode='ratio')),
    ('ratio_w0.03_K2', spn(0.03, mode='ratio')),
    ('sub_w0.3_K2_long', spn(0.3, update_every=(200, 500))),
])
DEFAULT_VARIANTS = ['sub_w0.1_K2', 'sub_w0.3_K2', 'sub_w0.3_K1', 'sub_w0.3_K4', 'ratio_w0.01_K2']


def describe(name):
    s, n = VARIANTS[name]
    return f'{s["feature"]}, {s["mode"]}, λ {s["loss_weight"]:g}, K={len(n["update_every"])} {n["update_every"]}'


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='sweep_output')
    p.add_argument('--iters', type=int, default=demo.DEMO_ITERS)
    p.add_argument('--val-freq', type=int, help='default: iters / 10')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--variants', nargs='+', default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--threads', type=int)
    p.add_argument('--verbose', action='store_true')
    return p


def plan(args, out, val_freq):
    """(settings: {label: options}, runs): the baseline and every variant on the demo's data, per seed."""
    data_root = os.path.join(out, 'data')
    demo.build_dataset(data_root)
    base = demo.baseline_options(data_root, args.iters, val_freq, name='sweep_baseline')
    options = OrderedDict(baseline=base)
    for v in args.variants:
        options[v] = demo.spn_options(base, *VARIANTS[v])
    runs = []
    for seed in args.seeds:  # seed-major: an interrupted sweep still has complete pairs
        for label, opt in options.items():
            name = f'sweep_{label}_seed{seed}'
            path = save_options(os.path.join(out, 'options', f'{name}.yml'), rewrite_options(opt, name, seed, out))
            runs.append(Run(label, seed, name, path, '', args.iters, val_freq))
    return options, runs


def setting_row(label, res, seeds):
    """One table row: `label`'s final PSNR and its per-seed differences to the baseline (final, curve, SSIM)."""
    finals, ssims, times, deltas, curve_deltas, ssim_deltas = [], [], [], [], [], []
    for seed in seeds:
        a, b = res[label, seed], res['baseline', seed]
        finals.append(a['final_val']['psnr'])
        ssims.append(a['final_val'].get('ssim', float('nan')))
        times.append(a['s_per_iter'] / b['s_per_iter'])
        deltas.append(a['final_val']['psnr'] - b['final_val']['psnr'])
        ssim_deltas.append(a['final_val'].get('ssim', 0) - b['final_val'].get('ssim', 0))
        ca, cb = dict(a['curve']), dict(b['curve'])
        common = [i for i in ca if i in cb]
        curve_deltas.append(statistics.fmean(ca[i] - cb[i] for i in common))
    sd = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
    return OrderedDict(
        setting=label, spn='none (L1 only)' if label == 'baseline' else describe(label),
        psnr=statistics.fmean(finals), delta=deltas, delta_mean=statistics.fmean(deltas), delta_std=sd,
        wins=sum(d > 0 for d in deltas), curve_delta=statistics.fmean(curve_deltas),
        ssim_delta=statistics.fmean(ssim_deltas), time=statistics.fmean(times),
        s_per_iter=statistics.fmean(res[label, s]['s_per_iter'] for s in seeds))


def markdown(args, rows, n_runs, wall, cpu):
    n = len(args.seeds)
    lines = [f'### Demo sweep: EDSR x2 16x4, {args.iters} iterations, seeds {args.seeds}', '',
             f'`python scripts/dev/sweep_demo.py --iters {args.iters} --seeds {" ".join(map(str, args.seeds))} '
             f'--variants {" ".join(args.variants)} --jobs {args.jobs}`: {n_runs} runs, {wall / 60:.1f} min wall, '
             f'{cpu / 60:.1f} min CPU (children), {os.cpu_count()} CPU(s), '
             f'{platform.processor() or platform.machine()}.',
             '', '| setting | SPN | final PSNR (dB) | Δ final per seed | Δ final mean ± std | SPN better | '
             'Δ curve | Δ SSIM | s/iter | time |',
             '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        per = ', '.join(f'{d:+.3f}' for d in r['delta'])
        if r['setting'] == 'baseline':
            lines.append(f'| baseline | {r["spn"]} | {r["psnr"]:.3f} | | | | | | {r["s_per_iter"]:.4f} | 1.00x |')
            continue
        lines.append(f'| {r["setting"]} | {r["spn"]} | {r["psnr"]:.3f} | {per} | {r["delta_mean"]:+.3f} ± '
                     f'{r["delta_std"]:.3f} | {r["wins"]}/{n} | {r["curve_delta"]:+.3f} | {r["ssim_delta"]:+.4f} | '
                     f'{r["s_per_iter"]:.4f} | {r["time"]:.2f}x |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    val_freq = args.val_freq or max(1, args.iters // 10)
    options, runs = plan(args, out, val_freq)
    print(f'sweep: {len(runs)} runs ({len(options)} settings x {len(args.seeds)} seeds), {args.iters} iterations '
          f'each, {args.jobs} at a time', flush=True)
    run_all(runs, out, jobs=args.jobs, threads=args.threads, verbose=args.verbose, test=False,
            progress_interval=60)
    wall = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    res = {}
    for r in runs:
        r.result = collect(r, out)
        res[r.label, r.seed] = r.result
    rows = [setting_row(label, res, args.seeds) for label in options]
    md = markdown(args, rows, len(runs), wall, cpu)
    with open(os.path.join(out, 'sweep.md'), 'w', encoding='utf-8') as f:
        f.write(md)
    with open(os.path.join(out, 'sweep.json'), 'w', encoding='utf-8') as f:
        json.dump({'args': vars(args), 'wall_s': wall, 'cpu_s': cpu, 'rows': rows,
                   'runs': [{'label': r.label, 'seed': r.seed, **r.result} for r in runs]}, f, indent=1, default=str)
    print(md)
    return rows


if __name__ == '__main__':
    main()
