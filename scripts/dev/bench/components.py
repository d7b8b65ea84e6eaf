"""The method's floor, in parts: network forward+backward, one no-grad network forward (a negative), the two
refreshes (NegativePool's foreach, the official per-parameter loop), the output's VGG pass with and without
its backward (B images) and the negatives' no-grad VGG pass (K*B images); ComponentsJob times each in a
worker process."""
import copy
import functools
import statistics

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from torch.nn import functional as F

from bench.measure import init_worker, memory, random_batches, rss_now_mb, timer
from bench.options import spn_options
from mclir_basicsr.history import NegativePool


class Parts:
    """What the components work on: the network, a frozen copy of it (a negative), one batch, and with VGG
    features the SPN loss's VGG, an output of the network and its K-fold repeats."""

    def __init__(self, cfg, device, ks):
        self.lq, self.gt = random_batches(cfg, device, 1)[0].values()
        self.net = build_network(dict(cfg['network_g'])).to(device).train()
        self.neg = copy.deepcopy(self.net).requires_grad_(False).eval()
        self.pool = NegativePool(self.net, [1], [0.9], init_decay=0.0)
        self.spn = self.out = None
        self.refs = {}
        self.ks = ks
        if cfg['feature'] != 'pixel':
            self.spn = build_loss(spn_options(cfg)).to(device)
            with torch.no_grad():
                self.out = self.net(self.lq)
            self.refs = {k: self.out.repeat(k, 1, 1, 1) for k in ks}

    def first(self, n):
        """The same parts on the first ``n`` samples of the batch (the floor of the SPN term on n samples)."""
        part = copy.copy(self)
        part.lq, part.gt = self.lq[:n], self.gt[:n]
        if self.out is not None:
            part.out = self.out[:n]
            part.refs = {k: part.out.repeat(k, 1, 1, 1) for k in self.ks}
        return part


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


COMPONENTS = {  # name: (function of the Parts, needs VGG)
    'net_fwd_bwd': (_net_fwd_bwd, False),
    'net_fwd_nograd': (_net_fwd_nograd, False),
    'refresh_foreach': (_refresh_foreach, False),
    'refresh_loop': (_refresh_loop, False),
    'vgg_fwd_out': (functools.partial(_vgg_out, backward=False), True),
    'vgg_fwd_bwd_out': (functools.partial(_vgg_out, backward=True), True),
}


def component_calls(parts, ks, subsets=()):
    """{name: no-argument callable} of every component that applies (vgg_nograd_kK for each K in ks), and for each
    N in ``subsets`` the ones a floor on N samples needs, named ``<component>@N``."""
    table = dict(COMPONENTS, **{f'vgg_nograd_k{k}': (functools.partial(_vgg_nograd, k=k), True) for k in ks})
    calls = {name: functools.partial(fn, parts) for name, (fn, vgg) in table.items() if parts.spn or not vgg}
    for n in subsets:
        part = parts.first(n)
        for name in ('net_fwd_nograd', 'vgg_fwd_out', 'vgg_fwd_bwd_out') + tuple(f'vgg_nograd_k{k}' for k in ks):
            if name in calls:
                fn, _ = table[name]
                calls[f'{name}@{n}'] = functools.partial(fn, part)
    return calls


class ComponentsJob:
    """The floor's components; ``rep()`` times ``iters`` calls of each, one after the other."""

    def __init__(self, task):
        self.cfg, self.device = task['cfg'], task['device']
        self.rss_start = rss_now_mb()
        init_worker(task)
        self.fns = component_calls(Parts(self.cfg, self.device, task['ks']), task['ks'], task.get('subsets', ()))
        self.faults = {}
        self.time = timer(self.device, self.faults)
        for fn in self.fns.values():  # warm every component up before timing any (allocator, oneDNN primitives)
            self.time(fn, self.cfg['warmup'])
        self.faults.clear()  # faults of the timed repetitions only

    def rep(self):
        return {name: self.time(fn, self.cfg['iters']) for name, fn in self.fns.items()}

    def result(self):
        faults = {name: statistics.median(self.faults[fn]) for name, fn in self.fns.items()}
        return {'rss_start_mb': self.rss_start, 'minor_faults_per_call': faults, **memory(self.device)}
