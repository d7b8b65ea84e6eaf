"""Exact resume for BasicSR's training loop.

BasicSR saves ``(epoch, iter)`` and, on resume, starts the saved epoch's data order from its
beginning, replaying batches the run already trained on; it does not save RNG states either.
The pieces here fix that, for add-on runs (:func:`mclir_basicsr.runs.use` puts the sampler and
prefetchers in the training pipeline's namespace, W8):

* :class:`EpochProgress` (one per training process, :data:`PROGRESS`): BasicSR builds the
  prefetcher and the model separately, so this is where they meet. The prefetchers count the
  batches handed out in the current epoch into it; on resume the model leaves a request in it
  (epoch, batches already used, this rank's RNG states);
* :mod:`mclir_basicsr.runs.resumable_data`: the prefetchers; on their first ``reset`` after
  a resume, the sampler skips the consumed samples (instantly, nothing is loaded) and
  the RNG states are restored right after the data iterator is created, before any batch is drawn;
* :class:`ExactResumeMixin`: the model side. Its training state holds, besides BasicSR's optimiser
  and scheduler states, every rank's RNG states, the position in the epoch and whatever the model
  adds (:meth:`ExactResumeMixin.extra_training_state`); its validation leaves the RNG untouched.

Bitwise exact on CPU with ``num_worker_per_gpu: 0`` (tested). With worker processes the data
order is exact, but the random crops/flips of the rest of the resumed epoch differ: BasicSR
re-seeds its workers at every epoch, from the start of the epoch.
"""
import random

import numpy as np
import torch

from mclir_basicsr.io_utils import dist_info, logger
from mclir_basicsr.runs.interrupts import INTERRUPTS, ValidationAbandoned


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


class EpochProgress:
    """Batches drawn in the current epoch, and a pending resume request (used once)."""

    def __init__(self):
        self.epoch, self.batches, self.pending = None, 0, None

    def request(self, epoch, batches, rng):
        """On resume: skip `batches` of `epoch` (None: the epoch's start), then restore `rng` (may be None)."""
        self.pending = {'epoch': epoch, 'batches': batches, 'rng': rng}

    def take_request(self):
        pending, self.pending = self.pending, None
        return pending

    def start_epoch(self, epoch, skipped):
        self.epoch, self.batches = epoch, skipped

    def count(self):
        self.batches += 1

    def batches_in(self, epoch):
        """Batches already drawn in `epoch`, or None when the counter is for another epoch."""
        return self.batches if self.epoch == epoch else None


PROGRESS = EpochProgress()  # the training loop of this process


def gather_per_rank(record):
    """Every rank's `record` (a collective in DDP; every rank must call it)."""
    rank, world = dist_info()
    if world == 1:
        return [record]
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, record)
    return gathered


class ExactResumeMixin:
    """For a BasicSR model class (``class M(ExactResumeMixin, AtomicSaveMixin, SRModel)``: it extends
    :meth:`mclir_basicsr.runs.saving.AtomicSaveMixin.training_state`): training states that resume
    exactly, and a validation that leaves the RNG untouched (so ``val_freq`` cannot change training).

    The model adds its own state through :meth:`extra_training_state` / :meth:`load_extra_training_state`
    and per-rank records (e.g. fingerprints, compared across ranks) through :meth:`per_rank_record`."""
    progress = PROGRESS

    def extra_training_state(self):
        return {}

    def load_extra_training_state(self, state):
        pass

    def per_rank_record(self):
        return {}

    def training_state(self, epoch, current_iter):
        """BasicSR's state, the position in the epoch, every rank's records and RNG states (a collective: every
        rank calls it), and the model's own state."""
        gathered = gather_per_rank(dict(self.per_rank_record(), rng=rng_state()))
        for key in gathered[0]:
            if key != 'rng' and any(g[key] != gathered[0][key] for g in gathered):
                logger.warning(f'MCLIR: {key} differ between ranks (saved per rank in the state).')
        state = super().training_state(epoch, current_iter)
        state['epoch_batches'] = self.progress.batches_in(epoch)
        state.update({key: [g[key] for g in gathered] for key in gathered[0]})
        state.update(self.extra_training_state())
        return state

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        self.load_extra_training_state(resume_state)
        rank, world = dist_info()
        rngs = resume_state.get('rng')
        rng = rngs[rank] if rngs is not None and len(rngs) == world else None
        if rngs is not None and rng is None:
            logger.warning(
                f'RNG states were saved for {len(rngs)} process(es), resuming with {world}: not restored.')
        self.progress.request(resume_state['epoch'], resume_state.get('epoch_batches'), rng)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """The model's validation, leaving the RNG as it found it; dropped when a Ctrl-C / SIGTERM asks the run
        to stop (the run saves its state at the next batch, :mod:`mclir_basicsr.runs.interrupts`)."""
        if INTERRUPTS.armed and INTERRUPTS.requested:
            return
        rng = rng_state()
        INTERRUPTS.validating = True
        try:
            super().validation(dataloader, current_iter, tb_logger, save_img)
        except ValidationAbandoned:
            logger.warning(f'Validation at iteration {current_iter} abandoned: the run is stopping on a signal.')
        finally:
            INTERRUPTS.validating = False
            set_rng_state(rng)

    def test(self):
        INTERRUPTS.check_validation()  # before each validation image
        return super().test()
