"""Exact resume for BasicSR's training loop.

BasicSR saves ``(epoch, iter)`` and, on resume, starts the saved epoch's data order from its
beginning, replaying batches the run already trained on; it does not save RNG states either.
The pieces here, installed into BasicSR by :mod:`mclir_basicsr.compat` (W8), fix that:

* :class:`ResumableCPUPrefetcher` / :class:`ResumableCUDAPrefetcher` count the batches handed
  out in the current epoch (:data:`PROGRESS`), which ModelContrastiveModel saves in its
  training state together with every rank's RNG states;
* on resume the model stores them in :data:`PENDING`; the prefetcher's first ``reset`` then has
  :class:`ResumableSampler` skip the consumed samples (instantly, nothing is loaded) and
  restores the RNG states right after the data iterator is created, before any batch is drawn.

Bitwise exact on CPU with ``num_worker_per_gpu: 0`` (tested). With worker processes the data
order is exact, but the random crops/flips of the rest of the resumed epoch differ: BasicSR
re-seeds its workers at every epoch, from the start of the epoch.
"""
import itertools
import random

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher

PROGRESS = {'epoch': None, 'batches': 0}   # written by the prefetcher, read at save time
PENDING = {}                                # {'epoch', 'batches', 'rng'}: set at resume, used once


def rng_state():
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def set_pending(epoch, batches, rng):
    """Called by the model on resume: skip `batches` of `epoch`, then restore `rng` (may be None)."""
    PENDING.clear()
    PENDING.update(epoch=epoch, batches=batches, rng=rng)


class ResumableSampler(EnlargedSampler):
    """EnlargedSampler that can skip the first samples of one epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self):
        indices = super().__iter__()
        skip, self.skip = self.skip, 0
        return itertools.islice(indices, skip, None)


class _Resumable:
    """Mixin for BasicSR's prefetchers: counts batches, applies PENDING on the first reset."""

    def _start_epoch(self):
        sampler = getattr(self.ori_loader, 'sampler', None)
        epoch = getattr(sampler, 'epoch', None)
        skip = 0
        pending = dict(PENDING) if PENDING else None
        PENDING.clear()
        if pending and pending['epoch'] == epoch and pending['batches'] is not None:
            skip = pending['batches']
            if isinstance(sampler, ResumableSampler):
                sampler.skip = skip * self.ori_loader.batch_size
            else:
                skip = 0
        self.loader = iter(self.ori_loader)
        if pending and pending.get('rng') is not None:
            set_rng_state(pending['rng'])
        PROGRESS.update(epoch=epoch, batches=skip)

    def _count(self, batch):
        if batch is not None:
            PROGRESS['batches'] += 1
        return batch


class ResumableCPUPrefetcher(_Resumable, CPUPrefetcher):
    def next(self):
        return self._count(super().next())

    def reset(self):
        self._start_epoch()


class ResumableCUDAPrefetcher(_Resumable, CUDAPrefetcher):
    def next(self):
        return self._count(super().next())

    def reset(self):
        self._start_epoch()
        self.preload()
