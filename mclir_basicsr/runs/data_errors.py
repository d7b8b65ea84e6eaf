"""Data errors that name the sample's files (W9, add-on runs).

An unreadable image makes BasicSR's datasets fail with ``'NoneType' object has no attribute 'astype'``, and a
LR/HR size mismatch names no file: datasets built by the pipelines of an add-on run are wrapped in
:class:`NamedDataErrors`, which re-raises loading errors as :class:`DataLoadError` naming the sample's files
(the dataset's own class is untouched).
"""
import sys

from torch.utils.data import Dataset

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


class NamedDataErrors(Dataset):
    """A dataset whose loading errors name the sample's files; every attribute is the dataset's.

    Picklable (spawned DataLoader workers): it holds only the dataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except Exception as e:
            reason = str(e)
            if isinstance(e, AttributeError) and 'NoneType' in reason:
                reason = 'the image cannot be decoded (corrupt, truncated or not an image file)'
            where = _sample_files(self.dataset, index)
            raise DataLoadError(f'{type(self.dataset).__name__} sample {index} ({where or "files unknown"}): '
                                f'{reason}') from e

    def __getattr__(self, name):  # only called for names not found on the wrapper
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_dataset(dataset_opt):
    """BasicSR's ``build_dataset``, the dataset wrapped in :class:`NamedDataErrors`."""
    return NamedDataErrors(sys.modules['basicsr.data'].build_dataset(dataset_opt))
