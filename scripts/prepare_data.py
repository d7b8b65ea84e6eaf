#!/usr/bin/env python
"""Data preparation for MCLIR super-resolution and dehazing training and testing (BasicSR layouts).

Subcommands, one module each in ``scripts/data_preparation/`` (its docstring says exactly what it writes):

``div2k``      DIV2K HR -> HR sub-images (as BasicSR's ``scripts/data_preparation/extract_subimages.py``),
               bicubic LR (full and sub-images), ``meta_info_DIV2K_sub.txt`` and, with ``--lmdb``, LMDB
               (``div2k.py``).
``benchmark``  The HR images of a test set (Set5, Set14, B100, Urban100, Manga109) -> ``<Name>/GTmod{s}`` and
               ``<Name>/LRbicx{s}`` for each scale (``benchmark.py``).
``hazy``       A small synthetic paired dehazing set (no download) from the photos scikit-image ships,
               byte-identical for a given ``--seed`` (``hazy.py``).
``reside``     A RESIDE folder (ITS, SOTS indoor/outdoor) -> the paired ``<out>/{lq,gt}/<hazy stem>.png``
               layout (``reside.py``).

LR images are made as BasicSR's ``scripts/data_preparation/generate_bicubic_img.py`` does: the image read
with ``cv2.imread`` (BGR, 3 channels), scaled to float32 ``[0, 1]``, resized with the MATLAB-compatible
``basicsr.utils.matlab_functions.imresize(img, 1 / s)`` (antialiasing on), then ``clip(round(x * 255))`` to
uint8. Images are read in colour (a grey or RGBA input becomes 3-channel BGR, as BasicSR's data loaders see
it); every output is PNG.

Errors (missing or empty input folder, unreadable image, existing outputs) are reported in one line on
stderr and exit with status 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # data_preparation/, from any working directory

from data_preparation import benchmark, div2k, hazy, reside  # noqa: E402
from data_preparation.common import PrepError  # noqa: E402

DATASETS = (div2k, benchmark, hazy, reside)  # the subcommands, in this order


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
    for dataset in DATASETS:
        dataset.add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, 'check'):
        args.check(parser, args)
    try:
        args.func(args)
    except PrepError as e:
        print(f'prepare_data.py: error: {e}', file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
