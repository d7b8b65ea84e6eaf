"""What the parse-time checks of a paired dataset cost on a DIV2K-sized training folder.

    python scripts/dev/bench_preflight.py [--n 800] [--size 2040x1404] [--scale 4] [--copies] [--repeat 20]

Writes ``--n`` GT PNGs of ``--size`` and their x``--scale`` LQ PNGs under a temporary folder (hard links of one
image pair unless ``--copies``: the checks list the folders and read image headers, so what matters is the number
of files, not their pixels), then times, median of ``--repeat`` runs: the add-on's check of BasicSR's sections
(``check_sections``), its check of the pairs (``check_pairs``: listing, names, the first pair's sizes, the sizes of
at most 32 sampled GT files), and for comparison BasicSR's own ``paired_paths_from_folder`` of the same folders
(what ``PairedImageDataset`` does when it is built). Prints the machine and its load with the figures. The files
are in the page cache when they are timed (they were just written); from a cold cache each header read is one
more random read of the disk.
"""
import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

import cv2
import numpy as np


def write_set(root, n, width, height, scale, copies):
    """root/{gt,lq}/NNNN.png: n pairs of one smooth random image (hard links unless ``copies``)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    gt = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    lq = cv2.resize(gt, (width // scale, height // scale), interpolation=cv2.INTER_AREA)
    for sub, image in (('gt', gt), ('lq', lq)):
        folder = os.path.join(root, sub)
        os.makedirs(folder)
        first = os.path.join(folder, '0001.png')
        cv2.imwrite(first, image)
        for i in range(2, n + 1):
            target = os.path.join(folder, f'{i:04d}.png')
            if copies:
                shutil.copyfile(first, target)
            else:
                os.link(first, target)
    return os.path.join(root, 'gt'), os.path.join(root, 'lq')


def options(gt_root, lq_root, scale):
    dataset = {'type': 'PairedImageDataset', 'name': 'DIV2K', 'phase': 'train', 'scale': scale,
               'dataroot_gt': gt_root, 'dataroot_lq': lq_root, 'filename_tmpl': '{}', 'io_backend': {'type': 'disk'},
               'gt_size': 192, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 4, 'batch_size_per_gpu': 16,
               'dataset_enlarge_ratio': 100, 'prefetch_mode': None}
    network = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16, 'upscale': scale}
    return {'scale': scale, 'datasets': {'train': dataset}, 'network_g': network, 'train': {'total_iter': 300000}}


def median_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'unknown'
    return f'{os.cpu_count()} x {model}, load average {load}'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=800, help='image pairs (DIV2K train: 800)')
    p.add_argument('--size', default='2040x1404', help='GT size WxH')
    p.add_argument('--scale', type=int, default=4)
    p.add_argument('--copies', action='store_true', help='real copies instead of hard links (n times the space)')
    p.add_argument('--repeat', type=int, default=20)
    p.add_argument('--root', help='where to write the set (default: a temporary folder, removed afterwards)')
    args = p.parse_args()
    width, height = (int(x) for x in args.size.lower().split('x'))

    import basicsr  # noqa: F401  (the add-on registers with it)
    from basicsr.data.data_util import paired_paths_from_folder

    import mclir_basicsr  # noqa: F401
    from mclir_basicsr.preflight.pairs import check_pairs
    from mclir_basicsr.preflight.sections import check_sections

    root = args.root or tempfile.mkdtemp(prefix='bench_preflight_')
    try:
        gt_root, lq_root = write_set(os.path.join(root, 'set'), args.n, width, height, args.scale, args.copies)
        opt = options(gt_root, lq_root, args.scale)
        check_sections(opt, True)
        check_pairs(opt)  # warm-up, and it must pass
        sections = median_ms(lambda: check_sections(opt, True), args.repeat)
        pairs = median_ms(lambda: check_pairs(opt), args.repeat)
        basicsr_paths = median_ms(lambda: paired_paths_from_folder([lq_root, gt_root], ['lq', 'gt'], '{}'),
                                  args.repeat)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    kind = 'copies' if args.copies else 'hard links of one pair'
    print(f'{args.n} GT PNGs {width}x{height} + {args.n} x{args.scale} LQ PNGs ({kind}), median of {args.repeat}:')
    print(f'  check_sections            {sections:8.2f} ms')
    print(f'  check_pairs               {pairs:8.2f} ms')
    print(f'  paired_paths_from_folder  {basicsr_paths:8.2f} ms  (BasicSR, for comparison)')
    print(f'machine: {machine()}')


if __name__ == '__main__':
    main()
