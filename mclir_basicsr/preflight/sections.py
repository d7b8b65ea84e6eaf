"""BasicSR's own sections of an add-on run's option file, checked when it is parsed.

Each of these mistakes otherwise surfaces as a traceback from inside BasicSR or torch, most of them after
``experiments/`` was created: :func:`check_sections` finds them first, as one-line
:class:`~mclir_basicsr.validate.MCLIROptionError` messages that start with the option path.

The static sections are pydantic models (strict, as the add-on's own in :mod:`mclir_basicsr.options`, whose
one-line formatter they share): ``datasets.train``'s loader and crop keys, ``train``'s loop keys, ``val``,
``logger`` (with ``wandb``), ``path`` and ``dist_params``; where a key is required depends on the run (training or
test) and on the dataset class, which the models get as validation context. What names a registry entry
(``network_g``, ``network_d``, the datasets, the losses in ``train.*_opt``, ``val.metrics``) is looked up in
BasicSR's registries and its arguments bound to the signature of what it builds (:mod:`.arguments`).
"""
import contextlib
import difflib
import random
import socket
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, Field, ValidationInfo, model_validator

from mclir_basicsr.ignored_options import read_train_keys
from mclir_basicsr.options import OFFICIAL_NEGATIVE_KEYS, Boolean, Finite, PositiveInt, Section, expect, invalid, one_of
from mclir_basicsr.preflight import registry
from mclir_basicsr.preflight.arguments import check_arguments, signature
from mclir_basicsr.validate import MCLIROptionError, did_you_mean, fail, mapping, whole_number

NETWORK_EXAMPLE = '{type: EDSR, num_in_ch: 3, num_out_ch: 3, upscale: 2}'
TRAIN_PHASES = ('train', 'val')  # the phases BasicSR's train.py builds (val, val_1, val_2, ...)


def as_int(value):
    """An integer-valued float (YAML's ``!!float 5e3``) is the integer BasicSR's ``int()`` makes of it."""
    return int(value) if isinstance(value, float) and whole_number(value) else value


Count = Annotated[int, BeforeValidator(as_int), Field(ge=1), expect('a positive integer', hint=True)]
OptionalCount = Annotated[Optional[Annotated[int, BeforeValidator(as_int), Field(ge=1)]],
                          expect('a positive integer', hint=True)]
OptionalPositiveInt = Annotated[Optional[Annotated[int, Field(ge=1)]], expect('a positive integer')]
NonNegativeInt = Annotated[int, Field(ge=0), expect('an integer >= 0')]
PositiveFloat = Annotated[Finite, Field(gt=0), expect('a finite number > 0')]
OptionalBoolean = Annotated[Optional[bool], expect('true or false')]
OptionalText = Annotated[Optional[str], expect('null or a string')]
EVERY = 'BasicSR\'s train.py reads it: every how many iterations'


class BasicSRSection(Section):
    """One of BasicSR's sections: a key BasicSR needs is 'not set (<why>)'."""
    missing = 'not set'


class TrainSet(BasicSRSection):
    """What BasicSR's training loop and loader read from ``datasets.train``; the other keys are the dataset's."""
    model_config = {'extra': 'ignore'}
    path = 'datasets.train'
    batch_size_per_gpu: PositiveInt = Field(description='BasicSR reads it in training')
    num_worker_per_gpu: NonNegativeInt = Field(description='BasicSR reads it in training')
    dataset_enlarge_ratio: PositiveFloat = Field(1, description='Epochs are this many passes over the data.')
    gt_size: OptionalPositiveInt = Field(None, description=(
        'GT patch size; required (a multiple of `scale`) by the datasets that crop pairs (PairedImageDataset).'))
    use_hflip: OptionalBoolean = Field(None, description='Random flips; required by the datasets that crop pairs.')
    use_rot: OptionalBoolean = Field(None, description='Random rotations; required by the datasets that crop pairs.')
    prefetch_mode: one_of('cpu', 'cuda', optional=True) = Field(None, description=(
        'BasicSR\'s data prefetcher; `cuda` needs `pin_memory: true`.'))
    pin_memory: Boolean = Field(False, description='The data loader\'s pin_memory.')

    @model_validator(mode='after')
    def _crops(self, info: ValidationInfo):
        """Pairs cropped by BasicSR's ``paired_random_crop`` need gt_size (a multiple of scale) and the flips."""
        kind, scale = info.context['crops'], info.context['scale']
        if kind:
            for key in ('gt_size', 'use_hflip', 'use_rot'):
                if getattr(self, key) is None:
                    why = f'{kind} crops training pairs of gt_size' if key == 'gt_size' else \
                        f'{kind} reads it in training: true or false'
                    raise invalid(f'not set ({why})', at=key)
            if isinstance(scale, int) and self.gt_size % scale:
                raise invalid(f'expected a multiple of scale {scale} (the LQ patch is gt_size // scale), got '
                              f'{self.gt_size}', at='gt_size')
        if self.prefetch_mode == 'cuda' and not self.pin_memory:
            raise invalid('expected true with prefetch_mode: cuda (BasicSR\'s CUDAPrefetcher needs it), got '
                          f'{self.pin_memory!r}', at='pin_memory')
        return self


class TrainLoop(BasicSRSection):
    """The keys of ``train`` that BasicSR's loop and SRModel read (optim_g / scheduler: :mod:`.optim`)."""
    model_config = {'extra': 'ignore'}  # the rest is the add-on's or a loss (*_opt); unread keys are warned about
    path = 'train'
    total_iter: Count = Field(description='expected a positive integer, the number of iterations')
    warmup_iter: Annotated[int, BeforeValidator(as_int), Field(ge=-1), expect(
        'an integer >= -1 (-1: no warm-up)', hint=True)] = Field(-1, description='Linear learning-rate warm-up.')
    ema_decay: Annotated[Finite, Field(ge=0, lt=1), expect('a number in [0, 1) (0: no EMA)', hint=True)] = Field(
        0, description='EMA of network_g\'s weights (saved as `params_ema`).')


def _channels(what, **bounds):
    return Annotated[Optional[Annotated[list[Annotated[Finite, Field(**bounds)]], Field(min_length=1, max_length=3)]],
                     expect(f'null or a list of 1 or 3 {what} (one per channel)')]


class Images(BasicSRSection):
    """What BasicSR's image datasets read of the images' colour and normalisation, in every phase."""
    model_config = {'extra': 'ignore'}
    path = 'datasets.<phase>'
    color: Annotated[Any, expect('y or null'), Field(description=(
        '`y`: the Y channel of YCbCr (PairedImageDataset, SingleImageDataset); BasicSR ignores any other value and '
        'keeps RGB.'))] = None
    mean: _channels('numbers') = Field(None, description=(
        'Normalise the images: (x - mean) / std, per channel; set with `std`.'))
    std: _channels('numbers > 0', gt=0) = Field(None, description='See `mean`.')

    @model_validator(mode='after')
    def _read_as_given(self, info: ValidationInfo):
        if info.context['color'] and self.color not in (None, 'y'):
            raise invalid(f'expected y or null (BasicSR converts to the Y channel only for y, and ignores any other '
                          f'value: the images stay RGB), got {self.color!r}', at='color')
        if (self.mean is None) != (self.std is None):
            given, other = ('mean', 'std') if self.std is None else ('std', 'mean')
            raise invalid(f'not set, but {given} is (BasicSR normalises with both)', at=other)
        if self.mean is not None and len(self.mean) != len(self.std):
            raise invalid(f'expected as many numbers as mean ({len(self.mean)}), got {len(self.std)}', at='std')
        return self


class Wandb(BasicSRSection):
    project: OptionalText = Field(None, description='The wandb project (null: no wandb).')
    resume_id: OptionalText = Field(None, description='The wandb run to resume.')


class Logger(BasicSRSection):
    path = 'logger'
    print_freq: Count = Field(description=EVERY)
    save_checkpoint_freq: Count = Field(description=EVERY)
    use_tb_logger: OptionalBoolean = Field(None, description='Log to tensorboard (tb_logger/<name>).')
    wandb: Annotated[Optional[Wandb], expect('a mapping, e.g. {project: ..., resume_id: ~}')] = Field(
        None, description='`project` and `resume_id`; a project needs `use_tb_logger: true`.')

    @model_validator(mode='after')
    def _wandb_syncs_from_tensorboard(self):
        if self.wandb is not None and self.wandb.project is not None and self.use_tb_logger is not True:
            raise invalid('expected true with logger.wandb.project set (BasicSR syncs wandb from tensorboard), got '
                          f'{self.use_tb_logger!r}', at='use_tb_logger')
        return self


class Val(BasicSRSection):
    """``val``, which BasicSR's train.py (every ``val_freq`` iterations) and test.py read."""
    path = 'val'
    val_freq: OptionalCount = Field(None, description='Validate every this many iterations (required in training).')
    save_img: Boolean = Field(description='BasicSR reads it: true or false')
    suffix: OptionalText = Field(None, description='Added to saved images\' names; test.py needs it with save_img.')
    pbar: OptionalBoolean = Field(None, description='A progress bar over the validation images.')
    metrics: Annotated[Any, expect('metric name: {type: <METRIC_REGISTRY name>, <its arguments>}')] = Field(
        None, description='Each type is looked up in METRIC_REGISTRY and its arguments bound to the function.')

    @model_validator(mode='after')
    def _run_needs(self, info: ValidationInfo):
        if info.context['is_train'] and self.val_freq is None:
            raise invalid('not set (BasicSR validates every val_freq iterations)', at='val_freq')
        if not info.context['is_train'] and self.save_img and 'suffix' not in self.model_fields_set:
            raise invalid('not set (BasicSR\'s test.py reads it when save_img is true: null, or a string added to '
                          'the saved images\' names)', at='suffix')
        return self


def _folder(what):
    return Field(None, description=f'{what} (set by BasicSR from `name`).')


class Paths(BasicSRSection):
    """``path``: what the user sets, and what BasicSR's parse_options adds (the run's folders)."""
    path = 'path'
    pretrain_network_g: OptionalText = Field(None, description='Weights network_g starts from.')
    param_key_g: OptionalText = Field(None, description='Key of those weights in the file (`params`).')
    strict_load_g: Boolean = Field(True, description='Load them strictly.')
    pretrain_network_d: OptionalText = Field(None, description='The same for network_d.')
    param_key_d: OptionalText = Field(None, description='The same for network_d.')
    strict_load_d: Boolean = Field(True, description='The same for network_d.')
    resume_state: OptionalText = Field(None, description='Training state to resume from.')
    ignore_resume_networks: Annotated[Optional[list[str]], expect('null or a list of network names')] = Field(
        None, description='Networks not loaded on resume.')
    experiments_root: OptionalText = _folder('The run\'s folder')
    models: OptionalText = _folder('Its networks')
    training_states: OptionalText = _folder('Its training states')
    log: OptionalText = _folder('Its log')
    visualization: OptionalText = _folder('Its validation images')
    results_root: OptionalText = _folder('A test run\'s folder')


class DistParams(BasicSRSection):
    """``dist_params``, which BasicSR's slurm launcher passes to its process-group set-up."""
    path = 'dist_params'
    backend: one_of('nccl', 'gloo', 'mpi') = Field('nccl', description='torch.distributed backend (slurm).')
    port: Annotated[int, Field(ge=1, le=65535), expect('a port number in [1, 65535]')] = Field(
        29500, description='Master port (slurm).')


def _owner(obj):
    return f'{obj.__name__} ({obj.__module__}.{obj.__qualname__})'


def _entry(kind, path, section, example):
    """(what the section's ``type`` names in BasicSR's ``kind`` registry, the other keys: its arguments)."""
    mapping(path, section, example)
    return registry.find(kind, f'{path}.type', section.get('type')), {k: v for k, v in section.items() if k != 'type'}


def check_network(opt, key='network_g'):
    """``opt[key]``: a registered arch and arguments its constructor takes."""
    if opt.get(key) is None:
        raise MCLIROptionError(f'{key}: not set (expected a mapping with the arch, e.g. {NETWORK_EXAMPLE})')
    arch, arguments = _entry('arch', key, opt[key], NETWORK_EXAMPLE)
    check_arguments(key, _owner(arch), arch, arguments)
    check_builds(key, arch, arguments)


class _Download(Exception):
    """A constructor that reached for the network (pretrained weights): not built here."""


def _refuse(*args, **kwargs):
    raise _Download()


@contextlib.contextmanager
def _aside():
    """The random states as they were afterwards (the run's own network gets the weights it would have had without
    this check) and no network connection (a constructor that downloads is not built here)."""
    import numpy as np
    import torch
    states = random.getstate(), np.random.get_state()
    found = socket.socket.connect, socket.getaddrinfo
    socket.socket.connect = socket.getaddrinfo = _refuse
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        socket.socket.connect, socket.getaddrinfo = found
        random.setstate(states[0])
        np.random.set_state(states[1])


def check_builds(key, arch, arguments):
    """``arch(**arguments)`` is built once, on torch's meta device (no memory, no time) or, where the constructor
    needs real tensors (SwinIR's ``.item()``), on the CPU: what the constructor itself refuses (SwinIR's
    ``depths`` and ``num_heads`` of different lengths, VGGStyleDiscriminator's ``input_size``) is one line here,
    not a traceback once the run's folders exist. A constructor that downloads is left alone."""
    import torch
    with _aside():
        try:
            with torch.device('meta'):
                arch(**arguments)
            return
        except Exception:  # noqa: BLE001  (the meta device's limits, or the constructor's refusal: the CPU decides)
            pass
        try:
            arch(**arguments)
        except _Download:
            return
        except Exception as e:  # noqa: BLE001  (whatever the constructor raises is the message)
            reason = ' '.join(str(e).split()) or 'no message'
            raise MCLIROptionError(f'{key}: {_owner(arch)} cannot be built from these arguments: '
                                   f'{type(e).__name__}: {reason}') from None


def check_scale(opt):
    """``scale``: a positive integer when set; required by BasicSR's paired datasets (they read it)."""
    if 'scale' in opt:
        if isinstance(opt['scale'], bool) or not isinstance(opt['scale'], int) or opt['scale'] < 1:
            fail('scale', 'a positive integer', opt['scale'])
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
    if backend.get('type') not in FileClient._backends:
        given, backends = backend.get('type'), FileClient._backends
        raise MCLIROptionError(f'{prefix}.io_backend.type: expected one of {", ".join(backends)}; got {given!r}'
                               f'{did_you_mean(given, backends) if isinstance(given, str) else ""}')


def _check_template(prefix, dataset):
    template = dataset.get('filename_tmpl', '{}')
    if not isinstance(template, str):
        fail(f'{prefix}.filename_tmpl', "a string with one {} for the GT file's name, e.g. '{}x4'", template)
    try:
        template.format('name')
    except (IndexError, KeyError, ValueError) as e:
        raise MCLIROptionError(f"{prefix}.filename_tmpl: expected a string with one {{}} for the GT file's name, "
                               f"e.g. '{{}}x4'; got {template!r} ({type(e).__name__}: {e})") from None


def check_dataset(phase, dataset, saves_images=False):
    """The parts of ``datasets.<phase>`` that every run reads: the type, the name, the backend, the file name
    template. ``saves_images``: the phase's output images are saved (a folder named after the dataset)."""
    prefix = f'datasets.{phase}'
    mapping(prefix, dataset, '{type: PairedImageDataset, dataroot_gt: ..., dataroot_lq: ..., io_backend: ...}')
    cls = registry.find('dataset', f'{prefix}.type', dataset.get('type'))
    if 'name' not in dataset:  # BasicSR's build_dataset logs it: a KeyError once the run's folders exist
        raise MCLIROptionError(f'{prefix}.name: not set (BasicSR names the dataset in its log and its results with '
                               'it), e.g. name: Set5')
    if saves_images and not isinstance(dataset['name'], str):
        fail(f'{prefix}.name', 'a string in quotes (the folder of its saved images is named after it)',
             dataset['name'])
    _check_backend(prefix, dataset, cls)
    if registry.paired_by_name(cls):
        _check_template(prefix, dataset)
    read = registry.image_keys(cls)
    if read:
        Images.parse(dataset, prefix, context={'color': 'color' in read})
    return cls


def _check_phase(phase, is_train):
    if is_train and phase != 'train' and phase.split('_')[0] != 'val':
        raise MCLIROptionError(f'datasets.{phase}: not a phase a training run reads (expected train, val or '
                               f'val_<anything>){did_you_mean(phase.split("_")[0], TRAIN_PHASES)}')
    if not is_train and phase.split('_')[0] == 'train':
        raise MCLIROptionError(f'datasets.{phase}: a test run tests every phase, but BasicSR builds one named '
                               'train with its training loader (random crops, batch_size_per_gpu); name it test or '
                               'test_<anything>')


def check_datasets(opt, is_train):
    """Every ``datasets.<phase>``; for a training run, its ``train`` phase too."""
    datasets = mapping('datasets', opt.get('datasets'), '{train: {...}, val: {...}}')
    if is_train and 'train' not in datasets:
        raise MCLIROptionError('datasets.train: not set (a training run needs a train dataset)'
                               f'{did_you_mean("train", [str(p) for p in datasets])}')
    val = opt.get('val')
    for phase, dataset in datasets.items():
        phase = str(phase)
        _check_phase(phase, is_train)
        cls = check_dataset(phase, dataset, phase != 'train' and isinstance(val, dict) and val.get('save_img') is True)
        if is_train and phase == 'train':
            TrainSet.parse(dataset, context={'crops': dataset['type'] if registry.crops_pairs(cls) else None,
                                             'scale': opt.get('scale')})


# --------------------------------------------------------------------------- losses and metrics
ADDON_LOSSES = ('spn_opt', 'cr_opt', 'uncertainty_opt')  # the add-on's own (mclir_basicsr.options)
LOSS_EXAMPLE = '{type: L1Loss, loss_weight: 1.0, reduction: mean}'
# BasicSR's losses built in an instant (no weights, unlike PerceptualLoss next to them): built once here to check
CHEAP_LOSSES = {f'basicsr.losses.basic_loss.{name}' for name in ('L1Loss', 'MSELoss', 'CharbonnierLoss',
                                                                  'WeightedTVLoss')}
METRIC_EXAMPLE = '{type: calculate_psnr, crop_border: 4, test_y_channel: true}'
METRIC_INPUTS = ('img', 'img2')  # what BasicSR's calculate_metric passes itself


# The train keys of BasicSR's other models: not read by the add-on's (a warning says so), but never a typo.
OTHER_MODELS_KEYS = ('dcn_lr_mul', 'feature_matching_opt', 'fix_flow', 'flow_lr_mul', 'gan_opt', 'ldl_opt', 'lr_flow',
                     'mixing_prob', 'net_d_init_iters', 'net_d_iters', 'net_d_reg_every', 'net_g_reg_every', 'optim_d',
                     'path_batch_shrink', 'path_reg_weight', 'r1_reg_weight', 'tsa_iter', 'use_grad_norm')
RECONSTRUCTION = ('pixel_opt', 'perceptual_opt', 'uncertainty_opt', 'cr_opt')


def check_train_keys(train):
    """A key of ``train`` that the model does not read but that is close to one it does is a typo (``spn_otp``): as
    written, the run would train for hours without it. One close to none is left to a warning (another code
    base's key). And the network needs a reconstruction loss (SRModel's 'Both pixel and perceptual losses are
    None' otherwise, after the run's folders exist)."""
    known = sorted(read_train_keys())
    for key in map(str, train):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if key not in known and key not in OTHER_MODELS_KEYS and close:
            raise MCLIROptionError(f'train.{key}: not read by ModelContrastiveModel (did you mean {close[0]!r}?); as '
                                   'written, the run would train without it')
    official = any(k in train for k in OFFICIAL_NEGATIVE_KEYS)  # then perceptual_opt is the SPN term
    if all(train.get(k) is None for k in RECONSTRUCTION if not (official and k == 'perceptual_opt')):
        raise MCLIROptionError('train.pixel_opt: not set (the network needs a reconstruction loss: pixel_opt, '
                               'perceptual_opt, uncertainty_opt or cr_opt; SPN only pushes away from the negatives), '
                               'e.g. {type: L1Loss, loss_weight: 1.0}')


def check_losses(train):
    """Every ``train.<name>_opt`` but the add-on's: null, or a LOSS_REGISTRY type and arguments its constructor
    takes (BasicSR's ``build_loss``). The official fork's subtracted ``perceptual_opt`` is the add-on's SPN term,
    checked with it."""
    official = any(k in train for k in OFFICIAL_NEGATIVE_KEYS)
    for key, section in train.items():
        key = str(key)
        if not key.endswith('_opt') or key in ADDON_LOSSES or section is None or \
                (official and key == 'perceptual_opt'):
            continue
        path = f'train.{key}'
        loss, arguments = _entry('loss', path, section, LOSS_EXAMPLE)
        check_arguments(path, _owner(loss), loss, arguments)
        if f'{loss.__module__}.{loss.__qualname__}' in CHEAP_LOSSES:  # what its constructor checks (reduction: avg)
            try:
                loss(**arguments)
            except ValueError as e:
                raise MCLIROptionError(f'{path}: {loss.__name__} refuses these arguments: {e}') from None


def check_metrics(metrics, without_gt=()):
    """``val.metrics``: null, or a mapping of names to METRIC_REGISTRY types with the arguments the function takes
    besides the two images (BasicSR's ``calculate_metric`` passes every other key, ``better`` included). A key the
    function would swallow with its ``**kwargs`` is named when it is close to one of its arguments, and always for
    BasicSR's own metrics, which ignore them (``test_y_chanel: true`` would measure on RGB). ``without_gt``: the
    validation phases whose dataset gives no GT, where a metric that compares with GT cannot run."""
    if metrics is None:
        return
    mapping('val.metrics', metrics, f'{{psnr: {METRIC_EXAMPLE}}}')
    for name, section in metrics.items():
        path = f'val.metrics.{name}'
        metric, arguments = _entry('metric', path, section, METRIC_EXAMPLE)
        for given in METRIC_INPUTS:
            if given in arguments:
                raise MCLIROptionError(f'{path}.{given}: set, but the model passes the images itself (remove it)')
        sig = signature(metric)  # the images the model passes, where the function names them
        passed = [k for k in METRIC_INPUTS if sig is not None and k in sig.parameters]
        check_arguments(path, _owner(metric), metric, dict(arguments, **dict.fromkeys(passed)))
        if section.get('better', 'higher') not in ('higher', 'lower'):
            raise MCLIROptionError(f'{path}.better: expected one of higher, lower; got {section["better"]!r}'
                                   f'{did_you_mean(section["better"], ("higher", "lower"))}')
        if sig is not None:
            _check_swallowed(path, metric, sig, arguments)
        if 'img2' in passed and without_gt:
            phase = without_gt[0]
            raise MCLIROptionError(f'{path}: {_owner(metric)} compares the output with GT, but datasets.{phase} '
                                   'gives no GT image (SingleImageDataset); use a paired dataset there, or only '
                                   'no-reference metrics (calculate_niqe)')


def _check_swallowed(path, metric, sig, arguments):
    named = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and n not in METRIC_INPUTS]
    basicsr_own = (getattr(metric, '__module__', '') or '').startswith('basicsr.')
    for key in arguments:
        hint = did_you_mean(key, named)
        if key not in named and key != 'better' and (hint or basicsr_own):
            raise MCLIROptionError(f'{path}.{key}: not an argument of {_owner(metric)}{hint}; it would be ignored '
                                   f'(arguments: {", ".join(named)})')


def check_sections(opt, is_train):
    """Every check of BasicSR's own sections (``opt`` as BasicSR's parse_options returns it); raises the first
    problem found."""
    check_network(opt)
    if opt.get('network_d') is not None:
        check_network(opt, 'network_d')
    check_scale(opt)
    check_datasets(opt, is_train)
    if is_train:
        if opt.get('train') is None:
            raise MCLIROptionError('train: not set (a training run needs it, e.g. {total_iter: 100000, optim_g: ...})')
        TrainLoop.parse(opt['train'])
        check_train_keys(opt['train'])
        check_losses(opt['train'])
        if opt.get('logger') is None:
            raise MCLIROptionError('logger: not set (BasicSR\'s train.py reads it, e.g. {print_freq: 100, '
                                   'save_checkpoint_freq: 5000, use_tb_logger: true})')
        Logger.parse(opt['logger'])
    if opt.get('val') is None:
        if not is_train:
            raise MCLIROptionError('val: not set (BasicSR\'s test.py reads it, e.g. {save_img: true, suffix: ~, '
                                   'metrics: {...}})')
    else:
        Val.parse(opt['val'], context={'is_train': is_train})
        without_gt = [str(phase) for phase, dataset in opt['datasets'].items() if phase != 'train' and
                      registry.gives_no_gt(registry.dataset_class(dataset.get('type')))]
        check_metrics(opt['val'].get('metrics'), without_gt)
    Paths.parse(opt.get('path'))
    if opt.get('dist_params') is not None:
        DistParams.parse(opt['dist_params'])


# the sections the option reference lists (docs/options.md), by their place in the option file
BASICSR_SECTIONS = {model.path: model for model in (TrainSet, Images, TrainLoop, Val, Logger, Paths, DistParams)}
