"""Bad options, files and numbers: caught early, with the option path or file name; nothing lost."""
import copy
import os
import signal
import subprocess
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mclir_basicsr import option_reference
from mclir_basicsr import options as O
from mclir_basicsr.options import MCLIROptionError, parse_mclir_options

from helpers import PY, assert_nothing_overwritten, make_paired_dataset, run, snapshot, train_options, write_yaml

SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}


def base(**train):
    opt = {'num_gpu': 0, 'train': {'spn_opt': dict(SPN), 'negatives': {'update_every': [10, 20]}}}
    opt['train'].update(train)
    return opt


@pytest.mark.parametrize('mutate,message', [
    (lambda t: t['negatives'].update(update_every=[10, 0]), r'negatives\.update_every\[1\]: expected a positive'),
    (lambda t: t['negatives'].update(update_every=[10, 2.5]), r'update_every\[1\]: expected a positive integer'),
    (lambda t: t['negatives'].update(update_every=[]), r'update_every: expected a non-empty list'),
    (lambda t: t['negatives'].update(decay=[0.1, 1.5]), r'train\.negatives\.decay\[1\]: expected a number in \[0, 1\]'),
    (lambda t: t['negatives'].update(decay=[0.1, 0.2, 0.3]), r'decay: has 3 entries but update_every has 2'),
    (lambda t: t['negatives'].update(init_decay=-1), r'init_decay: expected a number in \[0, 1\]'),
    (lambda t: t['negatives'].update(decays=[0.1]), r"negatives\.decays: unknown option \(did you mean 'decay'\?\)"),
    (lambda t: t['spn_opt'].update(loss_weight=-0.1), r'spn_opt\.loss_weight: expected a finite number >= 0'),
    (lambda t: t['spn_opt'].update(loss_weight=True), r'spn_opt\.loss_weight: expected a finite number >= 0, got True'),
    (lambda t: t['spn_opt'].update(loss_weight='2e-4'), r"loss_weight: expected a finite number >= 0, got '2e-4'"),
    (lambda t: t['negatives'].update(decay=1.5), r'train\.negatives\.decay: expected a number in \[0, 1\], got 1\.5$'),
    (lambda t: t['spn_opt'].update(feature='vgg18'),
     r"spn_opt\.feature: expected one of vgg16, vgg19, pixel; got 'vgg18' \(did you mean 'vgg19'\?\)"),
    (lambda t: t['spn_opt'].update(feature='vgg16', layer_weights={'relu1-2': 1}),
     r"layer_weights\.relu1-2: not a vgg16 layer \(did you mean 'relu1_2'\?\)"),
    (lambda t: t['spn_opt'].update(criterion='mse'), r'spn_opt\.criterion: expected one of l1, l2, charbonnier'),
    (lambda t: t['spn_opt'].update(mode='divide'), r'spn_opt\.mode: expected one of subtract, ratio'),
    (lambda t: t['spn_opt'].update(mode='ratio', max_distance=1.0), r'max_distance: only used with mode: subtract'),
    (lambda t: t['spn_opt'].update(loss_wieght=1), r"loss_wieght: unknown option \(did you mean 'loss_weight'"),
    (lambda t: t['spn_opt'].update(autocast='fp16'), r"spn_opt\.autocast: expected one of bfloat16, float16, null"),
    (lambda t: t.update(amp='half'), r"train\.amp: expected one of bfloat16, float16, null; got 'half'"),
    (lambda t: t.pop('spn_opt'), r'train\.negatives: set, but neither train\.spn_opt nor train\.uncertainty_opt'),
    (lambda t: t.update(neg_iter=[1]), r'official keys \(neg_iter\) and `negatives`/`spn_opt` are both set'),
])
def test_bad_option_names_its_path(mutate, message):
    opt = base()
    mutate(opt['train'])
    with pytest.raises(MCLIROptionError, match=message):
        parse_mclir_options(opt)


def test_defaults_and_broadcast():
    cfg = parse_mclir_options({'num_gpu': 0, 'train': {'spn_opt': {'type': 'SPNLoss'}}})
    assert cfg.negatives.update_every == [100, 200, 500, 1000] and cfg.negatives.decay == [0.1] * 4
    assert cfg.spn.feature == 'vgg16' and cfg.spn.loss_weight == 0.001 and not cfg.official
    cfg = parse_mclir_options(base(negatives={'update_every': 5, 'decay': 0.3}))
    assert cfg.negatives.update_every == [5] and cfg.negatives.decay == [0.3]
    cfg = parse_mclir_options(base(negatives={'update_every': [5, 6], 'decay': 1}, spn_opt=dict(SPN, loss_weight=1)))
    assert cfg.negatives.decay == [1.0, 1.0] and cfg.spn.loss_weight == 1.0  # YAML's integers where numbers are meant


def test_official_keys_are_translated():
    cfg = parse_mclir_options({'num_gpu': 1, 'train': {
        'neg_iter': [100, 200], 'neg_decay': [0.1, 0.2], 'neg_start': 0.01,
        'perceptual_opt': {'type': 'PerceptualLoss', 'layer_weights': {'relu1_2': 1.0}, 'vgg_type': 'vgg16',
                           'perceptual_weight': 0.001, 'style_weight': 0, 'criterion': 'l1'}}})
    assert cfg.official and cfg.negatives.model_dump() == dict(O.Negatives().model_dump(), update_every=[100, 200],
                                                               decay=[0.1, 0.2], init_decay=0.01)
    assert cfg.spn.feature == 'vgg16' and cfg.spn.loss_weight == 0.001 and cfg.spn.mode == 'subtract'


def test_option_reference_is_generated_from_the_definitions():
    page = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'docs', 'options.md')).read()
    assert option_reference.markdown_table() in page and option_reference.basicsr_table() in page, \
        'docs/options.md is stale: python -m mclir_basicsr.option_reference --write docs/options.md'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2000) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
known_keys = st.sampled_from(list(O.Negatives.model_fields) + list(O.SPNOptions.model_fields)
                             + ['neg_iter', 'neg_decay', 'neg_start', 'bogus'])
section = st.dictionaries(known_keys, json_values, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(negatives=section | json_values, spn=section | json_values,
       extra=st.dictionaries(st.sampled_from(['neg_iter', 'neg_decay', 'neg_start', 'perceptual_opt', 'amp']),
                             json_values | st.sampled_from(['bfloat16', 'float16'])),
       num_gpu=json_values)
def test_random_options_validate_or_raise_our_error(negatives, spn, extra, num_gpu):
    train = {'negatives': negatives, 'spn_opt': spn}
    train.update(extra)
    for candidate in (train, {k: v for k, v in train.items() if k not in ('negatives', 'spn_opt')}):
        try:
            cfg = parse_mclir_options({'num_gpu': num_gpu, 'train': copy.deepcopy(candidate)})
        except MCLIROptionError:
            continue
        assert cfg.amp in (None, 'bfloat16', 'float16')
        if not cfg.spn_on:  # no spn_opt, no official keys, no negatives: SPN off
            assert candidate.get('spn_opt') is None and 'neg_iter' not in candidate and not candidate.get('negatives')
            continue
        k = cfg.num_negatives
        assert k >= 1 and len(cfg.negatives.decay) == k
        assert all(isinstance(p, int) and p >= 1 for p in cfg.negatives.update_every)


@pytest.mark.slow
def test_missing_vgg_weights_fail_before_any_data_is_loaded(workdir, data_x2, monkeypatch):
    opt = train_options('novgg', data_x2, spn={'type': 'SPNLoss', 'feature': 'vgg19'})
    opt['datasets']['train']['dataroot_gt'] = '/nonexistent/would/fail/later'
    write_yaml(workdir / 'o.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml'], cwd=workdir, check=False,
               env={'TORCH_HOME': str(workdir / 'th')})
    assert proc.returncode != 0
    assert 'vgg19-dcbb9e9d.pth' in proc.stderr and 'Looked for' in proc.stderr
    assert '/nonexistent' not in proc.stderr  # stopped before the dataset was touched


@pytest.mark.slow
def test_bad_option_stops_before_datasets(workdir, data_x2):
    opt = train_options('badopt', data_x2, spn=dict(SPN, mode='substract'))
    opt['datasets']['train']['dataroot_gt'] = '/nonexistent/would/fail/later'
    write_yaml(workdir / 'o.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml'], cwd=workdir, check=False)
    assert proc.returncode != 0
    assert "train.spn_opt.mode: expected one of subtract, ratio; got 'substract' (did you mean 'subtract'?)" in \
        proc.stderr
    assert not (workdir / 'experiments' / 'badopt').exists()


@pytest.mark.slow
@pytest.mark.parametrize('damage', ['corrupt', 'truncated', 'size'])
def test_bad_image_names_the_file(workdir, damage):
    import cv2
    data = make_paired_dataset(str(workdir / 'data'), 2)
    target = os.path.join(data, 'lq', '002.png')
    if damage == 'corrupt':
        open(target, 'wb').write(b'this is not a png')
    elif damage == 'truncated':
        raw = open(target, 'rb').read()
        open(target, 'wb').write(raw[:len(raw) // 3])
    else:
        cv2.imwrite(target, cv2.imread(target)[:-4, :-4])
    opt = train_options('badimg', data, spn=SPN, val=False, total_iter=6)
    write_yaml(workdir / 'o.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml'], cwd=workdir, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert 'DataLoadError' in last and target in last, last
    if damage == 'size':
        assert os.path.join(data, 'gt', '002.png') in last and 'mismatch' in last.lower()
    else:
        assert 'cannot be decoded' in last


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(workdir, data_x2):
    opt = train_options('nan', data_x2, spn=SPN, val=False, total_iter=4)
    write_yaml(workdir / 'o.yml', opt)
    run([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml'], cwd=workdir)
    before = snapshot(workdir / 'experiments')
    bad = copy.deepcopy(opt)
    bad['train']['total_iter'] = 8
    bad['train']['spn_opt']['loss_weight'] = 1e300  # a run-away SPN term (-inf in float32) at iteration 5
    write_yaml(workdir / 'bad.yml', bad)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'bad.yml', '--auto_resume'], cwd=workdir, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert 'NonFiniteError' in last and 'iteration 5' in last and 'l_spn' in last, proc.stderr[-3000:]
    assert_nothing_overwritten(before, snapshot(workdir / 'experiments'))  # nothing written after the blow-up
    opt['train']['total_iter'] = 6
    write_yaml(workdir / 'o.yml', opt)
    run([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml', '--auto_resume'], cwd=workdir)  # still resumable
    assert (workdir / 'experiments' / 'nan' / 'models' / 'net_g_latest.pth').is_file()
    latest, at_4 = (torch.load(workdir / 'experiments' / 'nan' / 'models' / f'net_g_{it}.pth', weights_only=True)
                    ['params'] for it in ('latest', 4))
    assert any(not torch.equal(latest[k], at_4[k]) for k in at_4)  # iterations 5-6 trained and saved


@pytest.mark.slow
def test_sigterm_leaves_only_whole_files_and_resumes(workdir, data_x2):
    opt = train_options('term', data_x2, spn=SPN, val=False, total_iter=100000)
    opt['logger'].update(save_checkpoint_freq=1, print_freq=1000)
    write_yaml(workdir / 'o.yml', opt)
    err = workdir / 'term.err'  # a file, not a pipe: a child that logs a lot never blocks on it
    with open(err, 'w') as f:
        proc = subprocess.Popen([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml'], cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=f)
    states = workdir / 'experiments' / 'term' / 'training_states'
    try:  # stop it once the 5th state exists (written atomically: existing means whole), however slow the machine
        while not (states / '5.state').exists():
            assert proc.poll() is None, f'training ended before 5 states were saved:\n{err.read_text()[-3000:]}'
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err.read_text()[-3000:]  # unwound by SIGTERM, not a crash
    files = list((workdir / 'experiments' / 'term').glob('*/*'))
    assert not [f for f in files if f.name.endswith('.tmp')]
    for f in files:
        if f.suffix in ('.state', '.pth'):
            torch.load(f, weights_only=False)  # every file on disk is whole
    last = max(int(f.stem) for f in states.glob('*.state'))
    assert last >= 5
    opt['train']['total_iter'] = last + 1
    write_yaml(workdir / 'o.yml', opt)
    out = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'o.yml', '--auto_resume'], cwd=workdir)
    assert f'iter: {last}' in out.stdout + out.stderr


def test_non_finite_weights_are_never_saved(tmp_path, data_x2):
    from basicsr.models import build_model

    from mclir_basicsr.models.model_contrastive_model import NonFiniteError
    opt = train_options('w', data_x2, spn=SPN, val=False)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(models=str(tmp_path), training_states=str(tmp_path))
    model = build_model(opt)
    model.save(0, 1)
    assert sorted(os.listdir(tmp_path)) == ['1.state', 'net_g_1.pth']
    with torch.no_grad():
        model.negatives.negatives[1].conv_first.weight[0, 0, 0, 0] = float('inf')
    with pytest.raises(NonFiniteError, match='iteration 2: negative 1 has non-finite weights; nothing was saved'):
        model.save(0, 2)
    with torch.no_grad():
        next(model.net_g.parameters())[0] = float('nan')
    with pytest.raises(NonFiniteError, match='end of training: net_g has non-finite weights'):
        model.save(-1, -1)
    assert sorted(os.listdir(tmp_path)) == ['1.state', 'net_g_1.pth']


def test_json_schema_is_generated_and_agrees_with_the_parser(tmp_path):
    """docs/options.schema.json is the schema's own (python -m mclir_basicsr.option_reference --json-schema);
    an editor checking against it accepts what the parser accepts and flags what it refuses."""
    import glob
    import json

    import jsonschema
    import yaml
    root = os.path.dirname(os.path.dirname(__file__))
    with open(os.path.join(root, 'docs', 'options.schema.json'), encoding='utf-8') as f:
        shipped = json.load(f)
    assert shipped == option_reference.json_schema(), \
        'docs/options.schema.json is stale: python -m mclir_basicsr.option_reference --json-schema FILE'
    check = jsonschema.Draft202012Validator(shipped)
    for path in glob.glob(os.path.join(root, 'options', '*.yml')):
        with open(path, encoding='utf-8') as f:
            assert not list(check.iter_errors(yaml.safe_load(f))), path
    for train in ({'negatives': {'decay': [0.1, 1.5]}, 'spn_opt': {'type': 'SPNLoss'}},
                  {'spn_opt': {'type': 'SPNLoss', 'loss_weight': '2e-4'}},
                  {'spn_opt': {'type': 'SPNLoss', 'featur': 'vgg16'}},
                  {'spn_opt': {'loss_weight': 0.001}},
                  {'accumulate': 0}):
        assert list(check.iter_errors({'train': train})), train
        with pytest.raises(MCLIROptionError):
            O.parse_mclir_options({'train': train})
