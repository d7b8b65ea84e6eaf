"""Checks of BasicSR's own sections of an add-on run's option file, when it is parsed.

Each of these mistakes otherwise surfaces as a traceback from inside BasicSR or torch, most of them after
``experiments/`` was created: :func:`check_sections` finds them first, as one-line
:class:`~mclir_basicsr.validate.MCLIROptionError` messages that start with the option path.

* ``network_g``: a mapping whose ``type`` is in BasicSR's ARCH_REGISTRY, whose arguments bind to the arch's
  constructor (:mod:`.arguments`: unknown and missing arguments, obviously wrong value types);
* ``scale``: a positive integer (required when a paired dataset reads it);
* every ``datasets.<phase>``: a mapping whose ``type`` is in DATASET_REGISTRY, ``io_backend.type`` one of
  BasicSR's file backends, ``filename_tmpl`` a template with one ``{}``; in a training run only the phases
  ``train`` and ``val*`` that BasicSR's ``train.py`` reads, ``train`` among them;
* ``datasets.train`` of a training run: ``batch_size_per_gpu`` (positive integer), ``num_worker_per_gpu``
  (integer >= 0), ``dataset_enlarge_ratio`` (positive number, optional), ``gt_size`` (positive integer; for
  BasicSR's paired datasets required and a multiple of ``scale``, with ``use_hflip`` / ``use_rot``),
  ``prefetch_mode`` (null, cpu, or cuda with ``pin_memory: true``);
* ``train.total_iter``: a positive integer (an integer-valued float such as ``!!float 1e5`` too, which BasicSR's
  ``int()`` keeps; not a string such as ``1e5``, which YAML reads as one).
"""
from mclir_basicsr.preflight import registry
from mclir_basicsr.preflight.arguments import check_arguments, signature
from mclir_basicsr.validate import (
    MCLIROptionError,
    boolean,
    did_you_mean,
    fail,
    mapping,
    non_negative_int,
    one_of,
    positive_count,
    positive_float,
    positive_int,
)

NETWORK_EXAMPLE = '{type: EDSR, num_in_ch: 3, num_out_ch: 3, upscale: 2}'
TRAIN_PHASES = ('train', 'val')  # the phases BasicSR's train.py builds (val, val_1, val_2, ...)


def _owner(obj):
    return f'{obj.__name__} ({obj.__module__}.{obj.__qualname__})'


def check_network(opt, key='network_g'):
    """``opt[key]``: a registered arch and arguments its constructor takes."""
    if opt.get(key) is None:
        raise MCLIROptionError(f'{key}: not set (expected a mapping with the arch, e.g. {NETWORK_EXAMPLE})')
    section = mapping(key, opt[key], NETWORK_EXAMPLE)
    arch = registry.arch(f'{key}.type', section.get('type'))
    arguments = {k: v for k, v in section.items() if k != 'type'}
    check_arguments(key, _owner(arch), arch, arguments)


def check_scale(opt):
    """``scale``: a positive integer when set; required by BasicSR's paired datasets (they read it)."""
    if 'scale' in opt:
        positive_int('scale', opt['scale'])
        return
    for phase, dataset in (opt.get('datasets') or {}).items():
        cls = registry.dataset_class(dataset.get('type')) if isinstance(dataset, dict) else None
        if cls is not None and registry.crops_pairs(cls):
            raise MCLIROptionError(f'scale: not set (expected a positive integer; {dataset["type"]} of '
                                   f'datasets.{phase} reads it: 1 for restoration without resizing)')


def _check_backend(prefix, dataset, cls):
    """``io_backend``: a mapping whose type is one of BasicSR's FileClient backends (required by BasicSR's own
    datasets, which all read it)."""
    from basicsr.utils.file_client import FileClient
    backend = dataset.get('io_backend')
    if backend is None:
        if cls.__module__.startswith('basicsr.'):
            raise MCLIROptionError(f'{prefix}.io_backend: not set (expected e.g. {{type: disk}}; '
                                   f'{dataset["type"]} reads it)')
        return
    mapping(f'{prefix}.io_backend', backend, '{type: disk}')
    one_of(*FileClient._backends)(f'{prefix}.io_backend.type', backend.get('type'))


def _check_template(prefix, dataset):
    template = dataset.get('filename_tmpl', '{}')
    if not isinstance(template, str):
        fail(f'{prefix}.filename_tmpl', "a string with one {} for the GT file's name, e.g. '{}x4'", template)
    try:
        template.format('name')
    except (IndexError, KeyError, ValueError) as e:
        raise MCLIROptionError(f"{prefix}.filename_tmpl: expected a string with one {{}} for the GT file's name, "
                               f"e.g. '{{}}x4'; got {template!r} ({type(e).__name__}: {e})") from None


def check_dataset(phase, dataset):
    """The parts of ``datasets.<phase>`` that every run reads: the type, the backend, the file name template."""
    prefix = f'datasets.{phase}'
    mapping(prefix, dataset, '{type: PairedImageDataset, dataroot_gt: ..., dataroot_lq: ..., io_backend: ...}')
    cls = registry.dataset(f'{prefix}.type', dataset.get('type'))
    _check_backend(prefix, dataset, cls)
    if registry.paired_by_name(cls):
        _check_template(prefix, dataset)
    return cls


def _required(prefix, dataset, key, check, why='BasicSR reads it in training'):
    if key not in dataset:
        raise MCLIROptionError(f'{prefix}.{key}: not set ({why})')
    return check(f'{prefix}.{key}', dataset[key])


def check_train_dataset(dataset, cls, scale):
    """The options BasicSR's training loop and loader read from ``datasets.train``."""
    prefix = 'datasets.train'
    _required(prefix, dataset, 'batch_size_per_gpu', positive_int)
    _required(prefix, dataset, 'num_worker_per_gpu', non_negative_int)
    if 'dataset_enlarge_ratio' in dataset:
        positive_float(f'{prefix}.dataset_enlarge_ratio', dataset['dataset_enlarge_ratio'])
    crops = registry.crops_pairs(cls)
    if crops:
        why = f'{dataset["type"]} crops training pairs of gt_size'
        gt_size = _required(prefix, dataset, 'gt_size', positive_int, why)
        if isinstance(scale, int) and gt_size % scale:
            raise MCLIROptionError(f'{prefix}.gt_size: expected a multiple of scale {scale} (the LQ patch is '
                                   f'gt_size // scale), got {gt_size}')
        for key in ('use_hflip', 'use_rot'):
            _required(prefix, dataset, key, boolean, f'{dataset["type"]} reads it in training: true or false')
    elif dataset.get('gt_size') is not None:
        positive_int(f'{prefix}.gt_size', dataset['gt_size'])
    one_of('cpu', 'cuda', optional=True)(f'{prefix}.prefetch_mode', dataset.get('prefetch_mode'))
    if dataset.get('prefetch_mode') == 'cuda' and dataset.get('pin_memory') is not True:
        raise MCLIROptionError(f'{prefix}.pin_memory: expected true with prefetch_mode: cuda (BasicSR\'s '
                               f'CUDAPrefetcher needs it), got {dataset.get("pin_memory")!r}')


def _check_phase(phase, is_train):
    if is_train and phase != 'train' and phase.split('_')[0] != 'val':
        raise MCLIROptionError(f'datasets.{phase}: not a phase a training run reads (expected train, val or '
                               f'val_<anything>){did_you_mean(phase.split("_")[0], TRAIN_PHASES)}')


def check_datasets(opt, is_train):
    """Every ``datasets.<phase>``; for a training run, its ``train`` phase too."""
    datasets = mapping('datasets', opt.get('datasets'), '{train: {...}, val: {...}}')
    if is_train and 'train' not in datasets:
        raise MCLIROptionError('datasets.train: not set (a training run needs a train dataset)'
                               f'{did_you_mean("train", [str(p) for p in datasets])}')
    for phase, dataset in datasets.items():
        phase = str(phase)
        _check_phase(phase, is_train)
        cls = check_dataset(phase, dataset)
        if is_train and phase == 'train':
            check_train_dataset(dataset, cls, opt.get('scale'))


def check_total_iter(opt):
    train = opt.get('train')
    if train is None:
        raise MCLIROptionError('train: not set (a training run needs it, e.g. {total_iter: 100000, optim_g: ...})')
    mapping('train', train)
    if 'total_iter' not in train:
        raise MCLIROptionError('train.total_iter: not set (expected a positive integer, the number of iterations)')
    positive_count('train.total_iter', train['total_iter'])


# --------------------------------------------------------------------------- losses, validation, logger
ADDON_LOSSES = ('spn_opt', 'cr_opt', 'uncertainty_opt')  # the add-on's own (mclir_basicsr.options)
LOSS_EXAMPLE = '{type: L1Loss, loss_weight: 1.0, reduction: mean}'
METRIC_INPUTS = ('img', 'img2')  # what BasicSR's calculate_metric passes itself


def check_losses(train):
    """Every ``train.<name>_opt`` but the add-on's: null, or a LOSS_REGISTRY type and arguments its constructor
    takes (BasicSR's ``build_loss``). The official fork's subtracted ``perceptual_opt`` is the add-on's SPN term,
    checked with it."""
    from mclir_basicsr.options import OFFICIAL_NEGATIVE_KEYS
    official = any(k in train for k in OFFICIAL_NEGATIVE_KEYS)
    for key, section in train.items():
        key = str(key)
        if not key.endswith('_opt') or key in ADDON_LOSSES or section is None or \
                (official and key == 'perceptual_opt'):
            continue
        path = f'train.{key}'
        mapping(path, section, LOSS_EXAMPLE)
        loss = registry.loss(f'{path}.type', section.get('type'))
        check_arguments(path, _owner(loss), loss, {k: v for k, v in section.items() if k != 'type'})


def check_metrics(metrics):
    """``val.metrics``: null, or a mapping of names to METRIC_REGISTRY types with the arguments the function takes
    besides the two images (BasicSR's ``calculate_metric`` passes every other key, ``better`` included)."""
    if metrics is None:
        return
    mapping('val.metrics', metrics, '{psnr: {type: calculate_psnr, crop_border: 4, test_y_channel: true}}')
    for name, section in metrics.items():
        path = f'val.metrics.{name}'
        mapping(path, section, '{type: calculate_psnr, crop_border: 4, test_y_channel: true}')
        metric = registry.metric(f'{path}.type', section.get('type'))
        arguments = {k: v for k, v in section.items() if k != 'type'}
        for given in METRIC_INPUTS:
            if given in arguments:
                raise MCLIROptionError(f'{path}.{given}: set, but the model passes the images itself (remove it)')
        sig = signature(metric)  # the images the model passes, where the function names them
        passed = [k for k in METRIC_INPUTS if sig is not None and k in sig.parameters]
        check_arguments(path, _owner(metric), metric, dict(arguments, **dict.fromkeys(passed)))
        if 'better' in section:
            one_of('higher', 'lower')(f'{path}.better', section['better'])


def check_val(opt, is_train):
    """``val``, which BasicSR's train.py (every ``val_freq`` iterations) and test.py read."""
    val = opt.get('val')
    if val is None:
        if not is_train:
            raise MCLIROptionError('val: not set (BasicSR\'s test.py reads it, e.g. {save_img: true, suffix: ~, '
                                   'metrics: {...}})')
        return
    mapping('val', val, '{val_freq: 5000, save_img: false, metrics: {...}}')
    if is_train:
        _required('val', val, 'val_freq', positive_count, 'BasicSR validates every val_freq iterations')
    _required('val', val, 'save_img', boolean, 'BasicSR reads it: true or false')
    if not is_train and val['save_img'] and 'suffix' not in val:
        raise MCLIROptionError('val.suffix: not set (BasicSR\'s test.py reads it when save_img is true: null, or a '
                               'string added to the saved images\' names)')
    if val.get('pbar') is not None:
        boolean('val.pbar', val['pbar'])
    check_metrics(val.get('metrics'))


def check_logger(opt):
    """``logger``, which BasicSR's train.py reads: the print and checkpoint frequencies, the tensorboard switch
    and wandb's project."""
    if opt.get('logger') is None:
        raise MCLIROptionError('logger: not set (BasicSR\'s train.py reads it, e.g. {print_freq: 100, '
                               'save_checkpoint_freq: 5000, use_tb_logger: true})')
    logger = mapping('logger', opt['logger'], '{print_freq: 100, save_checkpoint_freq: 5000, use_tb_logger: true}')
    for key in ('print_freq', 'save_checkpoint_freq'):
        _required('logger', logger, key, positive_count, 'BasicSR\'s train.py reads it: every how many iterations')
    if logger.get('use_tb_logger') is not None:
        boolean('logger.use_tb_logger', logger['use_tb_logger'])
    wandb = logger.get('wandb')
    if wandb is not None:
        mapping('logger.wandb', wandb, '{project: ..., resume_id: ~}')
        if wandb.get('project') is not None and logger.get('use_tb_logger') is not True:
            raise MCLIROptionError('logger.use_tb_logger: expected true with logger.wandb.project set (BasicSR '
                                   f'syncs wandb from tensorboard), got {logger.get("use_tb_logger")!r}')


def check_sections(opt, is_train):
    """Every check of BasicSR's own sections (``opt`` as BasicSR's parse_options returns it); raises the first
    problem found."""
    check_network(opt)
    if opt.get('network_d') is not None:
        check_network(opt, 'network_d')
    check_scale(opt)
    check_datasets(opt, is_train)
    if is_train:
        check_total_iter(opt)
        check_losses(opt['train'])
        check_logger(opt)
    check_val(opt, is_train)
