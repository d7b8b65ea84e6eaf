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
"""
import argparse
import copy
import functools
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
import traceback
import types
from collections import OrderedDict

import basicsr
import torch
import yaml
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models import build_model
from basicsr.utils import get_root_logger
from torch.nn import functional as F

import mclir_basicsr  # noqa: F401  registers the add-on (the start-up hook normally has)
from mclir_basicsr.history import NegativePool
from mclir_basicsr.losses.vgg import write_random_weights

ARCHS = {  # --arch presets: network_g (upscale set from the scale), scale, batch, LR patch
    'edsr_light_x2': {'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16,
                                    'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]},
                      'scale': 2, 'batch': 8, 'patch': 64},
    'swinir_light_x4': {'network_g': {'type': 'SwinIR', 'in_chans': 3, 'img_size': 64, 'window_size': 8,
                                      'img_range': 1., 'depths': [6, 6, 6, 6], 'embed_dim': 60,
                                      'num_heads': [6, 6, 6, 6], 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect',
                                      'resi_connection': '1conv'},
                        'scale': 4, 'batch': 4, 'patch': 48},
}
DEFAULT_ARCH = 'edsr_light_x2'
DEFAULT_LAYERS = 'relu1_2:0.2,relu2_2:0.3,relu3_3:0.5'
DEFAULT_VARIANTS = ('baseline,spn_k1,spn_k4,spn_k4+nchw,published_k1,published_k4,'
                    'spn_k4+bf16,spn_k4+cl,spn_k4+negbf16,spn_k4+bf16+cl+negbf16')
SPN, BOTH = ('spn',), ('spn', 'baseline')
MODIFIERS = {  # name: ({'train' | 'negatives' | 'spn_opt': options merged there}, the kinds it applies to)
    'split': ({'negatives': {'split_batch': True}}, SPN),
    'amp': ({'train': {'amp': 'bfloat16'}}, BOTH),
    'amp16': ({'train': {'amp': 'float16'}}, BOTH),
    'bf16': ({'negatives': {'autocast': 'bfloat16'}, 'spn_opt': {'autocast': 'bfloat16'}}, SPN),
    'fp16': ({'negatives': {'autocast': 'float16'}, 'spn_opt': {'autocast': 'float16'}}, SPN),
    'cl': ({'negatives': {'channels_last': True}, 'spn_opt': {'channels_last': True}}, SPN),
    'negbf16': ({'negatives': {'dtype': 'bfloat16'}}, SPN),
    'nchw': ({'spn_opt': {'channels_last': False}}, SPN),
}
VARIANTS_HELP = (
    'Variants: baseline (SRModel, L1), spn_kN (ModelContrastiveModel, N negatives), published_kN (the official '
    'step on the same model). Modifiers, joined with +: split (negatives.split_batch), amp (train.amp: bfloat16; '
    'also baseline+amp: ModelContrastiveModel with SPN off), amp16 (train.amp: float16), and of spn_kN only: bf16 '
    '(negatives and VGG under bfloat16 autocast), fp16 (float16 autocast, CUDA only), cl (channels_last), '
    'negbf16 (negatives stored in bfloat16), nchw (VGG in NCHW: spn_opt.channels_last false). '
    f'Default: {DEFAULT_VARIANTS}. Architectures (--arch): {", ".join(ARCHS)}.')
_VARIANT_RE = re.compile(r'^(baseline|spn_k(\d+)|published_k(\d+))((?:\+\w+)*)$')


# =========================================================================== configuration
def parse_variant(name):
    """'spn_k4+split+amp' -> {'name', 'kind': baseline|spn|published, 'k', 'mods'}."""
    m = _VARIANT_RE.match(name.strip())
    if not m:
        raise ValueError(f'unknown variant {name!r}: expected baseline, spn_kN or published_kN, '
                         f'optionally with +{"/+".join(MODIFIERS)}')
    kind = m.group(1).split('_')[0]
    k = int(m.group(2) or m.group(3) or 0)
    mods = [x for x in m.group(4).split('+') if x]
    if kind != 'baseline' and k < 1:
        raise ValueError(f'variant {name!r}: K must be >= 1')
    for mod in mods:
        if mod not in MODIFIERS:
            raise ValueError(f'variant {name!r}: unknown modifier {mod!r} (known: {", ".join(MODIFIERS)})')
        if kind not in MODIFIERS[mod][1]:
            raise ValueError(f'variant {name!r}: +{mod} applies to {" and ".join(MODIFIERS[mod][1])} only '
                             '(published is the official fp32 step)')
    if len(set(mods)) != len(mods) or {'amp', 'amp16'} <= set(mods):
        raise ValueError(f'variant {name!r}: a modifier twice, or both amp and amp16')
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


def network_options(arch, arch_opt, scale):
    """network_g: the preset `arch`'s network at `scale` with --arch-opt merged over it (a --arch-opt with a
    `type` is used as it is)."""
    if arch not in ARCHS:
        raise ValueError(f'--arch: unknown architecture {arch!r} (known: {", ".join(ARCHS)})')
    given = yaml.safe_load(arch_opt) if arch_opt else {}
    if not isinstance(given, dict):
        raise ValueError(f'--arch-opt: expected a YAML/JSON mapping, got {arch_opt!r}')
    if 'type' in given:
        return dict(given)
    return dict(ARCHS[arch]['network_g'], upscale=scale, **given)


def _merge_modifiers(train, mods):
    for mod in mods:
        for section, options in MODIFIERS[mod][0].items():
            (train if section == 'train' else train[section]).update(options)


def spn_options(cfg):
    spn = {'type': 'SPNLoss', 'loss_weight': 0.001, 'feature': cfg['feature']}
    if cfg['feature'] != 'pixel':
        spn['layer_weights'] = dict(cfg['layers'])
        spn['pretrained'] = cfg['vgg_weights']
    return spn


def train_options(cfg, variant):
    """opt['train']: Adam, a constant learning rate, L1; negatives and spn_opt for SPN; the modifiers."""
    train = {
        'ema_decay': 0,
        'optim_g': {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9], 'gamma': 0.5},
        'total_iter': 10 ** 9,
        'warmup_iter': -1,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
    }
    if variant['kind'] != 'baseline':
        train['negatives'] = {'update_every': [cfg['update_every']] * variant['k'], 'decay': 0.1, 'init_decay': 0.1}
        train['spn_opt'] = spn_options(cfg)
    _merge_modifiers(train, variant['mods'])
    return train


def model_type(variant):
    """SRModel for the plain baseline; the add-on's model otherwise (SPN off without spn_opt: baseline+amp)."""
    return 'SRModel' if variant['kind'] == 'baseline' and not variant['mods'] else 'ModelContrastiveModel'


def make_options(cfg, variant, device, root):
    """A BasicSR training option dict, as parse_options(is_train=True) leaves it."""
    scale, batch = cfg['scale'], cfg['batch']
    name = 'bench_' + re.sub(r'\W', '_', variant['name'])
    exp = os.path.join(root, 'experiments', name)
    return {
        'name': name, 'model_type': model_type(variant), 'scale': scale,
        'num_gpu': 1 if device == 'cuda' else 0, 'manual_seed': 0,
        'dist': False, 'rank': 0, 'world_size': 1, 'auto_resume': False, 'is_train': True,
        'datasets': {'train': {
            'name': 'random', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': scale,
            'gt_size': cfg['patch'] * scale, 'use_hflip': True, 'use_rot': True, 'io_backend': {'type': 'disk'},
            'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
        'network_g': dict(cfg['network_g']),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': exp, 'models': os.path.join(exp, 'models'),
                 'training_states': os.path.join(exp, 'training_states'), 'log': exp,
                 'visualization': os.path.join(exp, 'visualization')},
        'train': train_options(cfg, variant),
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


def floor_key(variant):
    """The floor a row is compared with: 'split' (one batch of negative forwards, any K) or 'K'."""
    return 'split' if 'split' in variant['mods'] else str(variant['k'])


def floor_terms(components, baseline_s, key, batch):
    """[(label, seconds)] of the floor `key` ('K' or 'split'), from {component: seconds}."""
    n = 1 if key == 'split' else int(key)  # batches of B negative images: 1 when split
    tag = ' (split)' if key == 'split' else ''
    terms = [('baseline step' if baseline_s is not None else 'net fwd+bwd (no baseline row)',
              baseline_s if baseline_s is not None else components['net_fwd_bwd']),
             (f'{n} x net fwd no-grad{tag}', n * components['net_fwd_nograd'])]
    if 'vgg_fwd_out' in components:
        terms += [(f'VGG fwd out ({batch})', components['vgg_fwd_out']),
                  (f'VGG bwd out ({batch})', max(components['vgg_fwd_bwd_out'] - components['vgg_fwd_out'], 0.0)),
                  (f'VGG no-grad ({n}x{batch}){tag}', components[f'vgg_nograd_k{n}'])]
    return terms


def floor_faults(faults, baseline_faults, key):
    """Page faults per step of the floor's parts, as in floor_terms."""
    n = 1 if key == 'split' else int(key)
    return baseline_faults + n * faults['net_fwd_nograd'] + faults['vgg_fwd_bwd_out'] + faults[f'vgg_nograd_k{n}']


# =========================================================================== the published step
def published_neg_loss(spn, output, neg):
    """The official code's SPN term for ONE negative: BasicSR's PerceptualLoss(output, neg) with this
    SPNLoss's VGG, layer weights and weight (per-layer L1 by plain autograd, weighted sum): the output
    goes through VGG with grad once per negative."""
    f_out, f_neg = spn.phi(output), spn.phi(neg.detach())
    return spn.loss_weight * sum(w * F.l1_loss(f_out[n], f_neg[n]) for n, w in spn.layer_weights.items())


def published_refresh(pool, net_g, current_iter):
    """The official refresh: a per-parameter Python loop per negative (update_every reversed against the
    index, as the official code has it)."""
    for idx, period in enumerate(pool.update_every[::-1]):
        if current_iter % period == 0:
            src = dict(net_g.named_parameters())
            for name, p in pool.negatives[idx].named_parameters():
                p.data.mul_(pool.decay[idx]).add_(src[name].data, alpha=1 - pool.decay[idx])


def published_step(self, current_iter):
    """The official step (Aitical/MCLIR SRNegModel_Multi.optimize_parameters) on this model's negatives
    and VGG: L1 minus the mean over negatives of published_neg_loss, then published_refresh. Bound to a
    ModelContrastiveModel with types.MethodType."""
    self.optimizer_g.zero_grad()
    self.output = self.net_g(self.lq)
    with torch.no_grad():
        neg_out = [net(self.lq) for net in self.negatives.negatives]
    loss_dict = OrderedDict()
    l_total = loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
    l_neg = sum(published_neg_loss(self.cri_spn, self.output, neg) for neg in neg_out)
    l_total = l_total - l_neg / len(neg_out)
    loss_dict['l_neg'] = l_neg
    l_total.backward()
    self.optimizer_g.step()
    self.log_dict = self.reduce_loss_dict(loss_dict)
    published_refresh(self.negatives, self.get_bare_model(self.net_g), current_iter)


# =========================================================================== worker side
def _peak_rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == 'darwin' else peak / 1024  # bytes on macOS, KiB on Linux


def _rss_now_mb():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except OSError:
        return _peak_rss_mb()


def _setup_worker(task):
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
        write_random_weights(task['write_vgg'], task['feature'])
    return info


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timer(device, faults=None):
    """time(fn, n): seconds per call of n calls of fn (synchronising CUDA before and after). With a
    dict `faults`, faults[fn] gets the process's minor page faults per call (memory the kernel had to
    map in, e.g. large buffers malloc gave back and got again)."""
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
    g = torch.Generator().manual_seed(0)
    b, p, s = cfg['batch'], cfg['patch'], cfg['scale']
    return [{'lq': torch.rand(b, 3, p, p, generator=g).to(device),
             'gt': torch.rand(b, 3, p * s, p * s, generator=g).to(device)} for _ in range(n)]


def _init_worker(task):
    sys.stdout = sys.stderr  # the parent's stdout may carry the JSON
    get_root_logger(log_level=logging.WARNING)
    if task['threads']:
        torch.set_num_threads(task['threads'])
    torch.manual_seed(0)
    if task['device'] == 'cuda':
        torch.cuda.reset_peak_memory_stats()


def _memory(device):
    out = {'peak_rss_mb': _peak_rss_mb()}
    if device == 'cuda':
        out['peak_cuda_mb'] = torch.cuda.max_memory_allocated() / 2 ** 20
    out['peak_mem_mb'] = out.get('peak_cuda_mb', out['peak_rss_mb'])
    return out


class _VariantJob:
    """One variant's model; ``rep()`` times one repetition of ``iters`` training iterations."""

    def __init__(self, task):
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


# --------------------------------------------------------------------------- the floor's components
class _Parts:
    """What the components work on: the network, a frozen copy of it (a negative), one batch, and with VGG
    features the SPN loss's VGG, an output of the network and its K-fold repeats."""

    def __init__(self, cfg, device, ks):
        self.lq, self.gt = _batches(cfg, device, 1)[0].values()
        self.net = build_network(dict(cfg['network_g'])).to(device).train()
        self.neg = copy.deepcopy(self.net).requires_grad_(False).eval()
        self.pool = NegativePool(self.net, [1], [0.9], init_decay=0.0)
        self.spn = self.out = None
        self.refs = {}
        if cfg['feature'] != 'pixel':
            self.spn = build_loss(spn_options(cfg)).to(device)
            with torch.no_grad():
                self.out = self.net(self.lq)
            self.refs = {k: self.out.repeat(k, 1, 1, 1) for k in ks}


def _net_fwd_bwd(p):
    p.net.zero_grad(set_to_none=True)
    F.l1_loss(p.net(p.lq), p.gt).backward()


def _net_fwd_nograd(p):
    with torch.inference_mode():
        p.neg(p.lq)


def _refresh_foreach(p):  # NegativePool's refresh of one negative
    p.pool.refresh(0, p.net)


def _refresh_loop(p):  # the official per-parameter loop, one negative
    src = dict(p.net.named_parameters())
    for name, q in p.neg.named_parameters():
        q.data.mul_(0.9).add_(src[name].data, alpha=0.1)


def _vgg_out(p, backward):  # the output's VGG pass with grad (B images), and its backward
    x = p.out.detach().requires_grad_()
    loss = sum(w * f.mean() for w, f in zip(p.spn.layer_weights.values(), p.spn.phi(x).values()))
    if backward:
        loss.backward()


def _vgg_nograd(p, k):  # the negatives' VGG pass: K*B images (B images: split)
    with torch.inference_mode():
        p.spn.phi(p.refs[k])


COMPONENTS = {  # name: (function of the _Parts, needs VGG)
    'net_fwd_bwd': (_net_fwd_bwd, False),
    'net_fwd_nograd': (_net_fwd_nograd, False),
    'refresh_foreach': (_refresh_foreach, False),
    'refresh_loop': (_refresh_loop, False),
    'vgg_fwd_out': (functools.partial(_vgg_out, backward=False), True),
    'vgg_fwd_bwd_out': (functools.partial(_vgg_out, backward=True), True),
}


def component_calls(parts, ks):
    """{name: no-argument callable} of every component that applies (vgg_nograd_kK for each K in ks)."""
    table = dict(COMPONENTS, **{f'vgg_nograd_k{k}': (functools.partial(_vgg_nograd, k=k), True) for k in ks})
    return {name: functools.partial(fn, parts) for name, (fn, vgg) in table.items() if parts.spn or not vgg}


class _ComponentsJob:
    """The floor's components; ``rep()`` times ``iters`` calls of each, one after the other."""

    def __init__(self, task):
        self.cfg, self.device = task['cfg'], task['device']
        self.rss_start = _rss_now_mb()
        _init_worker(task)
        self.fns = component_calls(_Parts(self.cfg, self.device, task['ks']), task['ks'])
        self.faults = {}
        self.time = _timer(self.device, self.faults)
        for fn in self.fns.values():  # warm every component up before timing any (allocator, oneDNN primitives)
            self.time(fn, self.cfg['warmup'])
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
    p.add_argument('--arch', default=DEFAULT_ARCH, choices=tuple(ARCHS),
                   help='network, scale, batch and LR patch preset (default %(default)s)')
    p.add_argument('--arch-opt', default=None,
                   help="network_g as YAML/JSON; without `type` it is merged over --arch's network, "
                        'e.g. "{num_feat: 16, num_block: 2}"')
    p.add_argument('--scale', type=int, default=None, help="default: --arch's")
    p.add_argument('--batch', type=int, default=None, help="default: --arch's")
    p.add_argument('--patch', type=int, default=None,
                   help="LR patch size (gt patch = patch x scale); default: --arch's")
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


# --------------------------------------------------------------------------- the report
def _fmt_s(x):
    return f'{x:.4f}' if x < 1 else f'{x:.3f}'


def _markdown_header(report):
    cfg, env = report['config'], report['environment']
    return [f"Config: {cfg['arch']}: {cfg['network_g']} x{cfg['scale']}, batch {cfg['batch']}, LR patch "
            f"{cfg['patch']} (gt {cfg['patch'] * cfg['scale']}), {cfg['feature']} {cfg['layers']}, update_every "
            f"{cfg['update_every']}, warmup {cfg['warmup']}, {cfg['repeats']} x {cfg['iters']} iterations, "
            f"threads {cfg['threads'] or 'default'}; VGG weights: {cfg['vgg_weights_note']}",
            f"torch {env.get('torch')}, basicsr {env.get('basicsr')}, CPU {env.get('cpu')}"
            + (f", GPU {env['cuda_device']}" if env.get('cuda_device') else '')]


def _markdown_rows(report, device):
    mem = 'peak CUDA alloc MB' if device == 'cuda' else 'peak RSS MB (start)'
    lines = ['', f'### {device}', '',
             f'| variant | K | s/iter median | p25-p75 | {mem} | x baseline | x floor | page faults/iter |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in (r for r in report['results'] if r['device'] == device):
        if 'error' in r:
            lines.append(f"| {r['variant']} | {r['k']} | failed: {r['error'][:80]} | | | | | |")
            continue
        m = f"{r['peak_mem_mb']:.0f}" + (f" ({r['rss_start_mb']:.0f})" if device != 'cuda' else '')
        xb = f"{r['ratio_baseline']:.2f}" if r.get('ratio_baseline') else ''
        xf = f"{r['ratio_floor']:.2f}" if r.get('ratio_floor') else ''
        lines.append(f"| {r['variant']} | {r['k']} | {_fmt_s(r['median_s'])} | "
                     f"{_fmt_s(r['p25_s'])}-{_fmt_s(r['p75_s'])} | {m} | {xb} | {xf} | "
                     f"{r['minor_faults_per_iter']:.0f} |")
    return lines


def _markdown_components(comps):
    lines = ['', '| component | s median | p25-p75 | page faults/call |', '| --- | ---: | ---: | ---: |']
    faults = comps.get('minor_faults_per_call', {})
    for name, c in comps.get('components', {}).items():
        lines.append(f"| {name} | {_fmt_s(c['median_s'])} | {_fmt_s(c['p25_s'])}-{_fmt_s(c['p75_s'])} | "
                     f"{faults.get(name, float('nan')):.0f} |")
    return lines + ['']


def _markdown_floors(floors):
    lines = []
    for key, fl in floors.items():
        terms = ' + '.join(f'{_fmt_s(s)} ({label})' for label, s in fl['terms'])
        measured = ', '.join(f"{v}: {r:.2f}x" for v, r in fl['measured_over_floor'].items())
        lines.append(f"Floor {'split (any K)' if key == 'split' else f'K={key}'}: {terms} = {_fmt_s(fl['floor_s'])} s"
                     + (f'; measured/floor: {measured}' if measured else '')
                     + (f"; page faults of the floor's parts: {fl['minor_faults']:.0f}" if 'minor_faults' in fl
                        else ''))
    return lines


def markdown(report):
    lines = _markdown_header(report)
    for device in report['devices']:
        lines += _markdown_rows(report, device)
        comps = report['components'].get(device, {})
        if 'error' in comps:
            lines += ['', f"Components failed: {comps['error']}"]
            continue
        lines += _markdown_components(comps) + _markdown_floors(report['floor'].get(device, {}))
    return '\n'.join(lines) + '\n'


def _per_round(samples, refs):
    """The median over rounds of sample / reference of the same round."""
    ratios = [s / r for s, r in zip(samples, refs) if s is not None and r]
    return statistics.median(ratios) if ratios else None


def _floors(report, keys, comps, base_row, base_rounds):
    """{key: floor} from the components' medians (terms, floor_s) and rounds (rounds_s)."""
    batch, floors = report['config']['batch'], {}
    if 'error' in comps:
        return floors
    medians = {n: c['median_s'] for n, c in comps['components'].items()}
    for key in keys:
        terms = floor_terms(medians, base_row and base_row['median_s'], key, batch)
        rounds = [sum(x for _, x in floor_terms(c, b, key, batch)) if c is not None else None
                  for c, b in zip(comps['samples'], base_rounds)]
        floors[key] = {'terms': terms, 'floor_s': sum(x for _, x in terms), 'rounds_s': rounds,
                       'measured_over_floor': {}}
        if not all(math.isfinite(x) for _, x in terms):
            floors[key]['floor_s'] = float('nan')
        faults = comps.get('minor_faults_per_call')
        if faults and base_row and 'vgg_fwd_bwd_out' in faults:
            floors[key]['minor_faults'] = floor_faults(faults, base_row['minor_faults_per_iter'], key)
    return floors


def _ratios(report, device, keys, records, comps):
    """x baseline and x floor of every row: the median over rounds of the row's time in a round over the
    float32 baseline's (the floor's) in the same round. The floor's terms shown are the components' medians.
    `keys`: the floors to compute ('K' strings, 'split')."""
    rows = [r for r in report['results'] if r['device'] == device and 'error' not in r]
    base_row = next((r for r in rows if r['kind'] == 'baseline' and not r['mods']), None)
    base_rounds = records[base_row['variant']]['samples'] if base_row else [None] * report['config']['repeats']
    floors = _floors(report, keys, comps, base_row, base_rounds)
    for r in rows:
        samples = records[r['variant']]['samples']
        r['ratio_baseline'] = _per_round(samples, base_rounds)
        fl = floors.get(floor_key(r)) if r['k'] else None
        r['ratio_floor'] = _per_round(samples, fl['rounds_s']) if fl else None
        if r['ratio_floor'] is not None:
            fl['measured_over_floor'][r['variant']] = r['ratio_floor']
    report['floor'][device] = floors


# --------------------------------------------------------------------------- main
def _check_args(args, variants):
    if not variants:
        raise ValueError('--variants: nothing to run')
    if len({v['name'] for v in variants}) != len(variants):
        raise ValueError('--variants: a variant is listed twice')
    for name, value in (('--iters', args.iters), ('--repeats', args.repeats), ('--batch', args.batch),
                        ('--patch', args.patch), ('--scale', args.scale), ('--update-every', args.update_every)):
        if value < 1:
            raise ValueError(f'{name}: must be >= 1')
    if args.warmup < 0 or args.threads < 0:
        raise ValueError('--warmup and --threads must be >= 0')


def configure(args):
    """(cfg, variants) from the parsed arguments (cfg['floor_keys']: the floors to compute); ValueError for
    bad input."""
    preset = ARCHS.get(args.arch, {})
    for name in ('scale', 'batch', 'patch'):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    variants = [parse_variant(v) for v in args.variants.split(',') if v.strip()]
    _check_args(args, variants)
    ks = sorted({1, 4} | {v['k'] for v in variants if v['k']})  # floors: K=1, K=4 and every K run
    keys = [str(k) for k in ks] + (['split'] if any('split' in v['mods'] for v in variants) else [])
    cfg = {'arch': args.arch, 'network_g': network_options(args.arch, args.arch_opt, args.scale),
           'scale': args.scale, 'batch': args.batch, 'patch': args.patch, 'feature': args.feature,
           'layers': parse_layers(args.layers) if args.feature != 'pixel' else {},
           'update_every': args.update_every, 'iters': args.iters, 'warmup': args.warmup,
           'repeats': args.repeats, 'threads': args.threads, 'vgg_weights': None, 'ks': ks, 'floor_keys': keys}
    return cfg, variants


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
    jobs = {'components': dict(base, what='components', ks=cfg['ks'])}
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
    _ratios(report, device, cfg['floor_keys'], records, comps)
    return failed


def write_report(report, json_path, log):
    text = markdown(report)
    if not json_path:
        print(text)
        return
    data = json.dumps(report, indent=1, default=str)
    if json_path == '-':
        print(text, file=log)
        print(data)
    else:
        with open(json_path, 'w') as f:
            f.write(data + '\n')
        print(text)


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
