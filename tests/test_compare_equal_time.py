"""Equal-time comparisons (mclir-compare --equal-time / --budget-seconds): schedule stretching, the
iteration arithmetic, the report's two deltas, and end-to-end runs on a tiny budget."""
import csv
import json

import pytest

from mclir_basicsr import compare as cmp
from mclir_basicsr.compare.equal_time import budget_iters, calibration_options
from mclir_basicsr.compare.pipeline import check_pair

from helpers import PY, make_paired_dataset, run, train_options, write_yaml


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- schedule stretching
def test_stretch_schedule_cosine_periods_sum_to_the_new_total():
    opt = train_options('s', 'd', total_iter=1000, extra_train={'warmup_iter': 100})
    opt['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [250, 250, 500],
                                 'restart_weights': [1, 0.5, 0.5], 'eta_min': 1e-7}
    opt['val']['val_freq'], opt['logger']['save_checkpoint_freq'] = 50, 500
    new = cmp.stretch_schedule(opt, 1536)
    sched = new['train']['scheduler']
    assert new['train']['total_iter'] == 1536 and sum(sched['periods']) == 1536
    assert sched['periods'] == [384, 384, 768]
    assert sched['restart_weights'] == [1, 0.5, 0.5] and sched['eta_min'] == 1e-7
    assert new['train']['warmup_iter'] == 154 and new['val']['val_freq'] == 77
    assert new['logger']['save_checkpoint_freq'] == 768
    assert opt['train']['total_iter'] == 1000 and opt['train']['scheduler']['periods'] == [250, 250, 500]  # a copy
    # many short periods squeezed: every period stays >= 1 and the sum still equals the new total
    opt['train']['scheduler']['periods'] = [1] * 1000
    squeezed = cmp.stretch_schedule(opt, 1200)['train']['scheduler']['periods']
    assert sum(squeezed) == 1200 and min(squeezed) >= 1 and len(squeezed) == 1000


def test_stretch_schedule_multistep_milestones_restarts_tmax():
    opt = train_options('m', 'd', total_iter=400, extra_train={'warmup_iter': -1})
    opt['train']['scheduler'] = {'type': 'MultiStepRestartLR', 'milestones': [100, 200, 300], 'gamma': 0.5,
                                 'restarts': [0, 200], 'restart_weights': [1, 1], 'T_max': 400}
    new = cmp.stretch_schedule(opt, 600)
    sched = new['train']['scheduler']
    assert sched['milestones'] == [150, 300, 450] and sched['restarts'] == [0, 300] and sched['T_max'] == 600
    assert sched['gamma'] == 0.5 and new['train']['warmup_iter'] == -1  # no warm-up stays none
    shrunk = cmp.stretch_schedule(opt, 3)['train']['scheduler']
    assert shrunk['milestones'] == [1, 2, 2]  # proportional, never 0


def test_equal_time_and_budget_iterations():
    # SPN: 1000 iterations x 0.0365 s = 36.5 s; the baseline at 0.0244 s/iteration fits 1496 in that time
    assert cmp.equal_time_iters(1000 * 0.0365, 0.0244, floor=1000) == 1496
    assert cmp.equal_time_iters(1000 * 0.02, 0.0244, floor=1000) == 1000  # never fewer than equal iterations
    assert budget_iters(60, {'baseline': 0.02, 'spn': 0.03}) == (2000, 3000)
    assert budget_iters(60, {'baseline': 0.04, 'spn': 0.03}) == (2000, 2000)


def test_calibration_options():
    opt = train_options('c', 'rel', total_iter=100)
    cal = calibration_options(opt, 'c_cal', 3, '/base', 20)
    assert cal['train']['total_iter'] == 20 and cal['train']['scheduler']['milestones'] == [200]
    assert 'val' not in cal and cal['logger']['print_freq'] == 20 and cal['manual_seed'] == 3
    assert cal['datasets']['train']['dataroot_gt'] == '/base/rel/gt'


def test_check_pair_budget_and_amp():
    base = train_options('b', 'd', total_iter=5)
    spn = cmp.add_spn(base, {'type': 'SPNLoss', 'feature': 'pixel'})
    assert check_pair(cmp.strip_spn(spn), spn) == []
    with pytest.raises(cmp.CompareError, match='drop --iters'):
        check_pair(base, spn, iters=10, budget_seconds=5)
    with pytest.raises(cmp.CompareError, match='--budget-seconds: expected'):
        check_pair(base, spn, budget_seconds=0)
    amp = cmp.add_spn(train_options('b', 'd', total_iter=5, extra_train={'amp': 'bfloat16'}), {'type': 'SPNLoss'})
    warnings = check_pair(base, amp)
    assert len(warnings) == 1 and "train.amp differs (baseline None, SPN 'bfloat16')" in warnings[0]


# --------------------------------------------------------------------------- the report
def fake_run(label, seed, iters, s_per_iter, psnr, train_s=None):
    r = cmp.Run(label, seed, f'{label}{seed}', '', '', iters, 1)
    images = [{'psnr': p, 'ssim': p / 100} for p in psnr]
    r.result = {'images': images, 'psnr': sum(psnr) / len(psnr), 'ssim': sum(psnr) / len(psnr) / 100,
                's_per_iter': s_per_iter, 'train_s': iters * s_per_iter if train_s is None else train_s}
    r.wall_s = iters * s_per_iter + 5
    return r


def test_report_gives_both_deltas_and_iterations():
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        runs += [fake_run('baseline', seed, 100, 0.02, [30 + shift, 32 + shift]),
                 fake_run('spn', seed, 100, 0.03, [30.1 + shift, 32.1 + shift]),
                 fake_run(cmp.EQTIME, seed, 150 + seed, 0.02, [30.2 + shift, 32.3 + shift])]
    images = [('val', 'a', None, None), ('val', 'b', None, None)]
    table, per_seed, stats = cmp.summarize(runs, images)
    assert table[-1]['psnr_delta'] == pytest.approx(0.1) and table[-1]['psnr_delta_eqtime'] == pytest.approx(-0.15)
    assert stats['iters_baseline_eqtime'] == [150, 151] and stats['iters_spn'] == [100, 100]
    assert stats['spn_wins'] == 2 and stats['spn_wins_eqtime'] == 0
    assert stats['train_s_spn'] == pytest.approx(3.0)
    md = cmp.markdown(table, per_seed, stats, {'title': 't', 'baseline_name': 'b', 'spn_name': 's', 'spn': 'x',
                                                'iters': 100, 'metric_note': '2 images'})
    assert 'Δ PSNR at equal time (dB)' in md
    assert '| **mean** | 31.050 | 31.150 | **+0.100** | 31.300 | **-0.150** |' in md
    assert 'the baseline got 150-151 (per seed) iterations' in md and 'stretched' in md
    assert 'Δ PSNR at equal training time over 2 seeds: -0.150' in md and 'SPN better in 0/2 seeds' in md
    assert '| baseline, equal time | 150-151 (per seed) | 0.0200 |' in md
    assert 'standard error 0.000' in md and 'Warning: unequal time' not in md


def test_report_flags_an_equal_time_run_that_trained_other_seconds():
    """Seconds trained per arm are shown; a gap over 5 % between SPN's and the equal-time baseline's is flagged."""
    runs = []
    for seed, (train_s, shift) in enumerate(((3.0, 0.0), (3.6, 0.2), (3.1, 0.1))):
        runs += [fake_run('baseline', seed, 100, 0.02, [30 + shift]),
                 fake_run('spn', seed, 100, 0.03, [30.1 + shift]),
                 fake_run(cmp.EQTIME, seed, 150, 0.02, [30.2 + shift], train_s=train_s)]
    table, per_seed, stats = cmp.summarize(runs, [('val', 'a', None, None)])
    assert stats['eqtime_unequal_seeds'] == [1]
    assert stats['eqtime_time_gaps'] == pytest.approx([0.0, 0.2, 3.1 / 3 - 1])
    md = cmp.markdown(table, per_seed, stats, {'title': 't', 'baseline_name': 'b', 'spn_name': 's', 'spn': 'x',
                                                'iters': 100, 'metric_note': '1 image'})
    assert '| 1 | 30.200 | 30.300 | +0.100 | +0.0010 | 150 | 3 / 4 (unequal) |' in md
    assert '| 0 | 30.000 | 30.100 | +0.100 | +0.0010 | 150 | 3 / 3 |' in md
    assert 'Warning: unequal time** in seed(s) [1]' in md and '+20.0%' in md


def test_the_budget_pools_every_seed_of_an_arm():
    from mclir_basicsr.compare.equal_time import pooled_s_per_iter
    runs = [fake_run('spn', s, 100, 0.3, [30]) for s in range(3)]
    runs[0].result['iter_times'] = [0.30, 0.31, 0.29]
    runs[1].result['iter_times'] = [0.60, 0.62]  # a seed that ran under load
    runs[2].result['iter_times'] = [0.30, 0.32, 0.28, 0.30]
    assert pooled_s_per_iter(runs) == pytest.approx(0.30)
    for r in runs:
        r.result['iter_times'] = []
        r.result['s_per_iter'] = {0: 0.2, 1: 0.9, 2: 0.3}[r.seed]
    assert pooled_s_per_iter(runs) == pytest.approx(0.3)


def test_the_cost_per_iteration_is_the_median_of_the_logged_times(tmp_path):
    """One slow burst in the log moves the estimate little: the median, and the trained seconds are the mean."""
    from mclir_basicsr.compare.evaluation import collect
    run_ = cmp.Run('baseline', 0, 'r', '', '', 100, 10)
    log_dir = tmp_path / 'experiments' / 'r'
    log_dir.mkdir(parents=True)
    times = [0.02] * 9 + [0.2]
    lines = [f'2026-01-01 INFO: [r..][epoch:  0, iter:{10 * (i + 1):5d}, lr:(1.000e-03,)] [eta: 0:00:01, '
             f'time (data): {t:.3f} (0.001)] l_pix: 1.0e-02' for i, t in enumerate(times)]
    (log_dir / 'train_r_20260101_000000.log').write_text('\n'.join(lines) + '\n')
    run_.wall_s = 10
    result = collect(run_, str(tmp_path))
    assert result['s_per_iter'] == pytest.approx(0.02) and result['iter_time_readings'] == 10
    assert result['train_s'] == pytest.approx(100 * sum(times) / 10)


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_compare_equal_time_end_to_end(tmp_path, vgg16_file):
    """--spn off --equal-time: the SPN run (VGG features, K = 2: several times the baseline's step) is
    followed by a baseline given its training time: more iterations, and the table shows both deltas."""
    make_paired_dataset(str(tmp_path / 'data'), scale=2, n=2, size=64)
    spn = train_options('eqt', 'data', total_iter=4, gt_size=32,
                        spn={'type': 'SPNLoss', 'loss_weight': 0.001, 'feature': 'vgg16', 'pretrained': vgg16_file})
    spn['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'restart_weights': [1],
                                 'eta_min': 1e-5}
    write_yaml(tmp_path / 'spn.yml', spn)
    proc = run([PY, '-m', 'mclir_basicsr.compare', 'spn.yml', '--spn', 'off', '--equal-time', '--out', 'cmp',
                '--val-freq', '2'], cwd=str(tmp_path))
    out = tmp_path / 'cmp'
    runs = {r['run']: r for r in read_csv(out / 'runs.csv')}
    assert set(runs) == {'baseline', 'spn', cmp.EQTIME}
    base, spn_run, eq = (runs[k] for k in ('baseline', 'spn', cmp.EQTIME))
    assert int(base['iterations']) == int(spn_run['iterations']) == 4
    expected = cmp.equal_time_iters(4 * float(spn_run['s_per_iter']), float(base['s_per_iter']), floor=4)
    assert int(eq['iterations']) == expected > 4, runs  # the baseline got more iterations than the SPN arm
    eq_opt = cmp.load_options(out / 'options' / f'eqt_{cmp.EQTIME}_seed0.yml')
    assert eq_opt['train']['total_iter'] == expected and eq_opt['train']['scheduler']['periods'] == [expected]
    assert eq_opt['model_type'] == 'ModelContrastiveModel' and not cmp.has_spn(eq_opt)
    table = read_csv(out / 'table.csv')
    mean = table[-1]
    assert float(mean['psnr_delta_eqtime']) == pytest.approx(
        float(mean['psnr_spn']) - float(mean['psnr_baseline_eqtime']), abs=2e-6)
    md = (out / 'table.md').read_text()
    assert 'Δ PSNR (dB)' in md and 'Δ PSNR at equal time (dB)' in md and 'stretched' in md
    assert f'the baseline got {expected} iterations' in md and 'At equal training time: Δ PSNR' in proc.stdout
    assert (out / 'checkpoints' / f'{cmp.EQTIME}_seed0.pth').is_file()


@pytest.mark.slow
def test_compare_budget_seconds_end_to_end(tmp_path):
    """--budget-seconds: both arms calibrated, SPN and the equal-iteration baseline at SPN's count, the
    equal-time baseline at its own; the counts follow from the calibrated s/iter."""
    make_paired_dataset(str(tmp_path / 'data'), scale=2, n=2, size=32)
    base = train_options('bud', 'data', total_iter=10)
    write_yaml(tmp_path / 'base.yml', base)
    spn = '{type: SPNLoss, feature: pixel, loss_weight: 0.1}'
    run([PY, '-m', 'mclir_basicsr.compare', 'base.yml', '--spn', 'on', '--spn-opt', spn,
         '--negatives', '{update_every: [1, 1, 1, 1]}', '--budget-seconds', '0.2', '--calibration-iters', '4',
         '--out', 'cmp'], cwd=str(tmp_path))
    out = tmp_path / 'cmp'
    summary = json.loads((out / 'summary.json').read_text())
    cal = summary['info']['calibration_s_per_iter']
    n_spn, n_base = budget_iters(0.2, cal)
    iters = {r['run']: int(r['iterations']) for r in read_csv(out / 'runs.csv')}
    assert iters == {'baseline': n_spn, 'spn': n_spn, cmp.EQTIME: n_base} and summary['info']['iters'] == n_spn
    assert (out / 'logs' / 'calibrate_spn_seed0.log').is_file()
    spn_opt = cmp.load_options(out / 'options' / 'bud_spn_seed0.yml')
    assert spn_opt['train']['spn_opt']['feature'] == 'pixel' and spn_opt['train']['total_iter'] == n_spn
    md = (out / 'table.md').read_text()
    assert 'budget 0.2 s of training per arm' in md and 'Δ PSNR at equal time' in md
