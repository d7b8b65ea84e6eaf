"""``prepare_data.py div2k``: from a DIV2K HR folder (``DIV2K_train_HR/0001.png`` ...) write, under ``--out``::

    DIV2K_train_HR_sub/0001_s001.png ...            HR sub-images
    DIV2K_train_LR_bicubic/X{s}/0001x{s}.png ...    full bicubic LR (as DIV2K ships it)
    DIV2K_train_LR_bicubic/X{s}_sub/0001_s001.png   LR sub-images, same names as the HR ones
    meta_info_DIV2K_sub.txt                          ``name.png (h,w,c)`` per HR sub-image
    DIV2K_train_HR_sub.lmdb, DIV2K_train_LR_bicubic_X{s}_sub.lmdb   with ``--lmdb``

Sub-images follow BasicSR's ``scripts/data_preparation/extract_subimages.py`` (crop 480, step 240, thresh 0;
the crop positions of every image row/column are ``0, step, 2*step, ...`` plus ``size - crop`` when more
than ``thresh`` pixels would be left over). As in BasicSR, LR sub-images are cut from the full LR image with
``crop/s`` and ``step/s``, i.e. at the HR positions divided by ``s``, so every ``X{s}_sub`` image is the
exact LR of its HR sub-image. That needs ``crop`` and ``step`` divisible by each scale and an HR size
divisible by each scale: an HR image that is not (DIV2K's are) is first mod-cropped to the least common
multiple of the scales (bottom/right), and a note is printed.
"""
import argparse
import math
import os
from functools import partial

import numpy as np

from data_preparation.common import (
    PrepError,
    add_sr_arguments,
    bicubic_down,
    check_outputs,
    check_scales,
    list_images,
    load_basicsr,
    read_image,
    run_pool,
    write_png,
)

HR_SUB = 'DIV2K_train_HR_sub'
LR_ROOT = 'DIV2K_train_LR_bicubic'
META_INFO = 'meta_info_DIV2K_sub.txt'


def crop_positions(size, crop, step, thresh):
    """Top/left corners along one axis, as BasicSR's extract_subimages.py (empty if size < crop)."""
    if size < crop:
        return []
    pos = list(range(0, size - crop + 1, step))
    if size - (pos[-1] + crop) > thresh:
        pos.append(size - crop)
    return pos


def _lr_image(img, stem, s, h0, w0, opt):
    """The full LR image at scale `s` of the (mod-cropped) HR `img`: read from --lr-dir, or made and written."""
    h, w = img.shape[:2]
    if not opt['lr_dir']:
        lr = bicubic_down(img, s)
        write_png(lr, os.path.join(opt['out'], LR_ROOT, f'X{s}', f'{stem}x{s}.png'), opt['compression'])
        return lr
    lr_path = os.path.join(opt['lr_dir'], f'X{s}', f'{stem}x{s}.png')
    lr = read_image(lr_path)
    # the LR of the HR as is (mod-cropped to s, e.g. DIV2K's own), or of the HR mod-cropped as here
    if lr.shape[:2] not in ((h0 // s, w0 // s), (h // s, w // s)):
        raise PrepError(f'LR image {lr_path} is {lr.shape[0]}x{lr.shape[1]}, expected '
                        f'{h // s}x{w // s} (HR {h}x{w} / {s})')
    return lr[:h // s, :w // s]


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
        lr = _lr_image(img, stem, s, h0, w0, opt)
        c = crop // s
        for i, (y, x) in enumerate(corners, 1):
            sub = np.ascontiguousarray(lr[y // s:y // s + c, x // s:x // s + c])
            write_png(sub, os.path.join(opt['out'], LR_ROOT, f'X{s}_sub', f'{stem}_s{i:03d}.png'), comp)
    return subs, note


def _write_lmdb(out, meta, lr_sub_dirs, lmdb_paths):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    files = [n for n, _ in meta]
    keys = [os.path.splitext(n)[0] for n in files]
    for folder, lmdb_path in zip([os.path.join(out, HR_SUB)] + lr_sub_dirs, lmdb_paths):
        make_lmdb_from_imgs(folder, lmdb_path, files, keys)  # reads one image at a time, as BasicSR
        print(f'[div2k] lmdb: {lmdb_path} ({len(keys)} keys)', flush=True)


def _sub_images(args, names, scales):
    """[(sub name, shape)] of every HR sub-image, the images processed in --workers processes."""
    opt = {'hr': args.hr, 'out': args.out, 'scales': scales, 'mod': math.lcm(*scales), 'crop_size': args.crop_size,
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
    return sorted(meta)


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
    meta = _sub_images(args, names, scales)
    meta_path = os.path.join(out, META_INFO)
    with open(meta_path, 'w') as f:
        f.writelines(f'{n} ({",".join(map(str, shape))})\n' for n, shape in meta)
    print(f'[div2k] wrote {len(meta)} HR sub-images to {os.path.join(out, HR_SUB)}', flush=True)
    for s, d in zip(scales, lr_sub_dirs):
        print(f'[div2k] wrote {len(meta)} X{s} LR sub-images to {d}', flush=True)
    print(f'[div2k] meta info: {meta_path}', flush=True)
    if args.lmdb:
        _write_lmdb(out, meta, lr_sub_dirs, lmdb_paths)


def check_args(parser, args):
    check_scales(parser, args)
    if args.crop_size < 1 or args.step < 1 or args.thresh_size < 0:
        parser.error('--crop-size and --step must be >= 1, --thresh-size >= 0')


def add_parser(sub):
    p = sub.add_parser('div2k', formatter_class=argparse.RawDescriptionHelpFormatter,
                       help='DIV2K HR -> HR/LR sub-images, meta info, optional LMDB',
                       description='DIV2K HR -> HR sub-images, bicubic LR (full and sub-images), meta-info file '
                                   'and optional LMDB, in the layout of BasicSR\'s DIV2K scripts:\n'
                                   f'  OUT/{HR_SUB}/, OUT/{LR_ROOT}/X{{s}}/, OUT/{LR_ROOT}/X{{s}}_sub/, '
                                   f'OUT/{META_INFO}, OUT/*.lmdb')
    add_sr_arguments(p)
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
    p.set_defaults(func=cmd_div2k, check=check_args)
