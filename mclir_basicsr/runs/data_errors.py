"""Data errors that name the sample's files (W9, add-on runs).

An unreadable image makes BasicSR's datasets fail with ``'NoneType' object has no attribute 'astype'``, and a
LR/HR size mismatch names no file: datasets built by the pipelines of an add-on run are wrapped in
:class:`NamedDataErrors`, which re-raises loading errors as :class:`DataLoadError` naming the sample's files
(the dataset's own class is untouched).
"""
import functools
import signal
import sys

from torch.utils.data import Dataset, get_worker_info

from mclir_basicsr.errors import MCLIRError


class DataLoadError(MCLIRError, RuntimeError):
    """A sample that cannot be loaded; the message names its files."""


def _sample_files(dataset, index):
    paths = getattr(dataset, 'paths', None)
    try:
        entry = paths[index % len(paths)]
    except (TypeError, IndexError, ZeroDivisionError, KeyError):
        return ''
    if isinstance(entry, dict):
        return ', '.join(f'{k}: {v}' for k, v in entry.items() if isinstance(v, str))
    return str(entry)


def _size(image):
    shape = getattr(image, 'shape', None)
    return tuple(shape[-2:]) if shape is not None and len(shape) >= 2 else None


_WORKER_SIGNALS = []  # set once the signals of this DataLoader worker process are ignored


def leave_stops_to_the_main_process():
    """In a DataLoader worker: ignore SIGINT and SIGTERM. Ctrl-C reaches the whole process group and Slurm signals
    every process of a job step; a worker killed by SIGTERM makes the main process fail at once ("DataLoader worker
    is killed by signal") before it can save its state. The main process stops the run
    (:mod:`mclir_basicsr.runs.interrupts`); its workers end with it."""
    if not _WORKER_SIGNALS:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        _WORKER_SIGNALS.append(True)


def _init_worker(init_fn, worker_id):
    leave_stops_to_the_main_process()
    if init_fn is not None:
        init_fn(worker_id)


def ignoring_stops(loader):
    """``loader`` with workers that ignore SIGINT / SIGTERM from their ``worker_init_fn`` on, the earliest hook
    torch gives (its own worker set-up, a few lines before, makes SIGTERM fatal). A partial of module functions:
    picklable for spawned workers."""
    init_fn = loader.worker_init_fn
    if getattr(init_fn, 'func', None) is not _init_worker:
        loader.worker_init_fn = functools.partial(_init_worker, init_fn)
    return loader


class NamedDataErrors(Dataset):
    """A dataset whose loading errors name the sample's files; every attribute is the dataset's.

    Outside training (``scale``: the dataset's scale, None in training), a pair whose GT is not ``scale`` times its
    LQ is a :class:`DataLoadError` naming the files when it is read, instead of the metric's later "Image shapes
    are different" that names none. Picklable (spawned DataLoader workers): it holds only the dataset."""

    def __init__(self, dataset, scale=None):
        self.dataset = dataset
        self.scale = scale

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if not _WORKER_SIGNALS and get_worker_info() is not None:  # a loader not built by a prefetcher
            leave_stops_to_the_main_process()
        try:
            sample = self.dataset[index]
        except Exception as e:
            reason = str(e)
            if isinstance(e, AttributeError) and 'NoneType' in reason:
                reason = 'the image cannot be decoded (corrupt, truncated or not an image file)'
            where = _sample_files(self.dataset, index)
            raise DataLoadError(f'{type(self.dataset).__name__} sample {index} ({where or "files unknown"}): '
                                f'{reason}') from e
        if self.scale is not None and isinstance(sample, dict):
            self._check_scale(sample, index)
        return sample

    def _check_scale(self, sample, index):
        gt, lq = _size(sample.get('gt')), _size(sample.get('lq'))
        if gt is None or lq is None or gt == (lq[0] * self.scale, lq[1] * self.scale):
            return
        where = _sample_files(self.dataset, index)
        raise DataLoadError(
            f'{type(self.dataset).__name__} sample {index} ({where or "files unknown"}): LQ is {lq[1]}x{lq[0]} and '
            f'GT is {gt[1]}x{gt[0]}, but scale is {self.scale} (expected GT {lq[1] * self.scale}x'
            f'{lq[0] * self.scale}); the metrics compare the output with GT pixel for pixel')

    def __getattr__(self, name):  # only called for names not found on the wrapper
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_dataset(dataset_opt):
    """BasicSR's ``build_dataset``, the dataset wrapped in :class:`NamedDataErrors` (with the scale check outside
    training)."""
    dataset = sys.modules['basicsr.data'].build_dataset(dataset_opt)
    scale = dataset_opt.get('scale')
    checked = dataset_opt.get('phase') != 'train' and isinstance(scale, int) and not isinstance(scale, bool)
    return NamedDataErrors(dataset, scale if checked and scale >= 1 else None)
