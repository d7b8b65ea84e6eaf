"""Editing BasicSR option dicts for a comparison: read/write, the method (SPN, CR, ...) on/off, what a run
rewrites, the test options of a trained run, the metric settings, and stretching a schedule to another length;
and the tool's one error type, :class:`CompareError` (the modules that raise it import it from here).

Everything here takes an option dict and returns a new one; the input is never modified.
"""
import copy
import os
from collections import OrderedDict

import yaml

from mclir_basicsr.errors import MCLIRError
from mclir_basicsr.options import OFFICIAL_NEGATIVE_KEYS as OFFICIAL_KEYS
from mclir_basicsr.options import parse_mclir_options
from mclir_basicsr.preflight import PreflightError
from mclir_basicsr.preflight.option_file import check_option_file

# Model types that are SRModel with another name or SRModel's subclass ModelContrastiveModel: switching
# them to ModelContrastiveModel (with or without SPN) keeps their training and testing as they were.
SWITCHABLE_MODELS = ('SRModel', 'SwinIRModel', 'ModelContrastiveModel')
ADDON_MODEL = 'ModelContrastiveModel'
# The add-on's other training terms besides SPN: (train key, short name). A baseline has none of them.
METHOD_SECTIONS = (('cr_opt', 'CR'), ('uncertainty_opt', 'uncertainty'))


class CompareError(MCLIRError, RuntimeError):
    """A run failed or the option files cannot be compared; the message says which and why."""


# --------------------------------------------------------------------------- files
def _yaml_loader_dumper():
    # BasicSR's own ordered YAML (so files load exactly as training loads them); imported here, not at the
    # top, because importing basicsr takes seconds (torch, every arch) and `--help` must not pay for it.
    from basicsr.utils.options import ordered_yaml
    return ordered_yaml()


def load_options(path):
    try:  # missing, empty, not YAML, a tab, not a mapping, a key given twice: one line
        check_option_file(path)
    except PreflightError as e:
        raise CompareError(str(e)) from None
    loader, _ = _yaml_loader_dumper()
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=loader)


def save_options(path, opt):
    _, dumper = _yaml_loader_dumper()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        yaml.dump(_to_plain(opt), f, Dumper=dumper, sort_keys=False, default_flow_style=None)
    return path


def _to_plain(obj):
    if isinstance(obj, dict):
        return OrderedDict((k, _to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- the method on / off
def has_spn(opt):
    """Whether the options train with SPN: ``train.spn_opt`` or the official fork's ``neg_*`` keys.
    (ModelContrastiveModel without them is SPN off: SRModel's training with the add-on's amp and resume.)"""
    train = opt.get('train') or {}
    return train.get('spn_opt') is not None or any(k in train for k in OFFICIAL_KEYS)


def method_parts(opt):
    """What the add-on adds over plain L1 training, as short names in a fixed order: 'SPN' (``train.spn_opt``
    or the official ``neg_*`` keys), 'CR' (``train.cr_opt``), 'uncertainty' (``train.uncertainty_opt``)."""
    train = opt.get('train') or {}
    parts = ['SPN'] if has_spn(opt) else []
    return parts + [name for key, name in METHOD_SECTIONS if train.get(key) is not None]


def has_method(opt):
    """Whether the options add anything over the baseline (SPN, CR, the uncertainty-weighted loss)."""
    return bool(method_parts(opt))


def method_name(opt):
    """The method's short name for titles and tables: 'SPN', 'CR', 'SPN+uncertainty', ... ('none' without)."""
    return '+'.join(method_parts(opt)) or 'none'


def train_amp(opt):
    """The whole-step mixed precision of a run (``train.amp``; None = float32)."""
    return (opt.get('train') or {}).get('amp')


def _check_switchable(opt, flag):
    if opt.get('model_type') not in SWITCHABLE_MODELS:
        raise CompareError(
            f'{flag}: model_type {opt.get("model_type")!r} cannot be switched to {ADDON_MODEL} (an SRModel with '
            'optional SPN / CR); write both option files yourself and pass them')


def strip_method(opt, flag='--spn off'):
    """The same options without the method: ModelContrastiveModel without spn_opt / negatives / the official
    keys / cr_opt / uncertainty_opt, so the baseline shares precision (``train.amp``), data path and exact
    resume with the method's run."""
    _check_switchable(opt, flag)
    opt = copy.deepcopy(opt)
    train = opt.setdefault('train', OrderedDict())
    official = any(k in train for k in OFFICIAL_KEYS)
    for key in ('spn_opt', 'negatives') + OFFICIAL_KEYS + tuple(key for key, _ in METHOD_SECTIONS):
        train.pop(key, None)
    if official:  # the official fork's subtracted perceptual_opt is the SPN term
        train.pop('perceptual_opt', None)
    if train.get('pixel_opt') is None and train.get('perceptual_opt') is None:
        raise CompareError(f'{flag}: without the method the options have no loss (no train.pixel_opt: '
                           'uncertainty_opt replaced it); write the baseline option file yourself and pass both')
    opt['model_type'] = ADDON_MODEL
    return opt


strip_spn = strip_method  # the name of the SPN-only days


def add_sections(opt, sections, flag):
    """The same options as ModelContrastiveModel with the ``train`` sections given ({key: section}), e.g.
    ``{'cr_opt': {...}}``; only SRModel-based model types can be switched."""
    _check_switchable(opt, flag)
    opt = copy.deepcopy(opt)
    opt['model_type'] = ADDON_MODEL
    for key, section in sections.items():
        opt['train'][key] = OrderedDict(section) if isinstance(section, dict) else copy.deepcopy(section)
    return opt


def add_spn(opt, spn_opt, negatives=None):
    """The same options with SPN: ModelContrastiveModel with ``train.spn_opt`` and (if given)
    ``train.negatives``; only SRModel-based model types can be switched."""
    sections = OrderedDict(spn_opt=spn_opt)
    if negatives is not None:
        sections['negatives'] = negatives
    return add_sections(opt, sections, '--spn on')


def add_cr(opt, cr_opt):
    """The same options with CR (AECR-Net's contrastive regularisation): ``train.cr_opt``."""
    return add_sections(opt, {'cr_opt': cr_opt}, '--cr on')


def _spn_part(opt):
    if 'spn_opt' not in opt['train']:
        return 'official fork keys (neg_iter / subtracted perceptual_opt)'
    cfg = parse_mclir_options(opt)
    s, n = cfg.spn, cfg.negatives
    extra = f', max_distance {s.max_distance}' if s.max_distance else ''
    return (f'feature {s.feature}, lambda {s.loss_weight:g}, mode {s.mode}, criterion {s.criterion}'
            f'{extra}; K={len(n.update_every)} negatives, {n.describe_refresh()}, init_decay {n.init_decay:g}'
            + (', split batch' if n.split_batch else '')
            + (f', on {n.samples_per_step} samples of each batch' if n.samples_per_step else ''))


def _cr_part(opt):
    c = parse_mclir_options(opt).cr
    layers = '' if c.feature == 'pixel' else f' {c.layer_weights}'
    return f'feature {c.feature}{layers}, weight {c.loss_weight:g}, criterion {c.criterion}'


def _uncertainty_part(opt):
    cfg = parse_mclir_options(opt)
    u, n = cfg.uncertainty, cfg.negatives
    negatives = '' if cfg.spn_on else f'; K={len(n.update_every)} negatives, {n.describe_refresh()}'
    return f'{u.criterion}, weight {u.loss_weight:g}, floor {u.floor:g}, cap {u.cap:g}{negatives}'


def spn_description(opt):
    """What the method of ``opt`` is, in words: the settings of SPN, CR and the uncertainty loss, each
    prefixed with its name when there are several (one alone reads as before CR existed); 'none' without."""
    parts = method_parts(opt)
    described = {'SPN': _spn_part, 'CR': _cr_part, 'uncertainty': _uncertainty_part}
    if len(parts) == 1:
        return described[parts[0]](opt)
    return '; '.join(f'{p}: {described[p](opt)}' for p in parts) or 'none'


# --------------------------------------------------------------------------- one run
def _absolute(path, base):
    if not isinstance(path, str) or not path or '://' in path:
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _absolute_paths(opt, base_dir):
    for dataset in (opt.get('datasets') or {}).values():
        for key in list(dataset):
            if key.startswith('dataroot') or key.startswith('meta_info'):
                dataset[key] = _absolute(dataset[key], base_dir)
    path = opt.setdefault('path', OrderedDict())
    for key in list(path):
        if key.startswith('pretrain_network'):
            path[key] = _absolute(path[key], base_dir)
    for spn_key in ('spn_opt', 'perceptual_opt', 'cr_opt'):
        section = opt['train'].get(spn_key)
        if isinstance(section, dict) and section.get('pretrained'):
            section['pretrained'] = _absolute(section['pretrained'], base_dir)


def rewrite_options(opt, name, seed, base_dir, iters=None, val_freq=None):
    """Only what a fair, self-contained run needs: name, seed, budget, absolute paths, no resume."""
    opt = copy.deepcopy(opt)
    opt['name'] = name
    opt['manual_seed'] = int(seed)
    if iters is not None:
        opt['train']['total_iter'] = int(iters)
    if val_freq is not None and opt.get('val') is not None:
        opt['val']['val_freq'] = int(val_freq)
    _absolute_paths(opt, base_dir)
    path = opt['path']
    path['resume_state'] = None
    for key in ('experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root'):
        path.pop(key, None)
    return opt


def val_datasets(opt):
    return [(k, v) for k, v in (opt.get('datasets') or {}).items() if k.split('_')[0] in ('val', 'test')]


def test_options(train_opt, name, checkpoint):
    """A test option file for a trained run: its network, its validation sets, images saved."""
    ema = (train_opt.get('train') or {}).get('ema_decay', 0) or 0
    val = train_opt.get('val') or {}
    test = OrderedDict(name=name, model_type=train_opt['model_type'], scale=train_opt.get('scale', 1),
                       num_gpu=train_opt.get('num_gpu', 0), manual_seed=train_opt.get('manual_seed', 0))
    test['datasets'] = OrderedDict((k, copy.deepcopy(v)) for k, v in val_datasets(train_opt))
    test['network_g'] = copy.deepcopy(train_opt['network_g'])
    test['path'] = OrderedDict(pretrain_network_g=checkpoint, strict_load_g=True,
                               param_key_g='params_ema' if ema > 0 else 'params')
    test['val'] = OrderedDict(save_img=True, suffix=None)
    if val.get('metrics'):
        test['val']['metrics'] = copy.deepcopy(val['metrics'])
    return test


def metric_settings(opt):
    """(psnr kwargs, ssim kwargs) as the option file's validation metrics define them."""
    scale = opt.get('scale', 1)
    psnr = ssim = None
    for m in ((opt.get('val') or {}).get('metrics') or {}).values():
        kwargs = {k: v for k, v in m.items() if k in ('crop_border', 'test_y_channel')}
        if m.get('type') == 'calculate_psnr' and psnr is None:
            psnr = kwargs
        if m.get('type') == 'calculate_ssim' and ssim is None:
            ssim = kwargs
    default = {'crop_border': scale if scale > 1 else 0, 'test_y_channel': False}
    psnr = dict(default, **(psnr or {}))
    ssim = dict(psnr, **(ssim or {}))
    return psnr, ssim


# --------------------------------------------------------------------------- another length
def _scale_boundaries(values, ratio):
    """Scale increasing boundaries, keeping them increasing by at least 1 (each value >= 1)."""
    out = []
    for v in values:
        out.append(max(round(v * ratio), (out[-1] if out else 0) + 1))
    return out


def _scale_periods(periods, ratio):
    """Scaled periods whose running sums are the scaled running sums (so their total is the old total
    times ratio, rounded once, and not the sum of K roundings); each period stays >= 1."""
    sums, total = [], 0
    for p in periods:
        total += p
        sums.append(total)
    scaled = _scale_boundaries(sums, ratio)
    return [b - a for a, b in zip([0] + scaled[:-1], scaled)]


def _scale_iteration(value, ratio):
    return value if value is None or value <= 0 else max(1, round(value * ratio))


def stretch_schedule(opt, total_iter):
    """A copy of ``opt`` trained for ``total_iter`` iterations with everything counted in iterations of
    the schedule scaled by total_iter / train.total_iter, so the run anneals fully: the scheduler's
    ``periods`` (CosineAnnealingRestartLR; they keep summing to the total), ``milestones`` and
    ``restarts`` (MultiStep(Restart)LR), torch-style ``T_max``, ``train.warmup_iter`` (if > 0), and
    ``val.val_freq`` and ``logger.save_checkpoint_freq`` (same number of validations and checkpoints)."""
    opt = copy.deepcopy(opt)
    train = opt['train']
    ratio = int(total_iter) / int(train['total_iter'])
    train['total_iter'] = int(total_iter)
    sched = train.get('scheduler') or {}
    if sched.get('periods'):
        sched['periods'] = _scale_periods(sched['periods'], ratio)
    if sched.get('milestones'):
        sched['milestones'] = [_scale_iteration(m, ratio) for m in sched['milestones']]
    if sched.get('restarts'):
        sched['restarts'] = [round(r * ratio) for r in sched['restarts']]
    if 'T_max' in sched:
        sched['T_max'] = _scale_iteration(sched['T_max'], ratio)
    if 'warmup_iter' in train:
        train['warmup_iter'] = _scale_iteration(train['warmup_iter'], ratio)
    if (opt.get('val') or {}).get('val_freq'):
        opt['val']['val_freq'] = _scale_iteration(opt['val']['val_freq'], ratio)
    if (opt.get('logger') or {}).get('save_checkpoint_freq'):
        opt['logger']['save_checkpoint_freq'] = _scale_iteration(opt['logger']['save_checkpoint_freq'], ratio)
    return opt
