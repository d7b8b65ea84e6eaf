"""Training states that cannot run code when they are read (add-on runs).

A training state is a pickle; ``torch.load(weights_only=False)`` would run whatever a state from elsewhere asks
for. The add-on's runs read states with ``weights_only=True`` and, on top of torch's own allow-list (tensors,
containers, ``OrderedDict``, ``Counter``...), exactly the types a state holds that torch does not allow by
itself: NumPy's RNG state (an ``ndarray`` of ``uint32``, rebuilt through ``_reconstruct`` and ``dtype``). A file
that needs any other global is refused with a :class:`UnsafeStateError` naming the file and those globals,
found from the pickle's opcodes without unpickling it. The allow-list is passed to the one ``torch.load`` call
(a context, not torch's process-wide list), so another program in the same process is unaffected.
"""
import pickle

from mclir_basicsr.errors import MCLIRError


class UnsafeStateError(MCLIRError, pickle.UnpicklingError):
    """A training state that needs types a training state never holds; it was not unpickled."""


def allowed_globals():
    """The globals a training state may need beyond torch's ``weights_only`` defaults (the RNG states)."""
    import numpy as np
    try:
        from numpy._core import multiarray  # NumPy 2
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    reconstruct = multiarray._reconstruct
    # both spellings: a state written under NumPy 1 names numpy.core, under NumPy 2 numpy._core
    # the Mersenne Twister key is a uint32 array; NumPy 2 rebuilds its dtype as an instance of UInt32DType
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), (reconstruct, 'numpy._core.multiarray._reconstruct'),
            (reconstruct, 'numpy.core.multiarray._reconstruct')]


def _allowed_names():
    names = set()
    for entry in allowed_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{entry.__module__}.{entry.__qualname__}')
    return names


def _refused(path):
    """The globals of ``path`` outside torch's and this module's allow-lists (read from the opcodes)."""
    from torch.serialization import get_unsafe_globals_in_checkpoint
    try:
        found = get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001  (a legacy-format file: the globals are not listed, only refused)
        return []
    allowed = _allowed_names()
    return [g for g in found if g not in allowed]


def load_training_state(path, map_location=None):
    """The training state at ``path``, read with ``weights_only=True`` and :func:`allowed_globals`; an
    :class:`UnsafeStateError` naming the file when it needs anything else."""
    import torch
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused(path)
        if refused:
            what = f'it needs {", ".join(refused)}, which a training state never holds'
        else:
            what = 'it holds what a training state never holds (' + ' '.join(
                str(e).split('WeightsUnpickler error:')[-1].split('.')[0].split()) + ')'
        raise UnsafeStateError(
            f'{path}: refused as a training state: {what}; it was not unpickled, so nothing in it ran. Resume only '
            'from states written by a training run (experiments/<name>/training_states/).') from None
