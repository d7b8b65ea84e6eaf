"""Does SPN help in its own feature space? L1 against L1 + SPN with pretrained VGG16 features, over paired seeds.

    python scripts/dev/vgg_evidence.py --vgg experiments/pretrained_models/vgg16-397923af.pth --out vgg_evidence
    python scripts/dev/vgg_evidence.py --vgg ... --out vgg_evidence --report docs/vgg_evidence.md docs/evidence.md \\
        --report-only

The VGG16 file is the one ``python -m mclir_basicsr.hed_vgg --fetch`` builds (HED's backbone, Caffe's activation
scale). Every part runs the comparison tool (:func:`mclir_basicsr.compare.compare`) on the demo's data (EDSR x2,
16 features x 4 blocks, scikit-image photos) unless said otherwise, and is skipped when its summary.json exists,
so an interrupted run continues where it stopped. Parts, in the order they run:

* ``scale``: the weighted VGG distance (relu1_2 / relu2_2 / relu3_3, 0.2 / 0.3 / 0.5, L1) between the validation
  images and their bicubic upscaling, with these weights and with He-initialised random ones on the same input;
  their ratio r gives lambda_matched = 0.001 / r, the loss weight at which the term has the size the paper's 0.001
  gives on a network with unit-scale activations (torchvision's input scale);
* ``main``: the official settings (lambda 0.001, K = 4 refreshed every 100 / 200 / 500 / 1000 iterations, decay
  0.1) with the full term, split-batch negatives, and split on 4 of the 8 samples (one per negative); 6 seeds,
  equal iterations and equal time;
* ``sweep``: lambda_matched / 10, lambda_matched and 10 lambda_matched at the official settings (equal iterations);
* ``control``: random VGG16 weights at the lambda that gives the official run's term size (equal iterations);
* ``horizon``: 4x the iterations, 3 seeds, the cheapest setting (split + 4 of 8), equal iterations;
* ``hazy``: the official settings on the synthetic hazy set with a tiny FFA-Net, 6 seeds, equal iterations;
* ``sweep_high``: 10 x the paper's 0.001 (300 lambda_matched), equal iterations.

Seeds run in two chunks (the tables merge them): seeds 0-2 of every part, main's 3-5, sweep_high's 0-2, then 3-5
of the rest, so that each question gets a first answer early. Equal time (main) on seeds 3-5 runs in a
folder of its own (``ARM_seeds3-5_eqtime``); until it has, the tables give equal time over seeds 0-2.

``--report FILE`` writes the tables of every finished arm (after each arm) between the markers of FILE;
``--report-only`` runs nothing. Each finished arm's summary (per-seed PSNR, times; no checkpoints) is also kept in
``--archive`` (``docs/data/vgg_evidence/`` by default, committed with the report), so the tables can be regenerated
and the remaining seeds added on a machine that no longer has ``--out``.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))

PAPER_LAMBDA = 0.001
LAYER_WEIGHTS = OrderedDict([('relu1_2', 0.2), ('relu2_2', 0.3), ('relu3_3', 0.5)])
OFFICIAL_NEGATIVES = OrderedDict([('update_every', [100, 200, 500, 1000]), ('decay', [0.1] * 4), ('init_decay', 0.1)])
SPLIT = OrderedDict(split_batch=True)
SUBSET = OrderedDict(split_batch=True, samples_per_step=4)  # split needs at least K samples
ITERS = 1000
GT_SIZE = 32
SEEDS = (0, 1, 2, 3, 4, 5)
FEW_SEEDS = (0, 1, 2)
PARTS = ('scale', 'main', 'sweep', 'control', 'horizon', 'hazy', 'sweep_high')


def spn_opt(vgg, weight):
    return OrderedDict([('type', 'SPNLoss'), ('loss_weight', weight), ('feature', 'vgg16'),
                        ('layer_weights', OrderedDict(LAYER_WEIGHTS)), ('criterion', 'l1'), ('mode', 'subtract'),
                        ('pretrained', os.path.abspath(vgg))])


def negatives(extra=None):
    return OrderedDict(OFFICIAL_NEGATIVES, **(extra or {}))


# --------------------------------------------------------------------------- scale
def weighted_distance(features, a, b):
    fa, fb = features(a), features(b)
    return sum(w * (fa[k] - fb[k]).abs().mean().item() for k, w in LAYER_WEIGHTS.items())


def measure_scale(vgg, data_root, out):
    """{'pretrained': D, 'random': D, 'ratio': r, 'lambda_matched': 0.001 / r} on the demo's validation images."""
    import cv2
    import torch
    import torch.nn.functional as F

    from mclir_basicsr.losses.vgg import VGGFeatures, write_random_weights
    random_path = write_random_weights(os.path.join(out, 'random_vgg16.pth'))
    nets = {'pretrained': VGGFeatures('vgg16', list(LAYER_WEIGHTS), pretrained=vgg),
            'random': VGGFeatures('vgg16', list(LAYER_WEIGHTS), pretrained=random_path)}
    dist = {k: [] for k in nets}
    val = os.path.join(data_root, 'val')
    with torch.no_grad():
        for name in sorted(os.listdir(os.path.join(val, 'gt'))):
            gt, lq = (torch.from_numpy(cv2.imread(os.path.join(val, d, name))[..., ::-1].copy()).permute(2, 0, 1)[None]
                      .float() / 255 for d in ('gt', 'lq'))
            up = F.interpolate(lq, size=gt.shape[-2:], mode='bicubic', align_corners=False).clamp(0, 1)
            for k, net in nets.items():
                dist[k].append(weighted_distance(net, gt, up))
    d = {k: sum(v) / len(v) for k, v in dist.items()}
    ratio = d['pretrained'] / d['random']
    return OrderedDict(pretrained=d['pretrained'], random=d['random'], ratio=ratio,
                       lambda_matched=PAPER_LAMBDA / ratio, random_file=random_path)


# --------------------------------------------------------------------------- parts
def _demo_base(data_root, iters, name):
    from mclir_basicsr.demo import baseline_options
    return baseline_options(data_root, iters, max(1, iters // 10), gt_size=GT_SIZE, name=name)


def _hazy_base(root):
    from mclir_basicsr.compare.options import load_options
    opt = load_options(os.path.join(os.path.dirname(os.path.dirname(HERE)), 'options', 'demo', 'hazy_FFANet_L1.yml'))
    for phase in ('train', 'val'):
        ds = opt['datasets'][phase]
        ds['dataroot_gt'], ds['dataroot_lq'] = (os.path.join(root, phase, d) for d in ('gt', 'lq'))
    return opt


def arms(part, vgg, scale, data_root, hazy_root):
    """{arm: (baseline options, method options, seeds, equal_time)} of a part."""
    from mclir_basicsr.compare.options import add_spn
    lam = scale['lambda_matched']
    out = OrderedDict()
    if part == 'main':
        base = _demo_base(data_root, ITERS, 'vggev_l1')
        for arm, extra in (('official', None), ('split', SPLIT), ('split_subset4', SUBSET)):
            out[arm] = (base, add_spn(base, spn_opt(vgg, PAPER_LAMBDA), negatives(extra)), SEEDS, True)
    elif part == 'sweep':
        base = _demo_base(data_root, ITERS, 'vggev_l1')
        for arm, w in (('lambda_matched', lam), ('lambda_matched_x10', lam * 10), ('lambda_matched_div10', lam / 10)):
            out[arm] = (base, add_spn(base, spn_opt(vgg, w), negatives()), SEEDS, False)
    elif part == 'sweep_high':
        base = _demo_base(data_root, ITERS, 'vggev_l1')
        out['lambda_0.01'] = (base, add_spn(base, spn_opt(vgg, 10 * PAPER_LAMBDA), negatives()), SEEDS, False)
    elif part == 'control':
        base = _demo_base(data_root, ITERS, 'vggev_l1')
        out['random_vgg'] = (base, add_spn(base, spn_opt(scale['random_file'], PAPER_LAMBDA * scale['ratio']),
                                           negatives()), SEEDS, False)
    elif part == 'horizon':
        base = _demo_base(data_root, 4 * ITERS, 'vggev_l1_long')
        out['split_subset4_4x'] = (base, add_spn(base, spn_opt(vgg, PAPER_LAMBDA), negatives(SUBSET)), FEW_SEEDS,
                                   False)
    elif part == 'hazy':
        base = _hazy_base(hazy_root)
        out['hazy_official'] = (base, add_spn(base, spn_opt(vgg, PAPER_LAMBDA), negatives()), SEEDS, False)
    return out


ARCHIVE = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'docs', 'data', 'vgg_evidence')


def archived(archive, arm):
    """The summary of ``arm`` kept in the repository's archive (``docs/data/vgg_evidence/ARM.json``), or None."""
    path = os.path.join(archive, f'{arm}.json') if archive else None
    if path and os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    return None


def archive_summary(archive, arm, summary):
    """Keep ``summary`` in the archive: the checkpoints and logs stay in --out, the figures outlive it."""
    if archive:
        os.makedirs(archive, exist_ok=True)
        with open(os.path.join(archive, f'{arm}.json'), 'w', encoding='utf-8') as f:
            json.dump(summary, f, indent=1, default=str)


def run_arm(out, arm, base, method, seeds, equal_time, jobs, report_only=False, archive=None):
    """Compare ``base`` and ``method`` over ``seeds`` in ``out/arm`` (or read its summary.json, or the archive's
    copy of it; None when it has not run and ``report_only``)."""
    from mclir_basicsr.compare import compare
    folder = os.path.join(out, arm)
    path = os.path.join(folder, 'summary.json')
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            summary = json.load(f)
        if archived(archive, arm) is None:
            archive_summary(archive, arm, summary)
        return summary
    summary = archived(archive, arm)
    if summary is not None or report_only:
        return summary
    method = OrderedDict(method, name=f'{base["name"]}_spn')
    t0 = time.time()
    summary = compare(base, method, folder, seeds=seeds, jobs=jobs, threads=1, prefix=arm, equal_time=equal_time,
                      title=f'{arm}: L1 vs L1 + SPN (VGG16)')
    summary['wall_s_total'] = time.time() - t0
    summary['load_end'] = os.getloadavg()[0]
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1, default=str)
    archive_summary(archive, arm, summary)
    return summary


# --------------------------------------------------------------------------- report
def merged_stats(summaries):
    """Paired statistics of an arm over the per-seed rows of all its chunks."""
    from mclir_basicsr.compare.report import mean, paired_stats
    rows = [r for s in summaries for r in s['per_seed']]
    st = OrderedDict(seeds=[r['seed'] for r in rows])
    for suffix in ('', '_eqtime'):
        deltas = [r[f'psnr_delta{suffix}'] for r in rows if f'psnr_delta{suffix}' in r]
        if deltas:
            st[suffix] = dict(zip(('mean', 'std', 'se', 't'), paired_stats(deltas)), wins=sum(d > 0 for d in deltas),
                              n=len(deltas))
    st['time_ratio'] = mean([r['s_per_iter_spn'] for r in rows]) / mean([r['s_per_iter_baseline'] for r in rows])
    st['psnr_baseline'] = mean([r['psnr_baseline'] for r in rows])
    if '_eqtime' in st:
        st['eqtime_iters'] = [r['iters_baseline_eqtime'] for r in rows if 'iters_baseline_eqtime' in r]
        st['eqtime_gaps'] = {r['seed']: r['eqtime_time_gap'] for r in rows if 'eqtime_time_gap' in r}
    return st


def _row(arm, st, suffix, what):
    d, n = st[suffix], st[suffix]['n']
    return (f'| {arm} | {what} | {n} | {st["psnr_baseline"]:.3f} | {d["mean"]:+.3f} | {d["std"]:.3f} | '
            f'{d["se"]:.3f} | {d["t"]:+.2f} | {d["wins"]}/{n} | {st["time_ratio"]:.2f}x |')


def report(results, scale, machine):
    """Markdown: one row per arm and comparison, over every seed chunk that has finished."""
    lines = ['| arm | comparison | seeds | PSNR L1 (dB) | mean Δ PSNR (dB) | std | standard error | t | SPN better | '
             'time / iteration vs L1 |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    from mclir_basicsr.compare.report import EQTIME_TOLERANCE
    gaps, loads = [], [s['load_end'] for summaries in results.values() for s in summaries if s.get('load_end')]
    for arm, summaries in results.items():
        st = merged_stats(summaries)
        lines.append(_row(arm, st, '', 'equal iterations'))
        if '_eqtime' in st:
            lines.append(_row(arm, st, '_eqtime', 'equal time'))
            over = [seed for seed, g in st['eqtime_gaps'].items() if abs(g) > EQTIME_TOLERANCE]
            flag = (f' (**over {EQTIME_TOLERANCE:.0%} in seed(s) {", ".join(map(str, over))}**: the load changed '
                    'between the runs, so those seeds are not at equal time)') if over else ''
            gaps.append(f'{arm}: L1 got {min(st["eqtime_iters"])}-{max(st["eqtime_iters"])} iterations; seconds '
                        'trained, L1 against SPN: ' + ', '.join(f'{g:+.1%}' for g in st['eqtime_gaps'].values()) + flag)
    if loads:  # the load the arms ran at, not the load when the page was regenerated
        machine += f'; load average {min(loads):.1f}-{max(loads):.1f} at the end of each arm\'s runs'
    head = [f'Machine: {machine}.', '']
    if scale:
        head += [f'Scale: weighted VGG distance of bicubic upscaling from ground truth: {scale["pretrained"]:.4g} '
                 f'(these weights) against {scale["random"]:.4g} (He-initialised random VGG16, torchvision input): '
                 f'r = {scale["ratio"]:.1f}, lambda_matched = 0.001 / r = {scale["lambda_matched"]:.3g}.', '']
    return '\n'.join(head + lines + [''] + [f'- {g}' for g in gaps]) + '\n'


BEGIN, END = '<!-- begin: generated by scripts/dev/vgg_evidence.py -->', '<!-- end: generated -->'


def write_report(path, text):
    """The tables between the BEGIN and END markers of ``path`` (the rest of the page is kept), or the whole file
    when it has no markers."""
    page = ''
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            page = f.read()
    if BEGIN in page and END in page:
        text = page[:page.index(BEGIN) + len(BEGIN)] + '\n' + text + page[page.index(END):]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def machine_note():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{os.cpu_count()} CPUs ({cpu})'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--vgg', required=True, help='the VGG16 file of python -m mclir_basicsr.hed_vgg')
    p.add_argument('--out', default='vgg_evidence')
    p.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS))
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--report', nargs='+', default=[], help='write the markdown tables into these pages too (between '
                   'their markers, if they have them)')
    p.add_argument('--report-only', action='store_true', help='run nothing: the tables of the finished parts')
    p.add_argument('--archive', default=ARCHIVE, help='where each finished arm\'s summary (and the scale) is kept '
                   'and read back when --out lacks it (default: docs/data/vgg_evidence; "" for none)')
    args = p.parse_args(argv)
    from mclir_basicsr.demo import prepare
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    data_root, hazy_root = os.path.join(out, 'data'), os.path.join(out, 'hazy')
    if not os.path.isdir(os.path.join(data_root, 'val')):
        prepare(data_root, ITERS, ITERS // 10)
    scale_path = os.path.join(out, 'scale.json')
    scale = archived(args.archive, 'scale')
    if os.path.isfile(scale_path):
        with open(scale_path, encoding='utf-8') as f:
            scale = json.load(f)
    elif scale is None:
        scale = measure_scale(args.vgg, data_root, out)
        with open(scale_path, 'w', encoding='utf-8') as f:
            json.dump(scale, f, indent=1)
    if archived(args.archive, 'scale') is None:
        archive_summary(args.archive, 'scale', scale)
    print(json.dumps(scale), flush=True)
    results = OrderedDict()
    # seeds 0-2 of every part, then seeds 3-5 of every part: each question gets a first answer early
    first = [part for part in args.parts if part != 'sweep_high']
    order = [(0, part) for part in first] + [(1, 'main')] * ('main' in first)
    order += [(0, 'sweep_high')] * ('sweep_high' in args.parts)
    order += [(1, part) for part in args.parts if part != 'main']
    for chunk, part in order:
        if part == 'scale':
            continue
        if part == 'hazy' and not os.path.isdir(os.path.join(hazy_root, 'val')):
            subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), 'prepare_data.py'), 'hazy',
                            '--out', hazy_root, '--seed', '0'], check=True)
        for arm, (base, method, seeds, eq) in arms(part, args.vgg, scale, data_root, hazy_root).items():
            chunk_seeds = list(seeds)[3 * chunk:3 * chunk + 3]
            if not chunk_seeds:
                continue
            folder = arm if chunk == 0 else f'{arm}_seeds{chunk_seeds[0]}-{chunk_seeds[-1]}'
            summary = None
            if eq and chunk:  # seeds 3-5 at equal time have a folder of their own, beside the equal-iteration one
                summary = run_arm(out, f'{folder}_eqtime', base, method, chunk_seeds, True, args.jobs,
                                  args.report_only, args.archive)
            if summary is None:
                summary = run_arm(out, folder, base, method, chunk_seeds, eq, args.jobs, args.report_only,
                                  args.archive)
            if summary is None:
                continue
            results.setdefault(arm, []).append(summary)
            text = report(results, scale, machine_note())
            print(text, flush=True)
            for page in args.report:
                write_report(page, text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
