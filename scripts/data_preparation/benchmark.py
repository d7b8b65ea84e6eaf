"""``prepare_data.py benchmark``: from the HR images of a test set (Set5, Set14, B100, Urban100, Manga109)
write, under ``--out`` (default ``datasets``), ``<Name>/GTmod{s}/<stem>.png`` (HR mod-cropped to a multiple
of ``s``) and ``<Name>/LRbicx{s}/<stem>.png`` (its MATLAB-bicubic LR) for each scale."""
import os
from functools import partial

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


def add_parser(sub):
    p = sub.add_parser('benchmark', help='test-set HR -> <Name>/GTmod{s} and <Name>/LRbicx{s}',
                       description='Test-set HR images -> OUT/<Name>/GTmod{s}/<stem>.png (HR mod-cropped to a '
                                   'multiple of s) and OUT/<Name>/LRbicx{s}/<stem>.png (MATLAB-bicubic LR).')
    add_sr_arguments(p)
    p.add_argument('--name', required=True, help='test set name: Set5, Set14, B100, Urban100, Manga109 ...')
    p.add_argument('--out', default='datasets', help='output root (default: datasets)')
    p.set_defaults(func=cmd_benchmark, check=check_scales)
