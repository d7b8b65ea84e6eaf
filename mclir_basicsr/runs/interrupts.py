"""Ctrl-C and SIGTERM save the run (add-on training runs, W10).

BasicSR's loop dies where the signal finds it (a ``KeyboardInterrupt`` inside ``loss.backward()``, or a silent
exit 143 on SIGTERM), losing everything since the last periodic save. For an add-on training run the first
SIGINT or SIGTERM only sets a flag; the run stops where a periodic save would stand, at the next request for a
batch (:mod:`.resumable_data`, after the current iteration, its log line and its periodic save; a validation
under way is abandoned). There it saves the network and a resumable training state through the one save path
(:class:`mclir_basicsr.runs.saving.AtomicSaveMixin`, atomic), logs one line naming the state and how to resume,
and exits with ``128 + signal`` (130 / 143). Saved there, the state is the one a periodic save at that iteration
would have written, so ``--auto_resume`` continues bitwise as an uninterrupted run.

Under DDP the flag is agreed at every request for a batch (one ``all_reduce`` of a scalar; every rank asks for
the same number of batches), so every rank stops at the same iteration, all take part in the state (it gathers
their RNG states) and rank 0 writes. A second signal aborts at once: the save under way is dropped (its
temporary file removed, :func:`mclir_basicsr.io_utils.abort_saves`), the files saved before stay as they were.
Launchers relay the signal they get to every worker (torchrun sends the same signal again, as ``srun`` does),
so a second signal within :data:`RELAYED_WITHIN_S` seconds of the first counts as the same request.
"""
import os
import signal
import sys
import threading
import time

from mclir_basicsr import io_utils
from mclir_basicsr.io_utils import dist_info, logger

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RELAYED_WITHIN_S = 2.0


class RunInterrupted(SystemExit):
    """The run stopped on a signal (its code: 128 + the signal's number); what was saved is in the log."""


class ValidationAbandoned(Exception):
    """Raised inside a validation when a stop was requested: the validation is dropped, the run saves."""


def _name(signum):
    return signal.Signals(signum).name


def _stderr(text):
    """A line on stderr from a signal handler (``os.write``: no lock of Python's I/O stack is taken)."""
    try:
        os.write(2, f'mclir-basicsr: {text}\n'.encode())
    except OSError:
        pass


class Interrupts:
    """The stop request of this training process: the signal handlers, the model to save, the iterations run."""

    def __init__(self):
        self._reset()

    def _reset(self):
        self.model = self.opt = self.tb_logger = None
        self.signum = self.received_at = None
        self.previous = {}
        self.start_iter, self.batches = 0, 0
        self.saving = self.validating = self.ended = False

    # ------------------------------------------------------------------ arming
    def arm(self, model, opt):
        """Install the handlers for a training run of ``model`` (main thread only; other threads cannot)."""
        self.disarm()
        if threading.current_thread() is not threading.main_thread():
            return
        self.model, self.opt = model, opt
        for signum in SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)

    def disarm(self):
        """Restore the handlers found when the run was armed."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._reset()

    @property
    def armed(self):
        return self.model is not None

    def begin(self, start_iter, tb_logger=None):
        """The loop starts at ``start_iter`` (0, or the resumed iteration)."""
        self.start_iter, self.batches, self.tb_logger = int(start_iter), 0, tb_logger

    def count(self):
        """One batch handed to the loop: one iteration run by the next request for a batch."""
        self.batches += 1

    @property
    def requested(self):
        return self.signum is not None

    # ------------------------------------------------------------------ the signal handler
    def _handle(self, signum, frame):
        rank = dist_info()[0]
        if self.ended:  # everything is saved: only the final validation is left
            if rank == 0:
                _stderr(f'{_name(signum)}: the final network is saved; stopping without the final validation.')
            self.disarm()
            raise RunInterrupted(128 + signum)
        if self.signum is None:
            self.signum, self.received_at = signum, time.monotonic()
            if rank == 0:
                _stderr(f'{_name(signum)}: stopping after this iteration and saving a training state; a second '
                        'signal stops at once without saving.')
            return
        if time.monotonic() - self.received_at < RELAYED_WITHIN_S:
            return  # the launcher relaying the same request
        if rank == 0:
            _stderr(f'second signal ({_name(signum)}): stopping now'
                    + (', the save under way is dropped' if self.saving else '')
                    + '; the files saved before are intact.')
        stop = RunInterrupted(128 + signum)
        io_utils.abort_saves(stop)
        self.disarm()  # a third signal meets the handlers found before the run
        raise stop

    # ------------------------------------------------------------------ the stop
    def poll(self, epoch):
        """At a request for a batch: stop (save and exit) when a signal was received here or, under DDP, on any
        rank. ``epoch``: the epoch the loop is in."""
        if not self.armed:
            return
        signum = self.signum or 0
        if self.opt.get('dist'):
            signum = _agree(signum)
        if signum:
            self.stop(signum, epoch)

    def stop(self, signum, epoch):
        self.saving = True
        iteration = self.start_iter + self.batches
        name = _name(signum)
        state = os.path.join(self.opt['path']['training_states'], f'{iteration}.state')
        if iteration > self.start_iter:
            self.model.save(epoch, iteration)
            models = self.opt['path']['models']
            message = (f'Interrupted by {name} after iteration {iteration}: saved the training state {state} and '
                       f'the networks net_*_{iteration}.pth in {models}; resume with --auto_resume (or '
                       f'path.resume_state: {state}).')
        else:
            message = (f'Interrupted by {name} before the first iteration of this run: nothing new to save '
                       '(the files on disk are those of the last save).')
        if dist_info()[0] == 0:
            logger.warning(message)
        if self.tb_logger is not None:
            self.tb_logger.close()
        self.disarm()
        raise RunInterrupted(128 + signum)

    def training_ended(self):
        """The final network is saved: a stop requested meanwhile ends the run now, and one requested during the
        final validation ends it at once (nothing is left to save; the handlers stay until the next run is
        parsed, or the process ends)."""
        signum = self.signum
        if not self.armed:
            return
        self.ended = True
        if signum:
            self.disarm()
            if dist_info()[0] == 0:
                logger.warning(f'Interrupted by {_name(signum)} at the end of training: the final network is saved; '
                               'the final validation is skipped.')
            raise RunInterrupted(128 + signum)

    # ------------------------------------------------------------------ validation
    def check_validation(self):
        """Inside a validation (before each image): abandon it when a stop was requested."""
        if self.armed and self.validating and self.signum is not None:
            raise ValidationAbandoned()


def _agree(signum):
    """The largest signal number received on any rank (0: none), the same on every rank."""
    import torch
    import torch.distributed as dist
    device = 'cpu'
    if dist.get_backend() == 'nccl':
        device = torch.device('cuda', torch.cuda.current_device())
    flag = torch.tensor([signum], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


INTERRUPTS = Interrupts()  # this process's training loop


def build_model(opt):
    """BasicSR's ``build_model``; a training run's model is armed for a save on SIGINT/SIGTERM."""
    model = sys.modules['basicsr.models'].build_model(opt)
    if opt.get('is_train'):
        INTERRUPTS.arm(model, opt)
    return model
