"""BasicSR's sampler and prefetchers that can resume in the middle of an epoch (W8, add-on runs).

They read and write :data:`mclir_basicsr.runs.resume.PROGRESS`: the prefetchers count the batches
handed out in the current epoch; on the first ``reset`` after a resume, :class:`ResumableSampler`
skips the samples already used (instantly, nothing is loaded) and the RNG states saved with the
training state are restored right after the data iterator is created, before any batch is drawn.
"""
import itertools
import traceback

from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from mclir_basicsr.runs.data_errors import ignoring_stops
from mclir_basicsr.runs.interrupts import INTERRUPTS, RunInterrupted
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


def _shut_down(iterator, stopping=False):
    """Shut a loader iterator's workers down now rather than when it is collected. During a stop (``stopping``: the
    stop is already raised, and the interrupts disarmed), a worker that died of the signal is reported by torch at
    every SIGCHLD until its iterator is shut down (at exit: a traceback from the iterator's ``__del__``): here the
    report is the stop's, not an error."""
    if isinstance(iterator, _MultiProcessingDataLoaderIter):
        try:
            iterator._shutdown_workers()
        except RuntimeError:
            if not (stopping or INTERRUPTS.requested):
                raise  # torch forgets the iterator's workers all the same (its ``finally``)


def _killed_by_the_stop(error):
    """A worker forked as the stop signal reached the process group died of it before it could ignore it (torch's
    worker set-up makes SIGTERM fatal until ``worker_init_fn``): the run stops as asked, not on this error, and the
    iterator the error came from is shut down."""
    if not (INTERRUPTS.requested and 'DataLoader worker' in str(error)):
        return False
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if isinstance(frame.f_locals.get('self'), _MultiProcessingDataLoaderIter):
            _shut_down(frame.f_locals['self'])
            break
    return True


class _Resumable:
    """Mixin for BasicSR's prefetchers: counts batches, applies a resume request on the first reset."""
    progress = PROGRESS

    def __init__(self, loader, *args, **kwargs):
        super().__init__(ignoring_stops(loader), *args, **kwargs)

    def _start_epoch(self):
        sampler = getattr(self.ori_loader, 'sampler', None)
        epoch = getattr(sampler, 'epoch', None)
        skip = 0
        pending = self.progress.take_request()
        if pending and pending['epoch'] == epoch and pending['batches'] is not None \
                and isinstance(sampler, ResumableSampler):
            skip = pending['batches']
            sampler.skip = skip * self.ori_loader.batch_size
        if self.loader is not getattr(self.ori_loader, '_iterator', None):  # persistent workers: the loader's own
            _shut_down(self.loader)  # the last epoch's workers (or those BasicSR's prefetcher started when built)
        try:
            self.loader = iter(self.ori_loader)
        except RuntimeError as e:
            if not _killed_by_the_stop(e):
                raise
            self.loader = iter(())  # the stop comes at the next request for a batch, before any batch is drawn
        if pending and pending.get('rng') is not None:
            set_rng_state(pending['rng'])
        self.progress.start_epoch(epoch, skip)

    def _count(self, batch):
        if batch is not None:
            self.progress.count()
            INTERRUPTS.count()
        return batch

    def _next(self, draw):
        try:
            self._poll()
            try:
                return self._count(draw())
            except RuntimeError as e:
                # Alone, nothing has changed since the poll above: its stop saves the same state. Under DDP the
                # other ranks are already in the iteration, so the error stands (the last periodic save is intact).
                if not _killed_by_the_stop(e) or INTERRUPTS.opt.get('dist'):
                    raise
                INTERRUPTS.stop(INTERRUPTS.signum, self.progress.epoch)
        except RunInterrupted:
            _shut_down(self.loader, stopping=True)
            raise

    def _poll(self):
        """Where a Ctrl-C / SIGTERM stops the run: before the next batch is drawn, the state of the data and the
        RNGs is the one a periodic save of the iteration just run holds (:mod:`.interrupts`)."""
        INTERRUPTS.poll(self.progress.epoch)


class ResumableCPUPrefetcher(_Resumable, CPUPrefetcher):
    def next(self):
        return self._next(super().next)

    def reset(self):
        self._start_epoch()


class ResumableCUDAPrefetcher(_Resumable, CUDAPrefetcher):
    def next(self):
        return self._next(super().next)

    def reset(self):
        self._start_epoch()
        try:
            self.preload()
        except RuntimeError as e:
            if not _killed_by_the_stop(e):
                raise
            self.batch = None
