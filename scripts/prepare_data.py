#!/usr/bin/env python
"""Data preparation for MCLIR super-resolution training and testing (BasicSR layouts).

Subcommands
-----------
``div2k``      From a DIV2K HR folder (``DIV2K_train_HR/0001.png`` ...) write, under ``--out``::

                   DIV2K_train_HR_sub/0001_s001.png ...            HR sub-images
                   DIV2K_train_LR_bicubic/X{s}/0001x{s}.png ...    full bicubic LR (as DIV2K ships it)
                   DIV2K_train_LR_bicubic/X{s}_sub/0001_s001.png   LR sub-images, same names as the HR ones
                   meta_info_DIV2K_sub.txt                          ``name.png (h,w,c)`` per HR sub-image
                   DIV2K_train_HR_sub.lmdb, DIV2K_train_LR_bicubic_X{s}_sub.lmdb   with ``--lmdb``

               Sub-images follow BasicSR's ``scripts/data_preparation/extract_subimages.py`` (crop 480,
               step 240, thresh 0; the crop positions of every image row/column are ``0, step, 2*step, ...``
               plus ``size - crop`` when more than ``thresh`` pixels would be left over). As in BasicSR, LR
               sub-images are cut from the full LR image with ``crop/s`` and ``step/s``, i.e. at the HR
               positions divided by ``s``, so every ``X{s}_sub`` image is the exact LR of its HR sub-image.
               That needs ``crop`` and ``step`` divisible by each scale and an HR size divisible by each
               scale: an HR image that is not (DIV2K's are) is first mod-cropped to the least common
               multiple of the scales (bottom/right), and a note is printed.
``benchmark``  From the HR images of a test set (Set5, Set14, B100, Urban100, Manga109) write, under
               ``--out`` (default ``datasets``), ``<Name>/GTmod{s}/<stem>.png`` (HR mod-cropped to a multiple
               of ``s``) and ``<Name>/LRbicx{s}/<stem>.png`` (its MATLAB-bicubic LR) for each scale.

``hazy``       Synthesise a small paired dehazing set (no download) from the photos scikit-image ships, the
               demo's photos (``mclir_basicsr.demo.TRAIN_PHOTOS`` for training tiles, ``VAL_PHOTOS`` held out for
               validation), with the atmospheric scattering model ``I = J * t + A * (1 - t)``, ``t = exp(-beta * d)``:
               per image a smooth random depth ``d`` in [0, 1] (a vertical gradient plus a few Gaussian blobs), a
               random ``beta`` (``--beta``) and airlight ``A`` (``--airlight``, each channel tinted by up to
               ``--tint``). Writes ``<out>/{train,val}/{gt,lq}/<name>.png`` (same names: PairedImageDataset with
               ``filename_tmpl: '{}'``) and ``<out>/params.csv`` (beta and A of every image). Byte-identical for a
               given ``--seed``: image ``i`` draws from ``numpy.random.default_rng([seed, i])``.
``reside``     Turn a RESIDE folder into the paired layout: ITS (``<root>/hazy/<id>_<k>_<beta>.png`` and
               ``<root>/clear/<id>.png``), SOTS indoor/outdoor (``<root>/hazy/<id>_<k>.png`` and ``<root>/gt/<id>.png``
               or ``clear/``) -> ``<out>/lq/<hazy stem>.png`` and ``<out>/gt/<hazy stem>.png``. PNG inputs are
               symlinked; a clear image larger than its hazy one (SOTS indoor: 640x480 vs 620x460) is written
               center-cropped to the hazy size, as FFA-Net's loader crops it; a JPEG input is written as PNG.

LR images are made as BasicSR's ``scripts/data_preparation/generate_bicubic_img.py`` does: the image read
with ``cv2.imread`` (BGR, 3 channels), scaled to float32 ``[0, 1]``, resized with the MATLAB-compatible
``basicsr.utils.matlab_functions.imresize(img, 1 / s)`` (antialiasing on), then ``clip(round(x * 255))`` to
uint8. Images are read in colour (a grey or RGBA input becomes 3-channel BGR, as BasicSR's data loaders see
it); every output is PNG.

Errors (missing or empty input folder, unreadable image, existing outputs) are reported in one line on
stderr and exit with status 2.
"""
import argparse
import math
import os
import shutil
import sys
from functools import partial
from multiprocessing import Pool

import cv2
import numpy as np

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
HR_SUB = 'DIV2K_train_HR_sub'
LR_ROOT = 'DIV2K_train_LR_bicubic'
META_INFO = 'meta_info_DIV2K_sub.txt'


class PrepError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------- helpers
def list_images(folder, what='input'):
    """Sorted image file names (not paths) in `folder`; PrepError if it is missing or holds no image."""
    if not os.path.isdir(folder):
        raise PrepError(f'{what} folder not found: {folder}')
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMG_EXTS) and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise PrepError(f'{what} folder holds no image ({"/".join(IMG_EXTS)}): {folder}')
    stems = {}
    for n in names:
        if not cv2.haveImageReader(os.path.join(folder, n)):  # header check only: fail before any work
            raise PrepError(f'cannot read image (missing, corrupt or unsupported format): {os.path.join(folder, n)}')
        stem = os.path.splitext(n)[0]
        if stem in stems:
            raise PrepError(f'two images share the name {stem!r} in {folder}: {stems[stem]}, {n}')
        stems[stem] = n
    return names


def load_basicsr():
    """Import BasicSR (slow: it pulls in torch) once the cheap input checks have passed."""
    try:
        import mclir_basicsr  # noqa: F401  (makes basicsr 1.4.2 importable on recent torchvision)
    except ImportError:
        pass
    import basicsr.utils.matlab_functions  # noqa: F401


def read_image(path):
    """uint8 BGR image; PrepError naming the file when OpenCV cannot decode it."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise PrepError(f'cannot read image (missing, corrupt or unsupported format): {path}')
    return img


def write_png(img, path, compression=3):
    """A PNG as BasicSR's ``imwrite`` writes it (the folder made, then ``cv2.imwrite``), without importing
    basicsr (torch) for it; PrepError naming the file when it cannot be written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        ok = cv2.imwrite(path, np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    except cv2.error as e:
        raise PrepError(f'cannot write image {path}: {e}') from None
    if not ok:
        raise PrepError(f'cannot write image {path}')


def bicubic_down(img, scale):
    """MATLAB-bicubic LR of a uint8 image (size must be divisible by `scale`), as BasicSR makes it."""
    import torch
    from basicsr.utils.matlab_functions import imresize
    torch.set_num_threads(1)  # the work is many tiny matrix-vector products; processes give the parallelism
    out = imresize(img.astype(np.float32) / 255., 1 / scale)
    return np.clip((out * 255.).round(), 0, 255).astype(np.uint8)


def crop_positions(size, crop, step, thresh):
    """Top/left corners along one axis, as BasicSR's extract_subimages.py (empty if size < crop)."""
    if size < crop:
        return []
    pos = list(range(0, size - crop + 1, step))
    if size - (pos[-1] + crop) > thresh:
        pos.append(size - crop)
    return pos


def check_outputs(paths, overwrite):
    """Refuse to mix with earlier outputs unless --overwrite (then .lmdb folders are removed)."""
    for p in paths:
        if os.path.exists(p) and (not os.path.isdir(p) or os.listdir(p)):
            if not overwrite:
                raise PrepError(f'output already exists: {p} (remove it or pass --overwrite)')
            if p.endswith('.lmdb'):
                shutil.rmtree(p)


def run_pool(func, items, workers):
    """Yield func(item) for each item (in order), in `workers` processes (inline when workers <= 1)."""
    if workers <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    with Pool(min(workers, len(items))) as pool:
        yield from pool.imap(func, items)


# ------------------------------------------------------------------------------------------------- div2k
def div2k_worker(name, opt):
    """Process one HR image; return (list of (sub name, shape)), note or None)."""
    stem = os.path.splitext(name)[0]
    img = read_image(os.path.join(opt['hr'], name))
    h0, w0 = img.shape[:2]
    mod = opt['mod']
    img = img[:h0 - h0 % mod, :w0 - w0 % mod]
    h, w = img.shape[:2]
    note = f'{name}: {h0}x{w0} not divisible by {mod}, mod-cropped to {h}x{w}' if (h, w) != (h0, w0) else None
    crop, comp = opt['crop_size'], opt['compression']
    corners = [(y, x) for y in crop_positions(h, crop, opt['step'], opt['thresh_size'])
               for x in crop_positions(w, crop, opt['step'], opt['thresh_size'])]
    if not corners:
        return [], f'{name}: {h}x{w} is smaller than the crop size {crop}, skipped'
    subs = []
    for i, (y, x) in enumerate(corners, 1):
        sub = np.ascontiguousarray(img[y:y + crop, x:x + crop])
        sub_name = f'{stem}_s{i:03d}.png'
        write_png(sub, os.path.join(opt['out'], HR_SUB, sub_name), comp)
        subs.append((sub_name, sub.shape))
    for s in opt['scales']:
        if opt['lr_dir']:
            lr_path = os.path.join(opt['lr_dir'], f'X{s}', f'{stem}x{s}.png')
            lr = read_image(lr_path)
            # the LR of the HR as is (mod-cropped to s, e.g. DIV2K's own), or of the HR mod-cropped as here
            if lr.shape[:2] not in ((h0 // s, w0 // s), (h // s, w // s)):
                raise PrepError(f'LR image {lr_path} is {lr.shape[0]}x{lr.shape[1]}, expected '
                                f'{h // s}x{w // s} (HR {h}x{w} / {s})')
            lr = lr[:h // s, :w // s]
        else:
            lr = bicubic_down(img, s)
            write_png(lr, os.path.join(opt['out'], LR_ROOT, f'X{s}', f'{stem}x{s}.png'), comp)
        c = crop // s
        for i, (y, x) in enumerate(corners, 1):
            sub = np.ascontiguousarray(lr[y // s:y // s + c, x // s:x // s + c])
            write_png(sub, os.path.join(opt['out'], LR_ROOT, f'X{s}_sub', f'{stem}_s{i:03d}.png'), comp)
    return subs, note


def cmd_div2k(args):
    names = list_images(args.hr, 'HR')
    scales = sorted(set(args.scales))
    for s in scales:
        if args.crop_size % s or args.step % s:
            raise PrepError(f'--crop-size {args.crop_size} and --step {args.step} must be divisible by scale {s}')
    out = args.out
    lr_sub_dirs = [os.path.join(out, LR_ROOT, f'X{s}_sub') for s in scales]
    lmdb_paths = [os.path.join(out, f'{HR_SUB}.lmdb')] + [os.path.join(out, f'{LR_ROOT}_X{s}_sub.lmdb') for s in scales]
    lr_full_dirs = [] if args.lr_dir else [os.path.join(out, LR_ROOT, f'X{s}') for s in scales]
    check_outputs([os.path.join(out, HR_SUB)] + lr_full_dirs + lr_sub_dirs + (lmdb_paths if args.lmdb else []),
                  args.overwrite)
    if args.lr_dir and not os.path.isdir(args.lr_dir):
        raise PrepError(f'LR folder not found: {args.lr_dir}')
    load_basicsr()

    opt = {'hr': args.hr, 'out': out, 'scales': scales, 'mod': math.lcm(*scales), 'crop_size': args.crop_size,
           'step': args.step, 'thresh_size': args.thresh_size, 'compression': args.compression_level,
           'lr_dir': args.lr_dir}
    print(f'[div2k] {len(names)} HR images in {args.hr}; crop {args.crop_size}, step {args.step}, '
          f'thresh {args.thresh_size}; scales {scales}; {args.workers} worker(s)', flush=True)
    meta = []
    for i, (name, (subs, note)) in enumerate(zip(names, run_pool(partial(div2k_worker, opt=opt), names,
                                                                 args.workers)), 1):
        meta.extend(subs)
        print(f'[div2k] {i}/{len(names)} {name}: {len(subs)} sub-images (total {len(meta)})', flush=True)
        if note:
            print(f'[div2k] note: {note}', flush=True)
    if not meta:
        raise PrepError(f'no sub-image produced: every HR image is smaller than --crop-size {args.crop_size}')

    meta.sort()
    meta_path = os.path.join(out, META_INFO)
    with open(meta_path, 'w') as f:
        f.writelines(f'{n} ({",".join(map(str, shape))})\n' for n, shape in meta)
    print(f'[div2k] wrote {len(meta)} HR sub-images to {os.path.join(out, HR_SUB)}', flush=True)
    for s, d in zip(scales, lr_sub_dirs):
        print(f'[div2k] wrote {len(meta)} X{s} LR sub-images to {d}', flush=True)
    print(f'[div2k] meta info: {meta_path}', flush=True)

    if args.lmdb:
        from basicsr.utils.lmdb_util import make_lmdb_from_imgs
        files = [n for n, _ in meta]
        keys = [os.path.splitext(n)[0] for n in files]
        for folder, lmdb_path in zip([os.path.join(out, HR_SUB)] + lr_sub_dirs, lmdb_paths):
            make_lmdb_from_imgs(folder, lmdb_path, files, keys)  # reads one image at a time, as BasicSR
            print(f'[div2k] lmdb: {lmdb_path} ({len(keys)} keys)', flush=True)


# --------------------------------------------------------------------------------------------- benchmark
def benchmark_worker(name, opt):
    """Write GTmod{s} and LRbicx{s} of one HR image; return a list of (scale, GT shape, LR shape)."""
    from basicsr.data.transforms import mod_crop
    img = read_image(os.path.join(opt['hr'], name))
    png = os.path.splitext(name)[0] + '.png'
    done = []
    for s in opt['scales']:
        gt = mod_crop(img, s)
        if gt.shape[0] < s or gt.shape[1] < s:
            raise PrepError(f'image {os.path.join(opt["hr"], name)} is smaller than the scale {s}')
        lr = bicubic_down(gt, s)
        write_png(gt, os.path.join(opt['root'], f'GTmod{s}', png), opt['compression'])
        write_png(lr, os.path.join(opt['root'], f'LRbicx{s}', png), opt['compression'])
        done.append((s, gt.shape[:2], lr.shape[:2]))
    return done


def cmd_benchmark(args):
    names = list_images(args.hr, 'HR')
    scales = sorted(set(args.scales))
    root = os.path.join(args.out, args.name)
    check_outputs([os.path.join(root, f'{k}{s}') for s in scales for k in ('GTmod', 'LRbicx')], args.overwrite)
    load_basicsr()
    opt = {'hr': args.hr, 'root': root, 'scales': scales, 'compression': args.compression_level}
    print(f'[benchmark] {args.name}: {len(names)} HR images in {args.hr}; scales {scales}; '
          f'{args.workers} worker(s)', flush=True)
    for i, (name, done) in enumerate(zip(names, run_pool(partial(benchmark_worker, opt=opt), names,
                                                          args.workers)), 1):
        sizes = ', '.join(f'x{s} GT {g[0]}x{g[1]} LR {lr[0]}x{lr[1]}' for s, g, lr in done)
        print(f'[benchmark] {i}/{len(names)} {name}: {sizes}', flush=True)
    for s in scales:
        print(f'[benchmark] wrote {len(names)} images to {os.path.join(root, f"GTmod{s}")} and '
              f'{os.path.join(root, f"LRbicx{s}")}', flush=True)


# -------------------------------------------------------------------------------------------------- hazy
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


def add_hazy_parser(sub):
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
    p.set_defaults(func=cmd_hazy)


def check_hazy_args(parser, args):
    if not (0 <= args.beta[0] <= args.beta[1]):
        parser.error(f'--beta: expected 0 <= MIN <= MAX, got {args.beta[0]} {args.beta[1]}')
    if not (0 <= args.airlight[0] <= args.airlight[1] <= 1):
        parser.error(f'--airlight: expected 0 <= MIN <= MAX <= 1, got {args.airlight[0]} {args.airlight[1]}')
    if args.tint < 0 or args.tile < 1 or min(args.val_size) < 1:
        parser.error('--tint must be >= 0, --tile and --val-size >= 1')


# ------------------------------------------------------------------------------------------------ reside
CLEAR_DIRS = ('clear', 'gt')


def clear_folder(root, clear):
    """The folder of clear images: --clear, else <root>/clear or <root>/gt (the first that exists)."""
    if clear:
        if not os.path.isdir(clear):
            raise PrepError(f'clear folder not found: {clear}')
        return clear
    for name in CLEAR_DIRS:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    raise PrepError(f'no clear-image folder in {root}: expected {" or ".join(CLEAR_DIRS)}/ (or pass --clear)')


def reside_pairs(hazy_dir, clear_dir):
    """[(hazy path, clear path, hazy stem)]: hazy <id>_<k>[_<beta>].ext pairs with clear <id>.ext."""
    clear = {os.path.splitext(n)[0]: n for n in list_images(clear_dir, 'clear')}
    pairs = []
    for name in list_images(hazy_dir, 'hazy'):
        stem = os.path.splitext(name)[0]
        clear_id = stem.split('_')[0]
        if clear_id not in clear:
            raise PrepError(f'no clear image for hazy image {os.path.join(hazy_dir, name)}: expected '
                            f'{os.path.join(clear_dir, clear_id)}.png (or another image extension)')
        pairs.append((os.path.join(hazy_dir, name), os.path.join(clear_dir, clear[clear_id]), stem))
    return pairs


def image_size(path):
    """(width, height) from the file header."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return img.size
    except OSError as e:
        raise PrepError(f'cannot read image (missing, corrupt or unsupported format): {path} ({e})') from None


def center_crop(img, h, w):
    """torchvision's CenterCrop (FFA-Net's loader): top = round((H - h) / 2), left = round((W - w) / 2)."""
    top, left = int(round((img.shape[0] - h) / 2.)), int(round((img.shape[1] - w) / 2.))
    return img[top:top + h, left:left + w]


def link_or_png(src, dst, size=None):
    """Symlink a PNG as is; otherwise (another format, or a `size` to center-crop to) write a PNG."""
    if size is None and src.lower().endswith('.png'):
        os.symlink(os.path.abspath(src), dst)
        return 'linked'
    img = read_image(src)
    if size is not None:
        img = center_crop(img, size[1], size[0])
    write_png(img, dst)
    return 'cropped' if size is not None else 'converted'


def reside_pair(hazy, clear, stem, out):
    """Write one pair; return the (lq, gt) actions: linked, cropped or converted."""
    hazy_size, clear_size = image_size(hazy), image_size(clear)
    if clear_size[0] < hazy_size[0] or clear_size[1] < hazy_size[1]:
        raise PrepError(f'clear image {clear} ({clear_size[0]}x{clear_size[1]}) is smaller than hazy image '
                        f'{hazy} ({hazy_size[0]}x{hazy_size[1]})')
    lq = link_or_png(hazy, os.path.join(out, 'lq', f'{stem}.png'))
    gt = link_or_png(clear, os.path.join(out, 'gt', f'{stem}.png'), None if clear_size == hazy_size else hazy_size)
    return lq, gt


def cmd_reside(args):
    hazy_dir = args.hazy or os.path.join(args.root, 'hazy')
    pairs = reside_pairs(hazy_dir, clear_folder(args.root, args.clear))
    folders = [os.path.join(args.out, 'gt'), os.path.join(args.out, 'lq')]
    check_outputs(folders, args.overwrite)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    counts = {}
    for i, (hazy, clear, stem) in enumerate(pairs, 1):
        for kind, action in zip(('lq', 'gt'), reside_pair(hazy, clear, stem, args.out)):
            counts[(kind, action)] = counts.get((kind, action), 0) + 1
        if i % 1000 == 0:
            print(f'[reside] {i}/{len(pairs)}', flush=True)
    done = ', '.join(f'{kind} {action} {n}' for (kind, action), n in sorted(counts.items()))
    n_clear = len({clear for _, clear, _ in pairs})
    print(f'[reside] {len(pairs)} pairs ({n_clear} clear images) from {hazy_dir} -> {folders[0]}, {folders[1]} '
          f'({done})', flush=True)


def add_reside_parser(sub):
    p = sub.add_parser('reside', help='RESIDE (ITS / SOTS) -> paired OUT/{gt,lq}/<hazy stem>.png',
                       description='RESIDE ITS (ROOT/hazy/<id>_<k>_<beta>.png, ROOT/clear/<id>.png) or SOTS '
                                   '(ROOT/hazy/<id>_<k>.png, ROOT/gt/<id>.png) -> OUT/lq/<hazy stem>.png and '
                                   'OUT/gt/<hazy stem>.png: PNGs symlinked, a larger clear image written '
                                   'center-cropped to the hazy size (as FFA-Net), other formats written as PNG.')
    p.add_argument('--root', required=True, help='RESIDE folder holding hazy/ and clear/ (or gt/)')
    p.add_argument('--out', required=True, help='output root, e.g. datasets/RESIDE/ITS_paired')
    p.add_argument('--hazy', default=None, help='hazy folder (default: ROOT/hazy)')
    p.add_argument('--clear', default=None, help='clear folder (default: ROOT/clear, else ROOT/gt)')
    p.add_argument('--overwrite', action='store_true', help='replace earlier OUT/gt and OUT/lq')
    p.set_defaults(func=cmd_reside)


# ------------------------------------------------------------------------------------------------ main
def build_parser():
    parser = argparse.ArgumentParser(
        prog='prepare_data.py', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Prepare DIV2K training sub-images (+ bicubic LR, meta info, LMDB), SR benchmark test sets, '
                    'a synthetic hazy set and RESIDE dehazing pairs in the layouts BasicSR option files use.',
        epilog='examples:\n'
               '  python scripts/prepare_data.py div2k --hr datasets/DIV2K/DIV2K_train_HR --out datasets/DIV2K '
               '--scales 2 3 4 --lmdb\n'
               '  python scripts/prepare_data.py benchmark --name Set5 --hr path/to/Set5/HR --scales 2 3 4 '
               '--out datasets\n'
               '  python scripts/prepare_data.py hazy --out datasets/hazy_skimage --seed 0\n'
               '  python scripts/prepare_data.py reside --root datasets/RESIDE/ITS --out datasets/RESIDE/ITS_paired')
    sub = parser.add_subparsers(dest='command', required=True, metavar='{div2k,benchmark,hazy,reside}')

    def common(p):
        p.add_argument('--hr', required=True, help='folder of HR images (png/jpg/bmp/tif ...)')
        p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4], help='SR scales (default: 2 3 4)')
        p.add_argument('--workers', type=int, default=2, help='worker processes (default: 2; 1 = no pool)')
        p.add_argument('--compression-level', type=int, default=3, choices=range(10), metavar='0-9',
                       help='PNG compression level (default: 3, as BasicSR)')
        p.add_argument('--overwrite', action='store_true',
                       help='write into non-empty output folders (existing .lmdb outputs are removed)')

    p = sub.add_parser('div2k', formatter_class=argparse.RawDescriptionHelpFormatter,
                       help='DIV2K HR -> HR/LR sub-images, meta info, optional LMDB',
                       description='DIV2K HR -> HR sub-images, bicubic LR (full and sub-images), meta-info file '
                                   'and optional LMDB, in the layout of BasicSR\'s DIV2K scripts:\n'
                                   f'  OUT/{HR_SUB}/, OUT/{LR_ROOT}/X{{s}}/, OUT/{LR_ROOT}/X{{s}}_sub/, '
                                   f'OUT/{META_INFO}, OUT/*.lmdb')
    common(p)
    p.add_argument('--out', required=True, help='output root, e.g. datasets/DIV2K')
    p.add_argument('--crop-size', type=int, default=480, help='HR sub-image size (default: 480)')
    p.add_argument('--step', type=int, default=240, help='HR sliding-window step (default: 240)')
    p.add_argument('--thresh-size', type=int, default=0,
                   help='add a last crop flush with the border when more than this many pixels are left '
                        '(default: 0)')
    p.add_argument('--lr-dir', default=None,
                   help='use existing bicubic LR (DIV2K_train_LR_bicubic with X{s}/{stem}x{s}.png) instead of '
                        'generating it')
    p.add_argument('--lmdb', action='store_true',
                   help=f'also write {HR_SUB}.lmdb and {LR_ROOT}_X{{s}}_sub.lmdb (keys = file stems)')
    p.set_defaults(func=cmd_div2k)

    p = sub.add_parser('benchmark', help='test-set HR -> <Name>/GTmod{s} and <Name>/LRbicx{s}',
                       description='Test-set HR images -> OUT/<Name>/GTmod{s}/<stem>.png (HR mod-cropped to a '
                                   'multiple of s) and OUT/<Name>/LRbicx{s}/<stem>.png (MATLAB-bicubic LR).')
    common(p)
    p.add_argument('--name', required=True, help='test set name: Set5, Set14, B100, Urban100, Manga109 ...')
    p.add_argument('--out', default='datasets', help='output root (default: datasets)')
    p.set_defaults(func=cmd_benchmark)
    add_hazy_parser(sub)
    add_reside_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(s < 1 for s in getattr(args, 'scales', ())):
        parser.error('--scales must be positive integers')
    if args.command == 'hazy':
        check_hazy_args(parser, args)
    if args.command == 'div2k' and (args.crop_size < 1 or args.step < 1 or args.thresh_size < 0):
        parser.error('--crop-size and --step must be >= 1, --thresh-size >= 0')
    try:
        args.func(args)
    except PrepError as e:
        print(f'prepare_data.py: error: {e}', file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
