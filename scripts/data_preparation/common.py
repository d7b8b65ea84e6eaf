"""What the datasets' preparation shares: image listing and reading, the PNG writer, MATLAB-bicubic
downscaling (as BasicSR makes LR images), the output check, the worker pool, the one-line error, and the
command-line options of the two super-resolution sets (div2k, benchmark)."""
import os
import shutil
from multiprocessing import Pool

import cv2
import numpy as np

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


class PrepError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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


def add_sr_arguments(p):
    """The options div2k and benchmark share: HR folder, scales, workers, PNG compression, --overwrite."""
    p.add_argument('--hr', required=True, help='folder of HR images (png/jpg/bmp/tif ...)')
    p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4], help='SR scales (default: 2 3 4)')
    p.add_argument('--workers', type=int, default=2, help='worker processes (default: 2; 1 = no pool)')
    p.add_argument('--compression-level', type=int, default=3, choices=range(10), metavar='0-9',
                   help='PNG compression level (default: 3, as BasicSR)')
    p.add_argument('--overwrite', action='store_true',
                   help='write into non-empty output folders (existing .lmdb outputs are removed)')


def check_scales(parser, args):
    if any(s < 1 for s in args.scales):
        parser.error('--scales must be positive integers')
