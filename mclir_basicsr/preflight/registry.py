"""What BasicSR's registries hold, as its builders look names up, and which datasets pair GT and LQ by name.

BasicSR's ``Registry.get(name)`` falls back to ``name + '_basicsr'`` (how it registers the copies of
Real-ESRGAN's components, e.g. ``RealESRGANPairedDataset_basicsr``), so both spellings are accepted here.
BasicSR is imported when a function is called, not when this module is imported.
"""
from mclir_basicsr.validate import MCLIROptionError, did_you_mean

SUFFIX = '_basicsr'  # the suffix Registry.get tries after the name itself


def lookup(registry, name):
    """The object ``registry.get(name)`` returns, or None when it would raise (no message printed)."""
    if not isinstance(name, str) or not name:
        return None
    objects = dict(iter(registry))
    return objects.get(name, objects.get(name + SUFFIX))


def registered(path, name, registry, what):
    """The object registered as ``name`` (the value of option ``path``); MCLIROptionError naming the option,
    with the closest registered name, when there is none."""
    if name is None:
        raise MCLIROptionError(f'{path}: not set (expected the name of a registered {what})')
    if not isinstance(name, str):
        raise MCLIROptionError(f'{path}: expected the name of a registered {what}, got {name!r}')
    obj = lookup(registry, name)
    if obj is None:
        choices = sorted({n[:-len(SUFFIX)] if n.endswith(SUFFIX) else n for n, _ in registry})  # X for X_basicsr
        hint = did_you_mean(name, choices)
        listed = '' if hint else f'; registered: {", ".join(choices)}'
        raise MCLIROptionError(f'{path}: {name!r} is not a registered {what}{hint}{listed}')
    return obj


WHAT = {'arch': 'ARCH_REGISTRY', 'dataset': 'DATASET_REGISTRY', 'loss': 'LOSS_REGISTRY', 'metric': 'METRIC_REGISTRY'}


def _registry(kind):
    from basicsr.utils import registry
    return getattr(registry, WHAT[kind])


def find(kind, path, name):
    """The ``kind`` (arch, dataset, loss, metric) registered as ``name``, the value of option ``path``."""
    return registered(path, name, _registry(kind), f'{kind} ({WHAT[kind]})')


def dataset_class(name):
    """The dataset class of ``type: name``, or None."""
    return lookup(_registry('dataset'), name)


def _bases():
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.data.realesrgan_paired_dataset import RealESRGANPairedDataset
    from basicsr.data.single_image_dataset import SingleImageDataset
    return PairedImageDataset, RealESRGANPairedDataset, SingleImageDataset


def _keeps(cls, base, *methods):
    """True when ``cls`` is ``base`` or a subclass that keeps its ``methods`` (where BasicSR reads the options)."""
    return all(getattr(cls, m, None) is getattr(base, m) for m in methods)


def paired_by_name(cls):
    """The option key of the meta file of a dataset class that pairs GT and LQ files the way BasicSR's
    ``PairedImageDataset`` and ``RealESRGANPairedDataset`` do (``paired_paths_from_folder``: each GT file with
    the LQ file of its name after ``filename_tmpl``; done in ``__init__``), or None for any other class."""
    return next((key for base, key in zip(_bases(), ('meta_info_file', 'meta_info')) if _keeps(cls, base, '__init__')),
                None)


def crops_pairs(cls):
    """True for a paired dataset class whose training samples are BasicSR's ``paired_random_crop`` of
    ``gt_size`` (``use_hflip`` / ``use_rot`` read as well)."""
    return any(_keeps(cls, base, '__init__', '__getitem__') for base in _bases()[:2])


def gives_no_gt(cls):
    """True for BasicSR's ``SingleImageDataset`` (and subclasses that keep its ``__getitem__``): LQ images only."""
    return _keeps(cls, _bases()[2], '__getitem__')


def image_keys(cls):
    """The keys of the images' colour and normalisation that a BasicSR dataset class reads (``color`` / ``mean`` /
    ``std``; the Real-ESRGAN paired dataset reads no ``color``), judged by its ``__getitem__``; () for others."""
    paired, realesrgan, single = _bases()
    if _keeps(cls, paired, '__getitem__') or _keeps(cls, single, '__getitem__'):
        return ('color', 'mean', 'std')
    return ('mean', 'std') if _keeps(cls, realesrgan, '__getitem__') else ()
