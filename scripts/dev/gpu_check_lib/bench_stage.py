"""Stage bench: the step benchmark (bench_step.py) per architecture, its rows read back from its JSON."""
import json
import os

from .modes import MODES
from .where import BENCH_STEP, PY


def bench_rows(path):
    with open(path) as f:
        report = json.load(f)
    rows = {}
    for r in report['results']:
        rows[f'{r["device"]}:{r["variant"]}' if len(report['devices']) > 1 else r['variant']] = (
            {'error': r['error']} if 'error' in r else
            {'s_per_iter': r['median_s'], 'x_baseline': r.get('ratio_baseline'), 'x_floor': r.get('ratio_floor'),
             'peak_mem_mb': r.get('peak_mem_mb')})
    return rows


def stage_bench(st):
    mode = MODES[st.ctx['mode']]
    archs = list(mode['bench_archs'].items())
    briefs = []
    for i, (arch, extra) in enumerate(archs):
        path = os.path.join(st.out, f'bench_{arch}.json')
        cmd = [PY, BENCH_STEP, '--arch', arch, '--variants',
               mode['bench_variants'], *mode['bench_args'], *extra, '--json', path]
        st.step(f'bench_{arch}', cmd, timeout=st.left() / (len(archs) - i))
        if not os.path.exists(path):
            continue
        rows = bench_rows(path)
        st.record['numbers'][arch] = rows
        for variant, row in rows.items():
            if 'error' in row:
                st.fail('failed', f'{arch} {variant}: {row["error"]}')
        base = rows.get('baseline', {}).get('s_per_iter')
        ratios = ', '.join(f'{v} {r["x_baseline"]:.2f}x' for v, r in rows.items()
                           if v != 'baseline' and r.get('x_baseline'))
        briefs.append(f'{arch}: baseline {base:.4f} s/iter; {ratios}' if base else f'{arch}: no baseline row')
    st.record['brief'] = ' | '.join(briefs)
