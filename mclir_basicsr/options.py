"""The one definition of every MCLIR option: name, default, accepted values, documentation, as pydantic models.

:func:`parse_mclir_options` validates the ``train`` section of a BasicSR option dict and returns a typed
:class:`MCLIRConfig`. Errors are :class:`MCLIROptionError` and name the option path (``train.negatives.decay[1]``)
and what is accepted. The option reference (docs/options.md) is generated from these models
(:mod:`mclir_basicsr.option_reference`) and a test keeps the two equal.
"""
import difflib
import json
from typing import Annotated, ClassVar, Literal, Optional, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from mclir_basicsr.validate import MCLIROptionError, did_you_mean, fail, is_number, string_hint  # noqa: F401  (API)


def _vgg_names(convs_per_block):
    return [name for block, convs in enumerate(convs_per_block, 1) for name in
            [f'{kind}{block}_{i}' for i in range(1, convs + 1) for kind in ('conv', 'relu')] + [f'pool{block}']]


# BasicSR's layer names (basicsr.archs.vgg_arch.NAMES; a test keeps them equal), made here to stay torch-free
VGG_LAYERS = {'vgg16': _vgg_names((2, 2, 3, 3, 3)), 'vgg19': _vgg_names((2, 2, 4, 4, 4))}
FEATURES = ('vgg16', 'vgg19', 'pixel')
CRITERIA = ('l1', 'l2', 'charbonnier')
PRECISIONS = ('float32', 'bfloat16', 'float16')
# The official fork's keys (Aitical/MCLIR), read when `negatives` / `spn_opt` are absent.
OFFICIAL = {
    'neg_iter': 'negatives.update_every',
    'neg_decay': 'negatives.decay',
    'neg_start': 'negatives.init_decay',
    'neg_t': 'negatives.adaptive_threshold (with refresh: adaptive)',
    'perceptual_opt': 'spn_opt (subtracted, mode: subtract)',
}
OFFICIAL_NEGATIVE_KEYS = tuple(k for k in OFFICIAL if k.startswith('neg_'))  # any of them turns the official style on


def dtype_or_none(name):
    """torch.bfloat16 for 'bfloat16' (any torch dtype by name); None for None."""
    if name is None:
        return None
    import torch  # here, not at the top: the rest of this module (the schema, the option table) is torch-free
    return getattr(torch, name)


# --------------------------------------------------------------------------- value types and their one-line errors
def invalid(message, at=None):
    """An error with our message; ``at``: where below the failing value it points (e.g. ``layer_weights.relu9``)."""
    return PydanticCustomError('mclir', '{message}', {'message': message, 'at': at})


def expect(what, accepted=None, hint=False):
    """Whatever pydantic finds wrong with a value of this type is one message: 'expected <what>, got <value>'. An
    error of ours from inside (an entry of a list) passes through with its own path. ``accepted``: the docs' words;
    ``hint``: say how to write a number that YAML read as a string (``2e-4``)."""
    def wrap(value, handler):
        try:
            return handler(value)
        except ValidationError as e:
            if e.errors()[0]['type'] in ('mclir', 'extra_forbidden', 'missing'):  # said with its own path
                raise
            raise invalid(f'expected {what}, got {value!r}{string_hint(value) if hint else ""}') from None
    wrap.accepted = accepted or what
    return WrapValidator(wrap)


def one_of(*choices, optional=False):
    """One of ``choices`` (or null), named with the closest when it is not."""
    def wrap(value, handler):
        try:
            return handler(value)
        except ValidationError:
            hint = did_you_mean(value, choices) if isinstance(value, str) else ''
            raise invalid(f'expected one of {", ".join(choices)}{", null" if optional else ""}; got {value!r}{hint}')\
                from None
    wrap.accepted = ', '.join(choices)
    kind = Literal[choices]
    return Annotated[Optional[kind] if optional else kind, WrapValidator(wrap)]


def _one_for_all(value, handler):
    """A single number stands for every negative: validated as an entry, kept a number (the section broadcasts)."""
    if not is_number(value):
        return handler(value)
    try:
        return handler([value])[0]
    except ValidationError as e:
        raise invalid(e.errors()[0]['msg']) from None


Finite = Annotated[float, Field(allow_inf_nan=False)]
Boolean = Annotated[bool, expect('true or false')]
PositiveInt = Annotated[int, Field(ge=1), expect('a positive integer')]
OptionalPositiveInt = Annotated[Optional[Annotated[int, Field(ge=1)]], expect('null or a positive integer')]
UnitFloat = Annotated[float, Field(ge=0, le=1), expect('a number in [0, 1]')]
NonNegativeFloat = Annotated[Finite, Field(ge=0), expect('a finite number >= 0')]
OptionalPositiveFloat = Annotated[Optional[Annotated[Finite, Field(gt=0)]], expect('null or a finite number > 0')]
OptionalPath = Annotated[Optional[Annotated[str, Field(min_length=1)]], expect('null or a file path')]
OptionalName = Annotated[Optional[Annotated[str, Field(min_length=1)]], expect('null or a name')]
BooleanOrAuto = Annotated[Union[bool, Literal['auto']], expect('true, false or auto')]
LayerWeights = Annotated[dict[str, NonNegativeFloat], Field(min_length=1), expect(
    'a mapping of VGG layer name to weight, e.g. {relu1_2: 0.2, relu2_2: 0.3}', 'VGG layer name: weight (>= 0)')]
Autocast = one_of('bfloat16', 'float16', optional=True)


def _list_or_one(schema):
    """JSON schema: a list of entries, or one entry standing for every negative."""
    array = {k: schema.pop(k) for k in ('type', 'items', 'minItems') if k in schema}
    schema['anyOf'] = [array, array['items']]


def per_negative(item, what):
    return Annotated[list[item], Field(min_length=1, json_schema_extra=_list_or_one), expect(
        'a non-empty list (one entry per negative model)', f'{what}: a list, one per negative, or one for all'),
        WrapValidator(_one_for_all)]


# --------------------------------------------------------------------------- the sections
class Section(BaseModel):
    """An option section: unknown keys, wrong types (a bool is not a number, '2e-4' is a string) and values out of
    range are errors; YAML's integers are accepted where numbers are meant."""
    model_config = ConfigDict(extra='forbid', strict=True)
    path: ClassVar[str] = ''  # its place in the option file, which error messages start with
    missing: ClassVar[str] = 'required'  # what a missing key is called: 'required (<its description>)'

    @classmethod
    def parse(cls, given, path=None, context=None):
        """``given`` (a mapping; null: all defaults) validated, or :class:`MCLIROptionError` for its first error.
        ``context``: what the section's validators need to know about the run."""
        path = path or cls.path
        if given is None:
            given = {}
        if not isinstance(given, dict):
            fail(path, 'a mapping', given)
        try:
            return cls.model_validate(given, context=context)
        except ValidationError as e:
            raise MCLIROptionError(cls._one_line(e, path)) from None

    @classmethod
    def _unknown(cls, where, key, known):
        return f'{where}: unknown option{did_you_mean(key, known)}; known: {", ".join(known)}'

    @classmethod
    def _one_line(cls, error, path):
        err = sorted(error.errors(), key=lambda err: err['type'] != 'extra_forbidden')[0]  # unknown keys first
        loc = ''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in err['loc'])
        at = (err.get('ctx') or {}).get('at')
        where = f'{path}{loc}' + (f'.{at}' if at else '')
        if err['type'] not in ('extra_forbidden', 'missing'):
            return f'{where}: {err["msg"]}'
        owner = cls
        for key in err['loc'][:-1]:  # the section the key belongs to (a nested one: logger.wandb)
            owner = next(t for t in get_args(owner.model_fields[key].annotation) or
                         (owner.model_fields[key].annotation,) if isinstance(t, type) and issubclass(t, BaseModel))
        known = list(owner.model_fields)
        if err['type'] == 'extra_forbidden':
            return owner._unknown(where, err['loc'][-1], known)
        given = [str(k) for k in err['input'] if k not in known] if isinstance(err['input'], dict) else []
        close = difflib.get_close_matches(err['loc'][-1], given, n=1)  # a section that takes other keys: a typo?
        typo = f'; {where.rsplit(".", 1)[0]}.{close[0]} is set: a typo?' if close else ''
        return f'{where}: {owner.missing} ({owner.model_fields[err["loc"][-1]].description}){typo}'


class Negatives(Section):
    path = 'train.negatives'

    update_every: per_negative(PositiveInt, 'positive integers') = Field(
        [100, 200, 500, 1000], description='Refresh period (iterations) of each negative model; its length is K.')
    decay: per_negative(UnitFloat, 'numbers in [0, 1]') = Field(
        0.1, description='Per negative (or one for all): at a refresh, theta_neg <- decay*theta_neg + (1-decay)*theta.')
    init_decay: UnitFloat = Field(0.1, description='At start, theta_neg = init_decay*theta_fresh_init + '
                                                   '(1-init_decay)*theta (official `neg_start`).')
    autocast: Autocast = Field(None, description='Run the negatives\' forwards under autocast in this dtype. '
                                                 'Default: `train.amp`.')
    dtype: one_of(*PRECISIONS) = Field('float32', description='Storage dtype of the negatives\' weights (bfloat16 '
                                                              'halves their memory).')
    channels_last: Boolean = Field(False, description='Keep negatives in channels_last memory format.')
    refresh: one_of('periodic', 'adaptive') = Field('periodic', description=(
        '`periodic`: negative k is refreshed every `update_every[k]` iterations with `decay[k]`. `adaptive` (the '
        'official FFA-Net code\'s trigger, for any network): after a step whose error statistic exceeds '
        '`adaptive_threshold`, one negative, round robin, is refreshed with `adaptive_decay`; K is the length of '
        '`update_every`, whose periods are then unused.'))
    adaptive_statistic: one_of('residual_std', 'residual_abs') = Field('residual_std', description=(
        '`residual_std`: per sample, the standard deviation of 2*(out - gt) over C, H, W, averaged over the batch '
        '(the official code\'s); `residual_abs`: the mean absolute difference of out and gt. Averaged over the ranks '
        'in DDP, so every rank refreshes together; logged as `neg_statistic`.'))
    adaptive_threshold: NonNegativeFloat = Field(0.022, description=(
        'Refresh when the statistic exceeds this (0.022: the official FFA-Net value).'))
    adaptive_decay: UnitFloat = Field(0.001, description=(
        'theta_neg <- adaptive_decay*theta_neg + (1-adaptive_decay)*theta at an adaptive refresh (0.001: the '
        'official near-total copy).'))
    adaptive_min_gap: PositiveInt = Field(1, description=(
        'At least this many iterations between two adaptive refreshes (1: any step may refresh, as the official '
        'code).'))
    split_batch: Boolean = Field(False, description=(
        'Each sample meets one negative, (i + iteration) mod K, instead of all K: the negatives cost one batch in '
        'total. Unbiased: the term averaged over K rotations is the full one. Needs batch_size_per_gpu x '
        '`train.accumulate` >= K (routing is over the step\'s samples).'))
    samples_per_step: OptionalPositiveInt = Field(None, description=(
        'The SPN term on this many samples of each (local) step (all its micro-batches), drawn at random each step '
        '(from the run\'s seed and the iteration: the same on every rank and after a resume); only they go through '
        'the negatives and VGG. The term is their mean, so its expectation over the draws is the full-batch term '
        '(docs/cost.md). With `split_batch` they rotate over the K negatives: needs samples_per_step >= K. The '
        'uncertainty weighted loss gives the other samples weight 1. null: the whole batch.'))

    @model_validator(mode='after')
    def _one_per_negative(self):
        if not isinstance(self.update_every, list):
            self.update_every = [self.update_every]
        k = len(self.update_every)
        if not isinstance(self.decay, list):
            self.decay = [float(self.decay)] * k
        if len(self.decay) != k:
            raise invalid(f'has {len(self.decay)} entries but update_every has {k}; give one decay per negative '
                          '(or a single number for all)', at='decay')
        if self.split_batch and self.samples_per_step is not None and self.samples_per_step < k:
            raise invalid(
                f'{self.samples_per_step} is fewer than the number of negatives K ({k}); with split_batch each used '
                'sample meets one negative, so every negative must meet at least one per step: use '
                f'samples_per_step >= {k}, fewer negatives, or split_batch: false', at='samples_per_step')
        return self

    def describe_refresh(self):
        """The refresh schedule in words (the training log, the comparison tool)."""
        if self.refresh == 'adaptive':
            return (f'adaptive refresh ({self.adaptive_statistic} > {self.adaptive_threshold:g}, decay '
                    f'{self.adaptive_decay:g}, min gap {self.adaptive_min_gap})')
        return f'update_every {self.update_every}, decay {self.decay}'


class VGGTerm(Section):
    """What the SPN and CR terms share: a distance between features, VGG's or the pixels'."""
    type: str
    loss_weight: NonNegativeFloat
    feature: one_of(*FEATURES)
    layer_weights: LayerWeights
    criterion: one_of(*CRITERIA) = Field('l1', description='Distance D between features.')
    use_input_norm: Boolean = Field(True, description='Normalise VGG input with ImageNet mean/std (as BasicSR).')
    range_norm: Boolean = Field(False, description='Map [-1, 1] images to [0, 1] before VGG (as BasicSR).')
    pretrained: OptionalPath = Field(None, description=(
        'VGG weight file (torchvision format). Default: vgg16-397923af.pth / vgg19-dcbb9e9d.pth in '
        '$TORCH_HOME/hub/checkpoints or experiments/pretrained_models.'))
    download: Boolean = Field(False, description='Allow downloading the VGG weights when no file is found (opt-in).')
    autocast: Autocast = Field(None, description='Run the VGG passes under autocast in this dtype. '
                                                 'Default: `train.amp`.')
    channels_last: BooleanOrAuto = Field('auto', description=(
        'Run the VGG passes in channels_last memory format; `auto`: on CPU (the same float32 math in oneDNN\'s '
        'native layout; docs/cost.md), not on CUDA (not measured there).'))

    @model_validator(mode='after')
    def _vgg_layers(self):
        names = VGG_LAYERS.get(self.feature, ())
        for layer in self.layer_weights if self.feature != 'pixel' else ():
            if layer not in names:
                raise invalid(f'not a {self.feature} layer{did_you_mean(layer, names)}; accepted: {", ".join(names)}',
                              at=f'layer_weights.{layer}')
        return self


class SPNOptions(VGGTerm):
    path = 'train.spn_opt'
    type: one_of('SPNLoss', 'MCLIR_SPNLoss') = Field(description='The loss class (LOSS_REGISTRY).')
    loss_weight: NonNegativeFloat = Field(0.001, description=(
        'lambda: weight of the SPN term. 0.001 is the paper\'s value for torchvision\'s VGG features. The VGG16 file '
        'of `mclir-hed-vgg` is on Caffe\'s larger activation scale, where the same lambda weighs more '
        '(docs/vgg_weights.md; what helps there: docs/vgg_evidence.md). With `feature: pixel` 0.001 is a no-op, and '
        'no pixel-space value is known to help in general (docs/evidence.md).'))
    feature: one_of(*FEATURES) = Field('vgg16', description='Feature space phi: VGG features, or the pixels '
                                                            'themselves.')
    layer_weights: LayerWeights = Field({'relu1_2': 0.2, 'relu2_2': 0.3, 'relu3_3': 0.5}, description=(
        'VGG layers (BasicSR names) and their weights; ignored for `pixel`.'))
    mode: one_of('subtract', 'ratio') = Field('subtract', description=(
        '`subtract`: L += -lambda*mean_k D(out, neg_k) (the paper). `ratio`: L += lambda*D(out, gt)/mean_k D(out, '
        'neg_k) (bounded below by 0).'))
    max_distance: OptionalPositiveFloat = Field(None, description=(
        '`subtract` only: clamp each D(out, neg_k) at this value, so the term is bounded below by '
        '-lambda*max_distance.'))

    @model_validator(mode='after')
    def _bounded_by_subtract_only(self):
        if self.max_distance is not None and self.mode != 'subtract':
            raise invalid('only used with mode: subtract (ratio is bounded)', at='max_distance')
        return self


class CROptions(VGGTerm):
    path = 'train.cr_opt'
    type: one_of('CRLoss', 'MCLIR_CRLoss') = Field(description='The loss class (LOSS_REGISTRY).')
    loss_weight: NonNegativeFloat = Field(0.1, description='Weight of the CR term (0.1: AECR-Net\'s).')
    feature: one_of(*FEATURES) = Field('vgg19', description='Feature space: VGG features (AECR-Net: VGG19), or the '
                                                            'pixels.')
    layer_weights: LayerWeights = Field(
        {'relu1_1': 0.03125, 'relu2_1': 0.0625, 'relu3_1': 0.125, 'relu4_1': 0.25, 'relu5_1': 1.0},
        description='VGG layers (BasicSR names) and their weights (AECR-Net\'s); ignored for `pixel`.')
    eps: NonNegativeFloat = Field(1e-7, description='Added to the negative distance: D(out, gt) / (D(out, input) + '
                                                    'eps).')


class UncertaintyOptions(Section):
    path = 'train.uncertainty_opt'
    type: one_of('UncertaintyWeightedLoss', 'MCLIR_UncertaintyWeightedLoss') = Field(
        description='The loss class (LOSS_REGISTRY).')
    loss_weight: NonNegativeFloat = Field(1.0, description=(
        'Weight of the uncertainty-weighted reconstruction term (our design, not the paper\'s: '
        'docs/beyond_the_paper.md, "Uncertainty-weighted reconstruction loss"). Use it in place of `pixel_opt` or '
        'next to it.'))
    criterion: one_of(*CRITERIA) = Field('l1', description='Per-pixel reconstruction criterion against gt.')
    floor: UnitFloat = Field(0.1, description=(
        'Smallest per-pixel weight (no pixel is ignored). Weights are the negatives\' spread around the output '
        'divided by its per-image mean, clamped to [floor, cap], without gradient.'))
    cap: NonNegativeFloat = Field(3.0, description='Largest per-pixel weight (>= 1).')
    save_map: Boolean = Field(False, description=(
        'With `val.save_img`, also save the weight map of each validation image as `<image>_<iter>_uncertainty.png` '
        'next to BasicSR\'s output images.'))

    @model_validator(mode='after')
    def _around_one(self):
        if self.floor <= 0:
            raise invalid(f'expected 0 < floor <= 1 <= cap (a floor of 0 would let pixels be ignored), got '
                          f'{self.floor!r}', at='floor')
        if self.cap < 1:
            raise invalid(f'expected 0 < floor <= 1 <= cap (the weights are around 1 by construction), got '
                          f'{self.cap!r}', at='cap')
        return self


class TrainKeys(Section):
    """Keys of the train section itself (the rest of it is BasicSR's)."""
    model_config = ConfigDict(extra='ignore')
    path = 'train'
    amp: Autocast = Field(None, description=(
        'Mixed precision for the whole step: the network\'s forward and every loss under torch.autocast (float16 '
        'with a GradScaler, saved in the training state). Validation stays float32. Works without `spn_opt` too (the '
        'baseline at equal precision).'))
    use_grad_clip: OptionalPositiveFloat = Field(None, description=(
        'Clip the gradient norm of network_g to this before each optimiser step (as the official fork\'s models; its '
        'example files\' `use_grad_norm` was never read, there or here).'))
    accumulate: PositiveInt = Field(1, description=(
        'Gradient accumulation: each optimiser step sums the gradients of this many micro-batches of '
        '`datasets.train.batch_size_per_gpu` samples (effective batch: accumulate x batch_size_per_gpu per GPU); the '
        'data loader hands one iteration the step\'s samples and the model runs them a micro-batch at a time, so '
        'activation memory is one micro-batch\'s. `total_iter`, the scheduler, EMA, the negatives\' refresh, logging '
        'and saving count optimiser steps. traiNNer-redux\'s `datasets.train.accum_iter` is read as this '
        '(docs/accumulate_and_compile.md).'))
    compile: Boolean = Field(False, description=(
        'torch.compile the training forward of network_g and of the negatives (one compiled function serves all K); '
        'validation, checkpoints and states stay eager with plain keys. Unavailable or failing compilation falls '
        'back to eager with one warning. traiNNer-redux\'s top-level `use_compile` is read as this '
        '(docs/accumulate_and_compile.md).'))
    compile_mode: one_of('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs') = Field(
        'default', description='torch.compile\'s `mode`. traiNNer-redux\'s top-level `compile_mode` is read as this.')
    compile_backend: OptionalName = Field('inductor', description=(
        'torch.compile\'s `backend` (`inductor`; `aot_eager` or `eager` to debug).'))


SECTIONS = {model.path: model for model in (TrainKeys, Negatives, SPNOptions, CROptions, UncertaintyOptions)}


class Compile(BaseModel):
    """torch.compile's settings when ``train.compile`` is on."""
    mode: str
    backend: Optional[str]


class MCLIRConfig(BaseModel):
    """The validated MCLIR options of a run. Without ``train.spn_opt`` (and the official keys) SPN is off: ``spn``
    is None, and so is ``negatives`` unless ``train.uncertainty_opt`` uses them."""
    negatives: Optional[Negatives] = None
    spn: Optional[SPNOptions] = None
    official: bool = False  # built from the official fork's keys
    amp: Optional[str] = None
    cr: Optional[CROptions] = None
    uncertainty: Optional[UncertaintyOptions] = None
    accumulate: int = 1  # micro-batches per optimiser step
    compile: Optional[Compile] = None  # None: eager

    @property
    def spn_on(self):
        return self.spn is not None

    @property
    def num_negatives(self):
        return len(self.negatives.update_every) if self.negatives is not None else 0


def from_official(train):
    """(negatives, spn_opt) in this add-on's keys, from a train section in the official fork's style: ``neg_iter``
    / ``neg_decay`` / ``neg_start`` are the negatives' periods, decays and initial blend, ``neg_t`` the adaptive
    refresh's threshold, and a subtracted ``perceptual_opt`` the SPN term."""
    if 'neg_iter' not in train:
        raise MCLIROptionError('train.neg_iter: required with the official keys (one period per negative)')
    negatives = {new: train[old] for old, new in (('neg_iter', 'update_every'), ('neg_decay', 'decay'),
                                                  ('neg_start', 'init_decay')) if old in train}
    if 'neg_t' in train:  # only the fork's adaptive FFA-Net model reads it
        negatives.update(refresh='adaptive', adaptive_threshold=train['neg_t'])
    percep = train.get('perceptual_opt')
    if not isinstance(percep, dict):
        fail('train.perceptual_opt', 'a PerceptualLoss mapping (the official fork subtracts it)', percep)
    percep = dict(percep)
    if percep.pop('type', 'PerceptualLoss') != 'PerceptualLoss':
        fail('train.perceptual_opt.type', 'PerceptualLoss', train['perceptual_opt'].get('type'))
    if percep.pop('style_weight', 0) not in (0, 0.0, None):
        fail('train.perceptual_opt.style_weight', '0 (a subtracted style term is not supported)',
             train['perceptual_opt']['style_weight'])
    if percep.get('criterion') == 'fro':
        fail('train.perceptual_opt.criterion', 'l1 or l2', 'fro')
    renames = {'vgg_type': 'feature', 'perceptual_weight': 'loss_weight'}
    spn = {'type': 'SPNLoss', 'feature': 'vgg19', 'loss_weight': 1.0}  # BasicSR's PerceptualLoss defaults
    spn.update((renames.get(key, key), value) for key, value in percep.items())
    return negatives, spn


def _spn_sections(train):
    """(negatives, spn_opt, their paths, official) as given, or spn_opt None when SPN is off."""
    official = [k for k in OFFICIAL_NEGATIVE_KEYS if k in train]
    if official and ('negatives' in train or 'spn_opt' in train):
        raise MCLIROptionError(
            f'train: the official keys ({", ".join(official)}) and `negatives`/`spn_opt` are both set; '
            'use one style (see docs/options.md).')
    if official:
        return *from_official(train), 'train.neg_*', 'train.perceptual_opt', True
    if train.get('spn_opt') is None and train.get('negatives') and train.get('uncertainty_opt') is None:
        raise MCLIROptionError(
            'train.negatives: set, but neither train.spn_opt nor train.uncertainty_opt is, so no loss would use '
            'the negatives; add train.spn_opt (e.g. {type: SPNLoss, loss_weight: 0.001}) to turn SPN on, or '
            'remove train.negatives to train without SPN')
    return train.get('negatives'), train.get('spn_opt'), 'train.negatives', 'train.spn_opt', False


def _check_split_batch(opt, neg, path, accumulate):
    """Routing is over the step's samples: every micro-batch of an accumulated step."""
    batch = ((opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
    k = len(neg.update_every)
    if neg.split_batch and is_number(batch) and batch * accumulate < k:
        raise MCLIROptionError(
            f'{path}.split_batch: needs datasets.train.batch_size_per_gpu'
            f'{"" if accumulate == 1 else " x train.accumulate"} ({batch * accumulate}) >= the number of negatives K '
            f'({k}), so that every negative meets at least one sample per step; raise the batch size, use fewer '
            'negatives, or set split_batch: false')


def _follow_amp(section, amp):
    """The negatives' and the VGG passes' autocast follow train.amp unless the section sets its own."""
    if section is not None and 'autocast' not in section.model_fields_set:
        section.autocast = amp
    return section


def _optional(model, train, key):
    """``train.<key>`` validated, or None when absent or null (as BasicSR reads its own *_opt sections)."""
    return None if train.get(key) is None else model.parse(train[key])


_PARSED = {}  # what parse_mclir_options read (as JSON) -> its MCLIRConfig


def parse_mclir_options(opt):
    """Validate the MCLIR part of a BasicSR option dict; return the typed config (a copy of its own).

    A run asks for it more than once (the start-up check, the model, the comparison tool's descriptions), each
    time with a copy of the option dict (BasicSR's ``build_model`` deep-copies it), so the result is kept by the
    content of what it was parsed from: an option file is validated once per process."""
    datasets = opt.get('datasets') if isinstance(opt, dict) else None
    read = [opt.get(k) for k in ('train', 'use_compile', 'compile_mode')] if isinstance(opt, dict) else [opt]
    read.append(((datasets or {}).get('train') or {}) if isinstance(datasets, dict) else datasets)
    try:
        key = json.dumps(read, sort_keys=True)
    except (TypeError, ValueError):  # not JSON (a non-string key, an object): parse it every time
        return _parse(opt)
    if key not in _PARSED:
        if len(_PARSED) > 64:
            _PARSED.clear()
        _PARSED[key] = _parse(opt)
    return _PARSED[key].model_copy(deep=True)


def _parse(opt):
    if not isinstance(opt, dict):
        fail('<options>', 'a mapping', opt)
    train = opt.get('train')
    if not isinstance(train, dict):
        fail('train', 'a mapping (ModelContrastiveModel needs a train section)', train)
    amp = TrainKeys.parse(train).amp
    loop = {'accumulate': accumulation(opt), 'compile': compile_options(opt), 'amp': amp}
    cr = _follow_amp(_optional(CROptions, train, 'cr_opt'), amp)
    uncertainty = _optional(UncertaintyOptions, train, 'uncertainty_opt')
    given_neg, given_spn, path_neg, path_spn, official = _spn_sections(train)
    if given_spn is None and uncertainty is None:
        return MCLIRConfig(cr=cr, **loop)
    neg = _follow_amp(Negatives.parse(given_neg, path_neg), amp)
    _check_split_batch(opt, neg, path_neg, loop['accumulate'])
    spn = None if given_spn is None else _follow_amp(SPNOptions.parse(given_spn, path_spn), amp)
    return MCLIRConfig(negatives=neg, spn=spn, official=official, cr=cr, uncertainty=uncertainty, **loop)


def _alias(opt, key, alias_path, alias_value):
    """``train.<key>`` validated, or traiNNer-redux's spelling of it (``alias_path``) when only that is given; both
    given with different values is an error naming both."""
    train = opt.get('train') or {}

    def value(given, path):
        try:
            return getattr(TrainKeys.model_validate({key: given}), key)
        except ValidationError as e:
            raise MCLIROptionError(f'{path}: {e.errors()[0]["msg"]}') from None

    own = value(train[key], f'train.{key}') if key in train else TrainKeys.model_fields[key].default
    if alias_value is None:
        return own
    alias = value(alias_value, alias_path)
    if key in train and own != alias:
        raise MCLIROptionError(f'train.{key} ({train[key]!r}) and {alias_path} ({alias_value!r}) are both set and '
                               f'differ; keep one (train.{key} is this add-on\'s spelling)')
    return alias


def accumulation(opt):
    """Micro-batches per optimiser step: ``train.accumulate`` or traiNNer-redux's ``datasets.train.accum_iter``
    (1 when neither is set). Reads the option dict only: the data loader's side calls it too."""
    train_set = (opt.get('datasets') or {}).get('train') or {}
    return _alias(opt, 'accumulate', 'datasets.train.accum_iter', train_set.get('accum_iter'))


def compile_options(opt):
    """:class:`Compile` when ``train.compile`` (or traiNNer-redux's top-level ``use_compile``) is on, else None;
    the mode from ``train.compile_mode`` or the top-level ``compile_mode``."""
    if not _alias(opt, 'compile', 'use_compile', opt.get('use_compile')):
        return None
    return Compile(mode=_alias(opt, 'compile_mode', 'compile_mode', opt.get('compile_mode')),
                   backend=_alias(opt, 'compile_backend', 'compile_backend', None))
