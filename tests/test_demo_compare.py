"""The demo and the comparison tool, end to end on a tiny budget, and their pure helpers."""
import csv
import json
import math
import os
import sys

import cv2
import pytest
import torch

from mclir_basicsr import compare as cmp

from helpers import PY, REPO, make_paired_dataset, run, train_options, write_yaml


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def check_png(path, min_size=100):
    img = cv2.imread(str(path))
    assert img is not None, f'{path} does not load'
    assert img.shape[0] >= min_size and img.shape[1] >= min_size and img.std() > 0, img.shape


def check_outputs(out, n_images, seeds, labels=cmp.RUN_LABELS):
    table = read_csv(out / 'table.csv')
    assert len(table) == n_images + 1 and table[-1]['image'] == 'mean'
    assert len({r['image'] for r in table}) == n_images + 1
    for row in table:
        for key in ('psnr_baseline', 'psnr_spn', 'psnr_delta', 'ssim_baseline', 'ssim_spn', 'ssim_delta'):
            assert math.isfinite(float(row[key])), (key, row)
        assert -1 <= float(row['ssim_spn']) <= 1
        assert abs(float(row['psnr_delta']) - (float(row['psnr_spn']) - float(row['psnr_baseline']))) < 1e-5
    mean_psnr = sum(float(r['psnr_baseline']) for r in table[:-1]) / n_images
    assert abs(mean_psnr - float(table[-1]['psnr_baseline'])) < 1e-5
    md = (out / 'table.md').read_text()
    assert '| **mean** |' in md and 'seconds / iteration' in md
    for row in table[:-1]:
        assert f'| {row["image"]} |' in md
    runs = read_csv(out / 'runs.csv')
    assert sorted((int(r['seed']), r['run']) for r in runs) == sorted((s, k) for s in seeds for k in labels)
    for r in runs:
        assert float(r['s_per_iter']) > 0 and math.isfinite(float(r['psnr']))
    check_png(out / 'psnr_curve.png')
    check_png(out / 'crops.png')
    for seed in seeds:
        for label in labels:
            ckpt = out / 'checkpoints' / f'{label}_seed{seed}.pth'
            state = torch.load(ckpt, map_location='cpu', weights_only=True)
            assert 'params' in state and state['params']
    summary = json.loads((out / 'summary.json').read_text())
    for run_ in summary['runs']:
        assert run_['curve'], 'no validation curve parsed from the training log'
        # BasicSR's own end-of-training validation (in the training process) measured the same network on the
        # same images: the tool's PSNR, from the test pipeline's saved images, must agree (log: 4 decimals)
        assert run_['final_val']['psnr'] == pytest.approx(run_['psnr'], abs=2e-4), run_['name']
    return table, summary


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / 'demo'
    proc = run([PY, '-m', 'mclir_basicsr.demo', '--out', str(out), '--quick', '--iters', '4', '--seeds', '0'],
               cwd=str(tmp_path), env={'TORCH_HOME': str(tmp_path / 'torch_home')})  # no VGG file: pixel space
    assert 'SPN feature space: pixel (no pretrained VGG16 file found' in proc.stdout
    assert 'Demo finished in' in proc.stdout and '| **mean** |' in proc.stdout
    assert 'iter 4/4' in proc.stdout  # progress lines from the BasicSR logs
    # equal time is on by default: a third run per seed, the baseline given the SPN run's training time
    table, summary = check_outputs(out, n_images=2, seeds=[0], labels=cmp.RUN_LABELS + (cmp.EQTIME,))
    assert {r['image'] for r in table[:-1]} == {'astronaut', 'chelsea'}
    assert 'Δ PSNR at equal time' in proc.stdout and 'equal time, seed 0: SPN trains 4 iterations' in proc.stdout
    # the final validation of the training log is the mean of the per-image table (same metric settings)
    for run_ in summary['runs']:
        assert abs(run_['final_val']['psnr'] - run_['psnr']) < 2e-4, run_
        if run_['label'] != cmp.EQTIME:
            assert [it for it, _ in run_['curve']] == [1, 2, 3, 4]
        else:
            assert run_['curve'][-1][0] == run_['iterations'] >= 4


@pytest.mark.slow
def test_compare_two_files_several_seeds(tmp_path):
    make_paired_dataset(str(tmp_path / 'data'), scale=2, n=3, size=32)
    base = train_options('tinybase', 'data', total_iter=3)  # relative data paths: resolved against the cwd
    # lambda 0: the SPN run must reproduce the baseline exactly (same initialisation, same batches)
    spn = train_options('tinyspn', 'data', total_iter=3, spn={'type': 'SPNLoss', 'loss_weight': 0.0,
                                                               'feature': 'pixel'})
    write_yaml(tmp_path / 'base.yml', base)
    write_yaml(tmp_path / 'spn.yml', spn)
    proc = run([PY, os.path.join(REPO, 'scripts', 'compare.py'), 'base.yml', 'spn.yml', '--out', 'cmp',
                '--seeds', '0', '1', '--iters', '2', '--val-freq', '1'], cwd=str(tmp_path))
    assert 'over 2 seeds' in proc.stdout
    table, summary = check_outputs(tmp_path / 'cmp', n_images=3, seeds=[0, 1])
    assert summary['info']['iters'] == 2
    assert all(float(r['psnr_delta']) == 0 and float(r['ssim_delta']) == 0 for r in table), table
    by_seed = {r['seed']: r for r in summary['runs'] if r['label'] == 'baseline'}
    assert by_seed[0]['psnr'] != by_seed[1]['psnr']  # the seed is applied
    opt = cmp.load_options(tmp_path / 'cmp' / 'options' / 'tinybase_spn_seed1.yml')
    assert opt['manual_seed'] == 1 and opt['train']['total_iter'] == 2
    assert opt['datasets']['train']['dataroot_gt'] == str(tmp_path / 'data' / 'gt')
    assert opt['model_type'] == 'ModelContrastiveModel' and opt['train']['spn_opt']['loss_weight'] == 0.0


@pytest.mark.slow
def test_compare_one_file_spn_off_scale1(tmp_path):
    make_paired_dataset(str(tmp_path / 'data'), scale=1, n=2, size=32, noise=0.1)
    spn = train_options('denoise', str(tmp_path / 'data'), scale=1, arch='SwinIR', total_iter=2,
                        spn={'type': 'SPNLoss', 'loss_weight': 0.1, 'feature': 'pixel', 'mode': 'ratio'})
    write_yaml(tmp_path / 'spn.yml', spn)
    out = tmp_path / 'cmp'
    run([PY, '-m', 'mclir_basicsr.compare', 'spn.yml', '--spn', 'off', '--out', str(out)], cwd=str(tmp_path))
    check_outputs(out, n_images=2, seeds=[0])
    base = cmp.load_options(out / 'options' / 'denoise_baseline_seed0.yml')
    # SPN off: ModelContrastiveModel without the SPN keys (SRModel's training, the add-on's amp and resume)
    assert base['model_type'] == 'ModelContrastiveModel' and not cmp.has_spn(base)
    assert 'spn_opt' not in base['train'] and 'negatives' not in base['train']
    check_png(out / 'crops.png')


def test_compare_cli_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'spn.yml', train_options('x', 'data', spn={'type': 'SPNLoss', 'feature': 'pixel'}))
    write_yaml(tmp_path / 'base.yml', train_options('y', 'data'))
    for argv, message in ((['spn.yml', '--spn', 'on'], 'already uses SPN'),
                          (['base.yml', '--spn', 'off'], 'does not use SPN'),
                          (['spn.yml', 'spn.yml'], 'baseline option file uses SPN'),
                          (['base.yml', 'spn.yml', '--spn', 'on'], '--spn is for a single option file')):
        with pytest.raises(SystemExit, match=message):
            cmp.main(argv)
    val = train_options('z', 'other', spn={'type': 'SPNLoss', 'feature': 'pixel'})
    write_yaml(tmp_path / 'other.yml', val)
    with pytest.raises(SystemExit, match='different datasets'):
        cmp.main(['base.yml', 'other.yml'])
    assert not (tmp_path / 'compare_output').exists()  # nothing written on an error


def test_demo_and_compare_name_the_missing_demo_extra(tmp_path, monkeypatch):
    from mclir_basicsr import demo
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # not installed, as far as imports go
    write_yaml(tmp_path / 'base.yml', train_options('y', 'data'))
    with pytest.raises(SystemExit) as e:
        cmp.main(['base.yml', '--spn', 'on'])
    assert str(e.value) == ("mclir-compare: matplotlib is not installed (the demo and the comparison tool need it; "
                            "training with the add-on does not): pip install 'mclir-basicsr[demo]'")
    assert not (tmp_path / 'compare_output').exists()  # before anything trains
    with pytest.raises(SystemExit, match=r"^mclir-demo: matplotlib is not installed .*\[demo\]'$"):
        demo.main(['--out', 'd', '--feature', 'pixel'])
    monkeypatch.setitem(sys.modules, 'skimage', None)
    with pytest.raises(SystemExit, match=r"^mclir-demo: scikit-image is not installed .*\[demo\]'$"):
        demo.main(['--out', 'd', '--feature', 'pixel', '--data-only'])  # the photos; no plots with --data-only
    assert not (tmp_path / 'd').exists()


def test_spn_toggle_and_rewrite(tmp_path):
    from mclir_basicsr import demo
    base = train_options('b', 'rel/data', total_iter=7, extra_train={'amp': 'bfloat16'})
    base['path']['resume_state'] = 'somewhere.state'
    spn = cmp.add_spn(base, demo.DEMO_SPN, demo.DEMO_NEGATIVES)
    assert cmp.has_spn(spn) and not cmp.has_spn(base)
    assert spn['train']['spn_opt'] == dict(demo.DEMO_SPN) and spn['model_type'] == 'ModelContrastiveModel'
    # SPN off is ModelContrastiveModel without the SPN keys; train.amp (and all else) kept
    back = cmp.strip_spn(spn)
    assert back == dict(base, model_type='ModelContrastiveModel') and back['train']['amp'] == 'bfloat16'
    assert not cmp.has_spn(back)
    assert cmp.add_spn(base, {'type': 'SPNLoss'})['train'].get('negatives') is None  # the schema's defaults
    official = train_options('o', 'd', extra_train={'neg_iter': [10], 'perceptual_opt': {'type': 'PerceptualLoss'}})
    assert cmp.has_spn(official) and 'perceptual_opt' not in cmp.strip_spn(official)['train']
    for toggle in (lambda o: cmp.add_spn(o, demo.DEMO_SPN), cmp.strip_spn):
        with pytest.raises(cmp.CompareError, match="model_type 'RealESRGANModel' cannot be switched"):
            toggle(dict(base, model_type='RealESRGANModel'))
    opt = cmp.rewrite_options(spn, 'new', 5, str(tmp_path), iters=11, val_freq=3)
    assert (opt['name'], opt['manual_seed'], opt['train']['total_iter'], opt['val']['val_freq']) == ('new', 5, 11, 3)
    assert opt['datasets']['val']['dataroot_lq'] == str(tmp_path / 'rel' / 'data' / 'lq')
    assert opt['path']['resume_state'] is None and spn['name'] == 'b'  # the input is not modified
    psnr, ssim = cmp.metric_settings(base)
    assert psnr == {'crop_border': 2, 'test_y_channel': False} and ssim == psnr


ITER = ('2024-01-01 00:00:0{t},000 INFO: [x..][epoch:  0, iter:     {it}, lr:(1.000e-03,)] '
        '[eta: 0:01:00, time (data): {s} (0.002)] {losses}\n')
LOG = ('2024-01-01 00:00:00,000 INFO: Start training from epoch: 0, iter: 0\n'
       + ITER.format(t=1, it=' 50', s='0.100', losses='l_pix: 2.0e-02 l_spn: -1.0e-02 d_neg0: 3.0e-02')
       + ITER.format(t=2, it='100', s='0.200', losses='l_pix: 1.0e-02 l_spn: -5.0e-03')
       + """2024-01-01 00:00:02,100 INFO: Validation val
\t # psnr: 30.0000\tBest: 30.0000 @ 100 iter
\t # ssim: 0.9000\tBest: 0.9000 @ 100 iter

2024-01-01 00:00:04,000 INFO: Validation val
\t # psnr: 31.0000\tBest: 31.0000 @ 200 iter
\t # ssim: 0.9100\tBest: 0.9100 @ 200 iter

2024-01-01 00:00:05,000 INFO: End of training. Time consumed: 0:00:05
2024-01-01 00:00:05,100 INFO: Validation val
\t # psnr: 31.5000\tBest: 31.5000 @ 251 iter
\t # ssim: 0.9200\tBest: 0.9200 @ 251 iter
""")


def test_parse_train_log():
    parsed = cmp.parse_train_log(LOG, val_freq=100, total_iter=250)
    assert parsed['curves']['val']['psnr'] == [(100, 30.0), (200, 31.0), (250, 31.5)]
    assert parsed['curves']['val']['ssim'][-1] == (250, 0.92)
    assert parsed['iter_times'] == [0.1, 0.2]
    assert parsed['losses'][0] == (50, {'l_pix': 0.02, 'l_spn': -0.01, 'd_neg0': 0.03})
    # a run whose total_iter is a multiple of val_freq validates twice at the end: counted once
    parsed = cmp.parse_train_log(LOG.replace('250', '200'), val_freq=100, total_iter=200)
    assert [it for it, _ in parsed['curves']['val']['psnr']] == [100, 200]
    assert cmp.parse_iter_line('no iteration here') is None


def test_demo_data_only_matches_shipped_options(tmp_path):
    from mclir_basicsr import demo
    out = tmp_path / 'd'
    result = demo.run(['--out', str(out), '--data-only', '--quick', '--iters', '1000', '--feature', 'pixel'])
    base_file, spn_file = result['options']
    assert len(os.listdir(out / 'data' / 'val' / 'gt')) == 2
    shipped_base = cmp.load_options(os.path.join(REPO, 'options', 'demo', 'demo_EDSRx2_L1.yml'))
    shipped_spn = cmp.load_options(os.path.join(REPO, 'options', 'demo', 'demo_EDSRx2_SPN.yml'))
    # the shipped option files are the demo's (full-size) configuration
    assert shipped_base['network_g'] == dict(demo.DEMO_NETWORK) and not cmp.has_spn(shipped_base)
    assert shipped_spn['train']['spn_opt'] == dict(demo.DEMO_SPN)
    assert shipped_spn['train']['negatives'] == dict(demo.DEMO_NEGATIVES)
    assert cmp.strip_spn(shipped_spn) == dict(shipped_base, name=shipped_spn['name'])  # the baseline is SPN off
    full = demo.baseline_options('demo_output/data')
    assert shipped_base['train'] == full['train'] and shipped_base['datasets'] == full['datasets']
    written = cmp.load_options(spn_file)
    assert written['train']['spn_opt'] == dict(demo.DEMO_SPN) and cmp.load_options(base_file)['scale'] == 2


def test_demo_feature_choice(tmp_path, monkeypatch):
    from mclir_basicsr import demo
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    feature, weight, path, note = demo.choose_feature('auto', None)
    assert (feature, weight, path) == ('pixel', demo.DEMO_SPN['loss_weight'], None)
    assert 'SPN feature space: pixel' in note and 'no pretrained VGG16 file' in note
    with pytest.raises(SystemExit, match='needs the pretrained torchvision weights'):
        demo.choose_feature('vgg16', None)
    from helpers import write_vgg_weights
    os.makedirs(tmp_path / 'torch' / 'hub' / 'checkpoints')
    vgg = write_vgg_weights(str(tmp_path / 'torch' / 'hub' / 'checkpoints' / 'vgg16-397923af.pth'))
    feature, weight, path, note = demo.choose_feature('auto', None)
    assert (feature, weight, path) == ('vgg16', demo.DEMO_VGG_SPN['loss_weight'], vgg)
    assert 'SPN feature space: vgg16' in note and 'measured default' in note
    feature, weight, path, note = demo.choose_feature('pixel', 0.2)
    assert (feature, weight, path) == ('pixel', 0.2, None) and 'would use it' in note


def _vgg_home(tmp_path, monkeypatch):
    from helpers import write_vgg_weights
    os.makedirs(tmp_path / 'torch' / 'hub' / 'checkpoints')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    return write_vgg_weights(str(tmp_path / 'torch' / 'hub' / 'checkpoints' / 'vgg16-397923af.pth'))


def test_demo_with_a_vgg_file_runs_the_measured_vgg_setting(tmp_path, monkeypatch):
    """With a VGG16 file present the demo is in the paper's feature space by default: the paper's negatives and
    layers, the measured lambda, the term split over the negatives on one sample each, the evidence's crops."""
    from mclir_basicsr import demo
    from mclir_basicsr.options import parse_mclir_options
    vgg = _vgg_home(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    base_file, spn_file = demo.run(['--out', str(tmp_path / 'd'), '--data-only'])['options']
    spn, base = cmp.load_options(spn_file), cmp.load_options(base_file)
    cfg = parse_mclir_options(spn)
    assert cfg.spn.feature == 'vgg16' and cfg.spn.pretrained == vgg
    assert cfg.spn.loss_weight == demo.DEMO_VGG_SPN['loss_weight']
    assert cfg.spn.layer_weights == {'relu1_2': 0.2, 'relu2_2': 0.3, 'relu3_3': 0.5}
    assert cfg.negatives.update_every == [100, 200, 500, 1000] and cfg.negatives.decay == [0.1] * 4
    assert cfg.negatives.split_batch is True and cfg.negatives.samples_per_step == 4
    assert spn['datasets']['train']['gt_size'] == base['datasets']['train']['gt_size'] == demo.VGG_GT_SIZE
    full = cmp.load_options(demo.run(['--out', str(tmp_path / 'f'), '--data-only', '--term', 'full'])['options'][1])
    assert 'split_batch' not in full['train']['negatives'] and 'samples_per_step' not in full['train']['negatives']
    pixel = demo.run(['--out', str(tmp_path / 'p'), '--data-only', '--feature', 'pixel'])['options'][1]
    pixel = cmp.load_options(pixel)
    assert pixel['train']['spn_opt'] == dict(demo.DEMO_SPN) and pixel['datasets']['train']['gt_size'] == 48


@pytest.mark.slow
def test_demo_end_to_end_in_vgg_space(tmp_path, monkeypatch):
    _vgg_home(tmp_path, monkeypatch)
    proc = run([PY, '-m', 'mclir_basicsr.demo', '--out', str(tmp_path / 'demo'), '--quick', '--iters', '4',
                '--seeds', '0', '--no-equal-time'], cwd=str(tmp_path))
    assert 'SPN feature space: vgg16 (weights' in proc.stdout and 'Demo finished in' in proc.stdout
    assert 'l_spn' in proc.stdout and '| **mean** |' in proc.stdout


@pytest.mark.slow
def test_precision_check_script_end_to_end(tmp_path):
    proc = run([PY, os.path.join(REPO, 'scripts', 'dev', 'check_precision.py'), '--out', str(tmp_path / 'p'), '--quick',
                '--iters', '2', '--seeds', '0'], cwd=tmp_path)
    table = (tmp_path / 'p' / 'precision.md').read_text()
    row = [line for line in table.splitlines() if line.startswith('| 0 |')]
    assert row and 'bf16: mean Δ PSNR' in table and 'control: mean Δ PSNR' in proc.stdout
    cells = [c.strip() for c in row[0].split('|')[1:-1]]
    import re
    for arm, cell in zip(('control', 'bf16'), cells[2:4]):  # one seed: the summary line's mean is that seed's Δ
        assert float(re.search(arm + r': mean Δ PSNR ([-+\d.]+) dB', table).group(1)) == pytest.approx(float(cell))
    import yaml
    control = yaml.safe_load((tmp_path / 'p' / 'options' / 'precision_control_seed0.yml').read_text())
    fp32 = yaml.safe_load((tmp_path / 'p' / 'options' / 'precision_fp32_seed0.yml').read_text())
    nudged, ref = control['train']['negatives']['init_decay'], fp32['train']['negatives'].get('init_decay', 0.1)
    assert nudged != ref and nudged == pytest.approx(ref, rel=2e-6) and 'bfloat16' not in str(control)
    bf16_opt = (tmp_path / 'p' / 'options' / 'precision_bf16_seed0.yml').read_text()
    assert 'autocast: bfloat16' in bf16_opt and 'dtype: bfloat16' in bf16_opt
    split = yaml.safe_load((tmp_path / 'p' / 'options' / 'precision_split_seed0.yml').read_text())
    amp = yaml.safe_load((tmp_path / 'p' / 'options' / 'precision_amp_seed0.yml').read_text())
    assert split['train']['negatives']['split_batch'] is True and 'amp' not in split['train']
    assert amp['train']['amp'] == 'bfloat16' and not amp['train']['negatives'].get('split_batch')
    assert 'split: mean Δ PSNR' in table and 'amp: mean Δ PSNR' in table
