"""The ``mclir-compare`` command line: which two option sets to compare, and the comparison's settings."""
import argparse
import os

import yaml

from mclir_basicsr.compare.errors import CompareError
from mclir_basicsr.compare.options import add_spn, has_spn, load_options, strip_spn
from mclir_basicsr.compare.pipeline import compare


def default_spn():
    """(spn_opt, negatives) that ``--spn on`` adds unless given: the demo's, measured by scripts/sweep_demo.py."""
    # Imported here, not at the top: mclir_basicsr.demo imports this package (a top-level import would be circular).
    from mclir_basicsr.demo import DEMO_NEGATIVES, DEMO_SPN
    return DEMO_SPN, DEMO_NEGATIVES


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
                        '"off" = it uses SPN, the baseline drops it. Either way the baseline is ModelContrastiveModel '
                        'without SPN (SRModel training, same train.amp and resume). Default: off if the file uses '
                        'SPN, else on')
    p.add_argument('--spn-opt', help='with --spn on: train.spn_opt as YAML/JSON text or a file '
                                     '(default: the demo\'s, mclir_basicsr.demo.DEMO_SPN)')
    p.add_argument('--negatives', help='with --spn on: train.negatives as YAML/JSON text or a file '
                                       '(default: the demo\'s, mclir_basicsr.demo.DEMO_NEGATIVES)')
    p.add_argument('--out', default='compare_output', help='output folder (default: ./compare_output)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='paired seeds (default: 0)')
    p.add_argument('--iters', type=int, help='train.total_iter of every run (default: the option file\'s)')
    p.add_argument('--val-freq', type=int, help='val.val_freq of every run (default: the option file\'s)')
    p.add_argument('--equal-time', action='store_true',
                   help='also train, per seed, a baseline with as many iterations as fit in the SPN run\'s measured '
                        'training time (learning-rate schedule stretched to them); the table gives both deltas')
    p.add_argument('--budget-seconds', type=float, metavar='S',
                   help='give both arms the iterations that fit in S seconds of training, measured by a short '
                        'calibration run of each arm (implies --equal-time; SPN\'s count is also the '
                        'equal-iteration count); not with --iters')
    p.add_argument('--calibration-iters', type=int, default=30,
                   help='iterations of each calibration run of --budget-seconds (default 30)')
    p.add_argument('--jobs', type=int, default=2, help='runs at a time (default 2: a baseline/SPN pair together)')
    p.add_argument('--threads', type=int, help='CPU threads per run (default: CPU count / jobs)')
    p.add_argument('--name', help='prefix of the run names (default: the baseline\'s name)')
    p.add_argument('--crop', type=int, default=64, help='size of the crops in crops.png (default 64)')
    p.add_argument('--verbose', action='store_true', help='stream the runs\' BasicSR logs')
    return p


def option_pair(args):
    """(baseline options, SPN options) from the command line's option file(s) and --spn."""
    opts = [load_options(p) for p in args.options]
    if len(opts) == 2:
        if args.spn:
            raise CompareError('--spn is for a single option file')
        return opts
    mode = args.spn or ('off' if has_spn(opts[0]) else 'on')
    if mode == 'off':
        if not has_spn(opts[0]):
            raise CompareError(f'--spn off: {args.options[0]} does not use SPN')
        return strip_spn(opts[0]), opts[0]
    if has_spn(opts[0]):
        raise CompareError(f'--spn on: {args.options[0]} already uses SPN (use --spn off)')
    spn, negatives = default_spn()
    spn = _json_or_file(args.spn_opt) or spn
    negatives = _json_or_file(args.negatives) or negatives
    return strip_spn(opts[0], '--spn on'), add_spn(opts[0], spn, negatives)


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
