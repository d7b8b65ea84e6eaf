"""Small helpers for the files a training process writes: atomic saves (with BasicSR's retries), rank 0 only,
networks' state on the CPU. A leaf: the standard library and :mod:`mclir_basicsr.errors` at import time, torch
when a helper is called."""
import functools
import logging
import os
import time

from mclir_basicsr.errors import MCLIRError

logger = logging.getLogger('basicsr')  # BasicSR's root logger (basicsr.utils.get_root_logger)


class SaveError(MCLIRError, OSError):
    """A checkpoint or training state that could not be written after the retries (a full disk, a read-only or
    vanished folder); the file on disk before the attempt, if any, is intact and no partial file is left."""


def atomic_torch_save(obj, f, *args, **kwargs):
    """``torch.save`` that never leaves a truncated file at ``f``: write a temporary file next to it, fsync,
    ``os.replace`` it into place (a crash or Ctrl-C while saving leaves the old file and no temporary)."""
    import torch
    if not isinstance(f, (str, os.PathLike)):
        return torch.save(obj, f, *args, **kwargs)
    f = os.fspath(f)
    tmp = os.path.join(os.path.dirname(f) or '.', f'.{os.path.basename(f)}.{os.getpid()}.tmp')
    try:
        # through a Python file object: a write that fails raises the OSError itself (errno ENOSPC, EROFS, ...),
        # where torch's own file writer only reports a position mismatch
        with open(tmp, 'wb') as fh:
            torch.save(obj, fh, *args, **kwargs)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_ABORT = []  # the exception that stops every save at once (a second Ctrl-C / SIGTERM), when set


def abort_saves(exc):
    """Make every save under way or to come raise ``exc`` instead of retrying (None: save again). A signal
    handler's exception raised while torch writes is turned into a RuntimeError by torch's writer, which the
    retries would otherwise take for a failed write."""
    _ABORT[:] = [exc] if exc is not None else []


def save_with_retries(obj, path, what):
    """:func:`atomic_torch_save` with BasicSR's three tries. Where BasicSR then logs "Just ignore it" and trains
    on (ending without its final network or state), a failure after the tries raises :class:`SaveError`
    naming the file and the OS error: a run must not go on without the files it is meant to leave.
    ``what``: 'model' or 'training state' (BasicSR's words in the log)."""
    for attempt in (2, 1, 0):
        try:
            if _ABORT:
                raise _ABORT[0]
            atomic_torch_save(obj, path)
            return
        except Exception as e:
            if _ABORT:
                raise _ABORT[0] from None
            error = e
            logger.warning(f'Save {what} error: {e}, remaining retry times: {attempt}')
            if attempt:
                time.sleep(1)
    reason = f'[Errno {error.errno}] {error.strerror}' if isinstance(error, OSError) and error.strerror else error
    raise SaveError(f'{path}: the {what} cannot be saved ({type(error).__name__}: {reason}); no partial file was '
                    'left and the files saved before are intact. Free space or fix the folder, then resume with '
                    '--auto_resume.') from error


def dist_info():
    """(rank, world size) of this process; (0, 1) when not distributed (BasicSR's ``get_dist_info``)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def master_only(fn):
    """Run ``fn`` on rank 0 only (BasicSR's ``master_only``, without importing BasicSR)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if dist_info()[0] == 0:
            return fn(*args, **kwargs)
    return wrapper


def cpu_state_dict(net):
    """A network's state dict on CPU, keys without DDP's ``module.`` prefix (BasicSR's checkpoint format)."""
    state = net.state_dict()
    for key, value in list(state.items()):
        if key.startswith('module.'):
            del state[key]
            key = key[len('module.'):]
        state[key] = value.cpu()
    return state
