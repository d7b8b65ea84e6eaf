"""``prepare_data.py reside``: turn a RESIDE folder into the paired layout: ITS
(``<root>/hazy/<id>_<k>_<beta>.png`` and ``<root>/clear/<id>.png``), SOTS indoor/outdoor
(``<root>/hazy/<id>_<k>.png`` and ``<root>/gt/<id>.png`` or ``clear/``) -> ``<out>/lq/<hazy stem>.png`` and
``<out>/gt/<hazy stem>.png``. PNG inputs are symlinked; a clear image larger than its hazy one (SOTS indoor:
640x480 vs 620x460) is written center-cropped to the hazy size, as FFA-Net's loader crops it; a JPEG input is
written as PNG.
"""
import os
import shutil

from data_preparation.common import PrepError, check_outputs, list_images, read_image, write_png

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


def add_parser(sub):
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
