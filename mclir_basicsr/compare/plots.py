"""The comparison's figures: validation curves with the method - baseline delta, and side-by-side crops
(the method: SPN, CR, ...; its runs carry the label ``spn``).

matplotlib (about 1.5 s) and basicsr (seconds: torch and every architecture) are imported inside the
functions that draw, so that importing the tool, and its ``--help``, stay fast. matplotlib is not a requirement
of the add-on: it comes with the ``demo`` extra (with scikit-image, the demo's photos), and
:func:`require_demo_extra` names what is missing and how to install it before anything trains.
"""
import importlib.util

import cv2
import numpy as np

from mclir_basicsr.compare.options import CompareError
from mclir_basicsr.compare.report import EQTIME, RUN_LABELS, mean, std

# The ``demo`` extra (setup.py): the modules the demo and the comparison tool import, with their package names.
DEMO_EXTRA = {'matplotlib': 'matplotlib', 'skimage': 'scikit-image'}
DEMO_INSTALL = "pip install 'mclir-basicsr[demo]'"

COLORS = {'baseline': 'tab:blue', 'spn': 'tab:red', EQTIME: 'tab:green'}
NAMES = {'baseline': 'baseline (L1)', 'spn': 'SPN', EQTIME: 'baseline (L1), equal time'}


def require_demo_extra(*modules):
    """Raise :class:`CompareError` (one line: the missing packages and the command that installs them) unless
    every one of ``modules`` (import names, keys of :data:`DEMO_EXTRA`) can be imported; imports nothing."""
    missing = [DEMO_EXTRA[m] for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        verb, it = ('is', 'it') if len(missing) == 1 else ('are', 'them')
        raise CompareError(f'{" and ".join(missing)} {verb} not installed (the demo and the comparison tool need {it}; '
                           f'training with the add-on does not): {DEMO_INSTALL}')


def _matplotlib():
    require_demo_extra('matplotlib')
    import matplotlib  # lazy: see the module docstring
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt


def _arm_name(label, method):
    return method if label == 'spn' else NAMES[label]


def _plot_arm(ax, curves, label, n_seeds, method):
    """One arm's curves (thin: each seed, thick: their mean where all seeds validated); the mean's iterations."""
    style = '--' if label == EQTIME else '-'
    for c in curves:
        if c and n_seeds > 1:
            ax.plot(list(c), list(c.values()), color=COLORS[label], alpha=0.3, lw=0.8, ls=style)
    its = sorted(set.intersection(*[set(c) for c in curves])) if all(curves) else []
    if its:
        ax.plot(its, [mean([c[i] for c in curves]) for i in its], color=COLORS[label], lw=2, ls=style,
                marker='o' if len(its) < 30 else None, ms=3,
                label=_arm_name(label, method) + (f' (mean of {n_seeds} seeds)' if n_seeds > 1 else ''))
    elif any(curves):  # seeds trained different iteration counts (equal time): only the thin lines
        ax.plot([], [], color=COLORS[label], ls=style, label=_arm_name(label, method) + ' (each seed)')
    return its


def _plot_deltas(ax_d, by, seeds, common, metric, method):
    deltas = []
    for s in seeds:
        b, p = dict(by['baseline', s].result['curve']), dict(by['spn', s].result['curve'])
        its = [i for i in (common or []) if i in b and i in p]
        d = [p[i] - b[i] for i in its]
        deltas.append(d)
        if its:
            ax_d.plot(its, d, color='gray', alpha=0.5, lw=0.8, label='per seed' if s == seeds[0] else None)
    if common and deltas and all(len(d) == len(common) for d in deltas):
        avg = [mean(col) for col in zip(*deltas)]
        dev = [std(list(col)) for col in zip(*deltas)]
        ax_d.plot(common, avg, color='black', lw=2, label='mean' + (' ± std' if len(seeds) > 1 else ''))
        if len(seeds) > 1:
            ax_d.fill_between(common, [m - s for m, s in zip(avg, dev)], [m + s for m, s in zip(avg, dev)],
                              color='black', alpha=0.15)
    ax_d.axhline(0, color='k', lw=0.5)
    ax_d.set_xlabel('iteration')
    ax_d.set_ylabel(f'Δ {metric}, {method} - baseline (dB)')
    ax_d.grid(alpha=0.3)
    ax_d.legend(fontsize=8)


def plot_curves(path, runs, title='', method='SPN'):
    """Validation PSNR against iterations (thin: each seed, thick: mean; dashed: the equal-time baseline)
    and the method - baseline delta at equal iterations (``method``: its name in the legend and labels)."""
    plt = _matplotlib()
    seeds = sorted({r.seed for r in runs})
    by = {(r.label, r.seed): r for r in runs}
    labels = [label for label in RUN_LABELS + (EQTIME,) if (label, seeds[0]) in by]
    fig, (ax, ax_d) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={'height_ratios': [3, 2]})
    metric = next((r.result['curve_metric'] for r in runs if r.result.get('curve_metric')), 'psnr')
    common = None
    for label in labels:
        its = _plot_arm(ax, [dict(by[label, s].result['curve']) for s in seeds], label, len(seeds), method)
        if label in RUN_LABELS:
            common = its if common is None else [i for i in common if i in its]
    ax.set_ylabel(f'validation {metric} (dB)')
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or 'validation during training')
    _plot_deltas(ax_d, by, seeds, common, metric, method)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _crop_box(err, size):
    """Top-left corner of the size x size window with the largest summed error (integral image)."""
    h, w = err.shape
    size = min(size, h, w)
    ii = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x), size


def _crop_row(axes, name, panels, gt, box):
    """One row of crops: the panels [(title, image)], PSNR of the crop under the baseline and method panels."""
    from basicsr.metrics import calculate_psnr  # lazy: see the module docstring
    y, x, size = box
    for col, (title, img) in enumerate(panels):
        patch = img[y:y + size, x:x + size]
        patch = patch[..., ::-1] if patch.ndim == 3 and patch.shape[2] == 3 else patch.squeeze()
        ax = axes[col]
        ax.imshow(patch, interpolation='nearest', cmap='gray' if patch.ndim == 2 else None)
        ax.set_xticks([])
        ax.set_yticks([])
        if col in (1, 2):
            title = f'{title}\ncrop {calculate_psnr(img[y:y + size, x:x + size], gt[y:y + size, x:x + size], 0):.2f} dB'
        elif col == 0:
            title = f'{name}: {title}\n({x},{y}) {size}x{size}'
        ax.set_title(title, fontsize=9)


def plot_crops(path, images, base_rows, spn_rows, scale, crop=64, max_images=6, method='SPN'):
    """Side by side crops: input (bicubic-upscaled for SR), baseline, the method (``spn_rows``), ground truth.
    The window is where the baseline's error is largest (chosen without looking at the method)."""
    plt = _matplotlib()
    n = min(len(images), max_images)
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n + 0.4), squeeze=False)
    for row in range(n):
        _, name, gt, lq = images[row]
        base = cv2.imread(base_rows[row]['path'], cv2.IMREAD_UNCHANGED)
        spn = cv2.imread(spn_rows[row]['path'], cv2.IMREAD_UNCHANGED)
        inp = cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC) if lq.shape != gt.shape \
            else lq
        err = np.abs(base.astype(np.float32) - gt.astype(np.float32)).reshape(gt.shape[0], gt.shape[1], -1).mean(-1)
        panels = [('input (bicubic)' if scale > 1 else 'input', inp), ('baseline', base), (method, spn),
                  ('ground truth', gt)]
        _crop_row(axes[row], name, panels, gt, _crop_box(err, crop))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
