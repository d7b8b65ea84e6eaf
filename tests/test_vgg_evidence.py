"""scripts/dev/vgg_evidence.py: its arms are valid option sets, seed chunks merge into one row per arm, and the
tables land between the markers of a page."""
import pytest

from mclir_basicsr.compare.report import paired_stats
from mclir_basicsr.options import parse_mclir_options

from helpers import load_script

ev = load_script('dev/vgg_evidence')


def chunk(seeds, deltas, eq=None, gaps=None, load=None):
    rows = []
    for i, (s, d) in enumerate(zip(seeds, deltas)):
        row = {'seed': s, 'psnr_delta': d, 'psnr_baseline': 32.0, 's_per_iter_spn': 0.2, 's_per_iter_baseline': 0.01}
        if eq is not None:
            row.update(psnr_delta_eqtime=eq[i], iters_baseline_eqtime=20000,
                       eqtime_time_gap=gaps[i] if gaps else 0.01)
        rows.append(row)
    return {'per_seed': rows, 'load_end': load}


def test_chunks_merge_into_one_arm():
    st = ev.merged_stats([chunk([0, 1, 2], [0.1, 0.0, 0.05], [-1.0, -1.1, -0.9]),
                          chunk([3, 4, 5], [0.02, -0.01, 0.04])])  # equal time on the first chunk only
    assert st['seeds'] == [0, 1, 2, 3, 4, 5] and st['']['n'] == 6 and st['_eqtime']['n'] == 3
    assert st['_eqtime']['mean'] == pytest.approx(-1.0) and len(st['eqtime_iters']) == 3
    m, sd, se, t = paired_stats([0.1, 0.0, 0.05, 0.02, -0.01, 0.04])
    assert st['']['mean'] == pytest.approx(m) and st['']['se'] == pytest.approx(se) and st['']['t'] == pytest.approx(t)
    assert st['']['wins'] == 4 and st['_eqtime']['wins'] == 0 and st['time_ratio'] == pytest.approx(20)
    both = [chunk([0, 1, 2], [0.1, 0.0, 0.05], [-1.0, -1.1, -0.9]), chunk([3, 4, 5], [0.02, -0.01, 0.04])]
    text = ev.report({'official': both}, {}, 'm')
    assert '| official | equal iterations | 6 |' in text and '| official | equal time | 3 |' in text


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
            assert cfg.spn.feature == 'vgg16' and cfg.negatives.update_every == [100, 200, 500, 1000]
            assert 'spn_opt' not in base['train'] and len(seeds) >= 3
            seen.add(arm)
    assert {'official', 'split', 'split_subset4', 'lambda_matched', 'random_vgg', 'hazy_official'} <= seen


def test_finished_arms_outlive_out_in_the_archive(tmp_path):
    """An arm's summary is kept in the archive, read back when --out lacks it, and never recomputed."""
    import json
    out, archive = tmp_path / 'out', tmp_path / 'archive'
    (out / 'official').mkdir(parents=True)
    summary = chunk([0, 1, 2], [0.1, 0.0, 0.05])
    (out / 'official' / 'summary.json').write_text(json.dumps(summary))
    assert ev.run_arm(str(out), 'official', {}, {}, [0, 1, 2], False, 1, archive=str(archive)) == summary
    assert json.loads((archive / 'official.json').read_text()) == summary
    gone = tmp_path / 'elsewhere'  # a new machine: no --out, the archive only
    assert ev.run_arm(str(gone), 'official', {}, {}, [0, 1, 2], False, 1, report_only=True,
                      archive=str(archive)) == summary
    assert ev.run_arm(str(gone), 'split', {}, {}, [0, 1, 2], False, 1, report_only=True, archive=str(archive)) is None


def test_unequal_time_is_flagged_and_the_runs_load_named():
    """A seed whose equal-time baseline trained over 5 % more or fewer seconds is named, and the machine line gives
    the load the arms ran at, not the load when the page is regenerated."""
    even = ev.report({'split': [chunk([0, 1, 2], [0.1, 0.0, 0.05], [-1.0, -1.1, -0.9], load=1.2)]}, {}, 'm')
    assert 'over 5%' not in even and 'load average 1.2-1.2 at the end of each arm' in even
    uneven = ev.report({'split': [chunk([0, 1, 2], [0.1, 0.0, 0.05], [-1.0, -1.1, -0.9], [0.02, -0.131, 0.06], 0.9),
                                  chunk([3, 4, 5], [0.02, -0.01, 0.04], load=2.8)]}, {}, 'm')
    assert '-13.1%' in uneven and 'over 5% in seed(s) 1, 2' in uneven and 'load average 0.9-2.8' in uneven


def test_seeds_3_to_5_at_equal_time_run_in_their_own_folder(tmp_path, monkeypatch):
    """Main's second half runs at equal time in ARM_seeds3-5_eqtime; a report made before it has falls back to the
    equal-iteration folder of those seeds."""
    (tmp_path / 'out' / 'data' / 'val').mkdir(parents=True)
    archive = tmp_path / 'archive'
    ev.archive_summary(str(archive), 'scale', {'pretrained': 1.0, 'random': 0.1, 'ratio': 10.0,
                                               'lambda_matched': 1e-4, 'random_file': 'r.pth'})
    monkeypatch.setattr(ev, 'arms', lambda part, *a: {'official': ({}, {}, range(6), True)} if part == 'main' else {})
    calls = []

    def run_arm(out, folder, base, method, seeds, eq, jobs, report_only=False, archive=None):
        calls.append((folder, list(seeds), eq))
        if report_only and folder.endswith('_eqtime'):
            return None
        return chunk(list(seeds), [0.01] * 3, [-1.0] * 3 if eq else None)

    monkeypatch.setattr(ev, 'run_arm', run_arm)
    argv = ['--vgg', 'v.pth', '--out', str(tmp_path / 'out'), '--parts', 'main', '--archive', str(archive)]
    ev.main(argv)
    assert calls == [('official', [0, 1, 2], True), ('official_seeds3-5_eqtime', [3, 4, 5], True)]
    calls.clear()
    ev.main(argv + ['--report-only'])
    assert calls[1:] == [('official_seeds3-5_eqtime', [3, 4, 5], True), ('official_seeds3-5', [3, 4, 5], True)]
