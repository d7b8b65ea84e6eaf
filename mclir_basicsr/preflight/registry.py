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


def names(registry):
    """The names to use for the registry's objects, sorted (``X`` for ``X_basicsr``, which ``get`` answers)."""
    return sorted({n[:-len(SUFFIX)] if n.endswith(SUFFIX) else n for n, _ in registry})


def registered(path, name, registry, what):
    """The object registered as ``name`` (the value of option ``path``); MCLIROptionError naming the option,
    with the closest registered name, when there is none."""
    if name is None:
        raise MCLIROptionError(f'{path}: not set (expected the name of a registered {what})')
    if not isinstance(name, str):
        raise MCLIROptionError(f'{path}: expected the name of a registered {what}, got {name!r}')
    obj = lookup(registry, name)
    if obj is None:
        choices = names(registry)
        hint = did_you_mean(name, choices)
        listed = '' if hint else f'; registered: {", ".join(choices)}'
        raise MCLIROptionError(f'{path}: {name!r} is not a registered {what}{hint}{listed}')
    return obj


def arch(path, name):
    from basicsr.utils.registry import ARCH_REGISTRY
    return registered(path, name, ARCH_REGISTRY, 'arch (ARCH_REGISTRY)')


def dataset(path, name):
    from basicsr.utils.registry import DATASET_REGISTRY
    return registered(path, name, DATASET_REGISTRY, 'dataset (DATASET_REGISTRY)')


def loss(path, name):
    from basicsr.utils.registry import LOSS_REGISTRY
    return registered(path, name, LOSS_REGISTRY, 'loss (LOSS_REGISTRY)')


def metric(path, name):
    from basicsr.utils.registry import METRIC_REGISTRY
    return registered(path, name, METRIC_REGISTRY, 'metric (METRIC_REGISTRY)')


def dataset_class(name):
    """The dataset class of ``type: name``, or None."""
    from basicsr.utils.registry import DATASET_REGISTRY
    return lookup(DATASET_REGISTRY, name)


def paired_by_name(cls):
    """The option key of the meta file of a dataset class that pairs GT and LQ files the way BasicSR's
    ``PairedImageDataset`` and ``RealESRGANPairedDataset`` do (``paired_paths_from_folder``: each GT file with
    the LQ file of its name after ``filename_tmpl``), or None for any other class. A subclass counts when it
    keeps the class's ``__init__`` (where the pairing is done)."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.data.realesrgan_paired_dataset import RealESRGANPairedDataset
    init = getattr(cls, '__init__', None)
    if init is PairedImageDataset.__init__:
        return 'meta_info_file'
    if init is RealESRGANPairedDataset.__init__:
        return 'meta_info'
    return None


def crops_pairs(cls):
    """True for a paired dataset class whose training samples are BasicSR's ``paired_random_crop`` of
    ``gt_size`` (``use_hflip`` / ``use_rot`` read as well): PairedImageDataset, RealESRGANPairedDataset, and
    subclasses that keep their ``__init__`` and ``__getitem__``."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.data.realesrgan_paired_dataset import RealESRGANPairedDataset
    return any(getattr(cls, '__init__', None) is base.__init__ and getattr(cls, '__getitem__', None) is
               base.__getitem__ for base in (PairedImageDataset, RealESRGANPairedDataset))


def gives_no_gt(cls):
    """True for BasicSR's ``SingleImageDataset`` (and subclasses that keep its ``__getitem__``): LQ images only."""
    from basicsr.data.single_image_dataset import SingleImageDataset
    return getattr(cls, '__getitem__', None) is SingleImageDataset.__getitem__


def image_keys(cls):
    """The keys of the images' colour and normalisation that a BasicSR dataset class reads (``color`` / ``mean`` /
    ``std``; the Real-ESRGAN paired dataset reads no ``color``), judged by its ``__getitem__``; () for others."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.data.realesrgan_paired_dataset import RealESRGANPairedDataset
    from basicsr.data.single_image_dataset import SingleImageDataset
    getitem = getattr(cls, '__getitem__', None)
    if getitem in (PairedImageDataset.__getitem__, SingleImageDataset.__getitem__):
        return ('color', 'mean', 'std')
    return ('mean', 'std') if getitem is RealESRGANPairedDataset.__getitem__ else ()
