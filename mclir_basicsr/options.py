"""The one definition of every MCLIR option: name, default, accepted values, documentation.

:func:`parse_mclir_options` validates the ``train`` section of a BasicSR option dict and returns
a :class:`MCLIRConfig`. Errors are :class:`MCLIROptionError` and name the option path
(``train.negatives.decay[1]``) and what is accepted. The option reference (docs/options.md) is generated from
this module (``python -m mclir_basicsr.options``) and a test keeps the two equal.
"""
from dataclasses import dataclass
from typing import Optional

from mclir_basicsr.official_options import OFFICIAL, OFFICIAL_NEGATIVE_KEYS, from_official
from mclir_basicsr.validate import (  # noqa: F401  (MCLIROptionError, did_you_mean, Option, validate_section: API)
    MCLIROptionError,
    Option,
    boolean,
    boolean_or_auto,
    did_you_mean,
    fail,
    is_number,
    layer_weights,
    list_of,
    non_negative_float,
    one_of,
    optional_positive_float,
    optional_positive_int,
    optional_str,
    positive_int,
    unit_float,
    validate_section,
)

VGG_LAYERS = {  # BasicSR's layer names (basicsr.archs.vgg_arch.NAMES), listed here to stay torch-free
    'vgg16': ['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1', 'conv2_1', 'relu2_1', 'conv2_2', 'relu2_2',
              'pool2', 'conv3_1', 'relu3_1', 'conv3_2', 'relu3_2', 'conv3_3', 'relu3_3', 'pool3', 'conv4_1',
              'relu4_1', 'conv4_2', 'relu4_2', 'conv4_3', 'relu4_3', 'pool4', 'conv5_1', 'relu5_1', 'conv5_2',
              'relu5_2', 'conv5_3', 'relu5_3', 'pool5'],
    'vgg19': ['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1', 'conv2_1', 'relu2_1', 'conv2_2', 'relu2_2',
              'pool2', 'conv3_1', 'relu3_1', 'conv3_2', 'relu3_2', 'conv3_3', 'relu3_3', 'conv3_4', 'relu3_4',
              'pool3', 'conv4_1', 'relu4_1', 'conv4_2', 'relu4_2', 'conv4_3', 'relu4_3', 'conv4_4', 'relu4_4',
              'pool4', 'conv5_1', 'relu5_1', 'conv5_2', 'relu5_2', 'conv5_3', 'relu5_3', 'conv5_4', 'relu5_4',
              'pool5'],
}
FEATURES = ('vgg16', 'vgg19', 'pixel')
CRITERIA = ('l1', 'l2', 'charbonnier')
MODES = ('subtract', 'ratio')
PRECISIONS = ('float32', 'bfloat16', 'float16')


def dtype_or_none(name):
    """torch.bfloat16 for 'bfloat16' (any torch dtype by name); None for None."""
    if name is None:
        return None
    import torch  # here, not at the top: the rest of this module (the schema, the option table) is torch-free
    return getattr(torch, name)


# --------------------------------------------------------------------------- the definitions
NEGATIVES = {
    'update_every': Option([100, 200, 500, 1000], list_of(positive_int),
                           'Refresh period (iterations) of each negative model; its length is K.'),
    'decay': Option(0.1, list_of(unit_float),
                    'Per negative (or one for all): at a refresh, theta_neg <- decay*theta_neg + (1-decay)*theta.'),
    'init_decay': Option(0.1, unit_float,
                         'At start, theta_neg = init_decay*theta_fresh_init + (1-init_decay)*theta '
                         '(official `neg_start`).'),
    'autocast': Option(None, one_of('bfloat16', 'float16', optional=True),
                       'Run the negatives\' forwards under autocast in this dtype. Default: `train.amp`.'),
    'dtype': Option('float32', one_of(*PRECISIONS),
                    'Storage dtype of the negatives\' weights (bfloat16 halves their memory).'),
    'channels_last': Option(False, boolean, 'Keep negatives in channels_last memory format.'),
    'refresh': Option('periodic', one_of('periodic', 'adaptive'),
                      '`periodic`: negative k is refreshed every `update_every[k]` iterations with `decay[k]`. '
                      '`adaptive` (the official FFA-Net code\'s trigger, for any network): after a step whose error '
                      'statistic exceeds `adaptive_threshold`, one negative, round robin, is refreshed with '
                      '`adaptive_decay`; K is the length of `update_every`, whose periods are then unused.'),
    'adaptive_statistic': Option('residual_std', one_of('residual_std', 'residual_abs'),
                                 '`residual_std`: per sample, the standard deviation of 2*(out - gt) over C, H, W, '
                                 'averaged over the batch (the official code\'s); `residual_abs`: the mean absolute '
                                 'difference of out and gt. Averaged over the ranks in DDP, so every rank refreshes '
                                 'together; logged as `neg_statistic`.'),
    'adaptive_threshold': Option(0.022, non_negative_float,
                                 'Refresh when the statistic exceeds this (0.022: the official FFA-Net value).'),
    'adaptive_decay': Option(0.001, unit_float,
                             'theta_neg <- adaptive_decay*theta_neg + (1-adaptive_decay)*theta at an adaptive refresh '
                             '(0.001: the official near-total copy).'),
    'adaptive_min_gap': Option(1, positive_int,
                               'At least this many iterations between two adaptive refreshes (1: any step may refresh, '
                               'as the official code).'),
    'split_batch': Option(False, boolean,
                          'Each sample meets one negative, (i + iteration) mod K, instead of all K: the negatives '
                          'cost one batch in total. Unbiased: the term averaged over K rotations is the full one. '
                          'Needs batch_size_per_gpu x `train.accumulate` >= K (routing is over the step\'s '
                          'samples).'),
    'samples_per_step': Option(None, optional_positive_int,
                               'The SPN term on this many samples of each (local) step (all its micro-batches), '
                               'drawn at random each step '
                               '(from the run\'s seed and the iteration: the same on every rank and after a resume); '
                               'only they go through the negatives and VGG. The term is their mean, so its '
                               'expectation over the draws is the full-batch term (docs/cost.md). With `split_batch` '
                               'they rotate over the K negatives: needs samples_per_step >= K. The uncertainty '
                               'weighted loss gives the other samples weight 1. null: the whole batch.'),
}

SPN = {
    'type': Option('SPNLoss', one_of('SPNLoss', 'MCLIR_SPNLoss'), 'The loss class (LOSS_REGISTRY).', required=True),
    'loss_weight': Option(0.001, non_negative_float,
                          'lambda: weight of the SPN term. 0.001 is the paper\'s value for torchvision\'s VGG '
                          'features. The VGG16 file of `mclir-hed-vgg` is on Caffe\'s larger activation scale, where '
                          'the same lambda weighs more (docs/vgg_weights.md; what helps there: '
                          'docs/vgg_evidence.md). With `feature: pixel` 0.001 is a no-op, and no pixel-space value '
                          'is known to help in general (docs/evidence.md).'),
    'feature': Option('vgg16', one_of(*FEATURES), 'Feature space phi: VGG features, or the pixels themselves.'),
    'layer_weights': Option({'relu1_2': 0.2, 'relu2_2': 0.3, 'relu3_3': 0.5}, layer_weights,
                            'VGG layers (BasicSR names) and their weights; ignored for `pixel`.'),
    'criterion': Option('l1', one_of(*CRITERIA), 'Distance D between features.'),
    'mode': Option('subtract', one_of(*MODES),
                   '`subtract`: L += -lambda*mean_k D(out, neg_k) (the paper). '
                   '`ratio`: L += lambda*D(out, gt)/mean_k D(out, neg_k) (bounded below by 0).'),
    'max_distance': Option(None, optional_positive_float,
                           '`subtract` only: clamp each D(out, neg_k) at this value, so the term is bounded '
                           'below by -lambda*max_distance.'),
    'use_input_norm': Option(True, boolean, 'Normalise VGG input with ImageNet mean/std (as BasicSR).'),
    'range_norm': Option(False, boolean, 'Map [-1, 1] images to [0, 1] before VGG (as BasicSR).'),
    'pretrained': Option(None, optional_str,
                         'VGG weight file (torchvision format). Default: vgg16-397923af.pth / '
                         'vgg19-dcbb9e9d.pth in $TORCH_HOME/hub/checkpoints or experiments/pretrained_models.'),
    'download': Option(False, boolean, 'Allow downloading the VGG weights when no file is found (opt-in).'),
    'autocast': Option(None, one_of('bfloat16', 'float16', optional=True),
                       'Run the VGG passes under autocast in this dtype. Default: `train.amp`.'),
    'channels_last': Option('auto', boolean_or_auto,
                            'Run the VGG passes in channels_last memory format; `auto`: on CPU (the same float32 '
                            'math in oneDNN\'s native layout; docs/cost.md), not on CUDA (not measured there).'),
}

CR = {
    'type': Option('CRLoss', one_of('CRLoss', 'MCLIR_CRLoss'), 'The loss class (LOSS_REGISTRY).', required=True),
    'loss_weight': Option(0.1, non_negative_float, 'Weight of the CR term (0.1: AECR-Net\'s).'),
    'feature': Option('vgg19', one_of(*FEATURES), 'Feature space: VGG features (AECR-Net: VGG19), or the pixels.'),
    'layer_weights': Option({'relu1_1': 0.03125, 'relu2_1': 0.0625, 'relu3_1': 0.125, 'relu4_1': 0.25,
                             'relu5_1': 1.0}, layer_weights,
                            'VGG layers (BasicSR names) and their weights (AECR-Net\'s); ignored for `pixel`.'),
    'criterion': Option('l1', one_of(*CRITERIA), 'Distance D between features.'),
    'eps': Option(1e-7, non_negative_float, 'Added to the negative distance: D(out, gt) / (D(out, input) + eps).'),
    'use_input_norm': Option(True, boolean, 'Normalise VGG input with ImageNet mean/std (as BasicSR).'),
    'range_norm': Option(False, boolean, 'Map [-1, 1] images to [0, 1] before VGG (as BasicSR).'),
    'pretrained': Option(None, optional_str, 'VGG weight file (torchvision format); as `train.spn_opt.pretrained`.'),
    'download': Option(False, boolean, 'Allow downloading the VGG weights when no file is found (opt-in).'),
    'autocast': Option(None, one_of('bfloat16', 'float16', optional=True),
                       'Run the VGG passes under autocast in this dtype. Default: `train.amp`.'),
    'channels_last': Option('auto', boolean_or_auto, 'As `train.spn_opt.channels_last`.'),
}

UNCERTAINTY = {
    'type': Option('UncertaintyWeightedLoss', one_of('UncertaintyWeightedLoss', 'MCLIR_UncertaintyWeightedLoss'),
                   'The loss class (LOSS_REGISTRY).', required=True),
    'loss_weight': Option(1.0, non_negative_float,
                          'Weight of the uncertainty-weighted reconstruction term (our design, not the paper\'s: '
                          'docs/beyond_the_paper.md, "Uncertainty-weighted reconstruction loss"). Use it in place of '
                          '`pixel_opt` or next to it.'),
    'criterion': Option('l1', one_of(*CRITERIA), 'Per-pixel reconstruction criterion against gt.'),
    'floor': Option(0.1, unit_float,
                    'Smallest per-pixel weight (no pixel is ignored). Weights are the negatives\' spread around the '
                    'output divided by its per-image mean, clamped to [floor, cap], without gradient.'),
    'cap': Option(3.0, non_negative_float, 'Largest per-pixel weight (>= 1).'),
    'save_map': Option(False, boolean,
                       'With `val.save_img`, also save the weight map of each validation image as '
                       '`<image>_<iter>_uncertainty.png` next to BasicSR\'s output images.'),
}

# Keys of the train section itself (the rest of it is BasicSR's).
TRAIN = {
    'amp': Option(None, one_of('bfloat16', 'float16', optional=True),
                  'Mixed precision for the whole step: the network\'s forward and every loss under torch.autocast '
                  '(float16 with a GradScaler, saved in the training state). Validation stays float32. Works without '
                  '`spn_opt` too (the baseline at equal precision).'),
    'use_grad_clip': Option(None, optional_positive_float,
                            'Clip the gradient norm of network_g to this before each optimiser step (as the official '
                            'fork\'s models; its example files\' `use_grad_norm` was never read, there or here).'),
    'accumulate': Option(1, positive_int,
                         'Gradient accumulation: each optimiser step sums the gradients of this many micro-batches of '
                         '`datasets.train.batch_size_per_gpu` samples (effective batch: accumulate x '
                         'batch_size_per_gpu per GPU); the data loader hands one iteration the step\'s samples and '
                         'the model runs them a micro-batch at a time, so activation memory is one micro-batch\'s. '
                         '`total_iter`, the scheduler, EMA, the negatives\' refresh, logging and saving count '
                         'optimiser steps. traiNNer-redux\'s `datasets.train.accum_iter` is read as this '
                         '(docs/accumulate_and_compile.md).'),
    'compile': Option(False, boolean,
                      'torch.compile the training forward of network_g and of the negatives (one compiled function '
                      'serves all K); validation, checkpoints and states stay eager with plain keys. Unavailable or '
                      'failing compilation falls back to eager with one warning. traiNNer-redux\'s top-level '
                      '`use_compile` is read as this (docs/accumulate_and_compile.md).'),
    'compile_mode': Option('default', one_of('default', 'reduce-overhead', 'max-autotune',
                                             'max-autotune-no-cudagraphs'),
                           'torch.compile\'s `mode`. traiNNer-redux\'s top-level `compile_mode` is read as this.'),
    'compile_backend': Option('inductor', optional_str,
                              'torch.compile\'s `backend` (`inductor`; `aot_eager` or `eager` to debug).'),
}

SECTIONS = {'train': TRAIN, 'train.negatives': NEGATIVES, 'train.spn_opt': SPN, 'train.cr_opt': CR,
            'train.uncertainty_opt': UNCERTAINTY}


@dataclass
class MCLIRConfig:
    negatives: Optional[dict]  # None: no negative models (no spn_opt, no uncertainty_opt)
    spn: Optional[dict]  # None: SPN is off (without cr_opt / uncertainty_opt, ModelContrastiveModel trains as SRModel)
    official: bool  # built from the official fork's keys
    amp: Optional[str] = None  # train.amp: None, 'bfloat16' or 'float16'
    cr: Optional[dict] = None  # train.cr_opt
    uncertainty: Optional[dict] = None  # train.uncertainty_opt
    accumulate: int = 1  # train.accumulate: micro-batches per optimiser step
    compile: Optional[dict] = None  # {'mode', 'backend'} when train.compile is on

    @property
    def spn_on(self):
        return self.spn is not None

    @property
    def num_negatives(self):
        return len(self.negatives['update_every']) if self.negatives is not None else 0


def _spn_sections(train):
    """(negatives, spn_opt, their paths, official) as given, or all None when SPN is off."""
    official = [k for k in OFFICIAL_NEGATIVE_KEYS if k in train]
    if official and ('negatives' in train or 'spn_opt' in train):
        raise MCLIROptionError(
            f'train: the official keys ({", ".join(official)}) and `negatives`/`spn_opt` are both set; '
            'use one style (see docs/options.md).')
    if official:
        if 'neg_iter' not in train:
            raise MCLIROptionError('train.neg_iter: required with the official keys (one period per negative)')
        negatives, spn = from_official(train)
        return negatives, spn, 'train.neg_*', 'train.perceptual_opt', True
    if train.get('spn_opt') is None:  # absent or null, as BasicSR reads its own *_opt sections
        if train.get('negatives') and train.get('uncertainty_opt') is None:
            raise MCLIROptionError(
                'train.negatives: set, but neither train.spn_opt nor train.uncertainty_opt is, so no loss would use '
                'the negatives; add train.spn_opt (e.g. {type: SPNLoss, loss_weight: 0.001}) to turn SPN on, or '
                'remove train.negatives to train without SPN')
        return train.get('negatives') or {}, None, 'train.negatives', None, False
    return train.get('negatives') or {}, train['spn_opt'], 'train.negatives', 'train.spn_opt', False


def _normalise_negatives(neg, path):
    if isinstance(neg['update_every'], int):
        neg['update_every'] = [neg['update_every']]
    k = len(neg['update_every'])
    if isinstance(neg['decay'], float):
        neg['decay'] = [neg['decay']] * k
    if len(neg['decay']) != k:
        raise MCLIROptionError(
            f'{path}.decay: has {len(neg["decay"])} entries but update_every has {k}; '
            'give one decay per negative (or a single number for all)')
    return neg


def _check_split_batch(opt, neg, path):
    train_set = (opt.get('datasets') or {}).get('train') or {}
    batch, k, n = train_set.get('batch_size_per_gpu'), len(neg['update_every']), neg['samples_per_step']
    accumulate = accumulation(opt)
    if is_number(batch):  # routing is over the step's samples: every micro-batch of an accumulated step
        batch = batch * accumulate
    if neg['split_batch'] and n is not None and n < k:
        raise MCLIROptionError(
            f'{path}.samples_per_step: {n} is fewer than the number of negatives K ({k}); with split_batch each '
            f'used sample meets one negative, so every negative must meet at least one per step: use '
            f'samples_per_step >= {k}, fewer negatives, or split_batch: false')
    if neg['split_batch'] and is_number(batch) and batch < k:
        raise MCLIROptionError(
            f'{path}.split_batch: needs datasets.train.batch_size_per_gpu'
            f'{"" if accumulate == 1 else " x train.accumulate"} ({batch}) >= the number of negatives K ({k}), so '
            'that every negative meets at least one sample per step; raise the batch size, use fewer '
            'negatives, or set split_batch: false')


def _check_layers(feature, weights, path):
    names = VGG_LAYERS[feature]
    for layer in weights:
        if layer not in names:
            raise MCLIROptionError(f'{path}.{layer}: not a {feature} layer{did_you_mean(layer, names)}; '
                                   f'accepted: {", ".join(names)}')


def _check_spn(spn, path):
    if spn['feature'] != 'pixel':
        _check_layers(spn['feature'], spn['layer_weights'], f'{path}.layer_weights')
    if spn['max_distance'] is not None and spn['mode'] != 'subtract':
        raise MCLIROptionError(f'{path}.max_distance: only used with mode: subtract (ratio is bounded)')


def _check_uncertainty(section, path):
    if section['floor'] <= 0:
        fail(f'{path}.floor', '0 < floor <= 1 <= cap (a floor of 0 would let pixels be ignored)', section['floor'])
    if section['cap'] < 1:
        fail(f'{path}.cap', '0 < floor <= 1 <= cap (the weights are around 1 by construction)', section['cap'])


def _check_cr(section, path):
    if section['feature'] != 'pixel':
        _check_layers(section['feature'], section['layer_weights'], f'{path}.layer_weights')


LOSS_SECTIONS = {'spn_opt': (SPN, _check_spn), 'cr_opt': (CR, _check_cr),
                 'uncertainty_opt': (UNCERTAINTY, _check_uncertainty)}


def loss_section(key, given):
    """``train.<key>`` (spn_opt, cr_opt, uncertainty_opt) validated against its schema, defaults filled in, and its
    cross-option checks: the one validation of a loss's options, used by :func:`parse_mclir_options` and by the
    losses when they are built from raw keyword arguments (e.g. by BasicSR's ``build_loss``)."""
    spec, check = LOSS_SECTIONS[key]
    section = validate_section(f'train.{key}', given, spec)
    check(section, f'train.{key}')
    return section


def parse_mclir_options(opt):
    """Validate the MCLIR part of a BasicSR option dict; return the normalised config. Without
    ``train.spn_opt`` (and the official keys) SPN is off: ``spn`` is None, and so is ``negatives`` unless
    ``train.uncertainty_opt`` uses them."""
    if not isinstance(opt, dict):
        fail('<options>', 'a mapping', opt)
    train = opt.get('train')
    if not isinstance(train, dict):
        fail('train', 'a mapping (ModelContrastiveModel needs a train section)', train)
    amp = TRAIN['amp'].check('train.amp', train.get('amp'))
    TRAIN['use_grad_clip'].check('train.use_grad_clip', train.get('use_grad_clip'))
    loop = {'accumulate': accumulation(opt), 'compile': compile_options(opt)}
    cr = _optional_section(train, 'cr_opt', amp)
    uncertainty = _optional_section(train, 'uncertainty_opt', amp)
    given_neg, given_spn, path_neg, path_spn, official = _spn_sections(train)
    if given_spn is None and uncertainty is None:
        return MCLIRConfig(negatives=None, spn=None, official=False, amp=amp, cr=cr, **loop)
    neg = _follow_amp(_normalise_negatives(validate_section(path_neg, given_neg, NEGATIVES), path_neg), given_neg, amp)
    _check_split_batch(opt, neg, path_neg)
    spn = None
    if given_spn is not None:
        spn = _follow_amp(validate_section(path_spn, given_spn, SPN), given_spn, amp)
        _check_spn(spn, path_spn)  # (path_spn: train.spn_opt, or the fork's train.perceptual_opt)
    return MCLIRConfig(negatives=neg, spn=spn, official=official, amp=amp, cr=cr, uncertainty=uncertainty, **loop)


def _alias(opt, key, alias_path, alias_value):
    """``train.<key>`` validated, or traiNNer-redux's spelling of it (``alias_path``) when only that is given; both
    given with different values is an error naming both."""
    train = opt.get('train') or {}
    option = TRAIN[key]
    if alias_value is not None and key in train and option.check(f'train.{key}', train[key]) != \
            option.check(alias_path, alias_value):
        raise MCLIROptionError(f'train.{key} ({train[key]!r}) and {alias_path} ({alias_value!r}) are both set and '
                               f'differ; keep one (train.{key} is this add-on\'s spelling)')
    if key in train:
        return option.check(f'train.{key}', train[key])
    if alias_value is not None:
        return option.check(alias_path, alias_value)
    return option.default


def accumulation(opt):
    """Micro-batches per optimiser step: ``train.accumulate`` or traiNNer-redux's ``datasets.train.accum_iter``
    (1 when neither is set). Reads the option dict only: the data loader's side calls it too."""
    train_set = (opt.get('datasets') or {}).get('train') or {}
    return _alias(opt, 'accumulate', 'datasets.train.accum_iter', train_set.get('accum_iter'))


def compile_options(opt):
    """{'mode', 'backend'} when ``train.compile`` (or traiNNer-redux's top-level ``use_compile``) is on, else None;
    the mode from ``train.compile_mode`` or the top-level ``compile_mode``."""
    if not _alias(opt, 'compile', 'use_compile', opt.get('use_compile')):
        return None
    return {'mode': _alias(opt, 'compile_mode', 'compile_mode', opt.get('compile_mode')),
            'backend': _alias(opt, 'compile_backend', 'compile_backend', None)}


def _follow_amp(section, given, amp):
    """The negatives' and the VGG passes' autocast follow train.amp unless the section sets its own."""
    if 'autocast' in section and 'autocast' not in (given or {}):
        section['autocast'] = amp
    return section


def _optional_section(train, key, amp):
    """``train.<key>`` validated (:func:`loss_section`), or None when absent or null (as BasicSR's *_opt)."""
    given = train.get(key)
    if given is None:
        return None
    return _follow_amp(loss_section(key, given), given, amp)


def describe_refresh(negatives):
    """The refresh schedule of validated ``train.negatives`` in words (the training log, the comparison tool)."""
    n = negatives
    if n['refresh'] == 'adaptive':
        return (f'adaptive refresh ({n["adaptive_statistic"]} > {n["adaptive_threshold"]:g}, decay '
                f'{n["adaptive_decay"]:g}, min gap {n["adaptive_min_gap"]})')
    return f'update_every {n["update_every"]}, decay {n["decay"]}'


# --------------------------------------------------------------------------- documentation
def _fmt(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):
        return '{' + ', '.join(f'{k}: {w}' for k, w in v.items()) + '}'
    return str(v)


def markdown_table():
    rows = ['| option | default | accepted | meaning |', '| --- | --- | --- | --- |']
    for path, spec in SECTIONS.items():
        for key, option in spec.items():
            accepted = getattr(option.check, 'choices', None)
            accepted = ', '.join(accepted) if accepted else option.check.__name__.replace('_', ' ')
            default = 'required' if option.required else _fmt(option.default)
            rows.append(f'| `{path}.{key}` | `{default}` | {accepted} | {option.doc} |')
    for old, new in OFFICIAL.items():
        rows.append(f'| `train.{old}` | | official fork key | read as `{new}` |')
    return '\n'.join(rows) + '\n'


BEGIN, END = '<!-- options:begin -->', '<!-- options:end -->'


def write_reference(path):
    """Replace the table between the markers of the option reference page ``path`` with :func:`markdown_table`."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f'{head}{BEGIN}\n{markdown_table()}{END}{tail}')


def main(argv: Optional[list] = None):
    """``python -m mclir_basicsr.options``: print the option table; ``--write docs/options.md``: update that page."""
    import argparse
    parser = argparse.ArgumentParser(prog='python -m mclir_basicsr.options', description=main.__doc__)
    parser.add_argument('--write', metavar='PAGE', help='rewrite the table between the markers of PAGE')
    args = parser.parse_args(argv)
    if args.write:
        write_reference(args.write)
    else:
        print(markdown_table(), end='')


if __name__ == '__main__':
    main()
