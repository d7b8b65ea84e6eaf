"""The option files the project ships train as shipped, through BasicSR's own basicsr/train.py.

Only data roots, sizes of the data (crops, batch, workers), iteration counts and frequencies change; networks,
losses, optimisers and schedulers are as shipped. The VGG16 file the SPN files need is made by the test (random
weights in torchvision's format) in the README's place, ./experiments/pretrained_models/."""
import glob
import os

import basicsr
import pytest
import yaml

from mclir_basicsr.options import parse_mclir_options
from mclir_basicsr.preflight.optim import check_optim

from helpers import PY, REPO, make_paired_dataset, run, write_vgg_weights, write_yaml

BASICSR = os.path.dirname(basicsr.__file__)
TRAIN_FILES = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'options', 'train_*.yml')))
ALL_FILES = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'options', '**', '*.yml'),
                                                               recursive=True))
ITERS = 2


def _load(rel):
    with open(os.path.join(REPO, rel), encoding='utf-8') as f:
        return yaml.safe_load(f)


def _strings_that_are_numbers(node, path=''):
    """Paths of string values that YAML would have read as a number with a dot (``2e-4`` is one of them)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _strings_that_are_numbers(v, f'{path}.{k}' if path else str(k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _strings_that_are_numbers(v, f'{path}[{i}]')]
    if isinstance(node, str):
        try:
            float(node)
        except ValueError:
            return []
        return [f'{path} = {node!r}']
    return []


def test_there_are_shipped_training_files():
    assert len(TRAIN_FILES) >= 8, TRAIN_FILES


@pytest.mark.parametrize('rel', ALL_FILES)
def test_every_number_is_a_number(rel):
    """No value YAML reads as a string although it is written as a number (``lr: 2e-4``)."""
    assert _strings_that_are_numbers(_load(rel)) == []


@pytest.mark.parametrize('rel', TRAIN_FILES)
def test_training_sections_pass_the_parse_time_checks(rel):
    opt = _load(rel)
    check_optim(opt['train'])
    parse_mclir_options(opt)


@pytest.mark.parametrize('rel', [r for r in TRAIN_FILES if 'baseline' in r])
def test_baselines_are_the_add_on_model_without_spn(rel):
    """So that they write experiments/ where the SPN files do, through BasicSR's train.py too."""
    opt = _load(rel)
    assert opt['model_type'] == 'ModelContrastiveModel'
    assert not {'spn_opt', 'negatives', 'cr_opt', 'neg_iter'} & set(opt['train'])
    spn = _load(rel.replace('baseline', 'SPN'))
    assert {k: v for k, v in opt.items() if k not in ('name', 'train')} == \
        {k: v for k, v in spn.items() if k not in ('name', 'train')}


def shrink(opt, data, iters=ITERS):
    """The shipped options on tiny data for ``iters`` iterations."""
    for phase, dataset in opt['datasets'].items():
        dataset.update(dataroot_gt=os.path.join(data, 'gt'), dataroot_lq=os.path.join(data, 'lq'),
                       filename_tmpl='{}', io_backend={'type': 'disk'})
        dataset.pop('meta_info_file', None)
        if phase == 'train':
            dataset.update(gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=1)
    train = opt['train']
    train['total_iter'] = iters
    sched = train.get('scheduler', {})
    for key in ('milestones', 'periods'):
        if key in sched:
            sched[key] = [iters] * len(sched[key])
    if 'T_max' in sched:
        sched['T_max'] = iters
    opt['val']['val_freq'] = iters
    opt['logger'].update(print_freq=1, save_checkpoint_freq=iters)
    return opt


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('shipped')
    return {scale: make_paired_dataset(str(root / f'x{scale}'), scale, n=2, size=64, noise=0.05)
            for scale in (1, 2, 4)}


@pytest.mark.slow
@pytest.mark.parametrize('rel', TRAIN_FILES)
def test_shipped_file_trains_through_basicsr_train_py(rel, tiny_data, tmp_path):
    opt = shrink(_load(rel), tiny_data[opt_scale(rel)])
    os.makedirs(tmp_path / 'experiments' / 'pretrained_models')
    write_vgg_weights(str(tmp_path / 'experiments' / 'pretrained_models' / 'vgg16-397923af.pth'))
    write_yaml(tmp_path / 'train.yml', opt)
    proc = run([PY, os.path.join(BASICSR, 'train.py'), '-opt', 'train.yml'], cwd=tmp_path,
               env={'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'})
    assert 'End of training' in proc.stdout + proc.stderr
    assert (tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth').is_file()
    assert (tmp_path / 'experiments' / opt['name'] / 'training_states' / f'{ITERS}.state').is_file()


def opt_scale(rel):
    return int(_load(rel).get('scale', 1))
