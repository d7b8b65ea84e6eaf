"""The ``mclir-compare`` command line: which two option sets to compare (a baseline and a method: SPN, CR,
...), and the comparison's settings; the SPN defaults of ``--spn on``, which are the demo's (``DEMO_*``)."""
import argparse
import os
from collections import OrderedDict

import yaml

from mclir_basicsr.compare.options import (
    CompareError,
    add_cr,
    add_spn,
    has_method,
    load_options,
    method_name,
    strip_method,
)
from mclir_basicsr.compare.pipeline import compare

# The SPN settings `--spn on` adds unless told otherwise, which are the demo's (:mod:`mclir_basicsr.demo`). Pixel
# space (no weight file needed): chosen by scripts/dev/sweep_demo.py on the demo's data (docs/evidence.md): lambda 0.1,
# subtract, K = 2 negatives refreshed every 50 / 200 iterations, decay 0.1. VGG16 space: the paper's negatives and
# layers with the loss weight and estimator that scripts/dev/vgg_evidence.py measured (docs/vgg_evidence.md).
DEMO_SPN = OrderedDict([('type', 'SPNLoss'), ('loss_weight', 0.1), ('feature', 'pixel'), ('criterion', 'l1'),
                        ('mode', 'subtract')])
DEMO_NEGATIVES = OrderedDict([('update_every', [50, 200]), ('decay', [0.1, 0.1]), ('init_decay', 0.1)])

# VGG16 (the paper's feature space): the official negatives (K = 4, every 100 / 200 / 500 / 1000 iterations, decay
# 0.1) and layers; the term on 4 of the 8 samples of each batch, one per negative (split: unbiased, and what makes
# the demo fit in minutes); lambda for the HED weights' Caffe activation scale (docs/vgg_weights.md).
DEMO_VGG_SPN = OrderedDict([('type', 'SPNLoss'), ('loss_weight', 0.001), ('feature', 'vgg16'),
                            ('layer_weights', OrderedDict([('relu1_2', 0.2), ('relu2_2', 0.3), ('relu3_3', 0.5)])),
                            ('criterion', 'l1'), ('mode', 'subtract')])
DEMO_VGG_NEGATIVES = OrderedDict([('update_every', [100, 200, 500, 1000]), ('decay', [0.1] * 4), ('init_decay', 0.1),
                                  ('split_batch', True), ('samples_per_step', 4)])


def default_spn():
    """(spn_opt, negatives) that ``--spn on`` adds unless given: the demo's, measured by scripts/dev/sweep_demo.py."""
    return DEMO_SPN, DEMO_NEGATIVES


# What `--cr on` adds unless --cr-opt is given: AECR-Net's weight, in pixel space (no VGG weights needed).
DEFAULT_CR = OrderedDict([('type', 'CRLoss'), ('loss_weight', 0.1), ('feature', 'pixel')])


def _json_or_file(text):
    if text is None:
        return None
    if os.path.isfile(text):
        with open(text, encoding='utf-8') as f:
            return yaml.safe_load(f)
    return yaml.safe_load(text)


def build_parser():
    p = argparse.ArgumentParser(
        prog='mclir-compare', description='Train a baseline and a method run (SPN, CR, ...) with identical seeds and '
        'budgets and compare them (per-image PSNR/SSIM, deltas, seconds per iteration, curves, crops).')
    p.add_argument('options', nargs='+', metavar='OPT.yml',
                   help='BASELINE.yml METHOD.yml (METHOD.yml adds train.spn_opt, train.cr_opt and/or '
                        'train.uncertainty_opt), or one option file with --spn on/off or --cr on/off')
    p.add_argument('--spn', choices=['on', 'off'],
                   help='with one option file: "on" = it is the baseline, the SPN run adds SPN (see --spn-opt); '
                        '"off" = it uses SPN, the baseline drops it. Either way the baseline is ModelContrastiveModel '
                        'without SPN (SRModel training, same train.amp and resume); "off" also drops CR and the '
                        'uncertainty loss. Default: off if the file uses a method, else on')
    p.add_argument('--cr', choices=['on', 'off'],
                   help='with one option file: "on" = it is the baseline, the method run adds CR (AECR-Net\'s '
                        'contrastive regularisation, see --cr-opt; with --spn on too: SPN+CR); "off" = as --spn off')
    p.add_argument('--cr-opt', help='with --cr on: train.cr_opt as YAML/JSON text or a file (default: '
                                    '{type: CRLoss, loss_weight: 0.1, feature: pixel})')
    p.add_argument('--spn-opt', help='with --spn on: train.spn_opt as YAML/JSON text or a file '
                                     '(default: the demo\'s, mclir_basicsr.compare.cli.DEMO_SPN)')
    p.add_argument('--negatives', help='with --spn on: train.negatives as YAML/JSON text or a file '
                                       '(default: the demo\'s, mclir_basicsr.compare.cli.DEMO_NEGATIVES)')
    p.add_argument('--out', default='compare_output', help='output folder (default: ./compare_output)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='paired seeds (default: 0)')
    p.add_argument('--iters', type=int, help='train.total_iter of every run (default: the option file\'s)')
    p.add_argument('--val-freq', type=int, help='val.val_freq of every run (default: the option file\'s)')
    p.add_argument('--equal-time', action='store_true',
                   help='also train, per seed, a baseline with as many iterations as fit in the method run\'s measured '
                        'training time (learning-rate schedule stretched to them); the table gives both deltas')
    p.add_argument('--budget-seconds', type=float, metavar='S',
                   help='give both arms the iterations that fit in S seconds of training, measured by a short '
                        'calibration run of each arm (implies --equal-time; the method\'s count is also the '
                        'equal-iteration count); not with --iters')
    p.add_argument('--calibration-iters', type=int, default=30,
                   help='iterations of each calibration run of --budget-seconds (default 30)')
    p.add_argument('--jobs', type=int, default=2, help='runs at a time (default 2: a baseline/method pair together)')
    p.add_argument('--threads', type=int, help='CPU threads per run (default: CPU count / jobs)')
    p.add_argument('--name', help='prefix of the run names (default: the baseline\'s name)')
    p.add_argument('--crop', type=int, default=64, help='size of the crops in crops.png (default 64)')
    p.add_argument('--verbose', action='store_true', help='stream the runs\' BasicSR logs')
    return p


def _single_file_mode(args, opt):
    """'off' (the file is the method's, the baseline drops it) or the additions of 'on' ({'spn', 'cr'})."""
    flags = {name: mode for name, mode in (('spn', args.spn), ('cr', args.cr)) if mode}
    if 'off' in flags.values():
        if 'on' in flags.values():
            raise CompareError('--spn/--cr: "off" (the file is the method\'s) and "on" (the file is the baseline) '
                               'cannot be combined')
        return 'off'
    if not flags:
        return 'off' if has_method(opt) else {'spn'}
    return set(flags)


def option_pair(args):
    """(baseline options, method options) from the command line's option file(s), --spn and --cr."""
    opts = [load_options(p) for p in args.options]
    if len(opts) == 2:
        if args.spn or args.cr:
            raise CompareError('--spn is for a single option file' if args.spn else '--cr is for a single option file')
        return opts
    opt, flag = opts[0], '--cr' if args.cr and not args.spn else '--spn'
    mode = _single_file_mode(args, opt)
    if mode == 'off':
        if not has_method(opt):
            raise CompareError(f'{flag} off: {args.options[0]} does not use SPN or another method (train.spn_opt, '
                               'the official neg_* keys, train.cr_opt, train.uncertainty_opt)')
        return strip_method(opt, f'{flag} off'), opt
    if has_method(opt):
        raise CompareError(f'{flag} on: {args.options[0]} already uses {method_name(opt)} (use {flag} off)')
    method = opt
    if 'spn' in mode:
        spn, negatives = default_spn()
        method = add_spn(method, _json_or_file(args.spn_opt) or spn, _json_or_file(args.negatives) or negatives)
    if 'cr' in mode:
        method = add_cr(method, _json_or_file(args.cr_opt) or DEFAULT_CR)
    return strip_method(opt, f'{flag} on'), method


def main(argv=None):
    """Console entry point (``mclir-compare``): exit status 0, the summary is in the output folder."""
    run_cli(argv)
    return 0


def run_cli(argv=None):
    """The command line, returning the summary dict."""
    args = build_parser().parse_args(argv)
    if len(args.options) > 2:
        raise SystemExit('mclir-compare: give BASELINE.yml METHOD.yml, or one option file with --spn/--cr on/off')
    try:
        baseline, spn = option_pair(args)
        summary = compare(baseline, spn, args.out, seeds=args.seeds, iters=args.iters, val_freq=args.val_freq,
                          jobs=args.jobs, threads=args.threads, prefix=args.name, verbose=args.verbose,
                          crop=args.crop, equal_time=args.equal_time, budget_seconds=args.budget_seconds,
                          calibration_iters=args.calibration_iters)
    except CompareError as e:
        raise SystemExit(f'mclir-compare: {e}') from None
    with open(summary['files']['table_md'], encoding='utf-8') as f:
        print(f.read())
    checkpoints = os.path.join(os.path.abspath(args.out), 'checkpoints')
    print('Written: ' + ', '.join(summary['files'].values()) + f', {checkpoints}')
    return summary
