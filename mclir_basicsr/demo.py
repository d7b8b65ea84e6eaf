"""Does SPN help a small SR network, and what does it cost? One command, no download.

    python -m mclir_basicsr.demo [--out demo_output] [--iters 1000] [--seeds 0 1 2] [--weight 0.1] ...

Builds a small paired x2 dataset from the photos that ship with scikit-image (training tiles from
some photos, validation images from other, held-out photos; LR = MATLAB-style bicubic, BasicSR's
``imresize``), trains the same small EDSR with the L1 baseline and with L1 + SPN from the same seed
for the same iterations (two BasicSR runs in parallel, one CPU thread each), tests both final
networks and writes, under ``--out``: table.csv / table.md (PSNR/SSIM per validation image, mean,
delta, seconds per iteration), psnr_curve.png, crops.png, checkpoints/, the option files and
BasicSR's experiments/ and results/. The baseline is ModelContrastiveModel without SPN (SRModel's
training), as ``mclir-compare --spn on`` builds it. With ``--equal-time`` (the default) it also trains,
per seed, a baseline given as many iterations as fit in the SPN run's measured training time
(learning-rate schedule stretched to them) and reports the delta at equal time next to the delta at
equal iterations; ``--no-equal-time`` skips that run. The SPN defaults (pixel features, lambda 0.1, subtract,
K = 2 negatives refreshed every 50 / 200 iterations, decay 0.1) are the best of the settings
measured by ``scripts/dev/sweep_demo.py`` (1000 iterations, paired seeds): +0.03 +- 0.03 dB over 6
seeds at 1.55x the time per iteration; see docs/evidence.md for the table. No pretrained VGG file is
needed (feature: pixel); ``--feature auto`` uses VGG16 when its weight file is present.
"""
import argparse
import os
import sys
import time
from collections import OrderedDict

from mclir_basicsr.compare.cli import DEMO_NEGATIVES, DEMO_SPN, DEMO_VGG_NEGATIVES, DEMO_VGG_SPN
from mclir_basicsr.compare.options import CompareError, add_spn, save_options, spn_description
from mclir_basicsr.compare.pipeline import compare
from mclir_basicsr.compare.plots import require_demo_extra

SCALE = 2
# Training photos and the held-out validation photos (scikit-image ships all of them; no download).
TRAIN_PHOTOS = ('rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'camera', 'coins',
                'grass', 'gravel', 'brick', 'moon')
VAL_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'stereo_motorcycle')

DEMO_ITERS = 1000
DEMO_VAL_FREQ = 50
DEMO_NETWORK = OrderedDict([('type', 'EDSR'), ('num_in_ch', 3), ('num_out_ch', 3), ('num_feat', 16), ('num_block', 4),
                            ('upscale', SCALE), ('res_scale', 1), ('img_range', 255.),
                            ('rgb_mean', [0.4488, 0.4371, 0.4040])])
# What scripts/dev/sweep_demo.py measured for exactly the default demo (printed with it, for context).
SWEEP_REFERENCE = (
    'Reference (scripts/dev/sweep_demo.py, same settings, 1000 iterations): these SPN settings were picked among 5 on '
    'seeds 0-2 (+0.041 +- 0.027 dB, 3/3 better); on fresh seeds 3-5 they gave +0.020 +- 0.042 dB (1/3 better); over '
    'all 6 seeds +0.030 +- 0.034 dB (4/6). lambda 0.3 (K=1, 2) was +0.00 dB, ratio mode -1.4 dB; SPN took 1.55x the '
    'time per iteration in the sweep (2 shared CPU cores). These settings are in-sample: a held-out check on another '
    'task (other data and scale, a larger network, annealed learning rate, 4 paired seeds) found them 0.17 dB WORSE '
    'than L1 (every seed worse); they are not a recommendation for pixel features in general. '
    'Try other seeds: --seeds 3 4 5.')
PAPER_VGG_WEIGHT = 0.001  # the published lambda, for torchvision's VGG features
VGG_GT_SIZE = 32  # the crops of scripts/dev/vgg_evidence.py, whose main setting the VGG demo is
TERMS = ('full', 'split', 'subset')


# --------------------------------------------------------------------------- data
def _photo(name):
    import numpy as np
    from skimage import data
    img = data.stereo_motorcycle()[0] if name == 'stereo_motorcycle' else getattr(data, name)()
    if name == 'retina':  # mostly black around the eye: keep the centre
        img = img[300:1100, 300:1100]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3][..., ::-1])  # RGB -> BGR, as cv2 writes


def _center(img, h, w):
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y:y + h, x:x + w]


def _downscale(hr, scale):
    import numpy as np
    from basicsr.utils.matlab_functions import imresize
    lr = imresize(hr.astype(np.float32) / 255., 1 / scale)
    return np.clip(np.round(lr * 255.), 0, 255).astype(np.uint8)


def build_dataset(root, scale=SCALE, tile=96, val_size=(256, 384), train_photos=TRAIN_PHOTOS,
                  val_photos=VAL_PHOTOS):
    """root/{train,val}/{gt,lq}/*.png. Training: HR tiles (tile x tile) of train_photos and their
    bicubic LR; validation: a centre crop (val_size) of each held-out photo and its LR. Gray photos
    become 3-channel. Returns {'train': n_tiles, 'val': [names]}."""
    import cv2
    for split in ('train', 'val'):
        for kind in ('gt', 'lq'):
            d = os.path.join(root, split, kind)
            os.makedirs(d, exist_ok=True)
            for f in os.listdir(d):
                if f.endswith('.png'):
                    os.remove(os.path.join(d, f))
    n = 0
    for name in train_photos:
        img = _photo(name)
        h, w = img.shape[0] // tile * tile, img.shape[1] // tile * tile
        hr = img[:h, :w]
        lr = _downscale(hr, scale)
        t = tile // scale
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                key = f'{name}_{y:04d}_{x:04d}.png'
                cv2.imwrite(os.path.join(root, 'train', 'gt', key), hr[y:y + tile, x:x + tile])
                ly, lx = y // scale, x // scale
                cv2.imwrite(os.path.join(root, 'train', 'lq', key), lr[ly:ly + t, lx:lx + t])
                n += 1
    vh, vw = (v // scale * scale for v in val_size)
    for name in val_photos:
        hr = _center(_photo(name), vh, vw)
        cv2.imwrite(os.path.join(root, 'val', 'gt', f'{name}.png'), hr)
        cv2.imwrite(os.path.join(root, 'val', 'lq', f'{name}.png'), _downscale(hr, scale))
    return {'train': n, 'tile': tile, 'photos': len(train_photos), 'val': list(val_photos), 'val_size': (vh, vw)}


# --------------------------------------------------------------------------- options
def baseline_options(data_root, iters=DEMO_ITERS, val_freq=DEMO_VAL_FREQ, network=None, gt_size=48, batch=8,
                     lr=1e-3, seed=0, name='demo'):
    """BasicSR options of the L1 baseline: ModelContrastiveModel without SPN (SRModel's training, with the
    add-on's amp and exact resume, as the SPN run), Adam with cosine decay, Y-channel PSNR/SSIM."""
    ds = OrderedDict([('type', 'PairedImageDataset'), ('io_backend', {'type': 'disk'}), ('filename_tmpl', '{}')])
    train_set = OrderedDict(ds, name='skimage_train', dataroot_gt=os.path.join(data_root, 'train', 'gt'),
                            dataroot_lq=os.path.join(data_root, 'train', 'lq'), gt_size=gt_size, use_hflip=True,
                            use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=batch, dataset_enlarge_ratio=50,
                            prefetch_mode=None)
    val_set = OrderedDict(ds, name='skimage_val', dataroot_gt=os.path.join(data_root, 'val', 'gt'),
                          dataroot_lq=os.path.join(data_root, 'val', 'lq'))
    metric = OrderedDict(crop_border=SCALE, test_y_channel=True)
    return OrderedDict([
        ('name', name), ('model_type', 'ModelContrastiveModel'), ('scale', SCALE), ('num_gpu', 0),
        ('manual_seed', seed),
        ('datasets', OrderedDict(train=train_set, val=val_set)),
        ('network_g', OrderedDict(network or DEMO_NETWORK)),
        ('path', OrderedDict(pretrain_network_g=None, strict_load_g=True, resume_state=None)),
        ('train', OrderedDict([
            ('ema_decay', 0),
            ('optim_g', OrderedDict(type='Adam', lr=lr, weight_decay=0, betas=[0.9, 0.99])),
            ('scheduler', OrderedDict(type='CosineAnnealingRestartLR', periods=[iters], restart_weights=[1],
                                      eta_min=lr / 100)),
            ('total_iter', iters), ('warmup_iter', -1),
            ('pixel_opt', OrderedDict(type='L1Loss', loss_weight=1.0, reduction='mean'))])),
        ('val', OrderedDict(val_freq=val_freq, save_img=False, metrics=OrderedDict(
            psnr=OrderedDict(type='calculate_psnr', **metric), ssim=OrderedDict(type='calculate_ssim', **metric)))),
        ('logger', OrderedDict(print_freq=max(1, min(20, iters // 5)), save_checkpoint_freq=iters,
                               use_tb_logger=False, wandb=None)),
        ('dist_params', OrderedDict(backend='gloo', port=29500)),
    ])


def prepare(data_root, iters, val_freq, quick=False, name='demo', gt_size=48):
    """Build the demo's dataset and return (dataset info, baseline options); ``quick``: the tiny
    smoke-test variant (2 photos, small images, an 8-feature 1-block EDSR, batch 4: K = 4 negatives split over it)."""
    if quick:
        info = build_dataset(data_root, tile=48, val_size=(48, 64), train_photos=TRAIN_PHOTOS[:2],
                             val_photos=VAL_PHOTOS[:2])
        network = OrderedDict(DEMO_NETWORK, num_feat=8, num_block=1)
        return info, baseline_options(data_root, iters, val_freq, network=network, gt_size=32, batch=4, name=name)
    return build_dataset(data_root), baseline_options(data_root, iters, val_freq, name=name, gt_size=gt_size)


def spn_options(baseline, spn=None, negatives=None):
    """The baseline plus SPN: ModelContrastiveModel, train.spn_opt, train.negatives."""
    return add_spn(baseline, spn or DEMO_SPN, negatives or DEMO_NEGATIVES)


def vgg_file(feature):
    from mclir_basicsr.losses.vgg import VGGWeightsNotFound, candidate_paths, find_weights
    try:
        return find_weights(feature), candidate_paths(feature)
    except VGGWeightsNotFound:
        return None, candidate_paths(feature)


def choose_feature(requested, weight):
    """(feature, loss weight, VGG weight file or None, sentence saying which feature space is used and why)."""
    pixel_weight = weight if weight is not None else DEMO_SPN['loss_weight']
    if requested == 'pixel':
        path, looked = vgg_file('vgg16')
        why = (f'a VGG16 weight file is at {path}; --feature vgg16 (or auto) would use it' if path else
               'no pretrained VGG file found (looked in ' + ', '.join(looked) + ')')
        return 'pixel', pixel_weight, None, f'SPN feature space: pixel (the measured default; {why})'
    feature = 'vgg16' if requested == 'auto' else requested
    path, looked = vgg_file(feature)
    if path is None:
        if requested == 'auto':
            return 'pixel', pixel_weight, None, \
                f'SPN feature space: pixel (no pretrained VGG16 file found; looked in {", ".join(looked)})'
        raise SystemExit(f'mclir-demo: --feature {feature} needs the pretrained torchvision weights, not found at: '
                         f'{", ".join(looked)} (use --feature pixel, which needs none)')
    w = weight if weight is not None else DEMO_VGG_SPN['loss_weight']
    path = os.path.abspath(path)  # the runs work in the output folder
    return feature, w, path, (f'SPN feature space: {feature} (weights {path}); lambda {w:g}'
                              + (' (the measured default for the HED VGG16 file of mclir-hed-vgg, docs/vgg_evidence.md;'
                                 ' with torchvision\'s own weights the paper\'s 0.001 is --weight 0.001)'
                                 if weight is None else ''))


# --------------------------------------------------------------------------- main
def build_parser():
    p = argparse.ArgumentParser(
        prog='mclir-demo', description='Train a small EDSR x2 on photos shipped with scikit-image with the L1 '
        'baseline and with SPN (same seed, same iterations) and compare them. No download; CPU is enough.')
    p.add_argument('--out', default='demo_output', help='output folder (default ./demo_output)')
    p.add_argument('--iters', type=int, default=DEMO_ITERS, help=f'iterations of each run (default {DEMO_ITERS})')
    p.add_argument('--val-freq', type=int, help=f'validate every N iterations (default {DEMO_VAL_FREQ}, '
                                                'or iters/10 when fewer iterations)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='paired seeds: one baseline/SPN pair per seed (default 0 1 2; one seed proves nothing at '
                        'this scale)')
    p.add_argument('--feature', choices=['pixel', 'auto', 'vgg16', 'vgg19'], default='auto',
                   help='SPN feature space (default auto: vgg16, the paper\'s, if its weight file is present '
                        '(mclir-hed-vgg --fetch makes one), else pixel)')
    p.add_argument('--weight', type=float, help=f'lambda (default {DEMO_SPN["loss_weight"]} for pixel; '
                                                f'{DEMO_VGG_SPN["loss_weight"]:g} for VGG)')
    p.add_argument('--mode', choices=['subtract', 'ratio'], default=DEMO_SPN['mode'])
    p.add_argument('--update-every', type=int, nargs='+',
                   help=f'refresh period of each negative; K = their number (default {DEMO_NEGATIVES["update_every"]} '
                        f'for pixel, the paper\'s {DEMO_VGG_NEGATIVES["update_every"]} for VGG)')
    p.add_argument('--decay', type=float, help=f'decay of every negative at its refresh (default '
                                               f'{DEMO_NEGATIVES["decay"][0]})')
    p.add_argument('--equal-time', action=argparse.BooleanOptionalAction, default=True,
                   help='also train, per seed, a baseline with as many iterations as fit in the SPN run\'s training '
                        'time and report the delta at equal time too (default on: one more run per seed)')
    p.add_argument('--term', choices=TERMS, help='how the SPN term is estimated: full (the paper: every sample meets '
                   'every negative), split (each sample meets one negative), subset (split, on K of the 8 samples of '
                   'each batch: one per negative); all unbiased. Default: full for pixel, subset for VGG')
    p.add_argument('--cheap', action='store_true', help='the same as --term subset')
    p.add_argument('--jobs', type=int, default=2, help='runs at a time (default 2)')
    p.add_argument('--threads', type=int, help='CPU threads per run (default: CPU count / jobs)')
    p.add_argument('--quick', action='store_true',
                   help='smoke test: tiny images and network, few photos (use with a small --iters)')
    p.add_argument('--data-only', action='store_true',
                   help='only build the dataset and write the two option files (OUT/options/demo_*.yml), e.g. '
                        'for mclir-compare')
    p.add_argument('--verbose', action='store_true', help='stream the BasicSR logs of the runs')
    return p


def main(argv=None):
    """Console entry point (``mclir-demo``): exit status 0; see :func:`run` for the results."""
    run(argv)
    return 0


def _term(args, feature):
    if args.cheap:
        return 'subset'
    return args.term or ('full' if feature == 'pixel' else 'subset')


def _negatives(args, feature):
    """The negatives of the SPN run: the demo's for the feature space, as the command line changes them."""
    default = DEMO_NEGATIVES if feature == 'pixel' else DEMO_VGG_NEGATIVES
    every = list(args.update_every or default['update_every'])
    decay = args.decay if args.decay is not None else default['decay'][0]
    term = _term(args, feature)
    # subset: split over the negatives on as few samples as that allows, one per negative (2 of 8 with pixel's K = 2)
    extra = {} if term == 'full' else OrderedDict(split_batch=True)
    if term == 'subset':
        extra['samples_per_step'] = len(every)
    return OrderedDict(update_every=every, decay=[decay] * len(every), init_decay=default['init_decay'], **extra)


def _demo_spn(base, args, feature, weight, vgg_path):
    """The SPN run's options: the baseline plus the demo's SPN settings as the command line changes them."""
    spn_cfg = OrderedDict(DEMO_SPN if feature == 'pixel' else DEMO_VGG_SPN, feature=feature, loss_weight=weight,
                          mode=args.mode)
    if vgg_path:
        spn_cfg['pretrained'] = vgg_path
    negatives = _negatives(args, feature)
    spn = spn_options(base, spn_cfg, negatives)
    spn['name'] = 'demo_spn'
    return spn


def _is_default(args, feature, weight):
    """Whether the run is exactly the demo the sweep measured (then its reference numbers apply)."""
    return (feature == 'pixel' and weight == DEMO_SPN['loss_weight'] and args.mode == DEMO_SPN['mode']
            and _negatives(args, feature) == DEMO_NEGATIVES and args.iters == DEMO_ITERS and not args.quick)


def _prepare_data(out, args, feature):
    val_freq = args.val_freq or (DEMO_VAL_FREQ if args.iters >= 10 * DEMO_VAL_FREQ else max(1, args.iters // 10))
    info, base = prepare(os.path.join(out, 'data'), args.iters, val_freq, quick=args.quick, name='demo_baseline',
                         gt_size=48 if feature == 'pixel' else VGG_GT_SIZE)
    t, (vh, vw) = info['tile'], info['val_size']
    print(f'dataset: {info["train"]} training tiles (HR {t}x{t}) from {info["photos"]} scikit-image photos; '
          f'validation: {", ".join(info["val"])} ({vh}x{vw} HR, held-out photos); x{SCALE} bicubic '
          '(MATLAB-style imresize)', flush=True)
    return base


def run(argv=None):
    """The demo; returns the comparison summary (or the option files with --data-only)."""
    args = build_parser().parse_args(argv)
    try:  # the photos, and the plots (not needed for --data-only): the demo extra
        require_demo_extra('skimage', *(() if args.data_only else ('matplotlib',)))
    except CompareError as e:
        raise SystemExit(f'mclir-demo: {e}') from None
    t0 = time.time()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    feature, weight, vgg_path, feature_note = choose_feature(args.feature, args.weight)
    print(f'mclir-demo: output folder {out}', flush=True)
    print(feature_note, flush=True)
    base = _prepare_data(out, args, feature)
    spn = _demo_spn(base, args, feature, weight, vgg_path)
    if args.data_only:
        paths = [save_options(os.path.join(out, 'options', f'{opt["name"]}.yml'), opt) for opt in (base, spn)]
        print('\n'.join(f'wrote {path}' for path in paths))
        return {'options': paths}
    net = base['network_g']
    print(f'network: EDSR x{SCALE}, {net["num_feat"]} features, {net["num_block"]} blocks; {args.iters} iterations, '
          f'batch {base["datasets"]["train"]["batch_size_per_gpu"]}, seed(s) {args.seeds}; '
          f'SPN: {spn_description(spn)}', flush=True)
    summary = compare(base, spn, out, seeds=args.seeds, jobs=args.jobs, threads=args.threads, prefix='demo',
                      title=f'MCLIR demo: EDSR x{SCALE}, L1 vs L1 + SPN ({feature})', verbose=args.verbose,
                      equal_time=args.equal_time)
    with open(summary['files']['table_md'], encoding='utf-8') as f:
        print('\n' + f.read())
    elapsed = time.time() - t0
    stats = summary['stats']
    print(f'This run: SPN took {stats["time_ratio"]:.2f}x the baseline\'s time per iteration.')
    if _is_default(args, feature, weight):
        print(SWEEP_REFERENCE)
    print(feature_note)
    load = f', load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs' if hasattr(os, 'getloadavg') else ''
    print(f'Demo finished in {elapsed / 60:.1f} min ({elapsed:.0f} s{load}). Files in {out}: table.csv, table.md, '
          'runs.csv, psnr_curve.png, crops.png, checkpoints/ (baseline_seed*.pth, spn_seed*.pth'
          + (', baseline_eqtime_seed*.pth' if args.equal_time else '') + '), summary.json')
    summary.update(demo_wall_s=elapsed, feature_note=feature_note)
    return summary

if __name__ == '__main__':
    sys.exit(main())
