#!/usr/bin/env python
"""Do the cheaper settings change what SPN training reaches? The demo's SPN run in fp32 against the same
run with the negatives' forwards (and the SPN feature passes) in bfloat16 (`bf16`), with split-batch
negatives (`split`), with split negatives on 2 samples of each batch (`subset2`), with the whole step in
bfloat16 (`amp`: train.amp), and against a control: the same fp32 run with `negatives.init_decay` nudged
by one part in a million, which moves the negatives' starting weights by about one float32 rounding step.
The control measures how far the final PSNR of a run moves anyway when its negatives change at the level of
float32 rounding: the scale against which the other differences should be read.

    python scripts/dev/check_precision.py [--out precision_output] [--seeds 0 1 2] [--iters 1000]
                                          [--arms fp32 control bf16 split subset2 amp]

All runs of a seed start from the same weights and see the same batches (as mclir-compare pairs
them); the table gives the final validation PSNR (Y) of the fp32 run, each other arm's difference
to it per seed, and seconds per iteration. docs/cost.md quotes its output.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo

from mclir_basicsr import demo  # noqa: E402
from mclir_basicsr.compare.evaluation import collect, image_metrics, load_val_images  # noqa: E402
from mclir_basicsr.compare.options import load_options, metric_settings, rewrite_options, save_options  # noqa: E402
from mclir_basicsr.compare.runner import plan_run, run_all  # noqa: E402

NUDGE = 1e-6


def arms(fp32):
    """{label: options merged into train.<section>}; the first is the reference."""
    init_decay = fp32['train']['negatives'].get('init_decay', 0.1)
    return {
        'fp32': {},
        'control': {'negatives': {'init_decay': init_decay * (1 + NUDGE)}},
        'bf16': {'negatives': {'autocast': 'bfloat16', 'dtype': 'bfloat16'}, 'spn_opt': {'autocast': 'bfloat16'}},
        'split': {'negatives': {'split_batch': True}},
        'subset2': {'negatives': {'split_batch': True, 'samples_per_step': 2}},
        'amp': {'train': {'amp': 'bfloat16'}},
    }


ARM_HELP = {'fp32': 'the demo SPN run', 'control': f'fp32, negatives.init_decay x (1 + {NUDGE:g})',
            'bf16': 'negatives in bfloat16 weights and autocast, SPN features under bfloat16 autocast',
            'split': 'fp32, negatives.split_batch (each sample meets one negative)',
            'subset2': 'fp32, split and negatives.samples_per_step 2 (the term on 2 samples of each batch)',
            'amp': 'train.amp: bfloat16 (the whole step; negatives and VGG follow)'}


def arm_options(fp32, extra, path):
    opt = load_options(save_options(path, fp32))  # a deep copy through YAML
    for section, values in extra.items():
        (opt['train'] if section == 'train' else opt['train'][section]).update(values)
    return opt


def table(by, seeds, iters, n_images, labels):
    others = labels[1:]
    lines = [f'SPN (demo settings), {iters} iterations, {n_images} validation images (Y); '
             + '; '.join(f'{a}: {ARM_HELP[a]}' for a in labels), '',
             '| seed | PSNR fp32 | ' + ' | '.join(f'Δ PSNR {a} (dB)' for a in others) + ' | '
             + ' | '.join(f's/iter {a}' for a in labels) + ' |',
             '| ---: | ---: | ' + ' | '.join('---:' for _ in others + labels) + ' |']
    deltas = {a: [] for a in others}
    for seed in seeds:
        ref = by['fp32', seed][0]
        for a in others:
            deltas[a].append(by[a, seed][0] - ref)
        lines.append(f'| {seed} | {ref:.3f} | ' + ' | '.join(f'{by[a, seed][0] - ref:+.3f}' for a in others) + ' | '
                     + ' | '.join(f'{by[a, seed][1]:.4f}' for a in labels) + ' |')
    lines.append('')
    for a in others:
        d = deltas[a]
        rms = (sum(x * x for x in d) / len(d)) ** 0.5
        lines.append(f'{a}: mean Δ PSNR {sum(d) / len(d):+.3f} dB, largest |Δ| {max(abs(x) for x in d):.3f} dB, '
                     f'RMS {rms:.3f} dB, s/iter {sum(by[a, s][1] for s in seeds) / len(seeds):.4f} '
                     f'(fp32 {sum(by["fp32", s][1] for s in seeds) / len(seeds):.4f})')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='precision_output')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--iters', type=int, default=demo.DEMO_ITERS)
    p.add_argument('--arms', nargs='+', default=list(ARM_HELP), choices=list(ARM_HELP),
                   help='arms to run (fp32, the reference, is always run first)')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--quick', action='store_true', help='smoke test: tiny images and network (as mclir-demo --quick)')
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    _, base = demo.prepare(os.path.join(out, 'data'), args.iters, demo.DEMO_VAL_FREQ, quick=args.quick)
    fp32 = demo.spn_options(base)
    os.makedirs(os.path.join(out, 'options'), exist_ok=True)
    labels = ['fp32'] + [a for a in args.arms if a != 'fp32']
    options = {a: arm_options(fp32, arms(fp32)[a], os.path.join(out, 'options', f'{a}.yml')) for a in labels}
    runs = []
    for seed in args.seeds:
        for label, src in options.items():
            name = f'precision_{label}_seed{seed}'
            opt = rewrite_options(src, name, seed, out, args.iters, demo.DEMO_VAL_FREQ)
            runs.append(plan_run(out, label, seed, name, opt))
    run_all(runs, out, jobs=args.jobs)
    images = load_val_images(fp32)
    psnr_kw, ssim_kw = metric_settings(fp32)
    by = {}
    for run in runs:
        run.result = collect(run, out)
        rows = image_metrics(run, out, images, psnr_kw, ssim_kw)
        by[run.label, run.seed] = (sum(r['psnr'] for r in rows) / len(rows), run.result['s_per_iter'])
    text = table(by, args.seeds, args.iters, len(images), labels)
    with open(os.path.join(out, 'precision.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
