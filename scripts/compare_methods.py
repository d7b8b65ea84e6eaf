"""Several methods against ONE shared L1 baseline on the demo's data, paired seeds, equal iterations.

    python scripts/compare_methods.py [--out compare_methods_output] [--iters 1000] [--seeds 0 1 2] [--jobs 2]
        [--arms CR SPN] [--cr-weight 0.1] [--arm NAME=YAML ...] [--quick]

Data, network, optimiser and schedule are ``python -m mclir_basicsr.demo``'s (scikit-image photos, EDSR
x2 16x4, Adam 1e-3 with cosine decay, batch 8). Built-in arms: CR (AECR-Net's contrastive
regularisation in pixel space, weight --cr-weight: no VGG weights offline) and SPN (the demo's: pixel,
lambda 0.1, K = 2). ``--arm NAME=YAML`` adds an arm whose YAML mapping is merged into the baseline's
``train`` section, e.g. ``--arm 'CR_w0={cr_opt: {type: CRLoss, loss_weight: 0, feature: pixel}}'``.
The baseline trains once per seed; every arm is scored by BasicSR's end-of-training validation
(:mod:`mclir_basicsr.compare.methods`). Prints one table and writes it to OUT/methods.md (methods.json:
the numbers), with the wall time and the load average of the machine.
"""
import argparse
import os
import shlex
import sys
import time
from collections import OrderedDict

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mclir_basicsr import demo  # noqa: E402
from mclir_basicsr.compare.methods import compare_methods  # noqa: E402
from mclir_basicsr.compare.options import CompareError, add_cr, add_sections  # noqa: E402

BUILTIN_ARMS = ('CR', 'SPN')


def parse_arm(text):
    """'NAME=YAML mapping' -> (name, {train key: section})."""
    name, sep, snippet = text.partition('=')
    sections = yaml.safe_load(snippet) if sep else None
    if not name or not isinstance(sections, dict) or not sections:
        raise argparse.ArgumentTypeError(f'--arm {text!r}: expected NAME=YAML mapping merged into train, e.g. '
                                         'CR_w0={cr_opt: {type: CRLoss, loss_weight: 0, feature: pixel}}')
    return name, sections


def build_arms(base, builtin, cr_weight, extra):
    """{arm name: options}: the chosen built-in arms, then the --arm ones."""
    arms = OrderedDict()
    if 'CR' in builtin:
        arms['CR'] = add_cr(base, OrderedDict(type='CRLoss', loss_weight=cr_weight, feature='pixel'))
    if 'SPN' in builtin:
        arms['SPN'] = demo.spn_options(base)
    for name, sections in extra:
        if name in arms:
            raise CompareError(f'--arm {name}: an arm of that name exists already')
        arms[name] = add_sections(base, sections, f'--arm {name}')
    return arms


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='compare_methods_output')
    p.add_argument('--iters', type=int, default=demo.DEMO_ITERS)
    p.add_argument('--val-freq', type=int, help='validate every N iterations (default: iters / 5)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--arms', nargs='*', default=list(BUILTIN_ARMS), choices=BUILTIN_ARMS,
                   help='built-in arms (default: CR SPN; none: only the --arm ones)')
    p.add_argument('--cr-weight', type=float, default=0.1, help='loss_weight of the CR arm (default 0.1, AECR-Net\'s)')
    p.add_argument('--arm', type=parse_arm, action='append', default=[], metavar='NAME=YAML',
                   help='an extra arm: a YAML mapping merged into the baseline\'s train section (repeatable)')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--threads', type=int)
    p.add_argument('--quick', action='store_true', help='the demo\'s tiny smoke-test data and network')
    p.add_argument('--verbose', action='store_true')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = os.path.abspath(args.out)
    t0 = time.time()
    val_freq = args.val_freq or max(1, args.iters // 5)
    _, base = demo.prepare(os.path.join(out, 'data'), args.iters, val_freq, quick=args.quick,
                           name='methods_baseline')
    try:
        arms = build_arms(base, args.arms, args.cr_weight, args.arm)
        net = base['network_g']
        title = (f'Methods vs L1 on the demo data: EDSR x{demo.SCALE} {net["num_feat"]}x{net["num_block"]}'
                 + (' (--quick)' if args.quick else ''))
        result = compare_methods(base, arms, out, seeds=args.seeds, jobs=args.jobs, threads=args.threads,
                                 title=title, verbose=args.verbose)
    except CompareError as e:
        raise SystemExit(f'compare_methods: {e}') from None
    wall = time.time() - t0
    load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
    command = ' '.join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    note = (f'\n`python scripts/compare_methods.py {command}`: {len(result["runs"])} runs, {wall / 60:.1f} min '
            f'wall, {os.cpu_count()} CPU(s), load average at the end {load}.\n')
    with open(os.path.join(out, 'methods.md'), 'a', encoding='utf-8') as f:
        f.write(note)
    for w in result['warnings']:
        print(f'warning: {w}')
    print(result['markdown'] + note)
    return result


if __name__ == '__main__':
    main()
