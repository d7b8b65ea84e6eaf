"""Options of an add-on run that have no effect in the setting chosen: each gets a warning naming it (the model
logs them when it is built, before the first iteration). A mistake that would make the run wrong is an error of
:mod:`mclir_basicsr.options` instead; these are the ones a run survives, silently doing less than the file says.
"""
from mclir_basicsr.options import OFFICIAL, SECTIONS, accumulation, did_you_mean

# What BasicSR's SRModel and training pipeline read from `train` (the add-on's own keys are in SECTIONS/OFFICIAL).
BASICSR_TRAIN_KEYS = ('ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'perceptual_opt')
VGG_ONLY = ('layer_weights', 'use_input_norm', 'range_norm', 'pretrained', 'download', 'autocast', 'channels_last')
ADAPTIVE_ONLY = ('adaptive_statistic', 'adaptive_threshold', 'adaptive_decay', 'adaptive_min_gap')


def read_train_keys():
    """The keys of ``train`` that ModelContrastiveModel reads (BasicSR's, the add-on's, the official fork's)."""
    known = set(BASICSR_TRAIN_KEYS) | set(OFFICIAL) | {k.split('.')[-1] for k in SECTIONS if k != 'train'}
    return known | set(SECTIONS['train'].model_fields)


def _train_keys(train):
    known = read_train_keys()
    notes = []
    for key in train:
        if key == 'use_grad_norm':
            notes.append('train.use_grad_norm is not read (nor was it by the official fork, whose example files '
                         'carry it): no gradient clipping; train.use_grad_clip: <max norm> clips.')
        elif key not in known:
            notes.append(f'train.{key}: not read by ModelContrastiveModel{did_you_mean(key, sorted(known))}; ignored')
    return notes


def _pixel_features(section, given, path):
    if section is None or section.feature != 'pixel':
        return []
    return [f'{path}.{key}: has no effect with feature: pixel (no VGG pass); ignored' for key in VGG_ONLY
            if key in (given or {})]


def _refresh(negatives, given, path):
    if negatives is None:
        return []
    given = given or {}
    if negatives.refresh == 'adaptive':
        return [f'{path}.decay: has no effect with refresh: adaptive (adaptive_decay is used); ignored']\
            if 'decay' in given else []
    return [f'{path}.{key}: has no effect with refresh: periodic; ignored' for key in ADAPTIVE_ONLY if key in given]


def _samples(opt, negatives, path):
    if negatives is None or negatives.samples_per_step is None:
        return []
    batch = ((opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
    n = accumulation(opt)
    if isinstance(batch, int) and negatives.samples_per_step >= batch * n:
        what = f'datasets.train.batch_size_per_gpu ({batch})' if n == 1 else \
            f'the samples of a step (datasets.train.batch_size_per_gpu x train.accumulate: {batch * n})'
        return [f'{path}.samples_per_step: {negatives.samples_per_step} is not fewer than {what}: the whole '
                'batch is used']
    return []


def _save_map(opt, uncertainty):
    if uncertainty is None or not uncertainty.save_map or (opt.get('val') or {}).get('save_img'):
        return []
    return ['train.uncertainty_opt.save_map: has no effect without val.save_img: true; ignored']


def ignored_options(opt, cfg):
    """One warning per option of ``opt`` (a BasicSR option dict with a ModelContrastiveModel) that has no effect
    with the validated configuration ``cfg`` (:func:`mclir_basicsr.options.parse_mclir_options`)."""
    train = opt.get('train') or {}
    notes = _train_keys(train)
    if not cfg.official:
        notes += _pixel_features(cfg.spn, train.get('spn_opt'), 'train.spn_opt')
        notes += _refresh(cfg.negatives, train.get('negatives'), 'train.negatives')
        notes += _samples(opt, cfg.negatives, 'train.negatives')
    notes += _pixel_features(cfg.cr, train.get('cr_opt'), 'train.cr_opt')
    return notes + _save_map(opt, cfg.uncertainty)
