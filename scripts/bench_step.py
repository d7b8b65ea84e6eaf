#!/usr/bin/env python
"""Seconds per training iteration and peak memory: L1 baseline vs. MCLIR (SPN) vs. its floor.

Builds the real models through BasicSR (``build_model(opt)`` with an option dict shaped like the one
``basicsr.utils.options.parse_options`` returns) and times ``model.feed_data(batch);
model.optimize_parameters(it)`` on random tensors (no dataset). Variants (``--variants``, comma list):

* ``baseline``        SRModel with the L1 pixel loss;
* ``spn_kN``          ModelContrastiveModel with N negatives (L1 + SPN);
* ``published_kN``    the same model, stepped as the official code (Aitical/MCLIR ``SRNegModel_Multi``)
                      steps: one perceptual call per negative (the output through VGG, with grad, N times;
                      each negative through VGG separately) and a per-parameter Python loop refresh. It
                      reuses this model's NegativePool negatives and SPNLoss VGG, so the two steps are
                      compared on the same machine and weights;
* modifiers on ``spn_kN`` (joined with ``+``): ``bf16`` (``negatives.autocast`` and ``spn_opt.autocast``
  bfloat16), ``fp16`` (the same in float16, CUDA only), ``cl`` (``channels_last`` in both), ``negbf16``
  (``negatives.dtype: bfloat16``), ``nchw`` (``spn_opt.channels_last: false``: VGG in NCHW, the layout
  before ``auto`` made CPU runs channels_last), e.g. ``spn_k4+bf16+cl+negbf16``.

In the same run it times the components of the method's floor (median of the same repetitions):
network forward+backward, one no-grad network forward, VGG forward (with grad) and backward of the output
(B images), no-grad VGG forward of K*B images; and prints

    floor(K) = baseline step + K x net no-grad forward + VGG fwd(out) + VGG bwd(out) + VGG no-grad(K*B)

Each variant (and the components) lives in its own process, forked from a server that has imported
torch and BasicSR and nothing else, so peaks do not mix. The processes are built and warmed up one
after the other, then timed in ``--repeats`` rounds: in each round every process runs one repetition
of ``--iters`` iterations in turn (the order rotating from round to round), so a slow stretch of a
shared machine falls on all rows alike. Times are medians over rounds; "x baseline" and "x floor" are
medians over rounds of the row's time over the baseline's (the floor's) in the same round. All
processes are alive together: the memory needed is the sum of their peaks. Peak memory: CPU, the
process's peak RSS (``getrusage`` maxrss; its RSS at start, torch and BasicSR imported, is in the JSON
as ``rss_start_mb``); CUDA, ``torch.cuda.max_memory_allocated``.

Negatives are refreshed every ``--update-every`` iterations (default 1: every negative at every step,
an upper bound on the refresh's cost). Without ``--vgg-weights`` random VGG weights in torchvision's
format are written to a temporary file (timing does not depend on the values).

On CPU, glibc's malloc gives buffers above its mmap threshold back to the OS after each use, so every
step page-faults its largest activations in again; to see how much that costs, run with e.g.
``MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=40000000000`` (or an LD_PRELOADed jemalloc).

Example (the issue's configuration is the default): ``python scripts/bench_step.py --json bench.json``
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import time
import traceback

import yaml

DEFAULT_ARCH = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16,
                'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]}  # EDSR-light
DEFAULT_LAYERS = 'relu1_2:0.2,relu2_2:0.3,relu3_3:0.5'
DEFAULT_VARIANTS = ('baseline,spn_k1,spn_k4,spn_k4+nchw,published_k1,published_k4,'
                    'spn_k4+bf16,spn_k4+cl,spn_k4+negbf16,spn_k4+bf16+cl+negbf16')
MODIFIERS = {  # name: (negatives options, spn_opt options)
    'bf16': ({'autocast': 'bfloat16'}, {'autocast': 'bfloat16'}),
    'fp16': ({'autocast': 'float16'}, {'autocast': 'float16'}),
    'cl': ({'channels_last': True}, {'channels_last': True}),
    'negbf16': ({'dtype': 'bfloat16'}, {}),
    'nchw': ({}, {'channels_last': False}),
}
VARIANTS_HELP = (
    'Variants: baseline (SRModel, L1), spn_kN (ModelContrastiveModel, N negatives), published_kN (the official '
    'step on the same model). Modifiers of spn_kN, joined with +: bf16 (negatives and VGG under bfloat16 '
    'autocast), fp16 (float16 autocast, CUDA only), cl (channels_last), negbf16 (negatives stored in bfloat16), '
    'nchw (VGG in NCHW: spn_opt.channels_last false). '
    f'Default: {DEFAULT_VARIANTS}.')
_VARIANT_RE = re.compile(r'^(baseline|spn_k(\d+)|published_k(\d+))((?:\+\w+)*)$')


# =========================================================================== configuration (no torch)
def parse_variant(name):
    """'spn_k4+bf16+cl' -> {'name', 'kind': baseline|spn|published, 'k', 'mods'}."""
    m = _VARIANT_RE.match(name.strip())
    if not m:
        raise ValueError(f'unknown variant {name!r}: expected baseline, spn_kN or published_kN, '
                         f'spn_kN optionally with +{"/+".join(MODIFIERS)}')
    kind = m.group(1).split('_')[0]
    k = int(m.group(2) or m.group(3) or 0)
    mods = [x for x in m.group(4).split('+') if x]
    if kind != 'baseline' and k < 1:
        raise ValueError(f'variant {name!r}: K must be >= 1')
    if mods and kind != 'spn':
        raise ValueError(f'variant {name!r}: modifiers apply to spn_kN only (baseline and published are fp32)')
    for mod in mods:
        if mod not in MODIFIERS:
            raise ValueError(f'variant {name!r}: unknown modifier {mod!r} (known: {", ".join(MODIFIERS)})')
    return {'name': name.strip(), 'kind': kind, 'k': k, 'mods': mods}


def parse_layers(text):
    """'relu1_2:0.2,relu2_2:0.3' (a missing weight is 1) -> {'relu1_2': 0.2, 'relu2_2': 0.3}."""
    out = {}
    for item in text.split(','):
        if item.strip():
            name, _, weight = item.partition(':')
            out[name.strip()] = float(weight) if weight.strip() else 1.0
    if not out:
        raise ValueError('--layers: no layer given')
    return out


def network_options(arch_opt, scale):
    """network_g: the EDSR-light default with --arch-opt merged over it (a --arch-opt with a `type` is
    used as it is)."""
    given = yaml.safe_load(arch_opt) if arch_opt else {}
    if not isinstance(given, dict):
        raise ValueError(f'--arch-opt: expected a YAML/JSON mapping, got {arch_opt!r}')
    if 'type' in given:
        return dict(given)
    return dict(DEFAULT_ARCH, upscale=scale, **given)


def spn_options(cfg, mods=()):
    spn = {'type': 'SPNLoss', 'loss_weight': 0.001, 'feature': cfg['feature']}
    if cfg['feature'] != 'pixel':
        spn['layer_weights'] = dict(cfg['layers'])
        spn['pretrained'] = cfg['vgg_weights']
    for mod in mods:
        spn.update(MODIFIERS[mod][1])
    return spn


def make_options(cfg, variant, device, root):
    """A BasicSR training option dict, as parse_options(is_train=True) leaves it."""
    scale, batch = cfg['scale'], cfg['batch']
    train = {
        'ema_decay': 0,
        'optim_g': {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9], 'gamma': 0.5},
        'total_iter': 10 ** 9,
        'warmup_iter': -1,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
    }
    if variant['kind'] != 'baseline':
        k = variant['k']
        negatives = {'update_every': [cfg['update_every']] * k, 'decay': 0.1, 'init_decay': 0.1}
        for mod in variant['mods']:
            negatives.update(MODIFIERS[mod][0])
        train['negatives'] = negatives
        train['spn_opt'] = spn_options(cfg, variant['mods'])
    name = 'bench_' + re.sub(r'\W', '_', variant['name'])
    exp = os.path.join(root, 'experiments', name)
    return {
        'name': name,
        'model_type': 'SRModel' if variant['kind'] == 'baseline' else 'ModelContrastiveModel',
        'scale': scale,
        'num_gpu': 1 if device == 'cuda' else 0,
        'manual_seed': 0,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'auto_resume': False,
        'is_train': True,
        'datasets': {'train': {
            'name': 'random', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': scale,
            'gt_size': cfg['patch'] * scale, 'use_hflip': True, 'use_rot': True, 'io_backend': {'type': 'disk'},
            'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
        'network_g': dict(cfg['network_g']),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': exp, 'models': os.path.join(exp, 'models'),
                 'training_states': os.path.join(exp, 'training_states'), 'log': exp,
                 'visualization': os.path.join(exp, 'visualization')},
        'train': train,
        'logger': {'print_freq': 100, 'save_checkpoint_freq': 10 ** 9, 'use_tb_logger': False, 'wandb': None},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


# =========================================================================== statistics
def summarize(samples):
    """median, p25, p75 (inclusive quartiles) of per-iteration seconds; the samples in round order."""
    s = sorted(samples)
    if len(s) == 1:
        return {'median_s': s[0], 'p25_s': s[0], 'p75_s': s[0], 'samples_s': list(samples)}
    p25, _, p75 = statistics.quantiles(s, n=4, method='inclusive')
    return {'median_s': statistics.median(s), 'p25_s': p25, 'p75_s': p75, 'samples_s': list(samples)}


def floor_terms(components, baseline_s, k, batch):
    """[(label, seconds)] of the floor for K negatives, from {component: seconds}."""
    vgg = 'vgg_fwd_out' in components
    terms = [('baseline step' if baseline_s is not None else 'net fwd+bwd (no baseline row)',
              baseline_s if baseline_s is not None else components['net_fwd_bwd']),
             (f'{k} x net fwd no-grad', k * components['net_fwd_nograd'])]
    if vgg:
        terms += [(f'VGG fwd out ({batch})', components['vgg_fwd_out']),
                  (f'VGG bwd out ({batch})', max(components['vgg_fwd_bwd_out'] - components['vgg_fwd_out'], 0.0)),
                  (f'VGG no-grad ({k}x{batch})', components[f'vgg_nograd_k{k}'])]
    return terms


# =========================================================================== worker side (torch)
def _peak_rss_mb():
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == 'darwin' else peak / 1024  # bytes on macOS, KiB on Linux


def _rss_now_mb():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except OSError:
        return _peak_rss_mb()


def write_random_vgg(path, vgg_type):
    from mclir_basicsr.losses.vgg import write_random_weights
    return write_random_weights(path, vgg_type)


def _setup_worker(task):
    import platform

    import basicsr
    import torch
    info = {'torch': torch.__version__, 'basicsr': getattr(basicsr, '__version__', '?'),
            'python': platform.python_version(), 'cuda_available': torch.cuda.is_available(),
            'cuda_device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            'default_threads': torch.get_num_threads(), 'cpu': platform.processor() or platform.machine()}
    try:
        with open('/proc/cpuinfo') as f:
            info['cpu'] = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), info['cpu'])
    except OSError:
        pass
    if task.get('write_vgg'):
        write_random_vgg(task['write_vgg'], task['feature'])
    return info


def _minor_faults():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timer(device, faults=None):
    """time(fn, n): seconds per call of n calls of fn (synchronising CUDA before and after). With a
    dict `faults`, faults[fn] gets the process's minor page faults per call (memory the kernel had to
    map in, e.g. large buffers malloc gave back and got again)."""
    import torch
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

    def time_it(fn, n):
        sync()
        f0, t0 = _minor_faults(), time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        seconds = (time.perf_counter() - t0) / max(n, 1)
        if faults is not None:
            faults.setdefault(fn, []).append((_minor_faults() - f0) / max(n, 1))
        return seconds
    return time_it


def _batches(cfg, device, n=2):
    import torch
    g = torch.Generator().manual_seed(0)
    b, p, s = cfg['batch'], cfg['patch'], cfg['scale']
    return [{'lq': torch.rand(b, 3, p, p, generator=g).to(device),
             'gt': torch.rand(b, 3, p * s, p * s, generator=g).to(device)} for _ in range(n)]


def published_step(self, current_iter):
    """The official step (Aitical/MCLIR SRNegModel_Multi.optimize_parameters) on this model's negatives
    and VGG: BasicSR's PerceptualLoss(output, neg_k) once per negative, i.e. the output through VGG with
    grad K times and each negative through VGG on its own; refresh by a per-parameter loop."""
    from collections import OrderedDict

    import torch
    self.optimizer_g.zero_grad()
    self.output = self.net_g(self.lq)
    with torch.no_grad():
        neg_out = [net(self.lq) for net in self.negatives.negatives]
    loss_dict = OrderedDict()
    l_total = loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
    spn, l_neg = self.cri_spn, 0.0
    for neg in neg_out:  # BasicSR's PerceptualLoss: per-layer criterion (plain autograd), weighted sum
        f_out, f_neg = spn.phi(self.output), spn.phi(neg.detach())
        l_neg = l_neg + spn.loss_weight * sum(w * torch.nn.functional.l1_loss(f_out[n], f_neg[n])
                                              for n, w in spn.layer_weights.items())
    l_total = l_total - l_neg / len(neg_out)
    loss_dict['l_neg'] = l_neg
    l_total.backward()
    self.optimizer_g.step()
    self.log_dict = self.reduce_loss_dict(loss_dict)
    net_g = self.get_bare_model(self.net_g)
    pool = self.negatives
    for idx, period in enumerate(pool.update_every[::-1]):  # [::-1] with idx as the official code has it
        if current_iter % period == 0:
            src = dict(net_g.named_parameters())
            for name, p in pool.negatives[idx].named_parameters():
                p.data.mul_(pool.decay[idx]).add_(src[name].data, alpha=1 - pool.decay[idx])


def _init_worker(task):
    import logging

    import torch
    from basicsr.utils import get_root_logger

    import mclir_basicsr  # noqa: F401  registers the add-on
    sys.stdout = sys.stderr  # the parent's stdout may carry the JSON
    get_root_logger(log_level=logging.WARNING)
    if task['threads']:
        torch.set_num_threads(task['threads'])
    torch.manual_seed(0)
    if task['device'] == 'cuda':
        torch.cuda.reset_peak_memory_stats()


def _memory(device):
    import torch
    out = {'peak_rss_mb': _peak_rss_mb()}
    if device == 'cuda':
        out['peak_cuda_mb'] = torch.cuda.max_memory_allocated() / 2 ** 20
    out['peak_mem_mb'] = out.get('peak_cuda_mb', out['peak_rss_mb'])
    return out


class _VariantJob:
    """One variant's model; ``rep()`` times one repetition of ``iters`` training iterations."""

    def __init__(self, task):
        import types

        from basicsr.models import build_model
        self.cfg, self.device, variant = task['cfg'], task['device'], task['variant']
        self.rss_start = _rss_now_mb()
        _init_worker(task)
        self.tmp = tempfile.TemporaryDirectory(prefix='bench_step_')
        self.model = build_model(make_options(self.cfg, variant, self.device, self.tmp.name))
        if variant['kind'] == 'published':
            self.model.optimize_parameters = types.MethodType(published_step, self.model)
        self.batches = _batches(self.cfg, self.device)
        self.it = 0
        self.faults = {}
        self.time = _timer(self.device, self.faults)
        self.time(self.step, self.cfg['warmup'])
        self.faults.clear()  # faults of the timed repetitions only

    def step(self):
        self.it += 1
        self.model.feed_data(self.batches[self.it % len(self.batches)])
        self.model.optimize_parameters(self.it)

    def rep(self):
        return self.time(self.step, self.cfg['iters'])

    def result(self):
        self.tmp.cleanup()
        return dict(rss_start_mb=self.rss_start, output_shape=list(self.model.output.shape), iterations=self.it,
                    minor_faults_per_iter=statistics.median(self.faults[self.step]), **_memory(self.device))


class _ComponentsJob:
    """The floor's components; ``rep()`` times ``iters`` calls of each, one after the other."""

    def __init__(self, task):
        import copy
        import functools

        import torch
        from basicsr.archs import build_network
        from basicsr.losses import build_loss
        from torch.nn import functional as F

        from mclir_basicsr.history import NegativePool
        self.cfg, self.device = cfg, device = task['cfg'], task['device']
        self.rss_start = _rss_now_mb()
        _init_worker(task)
        lq, gt = _batches(cfg, device, 1)[0].values()
        net = build_network(dict(cfg['network_g'])).to(device).train()
        neg = copy.deepcopy(net).requires_grad_(False).eval()
        fns = {}

        def net_fwd_bwd():
            net.zero_grad(set_to_none=True)
            F.l1_loss(net(lq), gt).backward()
        fns['net_fwd_bwd'] = net_fwd_bwd

        def net_fwd_nograd():
            with torch.inference_mode():
                neg(lq)
        fns['net_fwd_nograd'] = net_fwd_nograd

        pool = NegativePool(net, [1], [0.9], init_decay=0.0)
        fns['refresh_foreach'] = lambda: pool.refresh(0, net)  # NegativePool's refresh of one negative

        def refresh_loop():  # the official per-parameter loop, one negative
            src = dict(net.named_parameters())
            for name, p in neg.named_parameters():
                p.data.mul_(0.9).add_(src[name].data, alpha=0.1)
        fns['refresh_loop'] = refresh_loop

        if cfg['feature'] != 'pixel':
            spn = build_loss(spn_options(cfg)).to(device)
            with torch.no_grad():
                out = net(lq)

            def vgg_out(backward):
                x = out.detach().requires_grad_()
                loss = sum(w * f.mean() for w, f in zip(spn.layer_weights.values(), spn.phi(x).values()))
                if backward:
                    loss.backward()
            fns['vgg_fwd_out'] = lambda: vgg_out(False)
            fns['vgg_fwd_bwd_out'] = lambda: vgg_out(True)

            def vgg_nograd(refs):
                with torch.inference_mode():
                    spn.phi(refs)
            for k in task['ks']:
                fns[f'vgg_nograd_k{k}'] = functools.partial(vgg_nograd, out.repeat(k, 1, 1, 1))
        self.fns = fns
        self.faults = {}
        self.time = _timer(device, self.faults)
        for fn in fns.values():  # warm every component up before timing any (allocator, oneDNN primitives)
            self.time(fn, cfg['warmup'])
        self.faults.clear()  # faults of the timed repetitions only

    def rep(self):
        return {name: self.time(fn, self.cfg['iters']) for name, fn in self.fns.items()}

    def result(self):
        faults = {name: statistics.median(self.faults[fn]) for name, fn in self.fns.items()}
        return {'rss_start_mb': self.rss_start, 'minor_faults_per_call': faults, **_memory(self.device)}


def _serve(task, conn):
    """A worker process: build and warm up its job and say so, then answer 'rep' with one repetition's
    seconds per iteration and 'done' with its final record. Errors come back as text, never raised."""
    try:
        if task['what'] == 'setup':
            conn.send(_setup_worker(task))
            return
        job = {'variant': _VariantJob, 'components': _ComponentsJob}[task['what']](task)
        conn.send({'ready': True})
        while conn.recv() == 'rep':
            conn.send({'sample': job.rep()})
        conn.send(job.result())
    except BaseException as e:  # noqa: BLE001  reported by the parent
        conn.send({'error': f'{type(e).__name__}: {e}', 'traceback': traceback.format_exc()})
    finally:
        conn.close()


# =========================================================================== parent side
class Worker:
    """A process forked from a server that has imported torch and BasicSR (and nothing else, so each
    process's peak memory is its own; a fresh interpreter would not do: importing torch alone peaks at
    ~0.7 GB RSS, above what a small variant needs), talked to over a pipe."""
    ctx = None

    def __init__(self, task):
        if Worker.ctx is None:
            Worker.ctx = mp.get_context('forkserver')
            Worker.ctx.set_forkserver_preload(['mclir_basicsr', 'torch', 'basicsr'])
        self.conn, child = Worker.ctx.Pipe()
        self.proc = Worker.ctx.Process(target=_serve, args=(task, child), daemon=True)
        self.proc.start()
        child.close()
        self.error = None

    def ask(self, message=None):
        """Send `message` (if any) and return the reply; a process that died replies with an error."""
        try:
            if message is not None:
                self.conn.send(message)
            reply = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(10)
            reply = {'error': f'the worker process died (exit code {self.proc.exitcode}); out of memory?'}
        if 'error' in reply:
            self.error = reply
        return reply

    def close(self):
        self.conn.close()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


def run_once(task):
    w = Worker(task)
    try:
        return w.ask()
    finally:
        w.close()


def run_rounds(jobs, repeats, log, device):
    """Start every job's worker, one at a time (each builds and warms up alone), then time `repeats`
    rounds in which every live worker runs one repetition in turn, the order rotating from round to
    round, so a slow stretch of the machine falls on all rows alike. Returns {key: record}: 'samples'
    (one per round, None once the worker failed) and the worker's final record, or 'error'."""
    workers, records = {}, {}
    try:
        for key, task in jobs.items():
            t0 = time.time()
            print(f'[{device}] {key}: building and warming up ...', file=log, flush=True)
            w = workers[key] = Worker(task)
            records[key] = {'samples': []}
            reply = w.ask()
            if 'error' in reply:
                print(f'[{device}] {key} failed: {reply["error"]}\n{reply.get("traceback", "")}', file=log)
            else:
                print(f'[{device}] {key}: ready in {time.time() - t0:.1f} s', file=log, flush=True)
        keys = list(jobs)
        for r in range(repeats):
            t0 = time.time()
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                w = workers[key]
                reply = None if w.error else w.ask('rep')
                if reply is not None and 'error' in reply:
                    print(f'[{device}] {key} failed in round {r + 1}: {reply["error"]}', file=log, flush=True)
                records[key]['samples'].append(None if reply is None or 'error' in reply else reply['sample'])
            print(f'[{device}] round {r + 1}/{repeats} done in {time.time() - t0:.1f} s', file=log, flush=True)
        for key, w in workers.items():
            failed_before = w.error is not None
            final = w.error or w.ask('done')
            records[key].update(final)
            if 'error' in final and not failed_before:
                print(f'[{device}] {key} failed: {final["error"]}', file=log)
    finally:
        for w in workers.values():
            w.close()
    return records


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=VARIANTS_HELP)
    p.add_argument('--arch-opt', default=None,
                   help='network_g as YAML/JSON; without `type` it is merged over EDSR-light '
                        '(num_feat 64, num_block 16), e.g. "{num_feat: 16, num_block: 2}"')
    p.add_argument('--scale', type=int, default=2)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--patch', type=int, default=64, help='LR patch size (gt patch = patch x scale)')
    p.add_argument('--feature', default='vgg16', choices=('vgg16', 'vgg19', 'pixel'))
    p.add_argument('--layers', default=DEFAULT_LAYERS, help='VGG layers and weights, "name:weight,..."')
    p.add_argument('--vgg-weights', default=None,
                   help='torchvision VGG weight file; default: random weights in a temporary file')
    p.add_argument('--update-every', type=int, default=1, help='refresh period of every negative (default 1)')
    p.add_argument('--iters', type=int, default=5, help='iterations per timed repetition')
    p.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    p.add_argument('--repeats', type=int, default=5, help='timed repetitions (median/quartiles over them)')
    p.add_argument('--variants', default=DEFAULT_VARIANTS, help='comma list (see below)')
    p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: torch default)')
    p.add_argument('--device', default='auto', help='cpu, cuda, both (cpu,cuda) or auto (cuda if available)')
    p.add_argument('--json', nargs='?', const='-', default=None, metavar='PATH',
                   help='write the results as JSON to PATH (or stdout: the table then goes to stderr)')
    return p


def _fmt_s(x):
    return f'{x:.4f}' if x < 1 else f'{x:.3f}'


def markdown(report):
    lines = []
    cfg = report['config']
    lines.append(f"Config: {cfg['network_g']} x{cfg['scale']}, batch {cfg['batch']}, LR patch {cfg['patch']} "
                 f"(gt {cfg['patch'] * cfg['scale']}), {cfg['feature']} {cfg['layers']}, update_every "
                 f"{cfg['update_every']}, warmup {cfg['warmup']}, {cfg['repeats']} x {cfg['iters']} iterations, "
                 f"threads {cfg['threads'] or 'default'}; VGG weights: {cfg['vgg_weights_note']}")
    env = report['environment']
    lines.append(f"torch {env.get('torch')}, basicsr {env.get('basicsr')}, CPU {env.get('cpu')}"
                 + (f", GPU {env['cuda_device']}" if env.get('cuda_device') else ''))
    for device in report['devices']:
        rows = [r for r in report['results'] if r['device'] == device]
        mem = 'peak CUDA alloc MB' if device == 'cuda' else 'peak RSS MB (start)'
        lines += ['', f'### {device}', '',
                  f'| variant | K | s/iter median | p25-p75 | {mem} | x baseline | x floor | page faults/iter |',
                  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
        for r in rows:
            if 'error' in r:
                lines.append(f"| {r['variant']} | {r['k']} | failed: {r['error'][:80]} | | | | | |")
                continue
            m = f"{r['peak_mem_mb']:.0f}" + (f" ({r['rss_start_mb']:.0f})" if device != 'cuda' else '')
            xb = f"{r['ratio_baseline']:.2f}" if r.get('ratio_baseline') else ''
            xf = f"{r['ratio_floor']:.2f}" if r.get('ratio_floor') else ''
            lines.append(f"| {r['variant']} | {r['k']} | {_fmt_s(r['median_s'])} | "
                         f"{_fmt_s(r['p25_s'])}-{_fmt_s(r['p75_s'])} | {m} | {xb} | {xf} | "
                         f"{r['minor_faults_per_iter']:.0f} |")
        comps = report['components'].get(device, {})
        if 'error' in comps:
            lines += ['', f"Components failed: {comps['error']}"]
            continue
        lines += ['', '| component | s median | p25-p75 | page faults/call |', '| --- | ---: | ---: | ---: |']
        faults = comps.get('minor_faults_per_call', {})
        for name, c in comps.get('components', {}).items():
            lines.append(f"| {name} | {_fmt_s(c['median_s'])} | {_fmt_s(c['p25_s'])}-{_fmt_s(c['p75_s'])} | "
                         f"{faults.get(name, float('nan')):.0f} |")
        lines.append('')
        for k, fl in report['floor'].get(device, {}).items():
            terms = ' + '.join(f'{_fmt_s(s)} ({label})' for label, s in fl['terms'])
            measured = ', '.join(f"{v}: {r:.2f}x" for v, r in fl['measured_over_floor'].items())
            lines.append(f"Floor K={k}: {terms} = {_fmt_s(fl['floor_s'])} s"
                         + (f'; measured/floor: {measured}' if measured else '')
                         + (f"; page faults of the floor's parts: {fl['minor_faults']:.0f}" if 'minor_faults' in fl
                            else ''))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = build_parser().parse_args(argv)
    log = sys.stderr
    try:
        variants = [parse_variant(v) for v in args.variants.split(',') if v.strip()]
        network_g = network_options(args.arch_opt, args.scale)
        layers = parse_layers(args.layers) if args.feature != 'pixel' else {}
    except (ValueError, yaml.YAMLError) as e:
        raise SystemExit(f'bench_step.py: {e}') from None
    if not variants:
        raise SystemExit('--variants: nothing to run')
    if len({v['name'] for v in variants}) != len(variants):
        raise SystemExit('--variants: a variant is listed twice')
    for name, value in (('--iters', args.iters), ('--repeats', args.repeats), ('--batch', args.batch),
                        ('--patch', args.patch), ('--scale', args.scale), ('--update-every', args.update_every)):
        if value < 1:
            raise SystemExit(f'{name}: must be >= 1')
    if args.warmup < 0 or args.threads < 0:
        raise SystemExit('--warmup and --threads must be >= 0')
    ks = sorted({1, 4} | {v['k'] for v in variants if v['k']})  # floors: K=1, K=4 and every K run
    cfg = {'network_g': network_g, 'scale': args.scale, 'batch': args.batch, 'patch': args.patch,
           'feature': args.feature, 'layers': layers,
           'update_every': args.update_every, 'iters': args.iters, 'warmup': args.warmup,
           'repeats': args.repeats, 'threads': args.threads, 'vgg_weights': None}

    tmp = tempfile.TemporaryDirectory(prefix='bench_step_vgg_')
    try:
        setup = {'what': 'setup', 'feature': args.feature}
        if args.feature == 'pixel':
            cfg['vgg_weights_note'] = 'none (feature: pixel)'
        elif args.vgg_weights:
            if not os.path.isfile(args.vgg_weights):
                raise SystemExit(f'--vgg-weights: no file {args.vgg_weights}')
            cfg['vgg_weights'] = os.path.abspath(args.vgg_weights)
            cfg['vgg_weights_note'] = cfg['vgg_weights']
        else:
            cfg['vgg_weights'] = setup['write_vgg'] = os.path.join(tmp.name, f'{args.feature}-random.pth')
            cfg['vgg_weights_note'] = 'random (no --vgg-weights; timing does not depend on the values)'
            print(f'No --vgg-weights: writing random {args.feature} weights to {cfg["vgg_weights"]} '
                  '(timing does not depend on the values).', file=log)
        print('Starting the worker server (imports torch and BasicSR once)...', file=log, flush=True)
        env = run_once(setup)
        if 'error' in env:
            raise SystemExit(f'set-up failed: {env["error"]}\n{env.get("traceback", "")}')
        if args.device == 'auto':
            devices = ['cuda' if env['cuda_available'] else 'cpu']
        else:
            devices = ['cpu', 'cuda'] if args.device == 'both' else [d.strip() for d in args.device.split(',')]
        for d in devices:
            if d not in ('cpu', 'cuda'):
                raise SystemExit(f'--device: unknown device {d!r}')
            if d == 'cuda' and not env['cuda_available']:
                raise SystemExit('--device cuda: CUDA is not available here')

        report = {'config': cfg, 'environment': env, 'devices': devices, 'results': [], 'components': {},
                  'floor': {}}
        failed = False
        for device in devices:
            base = {'cfg': cfg, 'device': device, 'threads': args.threads}
            jobs = {'components': dict(base, what='components', ks=ks)}
            jobs.update((v['name'], dict(base, what='variant', variant=v)) for v in variants)
            records = run_rounds(jobs, args.repeats, log, device)
            comps = records.pop('components')
            if 'error' in comps:
                failed = True
            else:
                names = comps['samples'][0].keys()
                comps['components'] = {n: summarize([s[n] for s in comps['samples']]) for n in names}
            report['components'][device] = comps
            for v in variants:
                row = {'device': device, 'variant': v['name'], 'kind': v['kind'], 'k': v['k'], 'mods': v['mods']}
                rec = records[v['name']]
                if 'error' in rec:
                    failed = True
                    row.update(error=rec['error'], traceback=rec.get('traceback'))
                else:
                    row.update(summarize(rec['samples']), **{k: x for k, x in rec.items() if k != 'samples'})
                report['results'].append(row)
            _ratios(report, device, ks, records, comps)
    finally:
        tmp.cleanup()

    text = markdown(report)
    if args.json:
        data = json.dumps(report, indent=1, default=str)
        if args.json == '-':
            print(text, file=log)
            print(data)
        else:
            with open(args.json, 'w') as f:
                f.write(data + '\n')
            print(text)
    else:
        print(text)
    return 1 if failed else 0


def _ratios(report, device, ks, records, comps):
    """x baseline and x floor of every row: the median over rounds of the row's time in a round over the
    baseline's (the floor's) in the same round. The floor's terms shown are the components' medians."""
    rows = [r for r in report['results'] if r['device'] == device and 'error' not in r]
    base_row = next((r for r in rows if r['kind'] == 'baseline'), None)
    base_rounds = records[base_row['variant']]['samples'] if base_row else [None] * report['config']['repeats']
    batch, floors = report['config']['batch'], {}
    if 'error' not in comps:
        medians = {n: c['median_s'] for n, c in comps['components'].items()}
        for k in ks:
            terms = floor_terms(medians, base_row and base_row['median_s'], k, batch)
            rounds = [sum(x for _, x in floor_terms(c, b, k, batch)) if c is not None else None
                      for c, b in zip(comps['samples'], base_rounds)]
            floors[k] = {'terms': terms, 'floor_s': sum(x for _, x in terms), 'rounds_s': rounds,
                         'measured_over_floor': {}}
            if not all(math.isfinite(x) for _, x in terms):
                floors[k]['floor_s'] = float('nan')
            faults = comps.get('minor_faults_per_call')
            if faults and base_row and 'vgg_fwd_bwd_out' in faults:  # the floor's parts, as in floor_terms
                floors[k]['minor_faults'] = (base_row['minor_faults_per_iter'] + k * faults['net_fwd_nograd']
                                             + faults['vgg_fwd_bwd_out'] + faults[f'vgg_nograd_k{k}'])

    def per_round(samples, refs):
        ratios = [s / r for s, r in zip(samples, refs) if s is not None and r]
        return statistics.median(ratios) if ratios else None
    for r in rows:
        samples = records[r['variant']]['samples']
        r['ratio_baseline'] = per_round(samples, base_rounds)
        fl = floors.get(r['k'])
        r['ratio_floor'] = per_round(samples, fl['rounds_s']) if fl and r['k'] else None
        if r['ratio_floor'] is not None:
            fl['measured_over_floor'][r['variant']] = r['ratio_floor']
    report['floor'][device] = {str(k): v for k, v in floors.items()}


if __name__ == '__main__':
    sys.exit(main())
