"""What the log of a long run shows (add-on training runs, W11).

BasicSR's ``MessageLogger`` line gives the ETA and ``time (data)``. :class:`RunLogger` keeps that line and adds
the speed (it/s, or s/it when an iteration takes a second or more) and the peak memory (the process's peak RSS;
CUDA's peak allocated memory where CUDA is in use) inside its time bracket; tensorboard gets the learning rate,
the speed and the peak memory under ``train/``, and the SPN distances ``d_neg*`` under ``distances/`` instead of
beside BasicSR's groups. The losses stay under BasicSR's ``losses/``. Runs of other programs keep BasicSR's
``MessageLogger``: :func:`mclir_basicsr.runs.use` binds this one for add-on runs only.
"""
import resource
import sys

from basicsr.utils import MessageLogger

from mclir_basicsr.runs.interrupts import INTERRUPTS

DISTANCE_PREFIX = 'd_neg'
GIB = 1024 ** 3


def speed(seconds_per_iter):
    """'12.3 it/s', or '2.50 s/it' for an iteration of a second or more."""
    if not seconds_per_iter or seconds_per_iter <= 0:
        return 'n/a it/s'
    if seconds_per_iter >= 1:
        return f'{seconds_per_iter:.2f} s/it'
    return f'{1 / seconds_per_iter:.3g} it/s'


def peak_memory():
    """{'rss': peak resident set size of this process in bytes, 'cuda': peak allocated CUDA memory (only when
    CUDA is in use)}."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = {'rss': peak if sys.platform == 'darwin' else peak * 1024}  # bytes on macOS, KiB on Linux
    torch = sys.modules.get('torch')
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        found['cuda'] = torch.cuda.max_memory_allocated()
    return found


def describe_memory(memory):
    text = f'peak mem: {memory["rss"] / GIB:.2f} GiB RSS'
    if 'cuda' in memory:
        text += f', {memory["cuda"] / GIB:.2f} GiB CUDA'
    return text


class _GroupedWriter:
    """The tensorboard writer as BasicSR's logger uses it, with the SPN distances put in a group of their own."""

    def __init__(self, writer):
        self._writer = writer

    def add_scalar(self, tag, value, step=None, *args, **kwargs):
        if tag.startswith(DISTANCE_PREFIX):
            tag = f'distances/{tag}'
        return self._writer.add_scalar(tag, value, step, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._writer, name)


class _Appending:
    """BasicSR's logger, with ``extra`` put inside the time bracket of the next line logged."""

    def __init__(self, logger, extra):
        self._logger, self._extra = logger, extra

    def info(self, message, *args, **kwargs):
        at = message.find('time (data): ')
        end = message.find(']', at) if at >= 0 else -1
        message = f'{message[:end]}, {self._extra}{message[end:]}' if end >= 0 else f'{message}[{self._extra}]'
        return self._logger.info(message, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._logger, name)


class RunLogger(MessageLogger):
    """BasicSR's MessageLogger with the speed, peak memory and learning rate (see the module's docstring). It is
    built where the training loop starts, so it also tells :data:`~mclir_basicsr.runs.interrupts.INTERRUPTS`
    the iteration the loop starts at."""

    def __init__(self, opt, start_iter=1, tb_logger=None):
        super().__init__(opt, start_iter, tb_logger)
        INTERRUPTS.begin(start_iter, tb_logger)

    def __call__(self, log_vars):
        iter_time = log_vars.get('time')
        lrs = log_vars.get('lrs') or []
        current_iter = log_vars.get('iter')
        memory = peak_memory()
        extra = f'{speed(iter_time)}, {describe_memory(memory)}' if iter_time is not None else describe_memory(memory)
        logger, writer = self.logger, self.tb_logger
        self.logger = _Appending(logger, extra)
        if writer is not None:
            self.tb_logger = _GroupedWriter(writer)
        try:
            super().__call__(log_vars)
        finally:
            self.logger, self.tb_logger = logger, writer
        if writer is not None and self.use_tb_logger and 'debug' not in self.exp_name:
            self._write_scalars(writer, current_iter, lrs, iter_time, memory)

    @staticmethod
    def _write_scalars(writer, current_iter, lrs, iter_time, memory):
        for k, lr in enumerate(lrs):
            writer.add_scalar('train/lr' if len(lrs) == 1 else f'train/lr_{k}', lr, current_iter)
        if iter_time:
            writer.add_scalar('train/it_per_s', 1 / iter_time, current_iter)
        writer.add_scalar('train/peak_rss_gib', memory['rss'] / GIB, current_iter)
        if 'cuda' in memory:
            writer.add_scalar('train/peak_cuda_gib', memory['cuda'] / GIB, current_iter)
