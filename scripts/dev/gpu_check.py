#!/usr/bin/env python
"""The CUDA path, checked in one command: device tests, the step benchmark, an equal-iteration comparison.

    python scripts/dev/gpu_check.py OUT_DIR              # on a machine with one GPU: about 8 minutes
    python scripts/dev/gpu_check.py --cpu OUT_DIR        # the same stages at tiny sizes on CPU (the suite runs this)
    python scripts/dev/gpu_check.py --fetch-wheels .whl  # here, with PyPI: the wheels a machine without PyPI needs

Stages, each in child processes with its own time budget (a stage that hangs is killed and the next one
still runs):

* ``setup``: what is installed (python, torch, CUDA, the modules the stages import). With ``--wheels DIR``
  it first installs DIR's wheels, when a module is missing, into a scratch folder (one per wheel folder
  under the temporary directory, emptied first) with no index and no pip configuration (``pip install
  --isolated --no-index --no-deps --target``); that folder goes on the stages' PYTHONPATH beside the
  interpreter's own packages (its torch), in later runs of other stages too. When ``mclir_basicsr`` is
  not importable it runs ``pip install --isolated --no-index --no-deps --no-build-isolation -e .``
  (nothing is downloaded; this brings the start-up hook, without which ``import basicsr`` fails on a
  torchvision >= 0.17), or falls back to PYTHONPATH. It says what is still missing and how to bring it.
* ``tests``: ``pytest -m device tests`` (tests/test_device.py: on CUDA everything; on CPU the CPU forms).
* ``bench``: ``scripts/dev/bench_step.py`` for ``edsr_light_x2`` and ``swinir_light_x4`` (baseline, SPN K=4,
  split batch, whole-step amp; float16 amp too on CUDA) -> ``bench/bench_<arch>.json`` and ``.log``.
* ``compare``: the demo's data (``mclir_basicsr.demo --data-only``), EDSR 64x16 x2, L1 vs L1 + SPN for 3000
  iterations and seeds 0 1 through ``python -m mclir_basicsr.compare`` -> ``compare/result/table.md``.

``--fetch-wheels DIR`` (where PyPI is reachable): the wheels the GPU image lacks, for its Python 3.12 on
manylinux x86_64, into DIR (git-ignored when inside the repo) with ``manifest.json`` (names, versions,
sizes, total); ``gpu_check_lib/wheel_set.py`` is the list and says why each wheel is there and why each
other requirement of basicsr and the add-on is not.

``--cpu``: tiny networks, one or two iterations, the demo's ``--quick`` data, a few iterations; about two
minutes on two CPU cores. OUT_DIR gets ``summary.json`` and ``summary.txt`` (rewritten after every stage)
and one folder per stage with its logs. This process uses the standard library only, so it runs before
anything is installed.
"""
import argparse
import os
import platform
import sys
import time

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # loaded by path (the tests), not run
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from gpu_check_lib.bench_stage import stage_bench  # noqa: E402
from gpu_check_lib.compare_stage import stage_compare  # noqa: E402
from gpu_check_lib.modes import MODES, STAGES  # noqa: E402
from gpu_check_lib.procs import Stage  # noqa: E402
from gpu_check_lib.report import archive, summary_text, write_summary  # noqa: E402
from gpu_check_lib.setup_stage import stage_setup  # noqa: E402
from gpu_check_lib.tests_stage import stage_tests  # noqa: E402
from gpu_check_lib.wheels import fetch_wheels, site_for  # noqa: E402

STAGE_FUNCS = {'setup': stage_setup, 'tests': stage_tests, 'bench': stage_bench, 'compare': stage_compare}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', nargs='?', help='output folder (created)')
    p.add_argument('--cpu', action='store_true', help='tiny sizes on CPU (what the test suite runs)')
    p.add_argument('--stages', default=','.join(STAGES), help=f'comma list of {", ".join(STAGES)} (default: all)')
    p.add_argument('--budget', action='append', default=[], metavar='STAGE=SECONDS',
                   help='override a stage\'s time budget, e.g. --budget compare=200')
    p.add_argument('--wheels', metavar='DIR',
                   help='folder from --fetch-wheels: installed offline into a scratch folder when modules are missing')
    p.add_argument('--no-install', action='store_true', help='never pip install anything (setup only reports)')
    p.add_argument('--archive', metavar='PATH.tar.gz', help='also pack OUT_DIR (without checkpoints) into PATH')
    p.add_argument('--fetch-wheels', metavar='DIR',
                   help='only fetch the wheels the GPU image lacks into DIR (needs PyPI)')
    return p


def make_context(args, parser):
    mode = 'cpu' if args.cpu else 'gpu'
    budgets = dict(MODES[mode]['budgets'])
    for item in args.budget:
        stage, _, seconds = item.partition('=')
        if stage not in budgets or not seconds.replace('.', '', 1).isdigit():
            parser.error(f'--budget {item!r}: expected STAGE=SECONDS with STAGE one of {", ".join(STAGES)}')
        budgets[stage] = float(seconds)
    stages = [s.strip() for s in args.stages.split(',') if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f'--stages: unknown stage(s) {", ".join(unknown)} (known: {", ".join(STAGES)})')
    if args.wheels and not os.path.isdir(args.wheels):
        parser.error(f'--wheels {args.wheels}: no such folder')
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    site = args.wheels and site_for(args.wheels)  # an earlier setup's install, for stages run without setup
    return {'mode': mode, 'cpu': args.cpu, 'budgets': budgets, 'stages': stages, 'out': out,
            'wheels': args.wheels and os.path.abspath(args.wheels), 'no_install': args.no_install,
            'site': site if site and os.path.isdir(site) else None}


def run_stages(ctx):
    summary = {'mode': ctx['mode'], 'out': ctx['out'], 'started_unix': time.time(), 'host': platform.node(),
               'budgets_s': ctx['budgets'], 'stages': []}
    for name in ctx['stages']:
        st = Stage(name, ctx)
        setup = next((r for r in summary['stages'] if r['stage'] == 'setup'), None)
        print(f'== {name} (budget {st.budget:.0f} s)', flush=True)
        if setup is not None and setup['status'] != 'ok':
            st.fail('skipped', 'setup failed (see its notes)')
        else:
            try:
                STAGE_FUNCS[name](st)
            except Exception as e:  # a broken stage must not cost the others their turn
                st.fail('failed', f'{type(e).__name__}: {e}')
        summary['stages'].append(st.done())
        print(f'   {name}: {st.record["status"]} in {st.record["seconds"]:.1f} s  {st.record.get("brief", "")}',
              flush=True)
        write_summary(summary)
    return summary


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(args.fetch_wheels)
    if not args.out:
        parser.error('OUT_DIR is required (or --fetch-wheels DIR)')
    ctx = make_context(args, parser)
    summary = run_stages(ctx)
    print('\n' + summary_text(summary), flush=True)
    if args.archive:
        print(f'archive: {archive(ctx["out"], os.path.abspath(args.archive))}')
    return 0 if all(r['status'] == 'ok' for r in summary['stages']) else 1


if __name__ == '__main__':
    sys.exit(main())
