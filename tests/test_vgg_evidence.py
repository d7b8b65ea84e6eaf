"""scripts/dev/vgg_evidence.py: its arms are valid option sets, seed chunks merge into one row per arm, and the
tables land between the markers of a page."""
import pytest

from mclir_basicsr.compare.report import paired_stats
from mclir_basicsr.options import parse_mclir_options

from helpers import load_script

ev = load_script('dev/vgg_evidence')


def chunk(seeds, deltas, eq=None):
    rows = []
    for i, (s, d) in enumerate(zip(seeds, deltas)):
        row = {'seed': s, 'psnr_delta': d, 'psnr_baseline': 32.0, 's_per_iter_spn': 0.2, 's_per_iter_baseline': 0.01}
        if eq is not None:
            row.update(psnr_delta_eqtime=eq[i], iters_baseline_eqtime=20000, eqtime_time_gap=0.01)
        rows.append(row)
    return {'per_seed': rows}


def test_chunks_merge_into_one_arm():
    st = ev.merged_stats([chunk([0, 1, 2], [0.1, 0.0, 0.05], [-1.0, -1.1, -0.9]),
                          chunk([3, 4, 5], [0.02, -0.01, 0.04], [-1.0, -1.2, -1.0])])
    assert st['seeds'] == [0, 1, 2, 3, 4, 5]
    m, sd, se, t = paired_stats([0.1, 0.0, 0.05, 0.02, -0.01, 0.04])
    assert st['']['mean'] == pytest.approx(m) and st['']['se'] == pytest.approx(se) and st['']['t'] == pytest.approx(t)
    assert st['']['wins'] == 4 and st['_eqtime']['wins'] == 0 and st['time_ratio'] == pytest.approx(20)


def test_report_rows_and_markers(tmp_path):
    results = {'official': [chunk([0, 1, 2], [0.1, 0.0, 0.05], [-1.0, -1.1, -0.9])],
               'lambda_matched': [chunk([0, 1, 2], [0.01, 0.02, -0.01])]}
    text = ev.report(results, {'pretrained': 1.78, 'random': 0.0588, 'ratio': 30.3, 'lambda_matched': 3.3e-5},
                     'test machine')
    assert '| official | equal iterations | 3 | 32.000 | +0.050 |' in text
    assert '| official | equal time | 3 |' in text and '| lambda_matched | equal iterations | 3 |' in text
    assert 'lambda_matched = 0.001 / r = 3.3e-05' in text
    page = tmp_path / 'page.md'
    page.write_text(f'# Title\n\nintro\n\n{ev.BEGIN}\nold table\n{ev.END}\n\noutro\n')
    ev.write_report(str(page), text)
    written = page.read_text()
    assert written.startswith('# Title\n\nintro\n\n') and written.endswith(f'{ev.END}\n\noutro\n')
    assert 'old table' not in written and '| official | equal time |' in written


def test_every_arm_is_a_valid_option_set(tmp_path):
    scale = {'ratio': 30.3, 'lambda_matched': 3.3e-5, 'random_file': str(tmp_path / 'r.pth')}
    seen = set()
    for part in ev.PARTS[1:]:
        for arm, (base, method, seeds, _eq) in ev.arms(part, str(tmp_path / 'v.pth'), scale, str(tmp_path / 'd'),
                                                      str(tmp_path / 'h')).items():
            cfg = parse_mclir_options(method)
            assert cfg.spn['feature'] == 'vgg16' and cfg.negatives['update_every'] == [100, 200, 500, 1000]
            assert 'spn_opt' not in base['train'] and len(seeds) >= 3
            seen.add(arm)
    assert {'official', 'split', 'split_subset4', 'lambda_matched', 'random_vgg', 'hazy_official'} <= seen
