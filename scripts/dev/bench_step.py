#!/usr/bin/env python
"""Seconds per training iteration and peak memory: L1 baseline vs. MCLIR (SPN) vs. its floor.

Builds the real models through BasicSR (``build_model(opt)`` with an option dict shaped like the one
``basicsr.utils.options.parse_options`` returns) and times ``model.feed_data(batch);
model.optimize_parameters(it)`` on random tensors (no dataset). Architectures (``--arch``):
``edsr_light_x2`` (EDSR 64 features, 16 blocks, x2; batch 8, LR patch 64: the default) and
``swinir_light_x4`` (SwinIR-light as in the paper and BasicSR's options, x4; batch 4, LR patch 48);
``--arch-opt`` edits the preset's network. Variants (``--variants``, comma list):

* ``baseline``        SRModel with the L1 pixel loss; ``baseline+amp`` (``+amp16``) is
                      ModelContrastiveModel without ``spn_opt`` (SPN off) under ``train.amp``;
* ``spn_kN``          ModelContrastiveModel with N negatives (L1 + SPN);
* ``published_kN``    the same model, stepped as the official code (Aitical/MCLIR ``SRNegModel_Multi``)
                      steps (``published_step``): one PerceptualLoss-style call per negative and a
                      per-parameter Python loop refresh, on this model's negatives and VGG;
* modifiers of ``spn_kN`` (joined with ``+``): ``split`` (``negatives.split_batch``: each sample meets
  one negative), ``amp`` (``train.amp: bfloat16``, the whole step), ``amp16`` (``train.amp: float16``),
  ``bf16`` (``negatives.autocast`` and ``spn_opt.autocast`` bfloat16), ``fp16`` (the same in float16,
  CUDA only), ``cl`` (``channels_last`` in both), ``negbf16`` (``negatives.dtype: bfloat16``), ``nchw``
  (``spn_opt.channels_last: false``), e.g. ``spn_k4+split+amp``.

In the same run it times the components of the method's floor (``COMPONENTS``): network
forward+backward, one no-grad network forward, VGG forward (with grad) and backward of the output
(B images), no-grad VGG forward of K*B images; and prints

    floor(K)     = baseline step + K x net no-grad forward + VGG fwd(out) + VGG bwd(out) + VGG no-grad(K*B)
    floor(split) = baseline step + 1 x net no-grad forward + VGG fwd(out) + VGG bwd(out) + VGG no-grad(B)

(float32 parts; a row under amp can sit below its floor).

Each variant (and the components) lives in its own process, forked from a server that has imported
torch and BasicSR and nothing else, so peaks do not mix. The processes are built and warmed up one
after the other, then timed in ``--repeats`` rounds: in each round every process runs one repetition
of ``--iters`` iterations in turn (the order rotating from round to round), so a slow stretch of a
shared machine falls on all rows alike. Times are medians over rounds; "x baseline" and "x floor" are
medians over rounds of the row's time over the (float32) baseline's (the floor's) in the same round.
All processes are alive together: the memory needed is the sum of their peaks. Peak memory: CPU, the
process's peak RSS (``getrusage`` maxrss; its RSS at start, torch and BasicSR imported, is in the JSON
as ``rss_start_mb``); CUDA, ``torch.cuda.max_memory_allocated``.

Negatives are refreshed every ``--update-every`` iterations (default 1: every negative at every step,
an upper bound on the refresh's cost). Without ``--vgg-weights`` random VGG weights in torchvision's
format are written to a temporary file (timing does not depend on the values).

On CPU, glibc's malloc gives buffers above its mmap threshold back to the OS after each use, so every
step page-faults its largest activations in again; to see how much that costs, run with e.g.
``MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=40000000000`` (or an LD_PRELOADed jemalloc).

Example::

    python scripts/dev/bench_step.py --arch swinir_light_x4 --variants baseline,spn_k4,spn_k4+split --json b.json

The parts are in ``scripts/dev/bench/`` (its ``__init__`` lists them); the published step is ``bench/published.py``.
"""
import os
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/, from any working directory

from bench.floors import add_ratios, summarize  # noqa: E402
from bench.options import build_parser, configure  # noqa: E402
from bench.report import write_report  # noqa: E402
from bench.workers import run_once, run_rounds  # noqa: E402


def _vgg_weights(cfg, args, tmp, log):
    """Sets cfg's VGG weight file and note; returns the file the set-up worker should write, if any."""
    if args.feature == 'pixel':
        cfg['vgg_weights_note'] = 'none (feature: pixel)'
    elif args.vgg_weights:
        if not os.path.isfile(args.vgg_weights):
            raise SystemExit(f'--vgg-weights: no file {args.vgg_weights}')
        cfg['vgg_weights'] = cfg['vgg_weights_note'] = os.path.abspath(args.vgg_weights)
    else:
        cfg['vgg_weights'] = os.path.join(tmp, f'{args.feature}-random.pth')
        cfg['vgg_weights_note'] = 'random (no --vgg-weights; timing does not depend on the values)'
        print(f'No --vgg-weights: writing random {args.feature} weights to {cfg["vgg_weights"]} '
              '(timing does not depend on the values).', file=log)
        return cfg['vgg_weights']
    return None


def _devices(spec, env):
    if spec == 'auto':
        return ['cuda' if env['cuda_available'] else 'cpu']
    devices = ['cpu', 'cuda'] if spec == 'both' else [d.strip() for d in spec.split(',')]
    for d in devices:
        if d not in ('cpu', 'cuda'):
            raise SystemExit(f'--device: unknown device {d!r}')
        if d == 'cuda' and not env['cuda_available']:
            raise SystemExit('--device cuda: CUDA is not available here')
    return devices


def bench_device(report, variants, device, log):
    """Times every variant and the components on `device` in interleaved rounds; adds rows, components and
    floors to `report`. Returns whether anything failed."""
    cfg = report['config']
    base = {'cfg': cfg, 'device': device, 'threads': cfg['threads']}
    jobs = {'components': dict(base, what='components', ks=cfg['ks'], subsets=cfg.get('subsets', []))}
    jobs.update((v['name'], dict(base, what='variant', variant=v)) for v in variants)
    records = run_rounds(jobs, cfg['repeats'], log, device)
    comps = records.pop('components')
    if 'error' not in comps:
        names = comps['samples'][0].keys()
        comps['components'] = {n: summarize([s[n] for s in comps['samples']]) for n in names}
    report['components'][device] = comps
    failed = 'error' in comps
    for v in variants:
        row = {'device': device, 'variant': v['name'], 'kind': v['kind'], 'k': v['k'], 'mods': v['mods']}
        rec = records[v['name']]
        if 'error' in rec:
            failed = True
            row.update(error=rec['error'], traceback=rec.get('traceback'))
        else:
            row.update(summarize(rec['samples']), **{k: x for k, x in rec.items() if k != 'samples'})
        report['results'].append(row)
    add_ratios(report, device, cfg['floor_keys'], records, comps)
    return failed


def main(argv=None):
    args = build_parser().parse_args(argv)
    log = sys.stderr
    try:
        cfg, variants = configure(args)
    except (ValueError, yaml.YAMLError) as e:
        raise SystemExit(f'bench_step.py: {e}') from None
    with tempfile.TemporaryDirectory(prefix='bench_step_vgg_') as tmp:
        setup = {'what': 'setup', 'feature': args.feature, 'write_vgg': _vgg_weights(cfg, args, tmp, log)}
        print('Starting the worker server (imports torch and BasicSR once)...', file=log, flush=True)
        env = run_once(setup)
        if 'error' in env:
            raise SystemExit(f'set-up failed: {env["error"]}\n{env.get("traceback", "")}')
        devices = _devices(args.device, env)
        report = {'config': cfg, 'environment': env, 'devices': devices, 'results': [], 'components': {},
                  'floor': {}}
        failed = [bench_device(report, variants, device, log) for device in devices]
    write_report(report, args.json, log)
    return 1 if any(failed) else 0


if __name__ == '__main__':
    sys.exit(main())
