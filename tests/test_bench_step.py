"""scripts/dev/bench_step.py: end to end on a tiny configuration (no timing assertions), and its pieces."""
import json
import math
import os
import types

import numpy as np
import pytest
import torch

from helpers import PY, REPO, run, script_module

SCRIPT = os.path.join(REPO, 'scripts', 'dev', 'bench_step.py')
RUN = ['--iters', '2', '--warmup', '1', '--layers', 'relu1_2', '--threads', '1', '--device', 'cpu']
TINY = ['--arch-opt', '{num_feat: 16, num_block: 2}', '--batch', '2', '--patch', '16', '--repeats', '2', *RUN]


@pytest.fixture(scope='module')
def bench():
    return script_module('bench', 'dev')  # the script's parts, scripts/dev/bench/


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_end_to_end_json(tmp_path, bench):
    proc = run([PY, SCRIPT, *TINY, '--json'], cwd=str(tmp_path), timeout=300)
    report = json.loads(proc.stdout)
    assert 'random' in report['config']['vgg_weights_note']  # no --vgg-weights: random weights, said so
    assert 'random' in proc.stderr and '| variant |' in proc.stderr  # the table goes to stderr with --json
    variants = bench.DEFAULT_VARIANTS.split(',')
    rows = {r['variant']: r for r in report['results']}
    assert sorted(rows) == sorted(variants)
    for name, row in rows.items():
        assert 'error' not in row, (name, row.get('traceback'))
        assert row['device'] == 'cpu'
        for key in ('median_s', 'p25_s', 'p75_s', 'peak_mem_mb', 'peak_rss_mb', 'rss_start_mb', 'ratio_baseline'):
            assert positive(row[key]), (name, key, row[key])
        p25, median, p75 = np.percentile(row['samples_s'], [25, 50, 75])  # numpy's linear = 'inclusive' quartiles
        assert row['median_s'] == pytest.approx(median) and row['p25_s'] == pytest.approx(p25)
        assert row['p75_s'] == pytest.approx(p75)
        assert len(row['samples_s']) == 2 and row['iterations'] == 1 + 2 * 2
        assert row['output_shape'] == [2, 3, 32, 32]
        assert row['minor_faults_per_iter'] >= 0  # page faults of the timed iterations
        if row['k']:
            assert positive(row['ratio_floor']), name
    assert rows['baseline']['ratio_baseline'] == 1.0

    comps = report['components']['cpu']['components']
    for name in ('net_fwd_bwd', 'net_fwd_nograd', 'vgg_fwd_out', 'vgg_fwd_bwd_out', 'vgg_nograd_k1', 'vgg_nograd_k4',
                 'refresh_foreach', 'refresh_loop'):
        assert positive(comps[name]['median_s']), name
    assert all(f >= 0 for f in report['components']['cpu']['minor_faults_per_call'].values())
    floors = report['floor']['cpu']
    assert sorted(floors) == ['1', '4']
    for k, fl in floors.items():
        assert len(fl['terms']) == 5 and all(math.isfinite(s) and s >= 0 for _, s in fl['terms'])
        assert fl['floor_s'] == pytest.approx(sum(s for _, s in fl['terms']))
        assert fl['terms'][0][1] == rows['baseline']['median_s']
        assert fl['terms'][1][1] == pytest.approx(int(k) * comps['net_fwd_nograd']['median_s'])
        assert fl['terms'][4][1] == comps[f'vgg_nograd_k{k}']['median_s']
        assert f'spn_k{k}' in fl['measured_over_floor'] and f'published_k{k}' in fl['measured_over_floor']
        assert fl['minor_faults'] >= 0 and "page faults of the floor's parts" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('arch, arch_opt, patch, scale', [
    ('edsr_light_x2', '{num_feat: 16, num_block: 2}', 16, 2),
    ('swinir_light_x4', '{depths: [1], embed_dim: 12, num_heads: [2]}', 8, 4)])
def test_end_to_end_split_and_amp(tmp_path, arch, arch_opt, patch, scale):
    """A tiny run of each --arch with split and amp rows (1 repeat): every row runs, baseline+amp is
    measured against the float32 baseline, split rows against the split floor."""
    variants = 'baseline,baseline+amp,spn_k2,spn_k2+split,spn_k2+split+amp'
    proc = run([PY, SCRIPT, *RUN, '--arch', arch, '--arch-opt', arch_opt, '--batch', '2', '--patch', str(patch),
                '--repeats', '1', '--variants', variants, '--json'], cwd=str(tmp_path), timeout=300)
    report = json.loads(proc.stdout)
    assert report['config']['arch'] == arch and report['config']['network_g']['upscale'] == scale
    rows = {r['variant']: r for r in report['results']}
    assert list(rows) == variants.split(',')
    for name, row in rows.items():
        assert 'error' not in row, (name, row.get('traceback'))
        assert positive(row['median_s']) and positive(row['ratio_baseline']), name
        assert row['output_shape'] == [2, 3, patch * scale, patch * scale]
    assert rows['baseline']['ratio_baseline'] == 1.0 and rows['baseline+amp']['ratio_floor'] is None
    floors = report['floor']['cpu']
    assert sorted(floors) == ['1', '2', '4', 'split']
    assert list(floors['split']['measured_over_floor']) == ['spn_k2+split', 'spn_k2+split+amp']
    assert list(floors['2']['measured_over_floor']) == ['spn_k2']
    assert 'Floor split (any K)' in proc.stderr


@pytest.mark.slow
def test_markdown_and_errors(tmp_path, vgg16_file):
    """Given weights, a subset of variants, JSON to a file; a variant that fails (split with batch 2 < K 4:
    the model's own option check) is reported, exit 1."""
    out = tmp_path / 'bench.json'
    proc = run([PY, SCRIPT, *TINY, '--vgg-weights', vgg16_file, '--variants', 'spn_k2,spn_k4+split',
                '--json', str(out)], cwd=str(tmp_path), timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['config']['vgg_weights'] == os.path.abspath(vgg16_file)
    rows = {r['variant']: r for r in report['results']}
    assert positive(rows['spn_k2']['median_s']) and rows['spn_k2']['ratio_baseline'] is None
    assert 'split_batch' in rows['spn_k4+split']['error'] and '(2)' in rows['spn_k4+split']['error']
    assert list(report['floor']['cpu']) == ['1', '2', '4', 'split']  # K=1 and K=4 always, every K run, split
    assert report['floor']['cpu']['2']['terms'][0][0].startswith('net fwd+bwd')  # no baseline row
    assert list(report['floor']['cpu']['2']['measured_over_floor']) == ['spn_k2']
    assert '| spn_k2 | 2 |' in proc.stdout and 'failed' in proc.stdout and 'Floor K=2' in proc.stdout


def test_parse_variant_and_layers(bench):
    assert bench.parse_variant('spn_k4+bf16+cl') == {'name': 'spn_k4+bf16+cl', 'kind': 'spn', 'k': 4,
                                                     'mods': ['bf16', 'cl']}
    assert bench.parse_variant('baseline')['k'] == 0
    assert bench.parse_variant('published_k2')['kind'] == 'published'
    assert bench.parse_variant('spn_k4+split+amp')['mods'] == ['split', 'amp']
    assert bench.parse_variant('baseline+amp') == {'name': 'baseline+amp', 'kind': 'baseline', 'k': 0, 'mods': ['amp']}
    assert bench.parse_variant('baseline+amp16')['mods'] == ['amp16']
    for bad in ('spn', 'spn_k0', 'published_k4+bf16', 'published_k4+amp', 'baseline+cl', 'baseline+split',
                'spn_k1+fast', 'foo', 'spn_k4+amp+amp16', 'spn_k4+split+split'):
        with pytest.raises(ValueError):
            bench.parse_variant(bad)
    assert bench.parse_layers(bench.DEFAULT_LAYERS) == {'relu1_2': 0.2, 'relu2_2': 0.3, 'relu3_3': 0.5}
    assert bench.parse_layers('relu1_2') == {'relu1_2': 1.0}
    net = bench.network_options('edsr_light_x2', '{num_block: 2}', 3)
    assert net['type'] == 'EDSR' and net['num_block'] == 2 and net['num_feat'] == 64 and net['upscale'] == 3
    assert bench.network_options('edsr_light_x2', '{"type": "MSRResNet", "upscale": 4}', 2) == {
        'type': 'MSRResNet', 'upscale': 4}
    with pytest.raises(ValueError, match='--arch'):
        bench.network_options('edsr_x9', None, 2)


def test_arch_presets(bench):
    """--arch fills network, scale, batch and patch; explicit --scale/--batch/--patch and --arch-opt win."""
    cfg, _ = bench.configure(bench.build_parser().parse_args([]))
    assert (cfg['arch'], cfg['scale'], cfg['batch'], cfg['patch']) == ('edsr_light_x2', 2, 8, 64)
    assert cfg['network_g'] == {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16,
                                'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040], 'upscale': 2}
    cfg, _ = bench.configure(bench.build_parser().parse_args(['--arch', 'swinir_light_x4']))
    assert (cfg['scale'], cfg['batch'], cfg['patch']) == (4, 4, 48)
    assert cfg['network_g'] == {'type': 'SwinIR', 'upscale': 4, 'in_chans': 3, 'img_size': 64, 'window_size': 8,
                                'img_range': 1., 'depths': [6] * 4, 'embed_dim': 60, 'num_heads': [6] * 4,
                                'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect', 'resi_connection': '1conv'}
    args = bench.build_parser().parse_args(['--arch', 'swinir_light_x4', '--batch', '2', '--arch-opt',
                                            '{embed_dim: 12}', '--variants', 'baseline,spn_k2+split'])
    cfg, variants = bench.configure(args)
    assert cfg['batch'] == 2 and cfg['network_g']['embed_dim'] == 12 and cfg['network_g']['depths'] == [6] * 4
    assert cfg['floor_keys'] == ['1', '2', '4', 'split'] and [v['k'] for v in variants] == [0, 2]
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(['--arch', 'edsr_x9'])


def test_options_are_complete(bench, tmp_path):
    """The option dict has what parse_options adds, and the MCLIR options of the modifiers."""
    cfg = {'network_g': bench.network_options('edsr_light_x2', None, 2), 'scale': 2, 'batch': 8, 'patch': 64,
           'feature': 'vgg16', 'layers': {'relu1_2': 1.0}, 'update_every': 1, 'vgg_weights': '/x.pth'}
    opt = bench.make_options(cfg, bench.parse_variant('spn_k4+bf16+cl+negbf16'), 'cpu', str(tmp_path))
    for key in ('is_train', 'dist', 'rank', 'world_size', 'num_gpu', 'auto_resume', 'manual_seed'):
        assert key in opt
    assert opt['is_train'] and not opt['dist'] and opt['num_gpu'] == 0
    for key in ('experiments_root', 'models', 'training_states', 'log', 'visualization'):
        assert opt['path'][key].startswith(str(tmp_path))
    assert opt['datasets']['train']['gt_size'] == 128
    assert opt['train']['negatives'] == {'update_every': [1] * 4, 'decay': 0.1, 'init_decay': 0.1,
                                         'autocast': 'bfloat16', 'channels_last': True, 'dtype': 'bfloat16'}
    assert opt['train']['spn_opt']['autocast'] == 'bfloat16' and opt['train']['spn_opt']['channels_last']
    assert bench.make_options(cfg, bench.parse_variant('baseline'), 'cuda', str(tmp_path))['num_gpu'] == 1
    assert opt['model_type'] == 'ModelContrastiveModel' and 'amp' not in opt['train']
    split = bench.make_options(cfg, bench.parse_variant('spn_k4+split+amp'), 'cpu', str(tmp_path))['train']
    assert split['negatives']['split_batch'] is True and split['amp'] == 'bfloat16'
    base = bench.make_options(cfg, bench.parse_variant('baseline'), 'cpu', str(tmp_path))
    assert base['model_type'] == 'SRModel' and 'spn_opt' not in base['train'] and 'amp' not in base['train']
    amp = bench.make_options(cfg, bench.parse_variant('baseline+amp16'), 'cpu', str(tmp_path))
    assert amp['model_type'] == 'ModelContrastiveModel' and amp['train']['amp'] == 'float16'
    assert 'spn_opt' not in amp['train'] and 'negatives' not in amp['train']  # SPN off


def test_published_step_matches_ours_for_one_negative(bench, vgg16_file, tmp_path):
    """K=1: the official step (per-negative perceptual call, loop refresh) computes the same update."""
    from basicsr.models import build_model
    cfg = {'network_g': bench.network_options('edsr_light_x2', '{num_feat: 8, num_block: 1}', 2), 'scale': 2,
           'batch': 2, 'patch': 8, 'feature': 'vgg16', 'layers': {'relu1_2': 0.4, 'relu2_2': 0.6}, 'update_every': 1,
           'vgg_weights': vgg16_file}
    batch = bench.random_batches(cfg, 'cpu', 1)[0]
    models = []
    for published in (False, True):
        torch.manual_seed(0)
        model = build_model(bench.make_options(cfg, bench.parse_variant('spn_k1'), 'cpu', str(tmp_path)))
        model.cri_spn.loss_weight = 10.0  # make the SPN term matter in the update
        model.optimizer_g = torch.optim.SGD(model.net_g.parameters(), lr=0.1)  # Adam's first steps ~ sign(grad)
        if published:
            model.optimize_parameters = types.MethodType(bench.published_step, model)
        for it in (1, 2):
            model.feed_data(batch)
            model.optimize_parameters(it)
        models.append(model)
    ours, official = models
    assert official.log_dict['l_neg'] == pytest.approx(-ours.log_dict['l_spn'], rel=1e-4)
    for a, b in zip(ours.net_g.parameters(), official.net_g.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(ours.negatives.negatives[0].parameters(), official.negatives.negatives[0].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_ratios_are_per_round(bench):
    """x baseline / x floor are medians of same-round ratios, not ratios of medians: a slow stretch of
    the machine that hits one round hits every row of that round alike. The reference is the float32
    baseline (not baseline+amp); a split row meets the split floor (one batch of negatives, any K)."""
    comps = {'net_fwd_bwd': 1.0, 'net_fwd_nograd': 0.25, 'vgg_fwd_out': 0.1, 'vgg_fwd_bwd_out': 0.3,
             'vgg_nograd_k1': 0.1, 'vgg_nograd_k4': 0.4}
    slow = {n: 2 * v for n, v in comps.items()}  # round 2: everything twice as slow
    records = {'baseline+amp': {'samples': [0.5, 1.0, 0.5]}, 'baseline': {'samples': [1.0, 2.0, 1.0]},
               'spn_k1': {'samples': [2.0, 4.0, 2.2]}, 'spn_k4+split': {'samples': [3.0, 6.0, 3.0]},
               'components': {'samples': [comps, slow, comps]}}
    comp_record = dict(records['components'], components={n: bench.summarize([c[n] for c in
                                                                              records['components']['samples']])
                                                          for n in comps})
    report = {'config': {'batch': 8, 'repeats': 3}, 'results': [
        dict(device='cpu', variant=v, **bench.parse_variant(v), **bench.summarize(records[v]['samples']))
        for v in ('baseline+amp', 'baseline', 'spn_k1', 'spn_k4+split')], 'floor': {}}
    bench.add_ratios(report, 'cpu', ['1', '4', 'split'], records, comp_record)
    amp, base, spn, split = report['results']
    floor = 1.0 + 0.25 + 0.1 + 0.2 + 0.1  # baseline step + 1 no-grad forward + VGG fwd + VGG bwd + VGG no-grad
    assert base['ratio_baseline'] == 1.0 and base['ratio_floor'] is None
    assert amp['ratio_baseline'] == pytest.approx(0.5) and amp['ratio_floor'] is None
    assert spn['ratio_baseline'] == pytest.approx(2.0)  # rounds: 2/1, 4/2, 2.2/1 -> median 2.0
    assert spn['ratio_floor'] == pytest.approx(2.0 / floor)  # rounds 2/f, 4/2f, 2.2/f; medians would say 2.2/f
    fl = report['floor']['cpu']['1']
    assert fl['rounds_s'] == pytest.approx([floor, 2 * floor, floor]) and fl['floor_s'] == pytest.approx(floor)
    assert fl['measured_over_floor'] == {'spn_k1': spn['ratio_floor']}
    floor4 = 1.0 + 4 * 0.25 + 0.1 + 0.2 + 0.4
    assert report['floor']['cpu']['4']['floor_s'] == pytest.approx(floor4)
    assert report['floor']['cpu']['4']['measured_over_floor'] == {}
    fs = report['floor']['cpu']['split']
    assert fs['floor_s'] == pytest.approx(floor) and '(split)' in fs['terms'][1][0]  # K=4 split: floor of K=1
    assert fs['measured_over_floor'] == {'spn_k4+split': pytest.approx(3.0 / floor)}
    assert 'Floor split (any K)' in bench.markdown_floors(report['floor']['cpu'])[2]


def test_published_per_negative_loss_is_perceptual_loss(bench, vgg16_file):
    """The published step's term for each negative (PerceptualLoss-style: per-layer L1 by plain autograd)
    equals the SPN weight times our SPNLoss's per-negative distance d_neg{k} (its custom autograd function),
    on the same VGG and layer weights."""
    from basicsr.losses import build_loss
    layers = {'relu1_2': 0.4, 'relu2_2': 0.6}
    cfg = {'feature': 'vgg16', 'layers': layers, 'vgg_weights': vgg16_file}
    spn = build_loss(bench.spn_options(cfg))
    g = torch.Generator().manual_seed(0)
    out, negs = torch.rand(2, 3, 24, 24, generator=g), torch.rand(3, 2, 3, 24, 24, generator=g)
    _, distances = spn(out, negs)
    assert distances.shape == (3,) and len(set(distances.tolist())) == 3
    for k in range(3):
        published = bench.published_neg_loss(spn, out, negs[k])
        assert published.item() == pytest.approx(spn.loss_weight * distances[k].item(), rel=1e-5)


def test_accumulate_and_compile_variants(bench, tmp_path):
    """+accN feeds N x B samples as N micro-batches of B (train.accumulate), +bxN one batch of N x B, +compile sets
    train.compile (baseline too: the add-on's model with SPN off)."""
    from bench.floors import samples_of
    from bench.options import make_options
    assert bench.parse_variant('spn_k4+split+acc2')['mods'] == ['split', 'acc2']
    assert bench.parse_variant('baseline+compile')['mods'] == ['compile']
    for bad in ('spn_k4+acc2+bx2', 'published_k4+acc2', 'published_k4+compile', 'spn_k4+acc0'):
        with pytest.raises(ValueError):
            bench.parse_variant(bad)
    cfg = {'scale': 2, 'batch': 4, 'patch': 16, 'network_g': {'type': 'EDSR'}, 'feature': 'pixel', 'layers': {},
           'update_every': 1, 'vgg_weights': None}
    acc = make_options(cfg, bench.parse_variant('spn_k4+split+acc2'), 'cpu', str(tmp_path))
    one = make_options(cfg, bench.parse_variant('spn_k4+split+bx2'), 'cpu', str(tmp_path))
    assert acc['train']['accumulate'] == 2 and acc['datasets']['train']['batch_size_per_gpu'] == 4
    assert 'accumulate' not in one['train'] and one['datasets']['train']['batch_size_per_gpu'] == 8
    assert samples_of(['split', 'acc2'], 4) == samples_of(['bx2'], 4) == 8 and samples_of([], 4) == 4
    base = make_options(cfg, bench.parse_variant('baseline+compile'), 'cpu', str(tmp_path))
    assert base['model_type'] == 'ModelContrastiveModel' and base['train']['compile'] is True
