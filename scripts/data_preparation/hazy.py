"""``prepare_data.py hazy``: synthesise a small paired dehazing set (no download) from the photos
scikit-image ships, the demo's photos (``mclir_basicsr.demo.TRAIN_PHOTOS`` for training tiles,
``VAL_PHOTOS`` held out for validation), with the atmospheric scattering model ``I = J * t + A * (1 - t)``,
``t = exp(-beta * d)``: per image a smooth random depth ``d`` in [0, 1] (a vertical gradient plus a few
Gaussian blobs), a random ``beta`` (``--beta``) and airlight ``A`` (``--airlight``, each channel tinted by up
to ``--tint``). Writes ``<out>/{train,val}/{gt,lq}/<name>.png`` (same names: PairedImageDataset with
``filename_tmpl: '{}'``) and ``<out>/params.csv`` (beta and A of every image). Byte-identical for a given
``--seed``: image ``i`` draws from ``numpy.random.default_rng([seed, i])``.
"""
import os
import shutil

import numpy as np

from data_preparation.common import PrepError, check_outputs, write_png

HAZY_BLOBS = 3  # Gaussian blobs added to the depth gradient


def depth_map(rng, h, w):
    """Smooth synthetic depth in [0, 1]: a gradient in a random direction plus a few random Gaussian blobs."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy / max(h - 1, 1), xx / max(w - 1, 1)
    angle = rng.uniform(0, 2 * np.pi)
    depth = np.cos(angle) * xx + np.sin(angle) * yy
    for _ in range(HAZY_BLOBS):
        cy, cx, sigma = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
        depth += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    depth -= depth.min()
    return depth / max(depth.max(), 1e-8)


def add_haze(img, rng, beta_range, air_range, tint):
    """Hazy version of a uint8 BGR image: I = J * t + A * (1 - t), t = exp(-beta * depth).
    Returns (hazy uint8 BGR, beta, airlight RGB)."""
    beta = rng.uniform(*beta_range)
    air_rgb = np.clip(rng.uniform(*air_range) + rng.uniform(-tint, tint, 3), 0, 1)
    t = np.exp(-beta * depth_map(rng, *img.shape[:2]))[..., None]
    hazy = img.astype(np.float64) / 255. * t + air_rgb[::-1] * (1 - t)
    return np.clip(np.round(hazy * 255.), 0, 255).astype(np.uint8), beta, air_rgb


def hazy_sources(tile, val_size):
    """[(split, name, clear uint8 BGR image)]: tiles of the demo's training photos, centre crops of its
    held-out validation photos, in a fixed order."""
    from mclir_basicsr.demo import TRAIN_PHOTOS, VAL_PHOTOS, _photo
    items = []
    for photo in TRAIN_PHOTOS:
        img = _photo(photo)
        for y in range(0, img.shape[0] - tile + 1, tile):
            for x in range(0, img.shape[1] - tile + 1, tile):
                items.append(('train', f'{photo}_{y:04d}_{x:04d}', img[y:y + tile, x:x + tile]))
    vh, vw = val_size
    for photo in VAL_PHOTOS:
        img = _photo(photo)
        if img.shape[0] < vh or img.shape[1] < vw:
            raise PrepError(f'--val-size {vh} {vw} is larger than the validation photo {photo} '
                            f'({img.shape[0]}x{img.shape[1]})')
        y, x = (img.shape[0] - vh) // 2, (img.shape[1] - vw) // 2
        items.append(('val', photo, img[y:y + vh, x:x + vw]))
    return items


def cmd_hazy(args):
    out = args.out
    folders = [os.path.join(out, split) for split in ('train', 'val')]
    check_outputs(folders + [os.path.join(out, 'params.csv')], args.overwrite)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)  # --overwrite: no stale images of other settings
    items = hazy_sources(args.tile, args.val_size)
    rows = ['split,name,beta,airlight_r,airlight_g,airlight_b']
    for i, (split, name, clear) in enumerate(items):
        hazy, beta, air = add_haze(clear, np.random.default_rng([args.seed, i]), args.beta, args.airlight, args.tint)
        write_png(clear, os.path.join(out, split, 'gt', f'{name}.png'))
        write_png(hazy, os.path.join(out, split, 'lq', f'{name}.png'))
        rows.append(f'{split},{name},{beta:.6f},' + ','.join(f'{a:.6f}' for a in air))
    with open(os.path.join(out, 'params.csv'), 'w') as f:
        f.write('\n'.join(rows) + '\n')
    n_train = sum(1 for split, _, _ in items if split == 'train')
    print(f'[hazy] wrote {n_train} training tiles ({args.tile}x{args.tile}) to {folders[0]} and '
          f'{len(items) - n_train} validation images ({args.val_size[0]}x{args.val_size[1]}) to {folders[1]}; '
          f'beta {args.beta[0]}-{args.beta[1]}, airlight {args.airlight[0]}-{args.airlight[1]} '
          f'(tint {args.tint}), seed {args.seed}', flush=True)


def check_args(parser, args):
    if not (0 <= args.beta[0] <= args.beta[1]):
        parser.error(f'--beta: expected 0 <= MIN <= MAX, got {args.beta[0]} {args.beta[1]}')
    if not (0 <= args.airlight[0] <= args.airlight[1] <= 1):
        parser.error(f'--airlight: expected 0 <= MIN <= MAX <= 1, got {args.airlight[0]} {args.airlight[1]}')
    if args.tint < 0 or args.tile < 1 or min(args.val_size) < 1:
        parser.error('--tint must be >= 0, --tile and --val-size >= 1')


def add_parser(sub):
    p = sub.add_parser('hazy', help='synthetic paired dehazing set from scikit-image photos (no download)',
                       description='Synthetic hazy/clear pairs from the photos scikit-image ships (the demo\'s '
                                   'training and held-out photos), I = J*t + A*(1-t), t = exp(-beta*depth): '
                                   'OUT/{train,val}/{gt,lq}/<name>.png and OUT/params.csv.')
    p.add_argument('--out', required=True, help='output root, e.g. datasets/hazy_skimage')
    p.add_argument('--seed', type=int, default=0, help='random seed (default: 0); same seed, same bytes')
    p.add_argument('--beta', type=float, nargs=2, default=[0.6, 1.8], metavar=('MIN', 'MAX'),
                   help='scattering coefficient range, one draw per image (default: 0.6 1.8, as RESIDE ITS)')
    p.add_argument('--airlight', type=float, nargs=2, default=[0.7, 1.0], metavar=('MIN', 'MAX'),
                   help='airlight range, one draw per image (default: 0.7 1.0, as RESIDE ITS)')
    p.add_argument('--tint', type=float, default=0.03,
                   help='each channel of the airlight moves by up to +-TINT (default: 0.03; 0 = grey)')
    p.add_argument('--tile', type=int, default=96, help='training tile size (default: 96)')
    p.add_argument('--val-size', type=int, nargs=2, default=[256, 384], metavar=('H', 'W'),
                   help='validation centre-crop size (default: 256 384)')
    p.add_argument('--overwrite', action='store_true', help='replace earlier outputs in OUT')
    p.set_defaults(func=cmd_hazy, check=check_args)
