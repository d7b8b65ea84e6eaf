#!/usr/bin/env python
"""Does running the negatives in bfloat16 change what SPN training reaches? The demo's SPN run in fp32
against the same run with the negatives' forwards (and the SPN feature passes) in bfloat16.

    python scripts/check_precision.py [--out precision_output] [--seeds 0 1 2] [--iters 1000]

Both runs of a seed start from the same weights and see the same batches (as mclir-compare pairs
them); the table gives the final validation PSNR/SSIM (Y) of each, their difference per seed, and
seconds per iteration. The README's "Cost" section quotes its output.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mclir_basicsr import compare as cmp  # noqa: E402
from mclir_basicsr import demo  # noqa: E402

BF16 = {'negatives': {'autocast': 'bfloat16', 'dtype': 'bfloat16'}, 'spn_opt': {'autocast': 'bfloat16'}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='precision_output')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--iters', type=int, default=demo.DEMO_ITERS)
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--quick', action='store_true', help='smoke test: tiny images and network (as mclir-demo --quick)')
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    _, base = demo.prepare(os.path.join(out, 'data'), args.iters, demo.DEMO_VAL_FREQ, quick=args.quick)
    fp32 = demo.spn_options(base)
    bf16 = cmp.load_options(cmp.save_options(os.path.join(out, 'bf16.yml'), fp32))
    for section, extra in BF16.items():
        bf16['train'][section].update(extra)
    runs = []
    os.makedirs(os.path.join(out, 'options'), exist_ok=True)
    for seed in args.seeds:
        for label, src in (('fp32', fp32), ('bf16', bf16)):
            name = f'precision_{label}_seed{seed}'
            opt = cmp.rewrite_options(src, name, seed, out, args.iters, demo.DEMO_VAL_FREQ)
            ckpt = os.path.join(out, 'experiments', name, 'models', 'net_g_latest.pth')
            runs.append(cmp.Run(label, seed, name, cmp.save_options(os.path.join(out, 'options', f'{name}.yml'), opt),
                                cmp.save_options(os.path.join(out, 'options', f'{name}_test.yml'),
                                                 cmp.test_options(opt, f'{name}_test', ckpt)),
                                args.iters, demo.DEMO_VAL_FREQ))
    cmp.run_all(runs, out, jobs=args.jobs)
    images = cmp.load_val_images(fp32)
    psnr_kw, ssim_kw = cmp.metric_settings(fp32)
    by = {}
    for run in runs:
        run.result = cmp.collect(run, out)
        rows = cmp.image_metrics(run, out, images, psnr_kw, ssim_kw)
        by[run.label, run.seed] = (sum(r['psnr'] for r in rows) / len(rows), sum(r['ssim'] for r in rows) / len(rows),
                                   run.result['s_per_iter'])
    lines = [f'SPN (demo settings), fp32 vs bfloat16 negatives/features, {args.iters} iterations, '
             f'{len(images)} validation images (Y)', '',
             '| seed | PSNR fp32 | PSNR bf16 | Δ PSNR (dB) | Δ SSIM | s/iter fp32 | s/iter bf16 |',
             '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    deltas = []
    for seed in args.seeds:
        (p32, s32, t32), (p16, s16, t16) = by['fp32', seed], by['bf16', seed]
        deltas.append(p16 - p32)
        lines.append(f'| {seed} | {p32:.3f} | {p16:.3f} | {p16 - p32:+.3f} | {s16 - s32:+.4f} | '
                     f'{t32:.4f} | {t16:.4f} |')
    mean = sum(deltas) / len(deltas)
    lines += ['', f'mean Δ PSNR {mean:+.3f} dB, largest |Δ| {max(abs(d) for d in deltas):.3f} dB']
    text = '\n'.join(lines) + '\n'
    with open(os.path.join(out, 'precision.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
