"""BasicSR's sampler and prefetchers that can resume in the middle of an epoch (W8, add-on runs).

They read and write :data:`mclir_basicsr.runs.resume.PROGRESS`: the prefetchers count the batches
handed out in the current epoch; on the first ``reset`` after a resume, :class:`ResumableSampler`
skips the samples already used (instantly, nothing is loaded) and the RNG states saved with the
training state are restored right after the data iterator is created, before any batch is drawn.
"""
import itertools

from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher

from mclir_basicsr.runs.interrupts import INTERRUPTS
from mclir_basicsr.runs.resume import PROGRESS, set_rng_state


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
    """Mixin for BasicSR's prefetchers: counts batches, applies a resume request on the first reset."""
    progress = PROGRESS

    def _start_epoch(self):
        sampler = getattr(self.ori_loader, 'sampler', None)
        epoch = getattr(sampler, 'epoch', None)
        skip = 0
        pending = self.progress.take_request()
        if pending and pending['epoch'] == epoch and pending['batches'] is not None \
                and isinstance(sampler, ResumableSampler):
            skip = pending['batches']
            sampler.skip = skip * self.ori_loader.batch_size
        self.loader = iter(self.ori_loader)
        if pending and pending.get('rng') is not None:
            set_rng_state(pending['rng'])
        self.progress.start_epoch(epoch, skip)

    def _count(self, batch):
        if batch is not None:
            self.progress.count()
            INTERRUPTS.count()
        return batch

    def _poll(self):
        """Where a Ctrl-C / SIGTERM stops the run: before the next batch is drawn, the state of the data and the
        RNGs is the one a periodic save of the iteration just run holds (:mod:`.interrupts`)."""
        INTERRUPTS.poll(self.progress.epoch)


class ResumableCPUPrefetcher(_Resumable, CPUPrefetcher):
    def next(self):
        self._poll()
        return self._count(super().next())

    def reset(self):
        self._start_epoch()


class ResumableCUDAPrefetcher(_Resumable, CUDAPrefetcher):
    def next(self):
        self._poll()
        return self._count(super().next())

    def reset(self):
        self._start_epoch()
        self.preload()
