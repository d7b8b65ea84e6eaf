"""The comparison's numbers and tables: per-image and per-seed deltas, summary statistics, CSV and
markdown. Deltas are method - baseline at equal iterations and, when the equal-time baseline ran
(``baseline_eqtime``), method - that baseline at equal training time. The method's runs carry the label
``spn`` (the keys and columns of the SPN-only days); the markdown names the method (``info['method']``:
'SPN', 'CR', 'SPN+uncertainty', ...)."""
import csv
import math
import statistics
from collections import OrderedDict

RUN_LABELS = ('baseline', 'spn')
EQTIME = 'baseline_eqtime'   # the baseline given the method run's training time (mclir-compare --equal-time)
ARM_NAMES = {'baseline': 'baseline', 'spn': 'SPN', EQTIME: 'baseline, equal time'}
# An equal-time baseline whose trained seconds differ from the method run's by more than this (a change of load
# between the runs) is flagged in the table.
EQTIME_TOLERANCE = 0.05


def method_of(info):
    """The method's short name in the markdown ('SPN' for summaries written before other methods existed)."""
    return info.get('method') or 'SPN'


def mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else float('nan')


def std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def labels_of(runs):
    """The arms that ran, in table order."""
    present = {r.label for r in runs}
    return [label for label in RUN_LABELS + (EQTIME,) if label in present]


# --------------------------------------------------------------------------- numbers
def _image_row(name, i, by, seeds, labels):
    row = OrderedDict(image=name)
    for metric in ('psnr', 'ssim'):
        value = {label: mean([by[label, s].result['images'][i][metric] for s in seeds]) for label in labels}
        row[f'{metric}_baseline'], row[f'{metric}_spn'] = value['baseline'], value['spn']
        row[f'{metric}_delta'] = value['spn'] - value['baseline']
        if EQTIME in labels:
            row[f'{metric}_{EQTIME}'] = value[EQTIME]
            row[f'{metric}_delta_eqtime'] = value['spn'] - value[EQTIME]
    return row


def _seed_row(s, by, labels):
    b, p = by['baseline', s].result, by['spn', s].result
    row = OrderedDict(
        seed=s, psnr_baseline=b['psnr'], psnr_spn=p['psnr'], psnr_delta=p['psnr'] - b['psnr'],
        ssim_baseline=b['ssim'], ssim_spn=p['ssim'], ssim_delta=p['ssim'] - b['ssim'],
        s_per_iter_baseline=b['s_per_iter'], s_per_iter_spn=p['s_per_iter'],
        wall_s_baseline=by['baseline', s].wall_s, wall_s_spn=by['spn', s].wall_s)
    if EQTIME in labels:
        e = by[EQTIME, s]
        row.update(psnr_baseline_eqtime=e.result['psnr'], psnr_delta_eqtime=p['psnr'] - e.result['psnr'],
                   ssim_delta_eqtime=p['ssim'] - e.result['ssim'], s_per_iter_baseline_eqtime=e.result['s_per_iter'],
                   wall_s_baseline_eqtime=e.wall_s)
        for label in labels:
            run = by[label, s]
            row[f'iters_{label}'] = run.total_iter
            row[f'train_s_{label}'] = run.result.get('train_s', run.total_iter * run.result['s_per_iter'])
        row['eqtime_time_gap'] = row[f'train_s_{EQTIME}'] / row['train_s_spn'] - 1
    return row


def paired_stats(deltas):
    """(mean, std, standard error, t) of paired per-seed deltas; SE and t are nan for fewer than 2 seeds."""
    m, sd = mean(deltas), std(deltas)
    n = len(deltas)
    se = sd / math.sqrt(n) if n > 1 else float('nan')
    return m, sd, se, (m / se if n > 1 and se > 0 else float('nan'))


def _delta_stats(per_seed, suffix=''):
    deltas = [r[f'psnr_delta{suffix}'] for r in per_seed]
    ssim_deltas = [r[f'ssim_delta{suffix}'] for r in per_seed]
    m, sd, se, t = paired_stats(deltas)
    return OrderedDict([(f'psnr_delta{suffix}_mean', m), (f'psnr_delta{suffix}_std', sd),
                        (f'psnr_delta{suffix}_se', se), (f'psnr_delta{suffix}_t', t),
                        (f'ssim_delta{suffix}_mean', mean(ssim_deltas)), (f'ssim_delta{suffix}_std', std(ssim_deltas)),
                        (f'spn_wins{suffix}', sum(d > 0 for d in deltas))])


def summarize(runs, images):
    """Per-image table (mean over seeds, plus a 'mean' row), per-seed rows and statistics."""
    seeds = sorted({r.seed for r in runs})
    by = {(r.label, r.seed): r for r in runs}
    labels = labels_of(runs)
    keys = [(d, n) for d, n, _, _ in images]
    multi = len({d for d, _ in keys}) > 1
    table = [_image_row(f'{d}/{n}' if multi else n, i, by, seeds, labels) for i, (d, n) in enumerate(keys)]
    mean_row = OrderedDict(image='mean')
    for key in table[0]:
        if key != 'image':
            mean_row[key] = mean([r[key] for r in table])
    per_seed = [_seed_row(s, by, labels) for s in seeds]
    stats = OrderedDict(seeds=seeds)
    stats.update(_delta_stats(per_seed))
    stats.update(s_per_iter_baseline=mean([r['s_per_iter_baseline'] for r in per_seed]),
                 s_per_iter_spn=mean([r['s_per_iter_spn'] for r in per_seed]))
    stats['time_ratio'] = stats['s_per_iter_spn'] / stats['s_per_iter_baseline']
    if EQTIME in labels:
        stats.update(_delta_stats(per_seed, '_eqtime'))
        for label in labels:
            stats[f'iters_{label}'] = [r[f'iters_{label}'] for r in per_seed]
            stats[f'train_s_{label}'] = mean([r[f'train_s_{label}'] for r in per_seed])
        stats['eqtime_time_gaps'] = [r['eqtime_time_gap'] for r in per_seed]
        stats['eqtime_unequal_seeds'] = [r['seed'] for r in per_seed if abs(r['eqtime_time_gap']) > EQTIME_TOLERANCE]
    return table + [mean_row], per_seed, stats


def write_csv(path, rows):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f'{v:.6f}' if isinstance(v, float) else v) for k, v in row.items()})


# --------------------------------------------------------------------------- markdown
def _iterations(counts):
    lo, hi = min(counts), max(counts)
    return f'{lo}' if lo == hi else f'{lo}-{hi} (per seed)'


def equal_time_note(stats, info):
    """The sentence saying how the equal-time iterations were chosen and that the schedule was stretched."""
    iters, m = stats[f'iters_{EQTIME}'], method_of(info)
    spn_iters = _iterations(stats['iters_spn'])
    if info.get('budget_s'):
        how = (f'budget {info["budget_s"]:g} s of training per arm, at the s/iter of a {info["calibration_iters"]}-'
               f'iteration calibration run of each arm: {m} {spn_iters} iterations, baseline {_iterations(iters)}; '
               f'the equal-iteration baseline ran {m}\'s {spn_iters}')
    else:
        how = (f'the baseline got {_iterations(iters)} iterations, as many as fit in the {m} run\'s training time '
               f'({m}\'s s/iter x {spn_iters} iterations / the baseline\'s s/iter, each s/iter the median of its '
               f'arm\'s logged iteration times over all seeds; never fewer than {spn_iters})')
    return (f'- equal time: {how}; every run\'s learning-rate schedule (periods, milestones, warm-up; validation '
            'and checkpoint periods too) was stretched with its iteration count, so every arm anneals fully')


def _header(stats, info):
    seeds = stats['seeds']
    over = f'mean over {len(seeds)} seeds' if len(seeds) > 1 else f'seed {seeds[0]}'
    lines = [f'## {info["title"]}', '',
             f'- baseline: `{info["baseline_name"]}`; {method_of(info)}: `{info["spn_name"]}` ({info["spn"]})',
             f'- {info["iters"]} iterations each, same seed(s) {seeds}, same data order and initialisation']
    if f'iters_{EQTIME}' in stats:
        lines.append(equal_time_note(stats, info))
    lines.append(f'- PSNR/SSIM of the final networks on the validation images ({info["metric_note"]}), {over}')
    lines += [f'- warning: {w}' for w in info.get('warnings', [])]
    return lines + ['']


def _image_table(table, eq, m):
    e_head, e_rule = (' PSNR baseline, equal time | Δ PSNR at equal time (dB) |', ' ---: | ---: |') if eq else ('', '')
    lines = [f'| image | PSNR baseline | PSNR {m} | Δ PSNR (dB) |{e_head} SSIM baseline | SSIM {m} | Δ SSIM |'
             + (' Δ SSIM at equal time |' if eq else ''),
             f'| --- | ---: | ---: | ---: |{e_rule} ---: | ---: | ---: |' + (' ---: |' if eq else '')]
    for r in table:
        b = '**' if r['image'] == 'mean' else ''
        e_psnr = f' {r["psnr_" + EQTIME]:.3f} | {b}{r["psnr_delta_eqtime"]:+.3f}{b} |' if eq else ''
        e_ssim = f' {r["ssim_delta_eqtime"]:+.4f} |' if eq else ''
        lines.append(f'| {b}{r["image"]}{b} | {r["psnr_baseline"]:.3f} | {r["psnr_spn"]:.3f} | '
                     f'{b}{r["psnr_delta"]:+.3f}{b} |{e_psnr} {r["ssim_baseline"]:.4f} | {r["ssim_spn"]:.4f} | '
                     f'{r["ssim_delta"]:+.4f} |{e_ssim}')
    return lines + ['']


def _time_table(per_seed, stats, eq, m):
    if not eq:
        return ['| run | seconds / iteration | wall time of training (s) |', '| --- | ---: | ---: |',
                f'| baseline | {stats["s_per_iter_baseline"]:.4f} | '
                f'{mean([r["wall_s_baseline"] for r in per_seed]):.0f} |',
                f'| {m} | {stats["s_per_iter_spn"]:.4f} | {mean([r["wall_s_spn"] for r in per_seed]):.0f} |']
    lines = ['| run | iterations | seconds / iteration (median) | seconds trained | '
             'wall time of training (s) |', '| --- | ---: | ---: | ---: | ---: |']
    for label in (RUN_LABELS + (EQTIME,)):
        s_per_iter = mean([r[f's_per_iter_{label}'] for r in per_seed])
        name = m if label == 'spn' else ARM_NAMES[label]
        lines.append(f'| {name} | {_iterations(stats[f"iters_{label}"])} | {s_per_iter:.4f} | '
                     f'{stats[f"train_s_{label}"]:.0f} | {mean([r[f"wall_s_{label}"] for r in per_seed]):.0f} |')
    return lines


def _seed_table(per_seed, eq, m):
    lines = [f'| seed | PSNR baseline | PSNR {m} | Δ PSNR (dB) | Δ SSIM |'
             + (f' iterations, equal time | seconds trained, {m} / baseline | PSNR baseline, equal time | '
                'Δ PSNR at equal time |' if eq else ''),
             '| ---: | ---: | ---: | ---: | ---: |' + (' ---: | ---: | ---: | ---: |' if eq else '')]
    for r in per_seed:
        extra = (f' {r["iters_" + EQTIME]} | {r["train_s_spn"]:.0f} / {r["train_s_" + EQTIME]:.0f}'
                 f'{" (unequal)" if abs(r["eqtime_time_gap"]) > EQTIME_TOLERANCE else ""} | '
                 f'{r["psnr_" + EQTIME]:.3f} | {r["psnr_delta_eqtime"]:+.3f} |' if eq else '')
        lines.append(f'| {r["seed"]} | {r["psnr_baseline"]:.3f} | {r["psnr_spn"]:.3f} | {r["psnr_delta"]:+.3f} | '
                     f'{r["ssim_delta"]:+.4f} |{extra}')
    return lines


def _conclusion(stats, suffix, what, m):
    n = len(stats['seeds'])
    return (f'{what} over {n} seeds: {stats[f"psnr_delta{suffix}_mean"]:+.3f} ± {stats[f"psnr_delta{suffix}_std"]:.3f} '
            f'dB (mean ± std; standard error {stats[f"psnr_delta{suffix}_se"]:.3f}, t = '
            f'{stats[f"psnr_delta{suffix}_t"]:+.2f}); {m} better in {stats[f"spn_wins{suffix}"]}/{n} seeds. Δ SSIM: '
            f'{stats[f"ssim_delta{suffix}_mean"]:+.4f} ± {stats[f"ssim_delta{suffix}_std"]:.4f}.')


def unequal_time_warning(stats, m):
    """A line flagging seeds whose equal-time baseline trained more than EQTIME_TOLERANCE off the method's
    seconds ('' when none did)."""
    bad = stats.get('eqtime_unequal_seeds') or []
    if not bad:
        return ''
    gaps = ', '.join(f'{g:+.1%}' for g in stats['eqtime_time_gaps'])
    return (f'**Warning: unequal time** in seed(s) {bad}: the equal-time baseline trained more than '
            f'{EQTIME_TOLERANCE:.0%} more or fewer seconds than {m} (per seed: {gaps}), as the machine\'s load changed '
            'between the runs; the equal-time deltas of those seeds are not at equal time.')


def markdown(table, per_seed, stats, info):
    eq, m = f'iters_{EQTIME}' in stats, method_of(info)
    lines = _header(stats, info) + _image_table(table, eq, m) + _time_table(per_seed, stats, eq, m)
    lines += ['', f'{m} costs {stats["time_ratio"]:.2f}x the baseline\'s time per iteration '
                  '(logged iteration times, validation excluded).']
    if len(stats['seeds']) > 1:
        lines += [''] + _seed_table(per_seed, eq, m) + ['', _conclusion(stats, '', 'Δ PSNR', m)]
        if eq:
            lines += ['', _conclusion(stats, '_eqtime', 'Δ PSNR at equal training time', m)]
    else:
        if eq:
            lines += ['', f'At equal training time: Δ PSNR {stats["psnr_delta_eqtime_mean"]:+.3f} dB, '
                          f'Δ SSIM {stats["ssim_delta_eqtime_mean"]:+.4f}.']
        lines += ['', 'One seed: differences of a few hundredths of a dB are within seed-to-seed noise at this '
                      'scale; use several seeds (`--seeds 0 1 2`) before concluding.']
    warning = unequal_time_warning(stats, m) if eq else ''
    if warning:
        lines += ['', warning]
    return '\n'.join(lines) + '\n'
