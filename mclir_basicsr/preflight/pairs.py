"""Checks that the GT and LQ images of a paired dataset match, before anything is written.

:func:`check_pairs` looks at every dataset that BasicSR pairs by file name (``PairedImageDataset``,
``RealESRGANPairedDataset`` and their subclasses that keep the pairing) on the disk backend. It lists both
folders as ``paired_paths_from_folder`` does (BasicSR's ``scandir``: the files directly in the folder, hidden
ones left out; each GT file ``<name><ext>`` is paired with the LQ file ``filename_tmpl.format(<name>)<ext>``),
or reads the names of ``meta_info_file``, and reports, as one-line :class:`PreflightError` messages that start
with the option path:

* folders that do not pair one to one: both counts, the first names missing on either side, and the
  ``filename_tmpl`` that would pair them when one does;
* the first pair (by GT name), when its sizes are not ``scale`` apart: both sizes and the scale (exact in
  training, where BasicSR's ``paired_random_crop`` needs it; outside training ``PairedImageDataset`` crops the
  GT to ``scale`` times the LQ, so a GT up to ``scale - 1`` pixels larger is accepted there);
* in training, a ``batch_size_per_gpu`` larger than each process's share of the pairs (times
  ``dataset_enlarge_ratio``): BasicSR's training loader drops the incomplete batch, so not one iteration would
  run, and the run would end at once with exit code 0 and an untrained network saved as its result;
* in training, a ``gt_size`` larger than the smallest GT image of a deterministic sample of at most
  :data:`SAMPLE` files spread over the set (the first included): the file, its size and ``gt_size``.

The sizes are checked only for classes that load samples as BasicSR's do (a subclass with its own
``__getitem__`` may resize). LMDB sets are not checked (their keys live in the database), nor
``RealESRGANPairedDataset``'s ``meta_info``.

Cost: the listing of both folders and the image headers (PIL reads a file's header, not its pixels) of the
first pair and of at most :data:`SAMPLE` GT files, whatever the size of the set. Measured with
``python scripts/dev/bench_preflight.py [--copies]`` (800 GT PNGs of 2040x1404 and their 800 x4 LQ PNGs: a
DIV2K-sized training folder) on a 2-core AMD EPYC VM shared with other jobs (load average 1.6-3.2):
check_pairs 18 ms with hard links of one pair, 10 ms with 800 real copies (median of 20 and 10 runs; the files
in the page cache); BasicSR's own ``paired_paths_from_folder`` of the same folders, which ``PairedImageDataset``
runs anyway, 21 ms and 12 ms. From a cold disk cache the header reads add about 34 random reads.
"""
import math
import os

from mclir_basicsr.preflight import PreflightError, registry
from mclir_basicsr.validate import is_number

SAMPLE = 32  # at most this many GT files have their size read for the gt_size check
SHOWN = 3  # names listed in a message


def _first(names):
    names = list(names)
    more = f' and {len(names) - SHOWN} more' if len(names) > SHOWN else ''
    return ', '.join(names[:SHOWN]) + more


def lq_name(gt_name, template):
    """The LQ file BasicSR pairs with GT file ``gt_name`` (``paired_paths_from_folder``)."""
    base, ext = os.path.splitext(os.path.basename(gt_name))
    return f'{template.format(base)}{ext}'


def listing(folder):
    """The file names BasicSR's ``paired_paths_from_folder`` sees in ``folder``."""
    from basicsr.utils import scandir
    return list(scandir(folder))


# --------------------------------------------------------------------------- names
def suggest_template(gt_names, lq_names):
    """A ``filename_tmpl`` that pairs every GT file with an LQ file, found from the first GT name; or None."""
    if not gt_names or not lq_names:
        return None
    base, ext = os.path.splitext(gt_names[0])
    stems = sorted(os.path.splitext(n)[0] for n in lq_names if n.endswith(ext) and base in n)
    lq_set = set(lq_names)
    for stem in stems:
        if '{' in stem or '}' in stem:
            continue
        template = stem.replace(base, '{}', 1)
        if all(lq_name(g, template) in lq_set for g in gt_names):
            return template
    return None


def _pairing_problem(prefix, gt_names, lq_names, template):
    """The message for GT and LQ folders that do not pair one to one, or None."""
    expected = {g: lq_name(g, template) for g in gt_names}
    lq_set = set(lq_names)
    missing = [g for g in gt_names if expected[g] not in lq_set]
    if not missing and len(gt_names) == len(lq_names):
        return None
    unmatched = sorted(lq_set - set(expected.values()))
    if len(gt_names) != len(lq_names):
        head = f'{prefix}.dataroot_lq: {len(lq_names)} files, but dataroot_gt has {len(gt_names)}'
    else:
        head = (f'{prefix}.dataroot_lq: {len(missing)} of the {len(gt_names)} GT files have no LQ file of the name '
                f'filename_tmpl {template!r} gives')
    parts = [head]
    if missing:
        named = [expected[g] if expected[g] == g else f'{expected[g]} (for GT {g})' for g in missing]
        parts.append(f'missing from dataroot_lq: {_first(named)}')
    if unmatched:
        parts.append(f'not paired with a GT file: {_first(unmatched)}')
    fix = suggest_template(gt_names, lq_names) if missing else None
    if fix is not None and fix != template:
        parts.append(f'filename_tmpl {fix!r} would pair them all')
    elif missing and len(gt_names) == len(lq_names):
        parts.append('BasicSR pairs each GT file with the LQ file of its name after filename_tmpl, same extension')
    return '; '.join(parts)


def folder_pairs(prefix, dataset):
    """[(GT path, LQ path)] sorted by GT name, as BasicSR pairs the two folders; PreflightError when they do
    not pair one to one."""
    gt_root, lq_root = dataset['dataroot_gt'], dataset['dataroot_lq']
    template = dataset.get('filename_tmpl', '{}')
    gt_names, lq_names = sorted(listing(gt_root)), listing(lq_root)
    problem = _pairing_problem(prefix, gt_names, lq_names, template)
    if problem:
        raise PreflightError(problem)
    return [(os.path.join(gt_root, g), os.path.join(lq_root, lq_name(g, template))) for g in gt_names]


def meta_pairs(prefix, dataset):
    """[(GT path, LQ path)] of the names in ``meta_info_file`` (``paired_paths_from_meta_info_file``: the
    first word of each line; the LQ file of its base name after filename_tmpl); PreflightError naming the
    files that are not there."""
    gt_root, lq_root = dataset['dataroot_gt'], dataset['dataroot_lq']
    template = dataset.get('filename_tmpl', '{}')
    with open(dataset['meta_info_file']) as f:
        names = [line.strip().split(' ')[0] for line in f]
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise PreflightError(f'{prefix}.meta_info_file: line {empty[0]} names no file (expected a GT file name '
                             'at the start of every line)')
    nested = any(os.sep in n or '/' in n for n in names)
    present = {p.replace(os.sep, '/') for p in _scan(gt_root, nested)}
    missing = [n for n in names if n.replace(os.sep, '/') not in present]
    if missing:
        raise PreflightError(f'{prefix}.meta_info_file: {len(missing)} of its {len(names)} GT files are not in '
                             f'dataroot_gt: {_first(missing)}')
    lq_set = set(listing(lq_root))
    missing = [lq_name(n, template) for n in names if lq_name(n, template) not in lq_set]
    if missing:
        raise PreflightError(f'{prefix}.dataroot_lq: {len(missing)} of the {len(names)} LQ files named after '
                             f'meta_info_file (filename_tmpl {template!r}) are missing: {_first(missing)}')
    return sorted((os.path.join(gt_root, n), os.path.join(lq_root, lq_name(n, template))) for n in names)


def _scan(folder, recursive):
    from basicsr.utils import scandir
    return scandir(folder, recursive=recursive)


# --------------------------------------------------------------------------- sizes
def image_size(option, path):
    """(width, height) of an image from its header (PIL does not decode the pixels); OpenCV decodes the
    formats PIL does not know. PreflightError naming the file when neither can read it."""
    from PIL import Image
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # no decompression-bomb check for a header
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError):
        pass
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    import cv2
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PreflightError(f'{option}: {path} cannot be read as an image')
    return image.shape[1], image.shape[0]


def sample(items, k=SAMPLE):
    """At most ``k`` items spread evenly over ``items``, the first and the last included (deterministic)."""
    n = len(items)
    if n <= k:
        return list(items)
    return [items[i] for i in sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})]


def _ratio(gt, lq):
    rw, rh = gt[0] / lq[0] if lq[0] else float('inf'), gt[1] / lq[1] if lq[1] else float('inf')
    return f'x{rw:g}' if rw == rh else f'x{rw:g} by x{rh:g}'


def check_scale_of_first_pair(prefix, pair, scale, exact):
    """The GT of the first pair is ``scale`` times its LQ (``exact``: in both dimensions; otherwise up to
    ``scale - 1`` pixels more, which BasicSR crops in validation)."""
    gt = image_size(f'{prefix}.dataroot_gt', pair[0])
    lq = image_size(f'{prefix}.dataroot_lq', pair[1])
    fits = all(lq_side * scale <= gt_side <= lq_side * scale + (0 if exact else scale - 1)
               for gt_side, lq_side in zip(gt, lq))
    if fits:
        return gt
    swapped = ' (are dataroot_gt and dataroot_lq swapped?)' if all(
        g * scale == q for g, q in zip(gt, lq)) and scale > 1 else ''
    raise PreflightError(f'{prefix}.dataroot_lq: LQ {os.path.basename(pair[1])} is {lq[0]}x{lq[1]} and GT '
                         f'{os.path.basename(pair[0])} is {gt[0]}x{gt[1]} ({_ratio(gt, lq)}), but scale is {scale}'
                         f'{swapped}')


def check_gt_size(prefix, gt_paths, gt_size):
    """``gt_size`` fits in the smallest GT image of a sample of ``gt_paths``."""
    chosen = sample(gt_paths)
    sizes = [(image_size(f'{prefix}.dataroot_gt', p), p) for p in chosen]
    (width, height), path = min(sizes, key=lambda s: (min(s[0]), s[1]))
    if gt_size > min(width, height):
        raise PreflightError(f'{prefix}.gt_size: {gt_size} is larger than GT {os.path.basename(path)} ({width}x'
                             f'{height}, the smallest of {len(chosen)} GT images sampled from '
                             f'{len(gt_paths)}); expected at most {min(width, height)}')


def check_batches(prefix, dataset, pairs, world_size):
    """Each process gets ``ceil(pairs * dataset_enlarge_ratio / world_size)`` samples (BasicSR's EnlargedSampler),
    in whole batches only."""
    batch, ratio = dataset.get('batch_size_per_gpu'), dataset.get('dataset_enlarge_ratio', 1)
    if not (isinstance(batch, int) and is_number(ratio) and isinstance(world_size, int) and world_size >= 1):
        return
    share = math.ceil(pairs * ratio / world_size)
    if batch > share:
        each = f' for each of {world_size} processes' if world_size > 1 else ''
        raise PreflightError(f'{prefix}.batch_size_per_gpu: {batch} is more than the {share} training samples{each} '
                             f'({pairs} pairs x dataset_enlarge_ratio {ratio}): BasicSR drops an incomplete batch, so '
                             f'not one iteration would run; expected at most {share}, or a larger '
                             'dataset_enlarge_ratio')


def _pairs(prefix, dataset, meta_key):
    """The dataset's pairs, or None when this check does not see them (LMDB, RealESRGAN's meta_info)."""
    backend = (dataset.get('io_backend') or {}).get('type', 'disk')
    if backend != 'disk' or dataset.get('dataroot_gt') is None or dataset.get('dataroot_lq') is None:
        return None
    if dataset.get(meta_key) is None:
        return folder_pairs(prefix, dataset)
    return meta_pairs(prefix, dataset) if meta_key == 'meta_info_file' else None


def check_paired_dataset(phase, dataset, scale, world_size=1):
    """Names, the first pair's scale and (training) gt_size of ``datasets.<phase>``, when BasicSR pairs it by
    name; the sizes only when the class loads its samples as BasicSR's paired datasets do (a subclass with its
    own ``__getitem__`` may resize or crop otherwise)."""
    if not isinstance(dataset, dict):
        return
    cls = registry.dataset_class(dataset.get('type'))
    meta_key = registry.paired_by_name(cls)
    if meta_key is None:
        return
    prefix = f'datasets.{phase}'
    pairs = _pairs(prefix, dataset, meta_key)
    training = str(phase).split('_')[0] == 'train'
    if pairs and training:
        check_batches(prefix, dataset, len(pairs), world_size)
    if not pairs or not registry.crops_pairs(cls):
        return
    if isinstance(scale, int) and not isinstance(scale, bool) and scale >= 1:
        exact = training or meta_key != 'meta_info_file'  # only PairedImageDataset crops a larger GT
        check_scale_of_first_pair(prefix, pairs[0], scale, exact)
    gt_size = dataset.get('gt_size')
    if training and isinstance(gt_size, int) and not isinstance(gt_size, bool):
        check_gt_size(prefix, [gt for gt, _ in pairs], gt_size)


def check_pairs(opt):
    """Every paired dataset of ``opt`` (see the module's docstring); raises the first problem found."""
    for phase, dataset in (opt.get('datasets') or {}).items():
        scale = dataset.get('scale', opt.get('scale')) if isinstance(dataset, dict) else None
        check_paired_dataset(phase, dataset, scale, opt.get('world_size', 1))
