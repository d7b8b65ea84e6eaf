"""What the bench runs: the command line, the --arch presets, the variant names (``spn_k4+split+amp``:
kind, K and modifiers) and the BasicSR training option dict each variant is built from."""
import argparse
import os
import re

import yaml

from bench.floors import BATCH_RE, SUBSET_RE, floor_key, samples_of, subset_of

ARCHS = {  # --arch presets: network_g (upscale set from the scale), scale, batch, LR patch
    'edsr_light_x2': {'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16,
                                    'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]},
                      'scale': 2, 'batch': 8, 'patch': 64},
    'swinir_light_x4': {'network_g': {'type': 'SwinIR', 'in_chans': 3, 'img_size': 64, 'window_size': 8,
                                      'img_range': 1., 'depths': [6, 6, 6, 6], 'embed_dim': 60,
                                      'num_heads': [6, 6, 6, 6], 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect',
                                      'resi_connection': '1conv'},
                        'scale': 4, 'batch': 4, 'patch': 48},
}
DEFAULT_ARCH = 'edsr_light_x2'
DEFAULT_LAYERS = 'relu1_2:0.2,relu2_2:0.3,relu3_3:0.5'
DEFAULT_VARIANTS = ('baseline,spn_k1,spn_k4,spn_k4+nchw,published_k1,published_k4,'
                    'spn_k4+bf16,spn_k4+cl,spn_k4+negbf16,spn_k4+bf16+cl+negbf16')
SPN, BOTH = ('spn',), ('spn', 'baseline')
MODIFIERS = {  # name: ({'train' | 'negatives' | 'spn_opt': options merged there}, the kinds it applies to)
    'split': ({'negatives': {'split_batch': True}}, SPN),
    'amp': ({'train': {'amp': 'bfloat16'}}, BOTH),
    'amp16': ({'train': {'amp': 'float16'}}, BOTH),
    'bf16': ({'negatives': {'autocast': 'bfloat16'}, 'spn_opt': {'autocast': 'bfloat16'}}, SPN),
    'fp16': ({'negatives': {'autocast': 'float16'}, 'spn_opt': {'autocast': 'float16'}}, SPN),
    'cl': ({'negatives': {'channels_last': True}, 'spn_opt': {'channels_last': True}}, SPN),
    'negbf16': ({'negatives': {'dtype': 'bfloat16'}}, SPN),
    'nchw': ({'spn_opt': {'channels_last': False}}, SPN),
    'compile': ({'train': {'compile': True}}, BOTH),
}
DESCRIPTION = 'Seconds per training iteration and peak memory: L1 baseline vs. MCLIR (SPN) vs. its floor.'
VARIANTS_HELP = (
    'Variants: baseline (SRModel, L1), spn_kN (ModelContrastiveModel, N negatives), published_kN (the official '
    'step on the same model). Modifiers, joined with +: split (negatives.split_batch), amp (train.amp: bfloat16; '
    'also baseline+amp: ModelContrastiveModel with SPN off), amp16 (train.amp: float16), and of spn_kN only: bf16 '
    '(negatives and VGG under bfloat16 autocast), fp16 (float16 autocast, CUDA only), cl (channels_last), '
    'negbf16 (negatives stored in bfloat16), nchw (VGG in NCHW: spn_opt.channels_last false), subsetN (the SPN '
    'term on N samples of the batch: negatives.samples_per_step N), compile (train.compile: torch.compile, inductor; '
    'also baseline+compile), accN (train.accumulate N: a step of N micro-batches of --batch), bxN (one batch of '
    'N x --batch: what accN is compared with). '
    f'Default: {DEFAULT_VARIANTS}. Architectures (--arch): {", ".join(ARCHS)}.')
_VARIANT_RE = re.compile(r'^(baseline|spn_k(\d+)|published_k(\d+))((?:\+\w+)*)$')


def parse_variant(name):
    """'spn_k4+split+amp' -> {'name', 'kind': baseline|spn|published, 'k', 'mods'}."""
    m = _VARIANT_RE.match(name.strip())
    if not m:
        raise ValueError(f'unknown variant {name!r}: expected baseline, spn_kN or published_kN, '
                         f'optionally with +{"/+".join(MODIFIERS)}')
    kind = m.group(1).split('_')[0]
    k = int(m.group(2) or m.group(3) or 0)
    mods = [x for x in m.group(4).split('+') if x]
    if kind != 'baseline' and k < 1:
        raise ValueError(f'variant {name!r}: K must be >= 1')
    for mod in mods:
        if BATCH_RE.match(mod):
            if int(BATCH_RE.match(mod).group(2)) < 1 or kind == 'published':
                raise ValueError(f'variant {name!r}: +{mod} needs N >= 1 and applies to baseline and spn_kN')
            continue
        if SUBSET_RE.match(mod):
            if kind != 'spn' or int(SUBSET_RE.match(mod).group(1)) < 1:
                raise ValueError(f'variant {name!r}: +{mod} applies to spn_kN only, with N >= 1')
            continue
        if mod not in MODIFIERS:
            raise ValueError(f'variant {name!r}: unknown modifier {mod!r} (known: {", ".join(MODIFIERS)})')
        if kind not in MODIFIERS[mod][1]:
            raise ValueError(f'variant {name!r}: +{mod} applies to {" and ".join(MODIFIERS[mod][1])} only '
                             '(published is the official fp32 step)')
    if len(set(mods)) != len(mods) or {'amp', 'amp16'} <= set(mods) or sum(bool(BATCH_RE.match(m)) for m in mods) > 1:
        raise ValueError(f'variant {name!r}: a modifier twice, both amp and amp16, or two of accN / bxN')
    return {'name': name.strip(), 'kind': kind, 'k': k, 'mods': mods}


def parse_layers(text):
    """'relu1_2:0.2,relu2_2:0.3' (a missing weight is 1) -> {'relu1_2': 0.2, 'relu2_2': 0.3}."""
    out = {}
    for item in text.split(','):
        if item.strip():
            name, _, weight = item.partition(':')
            out[name.strip()] = float(weight) if weight.strip() else 1.0
    if not out:
        raise ValueError('--layers: no layer given')
    return out


def network_options(arch, arch_opt, scale):
    """network_g: the preset `arch`'s network at `scale` with --arch-opt merged over it (a --arch-opt with a
    `type` is used as it is)."""
    if arch not in ARCHS:
        raise ValueError(f'--arch: unknown architecture {arch!r} (known: {", ".join(ARCHS)})')
    given = yaml.safe_load(arch_opt) if arch_opt else {}
    if not isinstance(given, dict):
        raise ValueError(f'--arch-opt: expected a YAML/JSON mapping, got {arch_opt!r}')
    if 'type' in given:
        return dict(given)
    return dict(ARCHS[arch]['network_g'], upscale=scale, **given)


def _merge_modifiers(train, mods):
    for mod in mods:
        if BATCH_RE.match(mod):  # +bxN: only the batch size (make_options)
            if BATCH_RE.match(mod).group(1) == 'acc':
                train['accumulate'] = int(BATCH_RE.match(mod).group(2))
            continue
        if SUBSET_RE.match(mod):
            train['negatives']['samples_per_step'] = int(SUBSET_RE.match(mod).group(1))
            continue
        for section, options in MODIFIERS[mod][0].items():
            (train if section == 'train' else train[section]).update(options)


def spn_options(cfg):
    spn = {'type': 'SPNLoss', 'loss_weight': 0.001, 'feature': cfg['feature']}
    if cfg['feature'] != 'pixel':
        spn['layer_weights'] = dict(cfg['layers'])
        spn['pretrained'] = cfg['vgg_weights']
    return spn


def train_options(cfg, variant):
    """opt['train']: Adam, a constant learning rate, L1; negatives and spn_opt for SPN; the modifiers."""
    train = {
        'ema_decay': 0,
        'optim_g': {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9], 'gamma': 0.5},
        'total_iter': 10 ** 9,
        'warmup_iter': -1,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
    }
    if variant['kind'] != 'baseline':
        train['negatives'] = {'update_every': [cfg['update_every']] * variant['k'], 'decay': 0.1, 'init_decay': 0.1}
        train['spn_opt'] = spn_options(cfg)
    _merge_modifiers(train, variant['mods'])
    return train


def model_type(variant):
    """SRModel for the plain baseline; the add-on's model otherwise (SPN off without spn_opt: baseline+amp)."""
    return 'SRModel' if variant['kind'] == 'baseline' and not variant['mods'] else 'ModelContrastiveModel'


def make_options(cfg, variant, device, root):
    """A BasicSR training option dict, as parse_options(is_train=True) leaves it."""
    scale = cfg['scale']
    batch = cfg['batch'] if any(m.startswith('acc') for m in variant['mods']) else samples_of(variant['mods'],
                                                                                               cfg['batch'])
    name = 'bench_' + re.sub(r'\W', '_', variant['name'])
    exp = os.path.join(root, 'experiments', name)
    return {
        'name': name, 'model_type': model_type(variant), 'scale': scale,
        'num_gpu': 1 if device == 'cuda' else 0, 'manual_seed': 0,
        'dist': False, 'rank': 0, 'world_size': 1, 'auto_resume': False, 'is_train': True,
        'datasets': {'train': {
            'name': 'random', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': scale,
            'gt_size': cfg['patch'] * scale, 'use_hflip': True, 'use_rot': True, 'io_backend': {'type': 'disk'},
            'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
        'network_g': dict(cfg['network_g']),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': exp, 'models': os.path.join(exp, 'models'),
                 'training_states': os.path.join(exp, 'training_states'), 'log': exp,
                 'visualization': os.path.join(exp, 'visualization')},
        'train': train_options(cfg, variant),
        'logger': {'print_freq': 100, 'save_checkpoint_freq': 10 ** 9, 'use_tb_logger': False, 'wandb': None},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


# =========================================================================== the command line
def _check_args(args, variants):
    if not variants:
        raise ValueError('--variants: nothing to run')
    if len({v['name'] for v in variants}) != len(variants):
        raise ValueError('--variants: a variant is listed twice')
    for name, value in (('--iters', args.iters), ('--repeats', args.repeats), ('--batch', args.batch),
                        ('--patch', args.patch), ('--scale', args.scale), ('--update-every', args.update_every)):
        if value < 1:
            raise ValueError(f'{name}: must be >= 1')
    if args.warmup < 0 or args.threads < 0:
        raise ValueError('--warmup and --threads must be >= 0')


def configure(args):
    """(cfg, variants) from the parsed arguments (cfg['floor_keys']: the floors to compute); ValueError for
    bad input."""
    preset = ARCHS.get(args.arch, {})
    for name in ('scale', 'batch', 'patch'):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    variants = [parse_variant(v) for v in args.variants.split(',') if v.strip()]
    _check_args(args, variants)
    ks = sorted({1, 4} | {v['k'] for v in variants if v['k']})  # floors: K=1, K=4 and every K run
    keys = [str(k) for k in ks] + (['split'] if any('split' in v['mods'] for v in variants) else [])
    keys += sorted({floor_key(v) for v in variants if subset_of(v['mods'])})  # 'split@2', '4@2': on N samples
    ns = sorted({subset_of(v['mods']) for v in variants if (subset_of(v['mods']) or args.batch) < args.batch})
    cfg = {'arch': args.arch, 'network_g': network_options(args.arch, args.arch_opt, args.scale),
           'scale': args.scale, 'batch': args.batch, 'patch': args.patch, 'feature': args.feature,
           'layers': parse_layers(args.layers) if args.feature != 'pixel' else {},
           'update_every': args.update_every, 'iters': args.iters, 'warmup': args.warmup,
           'repeats': args.repeats, 'threads': args.threads, 'vgg_weights': None, 'ks': ks, 'floor_keys': keys,
           'subsets': ns}
    return cfg, variants


def build_parser():
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=VARIANTS_HELP)
    p.add_argument('--arch', default=DEFAULT_ARCH, choices=tuple(ARCHS),
                   help='network, scale, batch and LR patch preset (default %(default)s)')
    p.add_argument('--arch-opt', default=None,
                   help="network_g as YAML/JSON; without `type` it is merged over --arch's network, "
                        'e.g. "{num_feat: 16, num_block: 2}"')
    p.add_argument('--scale', type=int, default=None, help="default: --arch's")
    p.add_argument('--batch', type=int, default=None, help="default: --arch's")
    p.add_argument('--patch', type=int, default=None,
                   help="LR patch size (gt patch = patch x scale); default: --arch's")
    p.add_argument('--feature', default='vgg16', choices=('vgg16', 'vgg19', 'pixel'))
    p.add_argument('--layers', default=DEFAULT_LAYERS, help='VGG layers and weights, "name:weight,..."')
    p.add_argument('--vgg-weights', default=None,
                   help='torchvision VGG weight file; default: random weights in a temporary file')
    p.add_argument('--update-every', type=int, default=1, help='refresh period of every negative (default 1)')
    p.add_argument('--iters', type=int, default=5, help='iterations per timed repetition')
    p.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    p.add_argument('--repeats', type=int, default=5, help='timed repetitions (median/quartiles over them)')
    p.add_argument('--variants', default=DEFAULT_VARIANTS, help='comma list (see below)')
    p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: torch default)')
    p.add_argument('--device', default='auto', help='cpu, cuda, both (cpu,cuda) or auto (cuda if available)')
    p.add_argument('--json', nargs='?', const='-', default=None, metavar='PATH',
                   help='write the results as JSON to PATH (or stdout: the table then goes to stderr)')
    return p
