"""What a finished run achieved: the validation images as BasicSR's validation sees them, per-image
PSNR/SSIM of the images the test pipeline saved, and the timings and curve of its training log.

basicsr is imported inside the functions that use it: importing it takes seconds (torch and every
architecture), and the option helpers and ``--help`` of mclir-compare / mclir-demo must not pay that.
"""
import copy
import os
import shutil
import statistics

import cv2

from mclir_basicsr.compare.logs import latest_file, parse_train_log
from mclir_basicsr.compare.options import CompareError, val_datasets
from mclir_basicsr.compare.report import mean
from mclir_basicsr.compare.runner import checkpoint_path


def load_val_images(opt):
    """[(dataset name, image name, gt uint8 BGR, lq uint8 BGR)] of the validation sets, as BasicSR's
    validation sees them (the dataset classes of the option file)."""
    from basicsr.data import build_dataset  # lazy: see the module docstring
    from basicsr.utils import tensor2img
    items = []
    scale = opt.get('scale', 1)
    for key, dataset_opt in val_datasets(opt):
        dataset_opt = copy.deepcopy(dataset_opt)
        dataset_opt.setdefault('phase', key.split('_')[0])
        dataset_opt.setdefault('scale', scale)
        dataset = build_dataset(dataset_opt)
        for idx in range(len(dataset)):
            data = dataset[idx]
            if 'gt' not in data:
                raise CompareError(f'validation set {dataset_opt["name"]} has no ground truth: nothing to compare')
            name = os.path.splitext(os.path.basename(data['lq_path']))[0]
            items.append((dataset_opt['name'], name, tensor2img([data['gt']]), tensor2img([data['lq']])))
    if not items:
        raise CompareError('the option file has no validation set (datasets.val): nothing to compare')
    return items


def image_metrics(run, out, images, psnr_kw, ssim_kw):
    """Per-image PSNR/SSIM of the test pipeline's saved outputs of a run."""
    from basicsr.metrics import calculate_psnr, calculate_ssim  # lazy: see the module docstring
    test_name = f'{run.name}_test'
    rows = []
    for dataset, name, gt, _ in images:
        path = os.path.join(out, 'results', test_name, 'visualization', dataset, f'{name}_{test_name}.png')
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise CompareError(f'{run.title}: the test pipeline did not save {path}')
        if img.ndim == 2 and gt.ndim == 3:
            img = img[..., None]
        rows.append({'dataset': dataset, 'image': name, 'path': path,
                     'psnr': float(calculate_psnr(img, gt, **psnr_kw)),
                     'ssim': float(calculate_ssim(img, gt, **ssim_kw))})
    return rows


def collect(run, out):
    """Parse the run's BasicSR training log and gather timings and the validation curve."""
    log = latest_file(os.path.join(out, 'experiments', run.name, f'train_{run.name}_*.log'))
    if log is None:
        raise CompareError(f'{run.title}: no training log in {os.path.join(out, "experiments", run.name)}')
    with open(log, encoding='utf-8', errors='replace') as f:
        parsed = parse_train_log(f.read(), run.val_freq or run.total_iter, run.total_iter)
    curve, metric_name, final = [], None, {}
    if parsed['curves']:
        dataset, metrics = next(iter(parsed['curves'].items()))
        metric_name = 'psnr' if 'psnr' in metrics else next(iter(metrics))
        curve = metrics[metric_name]
        final = {k: v[-1][1] for k, v in metrics.items() if v}  # the end-of-training validation
    times = parsed['iter_times']
    # The cost per iteration is the median of the logged iteration times (each an average over the iterations
    # since the logger's last reset), so a burst of load from another process moves it little; the seconds the
    # run actually trained are their mean times the iterations. No iteration line logged (print_freq >
    # total_iter): both fall back to the wall time of the training process.
    s_per_iter = statistics.median(times) if times else run.wall_s / max(1, run.total_iter)
    train_s = statistics.fmean(times) * run.total_iter if times else run.wall_s
    return {'log': log, 'curve': curve, 'curve_metric': metric_name, 'final_val': final, 's_per_iter': s_per_iter,
            'train_s': train_s, 'iter_times': times, 'iter_time_readings': len(times),
            'final_losses': parsed['losses'][-1][1] if parsed['losses'] else {}}


def _link_or_copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        os.remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def evaluate(runs, out, images, psnr_kw, ssim_kw):
    """Fill each run's ``result``: its log's timings and curve, per-image and mean PSNR/SSIM, and its
    final network linked (or copied) to out/checkpoints/<label>_seed<S>.pth."""
    for run in runs:
        run.result = collect(run, out)
        run.result['images'] = image_metrics(run, out, images, psnr_kw, ssim_kw)
        run.result['psnr'] = mean([r['psnr'] for r in run.result['images']])
        run.result['ssim'] = mean([r['ssim'] for r in run.result['images']])
        run.result['checkpoint'] = _link_or_copy(checkpoint_path(out, run.name),
                                                 os.path.join(out, 'checkpoints', f'{run.label}_seed{run.seed}.pth'))
