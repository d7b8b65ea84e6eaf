"""BasicSR's own sections of an add-on run's option file, checked when it is parsed: network_g (a registered arch,
arguments that bind to its constructor, values of a plausible type), scale, the datasets, train.total_iter.
Each problem is one line that starts with the option path; through BasicSR's train.py / test.py nothing is
written (the GT/LQ pair checks have their own file, test_preflight_pairs.py; both are run end to end here)."""
import copy
import glob
import os
import re
import shutil

import pytest
import torch
import yaml

from mclir_basicsr.preflight import PreflightError, check_run
from mclir_basicsr.preflight.arguments import check_arguments, kinds_of_text, parameter_kinds
from mclir_basicsr.preflight.sections import check_sections
from mclir_basicsr.validate import MCLIROptionError

from helpers import NETWORKS, PY, REPO, make_paired_dataset, run, test_options, train_options, write_yaml

SPN = {'type': 'SPNLoss', 'loss_weight': 0.1, 'feature': 'pixel'}
FFANET = {'type': 'FFANet', 'gps': 2, 'blocks': 1, 'num_feat': 8}


def parsed(opt, is_train=True):
    """``opt`` as BasicSR's parse_options leaves it for the hook (each dataset gets its phase and the scale)."""
    opt = copy.deepcopy(opt)
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
    opt['is_train'] = is_train
    return opt


def base(data='data', **kw):
    return train_options('sections', data, spn=SPN, **kw)


def rejected(opt, is_train=True):
    """The message check_sections raises for ``opt``; it is one line."""
    with pytest.raises(MCLIROptionError) as e:
        check_sections(parsed(opt, is_train), is_train)
    message = str(e.value)
    assert '\n' not in message
    return message


# --------------------------------------------------------------------------- what must pass
def _load_option_file(path):
    from basicsr.utils.options import ordered_yaml
    with open(path) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(REPO, 'options', '*.yml')) +
                                        glob.glob(os.path.join(REPO, 'options', 'demo', '*.yml'))),
                         ids=os.path.basename)
def test_every_shipped_option_file_passes(path):
    opt = _load_option_file(path)
    is_train = 'train' in opt['datasets']
    check_sections(parsed(opt, is_train), is_train)


@pytest.mark.parametrize('arch,scale', [('EDSR', 2), ('EDSR', 3), ('SwinIR', 2), ('SwinIR', 1), ('RRDBNet', 4),
                                        ('MSRResNet', 4)])
def test_the_suites_option_dicts_pass(arch, scale):
    check_sections(parsed(base(arch=arch, scale=scale, gt_size=8 * scale)), True)
    check_sections(parsed(test_options('t', 'data', None, scale=scale, arch=arch), False), False)


def test_ffanet_and_accepted_edge_values():
    ok = [
        {'network_g': FFANET}, {'network_g': dict(FFANET, img_mean=[0.5, 0.5, 0.5], img_std=[1, 1, 1])},
        {'network_g': dict(NETWORKS['EDSR'](2), res_scale=0.1)},  # default 1, documented float
        {'network_g': dict(NETWORKS['EDSR'](2), img_range=255, rgb_mean=(0.5, 0.5, 0.5))},  # int for a float
        {'network_g': dict(NETWORKS['SwinIR'](2), img_size=[8, 8], qk_scale=None, mlp_ratio=2)},  # int | tuple(int)
        {'network_g': dict(NETWORKS['SwinIR'](2), anything=1)},  # SwinIR takes **kwargs
        {'network_g': dict(NETWORKS['RRDBNet'](4), scale=None)},  # null: always accepted
        {'train': {'total_iter': 100000.0}}, {'train': {'total_iter': 1}},
    ]
    for change in ok:
        opt = base()
        for key, value in change.items():
            opt[key] = dict(opt[key], **value) if key == 'train' else value
        check_sections(parsed(opt), True)


def test_accepted_dataset_values():
    opt = base()
    train = opt['datasets']['train']
    train.update(num_worker_per_gpu=0, dataset_enlarge_ratio=1.5, prefetch_mode='cuda', pin_memory=True,
                 filename_tmpl='{}x2')
    opt['datasets']['val_2'] = copy.deepcopy(opt['datasets']['val'])
    opt['datasets']['train']['type'] = 'RealESRGANPairedDataset'  # registered as RealESRGANPairedDataset_basicsr
    check_sections(parsed(opt), True)
    del opt['datasets']['train']['dataset_enlarge_ratio']  # optional
    check_sections(parsed(opt), True)
    opt['datasets']['train'].update(color='gray', mean=[0.5], std=[0.5])  # RealESRGANPairedDataset reads no color
    check_sections(parsed(opt), True)
    opt['datasets']['train'].update(type='PairedImageDataset', color='y')
    check_sections(parsed(opt), True)
    single = {'name': 'lq', 'type': 'SingleImageDataset', 'dataroot_lq': 'lq', 'io_backend': {'type': 'disk'}}
    test_run = {'network_g': FFANET, 'datasets': {'test_1': single}, 'val': {'save_img': False}}  # no scale, no train
    check_sections(parsed(test_run, False), False)


# --------------------------------------------------------------------------- network_g
def _net(**changes):
    opt = base()
    net = NETWORKS['EDSR'](2)
    net.update(changes)
    opt['network_g'] = {k: v for k, v in net.items() if v is not DROP}
    return opt


DROP = object()


@pytest.mark.parametrize('opt,message', [
    (_net(type='EDSRR'), r"^network_g\.type: 'EDSRR' is not a registered arch \(ARCH_REGISTRY\) \(did you mean "
                         r"'EDSR'\?\)$"),
    (_net(type='swinir'), r"^network_g\.type: 'swinir' is not .*\(did you mean 'SwinIR'\?\)$"),
    (_net(type='RRDBnet'), r"did you mean 'RRDBNet'\?"),
    (_net(type='FFA_Net'), r"did you mean 'FFANet'\?"),
    (_net(type='NoSuchNetwork'), r"^network_g\.type: 'NoSuchNetwork' is not a registered arch \(ARCH_REGISTRY\); "
                                 r"registered: .*\bEDSR\b.*\bFFANet\b.*\bSwinIR\b"),
    (_net(type=DROP), r'^network_g\.type: not set \(expected the name of a registered arch'),
    (_net(type=3), r'^network_g\.type: expected the name of a registered arch .*got 3$'),
    (_net(num_feats=8), r"^network_g\.num_feats: not an argument of EDSR \(basicsr\.archs\.edsr_arch\.EDSR\) "
                        r"\(did you mean 'num_feat'\?\)$"),
    (_net(upscale_factor=2), r"^network_g\.upscale_factor: not an argument of EDSR .*did you mean 'upscale'"),
    (_net(num_in_ch=DROP), r'^network_g\.num_in_ch: required by EDSR \(basicsr\.archs\.edsr_arch\.EDSR\), not set$'),
    (_net(num_in_ch=DROP, num_out_ch=DROP), r'^network_g\.num_in_ch: required by EDSR .*\(also not set: num_out_ch\)$'),
    (_net(num_feat='64'), r"^network_g\.num_feat: expected an integer, got '64' \(EDSR's num_feat: int, default 64\)$"),
    (_net(num_block=2.5), r"^network_g\.num_block: expected an integer, got 2\.5 "),
    (_net(num_feat=16.0), r"^network_g\.num_feat: expected an integer, got 16\.0 \(write 16; EDSR's num_feat: int, "
                          r"default 64\)$"),
    (_net(num_block=[2]), r'^network_g\.num_block: expected an integer, got \[2\] '),
    (_net(img_range='255'), r"^network_g\.img_range: expected a number, got '255' \(EDSR's img_range: float, "
                            r"default 255\.0\)$"),
    (_net(rgb_mean='0.4,0.4,0.4'), r"^network_g\.rgb_mean: expected a list, got '0\.4,0\.4,0\.4'"),
    (_net(upscale={'x': 2}), r"^network_g\.upscale: expected an integer, got \{'x': 2\}"),
])
def test_bad_network_g(opt, message):
    assert re.search(message, rejected(opt)), rejected(opt)


def test_network_g_missing_or_not_a_mapping():
    opt = base()
    del opt['network_g']
    assert rejected(opt).startswith('network_g: not set (expected a mapping with the arch, e.g. {type: EDSR')
    opt['network_g'] = None
    assert rejected(opt).startswith('network_g: not set')
    opt['network_g'] = 'EDSR'
    assert rejected(opt) == ("network_g: expected a mapping, e.g. {type: EDSR, num_in_ch: 3, num_out_ch: 3, "
                             "upscale: 2}, got 'EDSR'")


@pytest.mark.parametrize('network,message', [
    (dict(NETWORKS['SwinIR'](2), depths='6'), r"^network_g\.depths: expected a list, got '6' \(SwinIR's depths: "
                                              r"tuple\(int\), default \(6, 6, 6, 6\)\)$"),
    (dict(NETWORKS['SwinIR'](2), embed_dim=[12]), r'^network_g\.embed_dim: expected an integer, got \[12\]'),
    (dict(NETWORKS['SwinIR'](2), img_size='8'), r"^network_g\.img_size: expected an integer or a list, got '8'"),
    (dict(NETWORKS['SwinIR'](2), qkv_bias='yes'), r"^network_g\.qkv_bias: expected true or false, got 'yes'"),
    (dict(NETWORKS['SwinIR'](2), mlp_ratio='two'), r"^network_g\.mlp_ratio: expected a number, got 'two'"),
    (dict(NETWORKS['SwinIR'](2), upsampler=['pixelshuffle']), r'^network_g\.upsampler: expected a string, got \['),
    (dict(NETWORKS['RRDBNet'](4), scale='4'), r"^network_g\.scale: expected an integer, got '4' \(RRDBNet's scale: "
                                              r"default 4\)$"),
    (dict(NETWORKS['RRDBNet'](4), num_grow_ch=4.5), r'^network_g\.num_grow_ch: expected an integer, got 4\.5'),
    ({'type': 'RRDBNet', 'num_out_ch': 3}, r'^network_g\.num_in_ch: required by RRDBNet'),
    (dict(NETWORKS['MSRResNet'](4), num_blocks=1), r"^network_g\.num_blocks: not an argument of MSRResNet .*did you "
                                                   r"mean 'num_block'"),
    (dict(NETWORKS['MSRResNet'](4), upscale='x4'), r"^network_g\.upscale: expected an integer, got 'x4'"),
    (dict(FFANET, blocks='19'), r"^network_g\.blocks: expected an integer, got '19' \(FFANet's blocks: default 19\)$"),
    (dict(FFANET, num_feats=8), r"^network_g\.num_feats: not an argument of FFANet "
                                r"\(mclir_basicsr\.archs\.ffanet_arch\.FFANet\) \(did you mean 'num_feat'\?\)$"),
    (dict(FFANET, img_mean='0.6'), r"^network_g\.img_mean: expected a list, got '0\.6'"),
])
def test_bad_arguments_of_real_archs(network, message):
    opt = base()
    opt['network_g'] = network
    assert re.search(message, rejected(opt)), rejected(opt)


def test_the_archs_reject_what_the_check_rejects():
    """The values the check rejects are ones the archs cannot be built with (so it rejects nothing that works)."""
    from basicsr.archs import build_network
    for network in (dict(NETWORKS['EDSR'](2), num_feat='16'), dict(NETWORKS['EDSR'](2), num_feat=16.0),
                    dict(NETWORKS['MSRResNet'](4), num_block=1.5),
                    dict(NETWORKS['SwinIR'](2), depths='1'), dict(FFANET, blocks='1')):
        with pytest.raises((TypeError, ValueError, AssertionError, RuntimeError)):
            build_network(copy.deepcopy(network))
    for network in (dict(NETWORKS['EDSR'](2), res_scale=0.1, img_range=255),
                    dict(NETWORKS['SwinIR'](2), img_size=[8, 8]), dict(FFANET, img_mean=[0.5, 0.5, 0.5])):
        build_network(copy.deepcopy(network))  # and these it accepts are built


class _Downloading(torch.nn.Module):
    """An arch whose constructor fetches its pretrained weights (here: a connection that must never be made)."""

    def __init__(self, num_feat=8):
        super().__init__()
        import urllib.request
        urllib.request.urlopen('http://192.0.2.1/weights.pth', timeout=5)


def test_what_the_constructor_refuses_is_named_before_the_run():
    depths = dict(NETWORKS['SwinIR'](2), depths=[1, 1], num_heads=[2])  # SwinIR's IndexError, as it is built
    assert rejected(dict(base(), network_g=depths)) == (
        'network_g: SwinIR (basicsr.archs.swinir_arch.SwinIR) cannot be built from these arguments: IndexError: list '
        'index out of range')
    assert rejected(dict(base(), network_g=dict(FFANET, img_std=None))) == (  # null passes the binding, not torch
        'network_g: FFANet (mclir_basicsr.archs.ffanet_arch.FFANet) cannot be built from these arguments: TypeError: '
        'must be real number, not NoneType')
    disc = {'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8, 'input_size': 96}
    assert rejected(dict(base(), network_d=disc)).startswith(
        'network_d: VGGStyleDiscriminator (basicsr.archs.discriminator_arch.VGGStyleDiscriminator) cannot be built '
        'from these arguments: AssertionError: input size must be 128 or 256')


def test_building_the_network_leaves_no_trace():
    """The run's own network gets the weights it would have had (the random states are as before), and a
    constructor that downloads is not built (nor is a connection made)."""
    import random

    import numpy as np
    from basicsr.utils.registry import ARCH_REGISTRY
    opt = parsed(base(arch='SwinIR'))  # built on the CPU (SwinIR's constructor needs real tensors)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    check_sections(opt, True)
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert (np.random.get_state()[1] == states[2]).all()
    ARCH_REGISTRY._obj_map['_Downloading'] = _Downloading
    try:
        check_sections(parsed(dict(base(), network_g={'type': '_Downloading'})), True)
    finally:
        del ARCH_REGISTRY._obj_map['_Downloading']


# --------------------------------------------------------------------------- the binding rules, on any callable
def test_kinds_from_docstring_and_annotation_text():
    assert kinds_of_text('int | tuple(int)') == {'int', 'seq'}
    assert kinds_of_text('int, optional') == {'int'}
    assert kinds_of_text('Optional[float]') == {'float'}
    assert kinds_of_text('typing.Union[int, str]') == {'int', 'str'}
    assert kinds_of_text('list[str]') == {'seq'}
    assert kinds_of_text('int or float') == {'int', 'float'}
    assert kinds_of_text('nn.Module') is None and kinds_of_text('Tensor | int') is None  # takes anything
    assert kinds_of_text('None') is None


class Custom:
    """A constructor with every kind of parameter.

    Args:
        ratio (float): documented float, integer default.
        size (int | tuple[int]): an int or a pair.
        layer (nn.Module): not a plain value.
    """

    def __init__(self, channels: int, ratio=1, size=8, flag=False, name='x', layer=None, *, mode: 'str' = 'a',
                 scales=(1, 2), extra: dict = None):
        pass


class Open:
    def __init__(self, depth, **kwargs):
        pass


def positional_only(a, /, b=1):
    return a, b


@pytest.mark.parametrize('func,arguments,message', [
    (Custom, {'ratio': 1}, r'^n\.channels: required by C, not set$'),
    (Custom, {'channels': 3, 'chanels': 3}, r"^n\.chanels: not an argument of C \(did you mean 'channels'\?\)$"),
    (Custom, {'channels': '3'}, r"^n\.channels: expected an integer, got '3' \(Custom's channels: no default\)$"),
    (Custom, {'channels': 3.0}, r"^n\.channels: expected an integer, got 3\.0 \(write 3; Custom's channels: "),
    (Custom, {'channels': 3, 'ratio': 'half'}, r"^n\.ratio: expected a number, got 'half' \(Custom's ratio: float, "
                                               r"default 1\)$"),
    (Custom, {'channels': 3, 'size': 'big'}, r'^n\.size: expected an integer or a list, got'),
    (Custom, {'channels': 3, 'flag': 'no'}, r"^n\.flag: expected true or false, got 'no'"),
    (Custom, {'channels': 3, 'name': ['a']}, r'^n\.name: expected a string, got'),
    (Custom, {'channels': 3, 'mode': {'a': 1}}, r'^n\.mode: expected a string, got'),
    (Custom, {'channels': 3, 'scales': 'ab'}, r"^n\.scales: expected a list, got 'ab'"),
    (Custom, {'channels': 3, 'extra': 5}, r'^n\.extra: expected a mapping, got 5'),
    (Open, {}, r'^n\.depth: required by C, not set$'),
    (positional_only, {'a': 1}, r"^n\.a: not an argument of C"),
])
def test_check_arguments_rejects(func, arguments, message):
    with pytest.raises(MCLIROptionError, match=message):
        check_arguments('n', 'C', func, arguments)


@pytest.mark.parametrize('func,arguments', [
    (Custom, {'channels': 3}), (Custom, {'channels': 3, 'ratio': 0.25, 'size': [8, 8], 'flag': 1}),
    (Custom, {'channels': 3, 'size': 8, 'scales': 2, 'name': 3, 'layer': 'anything', 'mode': None, 'extra': {}}),
    (Custom, {'channels': 3, 'flag': None, 'ratio': None, 'size': None}),  # null: always accepted
    (Open, {'depth': 2, 'whatever': [1], 'other': 'x'}),  # **kwargs: any name
    (Open, {'depth': 'anything: no default, no docs'}),
])
def test_check_arguments_accepts(func, arguments):
    check_arguments('n', 'C', func, arguments)


def test_parameter_kinds_are_the_union_of_what_is_known():
    import inspect
    params = inspect.signature(Custom).parameters
    assert parameter_kinds(params['ratio'], 'float') == {'int', 'float'}
    assert parameter_kinds(params['channels'], None) == {'int'}  # the annotation
    assert parameter_kinds(params['layer'], 'nn.Module') is None
    assert parameter_kinds(params['extra'], None) == {'dict'}
    assert parameter_kinds(inspect.signature(Open).parameters['depth'], None) is None


# --------------------------------------------------------------------------- scale, datasets, train
@pytest.mark.parametrize('value', [0, -2, 2.0, '2', True, None])
def test_bad_scale(value):
    opt = base()
    opt['scale'] = value
    assert rejected(opt) == f'scale: expected a positive integer, got {value!r}'


def test_scale_required_by_paired_datasets():
    opt = base()
    del opt['scale']
    assert rejected(opt).startswith('scale: not set (expected a positive integer; PairedImageDataset of '
                                    'datasets.train reads it')


def _train_set(**changes):
    opt = base()
    for key, value in changes.items():
        if value is DROP:
            opt['datasets']['train'].pop(key, None)
        else:
            opt['datasets']['train'][key] = value
    return opt


@pytest.mark.parametrize('opt,message', [
    (_train_set(type='PairedImageDatset'), "datasets.train.type: 'PairedImageDatset' is not a registered dataset "
                                           "(DATASET_REGISTRY) (did you mean 'PairedImageDataset'?)"),
    (_train_set(type='pairedimagedataset'), "did you mean 'PairedImageDataset'?"),
    (_train_set(type=DROP), 'datasets.train.type: not set (expected the name of a registered dataset'),
    (_train_set(io_backend={'type': 'disc'}), "datasets.train.io_backend.type: expected one of disk, memcached, "
                                              "lmdb; got 'disc' (did you mean 'disk'?)"),
    (_train_set(io_backend=DROP), 'datasets.train.io_backend: not set (expected e.g. {type: disk}; '
                                  'PairedImageDataset reads it)'),
    (_train_set(io_backend='disk'), "datasets.train.io_backend: expected a mapping, e.g. {type: disk}, got 'disk'"),
    (_train_set(filename_tmpl='{}{}'), "datasets.train.filename_tmpl: expected a string with one {} for the GT "
                                       "file's name, e.g. '{}x4'; got '{}{}' (IndexError"),
    (_train_set(filename_tmpl='{name}x2'), "filename_tmpl: expected a string with one {}"),
    (_train_set(filename_tmpl=4), "datasets.train.filename_tmpl: expected a string with one {}"),
    (_train_set(batch_size_per_gpu=0), 'datasets.train.batch_size_per_gpu: expected a positive integer, got 0'),
    (_train_set(batch_size_per_gpu=-1), 'batch_size_per_gpu: expected a positive integer, got -1'),
    (_train_set(batch_size_per_gpu=2.5), 'batch_size_per_gpu: expected a positive integer, got 2.5'),
    (_train_set(batch_size_per_gpu='4'), "batch_size_per_gpu: expected a positive integer, got '4'"),
    (_train_set(batch_size_per_gpu=True), 'batch_size_per_gpu: expected a positive integer, got True'),
    (_train_set(batch_size_per_gpu=DROP), 'datasets.train.batch_size_per_gpu: not set (BasicSR reads it in '
                                          'training)'),
    (_train_set(num_worker_per_gpu=-1), 'datasets.train.num_worker_per_gpu: expected an integer >= 0, got -1'),
    (_train_set(num_worker_per_gpu='4'), "num_worker_per_gpu: expected an integer >= 0, got '4'"),
    (_train_set(num_worker_per_gpu=DROP), 'datasets.train.num_worker_per_gpu: not set'),
    (_train_set(dataset_enlarge_ratio=0), 'datasets.train.dataset_enlarge_ratio: expected a finite number > 0, got 0'),
    (_train_set(dataset_enlarge_ratio=None), 'dataset_enlarge_ratio: expected a finite number > 0, got None'),
    (_train_set(dataset_enlarge_ratio='x'), "dataset_enlarge_ratio: expected a finite number > 0, got 'x'"),
    (_train_set(gt_size=0), 'datasets.train.gt_size: expected a positive integer, got 0'),
    (_train_set(gt_size='16'), "datasets.train.gt_size: expected a positive integer, got '16'"),
    (_train_set(gt_size=15), 'datasets.train.gt_size: expected a multiple of scale 2 (the LQ patch is '
                             'gt_size // scale), got 15'),
    (_train_set(gt_size=DROP), 'datasets.train.gt_size: not set (PairedImageDataset crops training pairs of gt_size)'),
    (_train_set(use_rot='yes'), "datasets.train.use_rot: expected true or false, got 'yes'"),
    (_train_set(use_hflip=DROP), 'datasets.train.use_hflip: not set'),
    (_train_set(prefetch_mode='gpu'), "datasets.train.prefetch_mode: expected one of cpu, cuda, null; got 'gpu' "
                                      "(did you mean 'cpu'?)"),
    (_train_set(prefetch_mode='cuda'), "datasets.train.pin_memory: expected true with prefetch_mode: cuda"),
    (_train_set(color='gray'), "datasets.train.color: expected y or null (BasicSR converts to the Y channel only for "
                               "y, and ignores any other value: the images stay RGB), got 'gray'"),
    (_train_set(mean=[0.5, 0.5, 0.5]), 'datasets.train.std: not set, but mean is (BasicSR normalises with both)'),
    (_train_set(mean='imagenet', std=[1]), "datasets.train.mean: expected null or a list of 1 or 3 numbers (one per "
                                           "channel), got 'imagenet'"),
    (_train_set(mean=[0.5] * 3, std=[0.5, 0, 0.5]),
     'datasets.train.std: expected null or a list of 1 or 3 numbers > 0'),
])
def test_bad_dataset(opt, message):
    assert message in rejected(opt)


def test_dataset_name(tmp_path):
    """BasicSR's build_dataset logs each dataset's name (a KeyError once the run's folders exist without it) and
    saves a phase's images in a folder named after it (a path of a number is a TypeError)."""
    from basicsr.data import build_dataset
    nameless = parsed(base(make_paired_dataset(str(tmp_path / 'data'), 2)))['datasets']['val']
    del nameless['name']
    with pytest.raises(KeyError, match='name'):
        build_dataset(nameless)
    for phase in ('train', 'val'):
        opt = base()
        del opt['datasets'][phase]['name']
        assert rejected(opt) == f'datasets.{phase}.name: not set (BasicSR names the dataset in its log and its ' \
                                'results with it), e.g. name: Set5'
    opt = base()
    opt['datasets']['train']['name'] = opt['datasets']['val']['name'] = 2017  # logged only: works
    check_sections(parsed(opt), True)
    opt['val']['save_img'] = True
    assert rejected(opt) == ('datasets.val.name: expected a string in quotes (the folder of its saved images is named '
                             'after it), got 2017')


def test_phases_of_a_training_run():
    opt = base()
    opt['datasets']['valid'] = opt['datasets'].pop('val')
    assert rejected(opt) == ("datasets.valid: not a phase a training run reads (expected train, val or "
                             "val_<anything>) (did you mean 'val'?)")
    opt = base()
    opt['datasets']['training'] = opt['datasets'].pop('train')
    assert rejected(opt) == "datasets.train: not set (a training run needs a train dataset) (did you mean 'training'?)"
    opt = base()
    opt['datasets']['val']['type'] = 'SingleImageDatset'
    assert "datasets.val.type: 'SingleImageDatset' is not a registered dataset" in rejected(opt)
    test_run = parsed(test_options('t', 'data', None), False)  # phases of a test run: any name but train
    check_sections(test_run, False)
    test_run['datasets']['train'] = test_run['datasets'].pop(next(iter(test_run['datasets'])))
    with pytest.raises(MCLIROptionError, match=r'^datasets\.train: a test run tests every phase, but BasicSR builds '
                                               r'one named train with its training loader'):
        check_sections(test_run, False)


@pytest.mark.parametrize('value,message', [
    ('abc', "train.total_iter: expected a positive integer, got 'abc'"),
    ('1e5', "train.total_iter: expected a positive integer, got '1e5' (YAML reads 1e5 as a string: write 100000)"),
    ('300000', "train.total_iter: expected a positive integer, got '300000' (a string: write it without quotes)"),
    (0, 'train.total_iter: expected a positive integer, got 0'),
    (-10, 'train.total_iter: expected a positive integer, got -10'),
    (2.5, 'train.total_iter: expected a positive integer, got 2.5'),
    (float('inf'), 'train.total_iter: expected a positive integer, got inf'),
    (True, 'train.total_iter: expected a positive integer, got True'),
    (None, 'train.total_iter: expected a positive integer, got None'),
])
def test_bad_total_iter(value, message):
    assert rejected(base(total_iter=value)) == message


def test_total_iter_and_train_section_required():
    opt = base()
    del opt['train']['total_iter']
    assert rejected(opt) == 'train.total_iter: not set (expected a positive integer, the number of iterations)'
    del opt['train']
    assert rejected(opt).startswith('train: not set (a training run needs it')
    check_sections(parsed(dict(opt, datasets={'test': opt['datasets']['val']}), False), False)  # a test run: no train


def test_yaml_spellings_of_total_iter(tmp_path):
    """What YAML makes of the ways people write 100000, as BasicSR's loader reads them."""
    from basicsr.utils.options import ordered_yaml
    for text, ok in (('100000', True), ('!!float 1e5', True), ('1.0e+5', True), ('1e5', False), ('1e+5', False)):
        value = yaml.load(f'total_iter: {text}', Loader=ordered_yaml()[0])['total_iter']
        opt = base(total_iter=value)
        if ok:
            check_sections(parsed(opt), True)
        else:
            assert rejected(opt).startswith(f"train.total_iter: expected a positive integer, got '{text}' "
                                            '(YAML reads')


# --------------------------------------------------------------------------- check_run: the order of the checks
def test_check_run_checks_sections_first_and_pairs_last(tmp_path):
    data = make_paired_dataset(str(tmp_path / 'data'), 2)
    opt = base(data)
    check_run(parsed(opt), True)
    bad = copy.deepcopy(opt)
    bad['network_g']['type'] = 'EDSRR'
    bad['train']['spn_opt']['mode'] = 'substract'  # an MCLIR error too: BasicSR's sections come first
    bad['datasets']['train']['dataroot_gt'] = str(tmp_path / 'gone')
    with pytest.raises(MCLIROptionError, match=r'^network_g\.type: '):
        check_run(parsed(bad), True)
    os.remove(os.path.join(data, 'lq', '005.png'))
    bad = copy.deepcopy(opt)
    bad['datasets']['val']['dataroot_gt'] = str(tmp_path / 'gone')  # a missing folder is named before the pairs
    with pytest.raises(PreflightError, match=r'^datasets\.val\.dataroot_gt: .*gone does not exist$'):
        check_run(parsed(bad), True)
    with pytest.raises(PreflightError, match=r'^datasets\.train\.dataroot_lq: 5 files, but dataroot_gt has 6'):
        check_run(parsed(opt), True)


# --------------------------------------------------------------------------- end to end, BasicSR's own scripts
def _basicsr_script(name):
    import basicsr
    return os.path.join(os.path.dirname(basicsr.__file__), name)


def _rename_lq(data, template):
    for name in os.listdir(os.path.join(data, 'lq')):
        stem, ext = os.path.splitext(name)
        os.rename(os.path.join(data, 'lq', name), os.path.join(data, 'lq', template.format(stem) + ext))


def _typo_type(opt, data):
    opt['network_g']['type'] = 'EDSRR'


def _string_argument(opt, data):
    opt['network_g']['num_feat'] = '16'


def _zero_batch(opt, data):
    opt['datasets']['train']['batch_size_per_gpu'] = 0


def _string_total_iter(opt, data):
    opt['train']['total_iter'] = 'abc'


def _lq_missing(opt, data):
    os.remove(os.path.join(data, 'lq', '003.png'))


def _lq_misnamed(opt, data):
    _rename_lq(data, '{}x2')


def _data_scale(opt, data):
    shutil.rmtree(data)
    make_paired_dataset(data, 3)  # x3 data, scale: 2


def _string_lr(opt, data):
    opt['train']['optim_g']['lr'] = '2e-4'  # what YAML makes of `lr: 2e-4`


def _misspelt_loss(opt, data):
    opt['train']['pixel_otp'] = opt['train'].pop('pixel_opt')  # BasicSR's SRModel: 'Both pixel and perceptual ...'


E2E = [
    (_misspelt_loss, "train.pixel_otp: not read by ModelContrastiveModel (did you mean 'pixel_opt'?); as written, the "
                     "run would train without it"),
    (_typo_type, "network_g.type: 'EDSRR' is not a registered arch (ARCH_REGISTRY) (did you mean 'EDSR'?)"),
    (_string_argument, "network_g.num_feat: expected an integer, got '16' (EDSR's num_feat: int, default 64)"),
    (_zero_batch, 'datasets.train.batch_size_per_gpu: expected a positive integer, got 0'),
    (_string_total_iter, "train.total_iter: expected a positive integer, got 'abc'"),
    (_string_lr, "train.optim_g.lr: expected a number > 0, got '2e-4' (YAML reads 2e-4 as a string: write "
                 "!!float 2e-4)"),
    (_lq_missing, 'datasets.train.dataroot_lq: 5 files, but dataroot_gt has 6; missing from dataroot_lq: 003.png'),
    (_lq_misnamed, "datasets.train.dataroot_lq: 6 of the 6 GT files have no LQ file of the name filename_tmpl '{}' "
                   "gives; missing from dataroot_lq: 000.png, 001.png, 002.png and 3 more; not paired with a GT file: "
                   "000x2.png, 001x2.png, 002x2.png and 3 more; filename_tmpl '{}x2' would pair them all"),
    (_data_scale, 'datasets.train.dataroot_lq: LQ 000.png is 16x16 and GT 000.png is 48x48 (x3), but scale is 2'),
]


def _assert_one_line_error(proc, message):
    """Exit status 1 and the error as stderr's one line (``module.Class: message``), no traceback."""
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(message), proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize('damage,message', E2E, ids=[d.__name__.strip('_') for d, _ in E2E])
def test_basicsr_train_script_stops_before_writing(workdir, damage, message):
    data = make_paired_dataset(str(workdir / 'data'), 2)
    opt = base(data)
    damage(opt, data)
    write_yaml(workdir / 'o.yml', opt)
    proc = run([PY, _basicsr_script('train.py'), '-opt', 'o.yml'], cwd=workdir, check=False)
    _assert_one_line_error(proc, message)
    assert sorted(os.listdir(workdir)) == ['data', 'o.yml']  # no experiments/, no tb_logger/


@pytest.mark.slow
def test_basicsr_test_script_stops_before_writing(workdir):
    data = make_paired_dataset(str(workdir / 'data'), 3)
    opt = test_options('t', data, None, scale=2)
    opt['datasets']['test_1']['filename_tmpl'] = '{}'
    write_yaml(workdir / 't.yml', opt)
    proc = run([PY, _basicsr_script('test.py'), '-opt', 't.yml'], cwd=workdir, check=False)
    _assert_one_line_error(proc, 'datasets.test_1.dataroot_lq: LQ 000.png is 16x16 and GT 000.png is 48x48 (x3), '
                                 'but scale is 2')
    assert sorted(os.listdir(workdir)) == ['data', 't.yml']  # no results/


# --------------------------------------------------------------------------- losses, val, logger, network_d
def _train(**changes):
    opt = base()
    opt['train'].update(changes)
    return opt


def _val(**changes):
    opt = base()
    opt['val'] = {k: v for k, v in dict(opt['val'], **changes).items() if v is not DROP}
    return opt


def _logger(**changes):
    opt = base()
    opt['logger'] = {k: v for k, v in dict(opt['logger'], **changes).items() if v is not DROP}
    return opt


def _single_val(**changes):
    opt = _val(**changes)
    opt['datasets']['val'] = {'type': 'SingleImageDataset', 'name': 'lq only', 'dataroot_lq': 'lq',
                              'io_backend': {'type': 'disk'}}
    return opt


PSNR = {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}


@pytest.mark.parametrize('opt,message', [
    (_train(pixel_opt={'type': 'L1loss', 'loss_weight': 1.0}),
     r"^train\.pixel_opt\.type: 'L1loss' is not a registered loss \(LOSS_REGISTRY\) \(did you mean 'L1Loss'\?\)$"),
    (_train(pixel_opt={'type': 'L1Loss', 'loss_wieght': 1.0}),
     r"^train\.pixel_opt\.loss_wieght: not an argument of L1Loss .*\(did you mean 'loss_weight'\?\)$"),
    (_train(pixel_opt={'type': 'L1Loss', 'loss_weight': '1'}), r"^train\.pixel_opt\.loss_weight: expected a number"),
    (_train(pixel_opt=['L1Loss']), r'^train\.pixel_opt: expected a mapping, e\.g\. \{type: L1Loss'),
    (_train(pixel_opt={'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'avg'}),
     r"^train\.pixel_opt: L1Loss refuses these arguments: Unsupported reduction mode: avg\. Supported ones are"),
    (_train(perceptual_opt={'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1}, 'vgg_typ': 'vgg19'}),
     r"^train\.perceptual_opt\.vgg_typ: not an argument of PerceptualLoss .*did you mean 'vgg_type'"),
    (_train(fft_opt={'loss_weight': 1}), r'^train\.fft_opt\.type: not set \(expected the name of a registered loss'),
    (_val(val_freq='5e3'), r"^val\.val_freq: expected a positive integer, got '5e3' \(YAML reads"),
    (_val(val_freq=DROP), r'^val\.val_freq: not set \(BasicSR validates every val_freq iterations\)$'),
    (_val(save_img='no'), r"^val\.save_img: expected true or false, got 'no'$"),
    (_val(save_img=DROP), r'^val\.save_img: not set'),
    (_val(pbar=1), r'^val\.pbar: expected true or false, got 1$'),
    (_val(metrics=[PSNR]), r'^val\.metrics: expected a mapping, e\.g\. \{psnr:'),
    (_val(metrics={'psnr': dict(PSNR, type='calculate_PSNR')}),
     r"^val\.metrics\.psnr\.type: 'calculate_PSNR' is not a registered metric \(METRIC_REGISTRY\) \(did you mean "
     r"'calculate_psnr'\?\)$"),
    (_val(metrics={'psnr': {'type': 'calculate_psnr'}}), r'^val\.metrics\.psnr\.crop_border: required by '
                                                          r'calculate_psnr .*, not set$'),
    (_val(metrics={'psnr': dict(PSNR, crop_border='2')}), r"^val\.metrics\.psnr\.crop_border: expected an integer"),
    (_val(metrics={'psnr': dict(PSNR, better='more')}), r"^val\.metrics\.psnr\.better: expected one of higher, lower"),
    (_val(metrics={'psnr': dict(PSNR, img2=1)}), r'^val\.metrics\.psnr\.img2: set, but the model passes the images'),
    (_val(metrics={'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_chanel': True}}),
     r"^val\.metrics\.psnr\.test_y_chanel: not an argument of calculate_psnr .*\(did you mean 'test_y_channel'\?\); "
     r'it would be ignored \(arguments: crop_border, input_order, test_y_channel\)$'),
    (_val(metrics={'psnr': dict(PSNR, crop=4)}), r'^val\.metrics\.psnr\.crop: not an argument of calculate_psnr'),
    (_single_val(metrics={'psnr': PSNR}), r'^val\.metrics\.psnr: calculate_psnr .* compares the output with GT, but '
                                          r'datasets\.val gives no GT image \(SingleImageDataset\)'),
    (_logger(print_freq=0), r'^logger\.print_freq: expected a positive integer, got 0$'),
    (_logger(save_checkpoint_freq='5e3'), r"^logger\.save_checkpoint_freq: expected a positive integer, got '5e3'"),
    (_logger(save_checkpoint_freq=DROP), r'^logger\.save_checkpoint_freq: not set'),
    (_logger(use_tb_logger='yes'), r"^logger\.use_tb_logger: expected true or false, got 'yes'$"),
    (_logger(use_tb_logger=False, wandb={'project': 'p'}), r'^logger\.use_tb_logger: expected true with '
                                                            r'logger\.wandb\.project set'),
    (dict(base(), logger=None), r"^logger: not set \(BasicSR's train\.py reads it"),
    (dict(base(), network_d={'type': 'VGGStyleDiscriminatr', 'num_in_ch': 3, 'num_feat': 8}),
     r"^network_d\.type: 'VGGStyleDiscriminatr' is not a registered arch .*did you mean 'VGGStyleDiscriminator'"),
])
def test_bad_losses_val_logger(opt, message):
    assert re.search(message, rejected(opt)), rejected(opt)


def test_val_of_a_test_run():
    opt = test_options('t', 'data', None)
    check_sections(parsed(opt, False), False)
    assert rejected(dict(opt, val=None), False).startswith("val: not set (BasicSR's test.py reads it")
    no_suffix = dict(opt, val={'save_img': True, 'metrics': None})
    assert rejected(no_suffix, False).startswith("val.suffix: not set (BasicSR's test.py reads it when save_img")
    check_sections(parsed(dict(opt, val={'save_img': True, 'suffix': None}), False), False)


def test_metrics_get_only_the_images_they_take():
    """A no-reference metric (no img2 parameter, no **kwargs) is bound with the one image it takes."""
    from basicsr.utils.registry import METRIC_REGISTRY

    def calculate_nr_only(img, crop_border):
        return 0.0

    METRIC_REGISTRY._obj_map['calculate_nr_only'] = calculate_nr_only
    try:
        check_sections(parsed(_val(metrics={'nr': {'type': 'calculate_nr_only', 'crop_border': 0}})), True)
        assert re.search(r'^val\.metrics\.nr\.crop_border: required by calculate_nr_only',
                         rejected(_val(metrics={'nr': {'type': 'calculate_nr_only'}})))
    finally:
        del METRIC_REGISTRY._obj_map['calculate_nr_only']


def test_accepted_losses_val_logger():
    ok = [_train(pixel_opt=None, perceptual_opt={'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1.0}}),
          _train(pixel_opt={'type': 'CharbonnierLoss', 'loss_weight': 1, 'eps': 1e-12}),
          _val(metrics=None), _val(metrics={'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'better': 'higher'}}),
          _val(val_freq=5000.0, pbar=True), dict(base(), val=None),
          _single_val(metrics={'niqe': {'type': 'calculate_niqe', 'crop_border': 0, 'better': 'lower'}}),
          _logger(use_tb_logger=True, wandb={'project': None, 'resume_id': None}),
          dict(base(), network_d={'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8})]
    for opt in ok:
        check_sections(parsed(opt), True)


# --------------------------------------------------------------------------- train loop keys, path, dist_params
@pytest.mark.parametrize('opt,message', [
    (_train(ema_decay=1.0), r'^train\.ema_decay: expected a number in \[0, 1\) \(0: no EMA\), got 1\.0$'),
    (_train(ema_decay='0.999'), r"^train\.ema_decay: expected .*, got '0\.999' \(a string: write it without quotes\)$"),
    (_train(warmup_iter=-2), r'^train\.warmup_iter: expected an integer >= -1 \(-1: no warm-up\), got -2$'),
    (_train(warmup_iter='5e3'), r"^train\.warmup_iter: expected .*got '5e3' \(YAML reads 5e3 as a string: "
                                r"write 5000\)$"),
    (_logger(save_checkpoint_frq=5000), r"^logger\.save_checkpoint_frq: unknown option \(did you mean "
                                        r"'save_checkpoint_freq'\?\); known: print_freq, save_checkpoint_freq, "),
    (_logger(wandb={'projet': 'p'}), r"^logger\.wandb\.projet: unknown option \(did you mean 'project'\?\); "
                                     r"known: project, resume_id$"),
    (_logger(wandb=['p']), r"^logger\.wandb: expected a mapping, e\.g\. \{project: \.\.\., resume_id: ~\}, "
                           r"got \['p'\]$"),
    (_val(save_imgs=True), r"^val\.save_imgs: unknown option \(did you mean 'save_img'\?\)"),
    (dict(base(), path={'pretrain_netwrok_g': 'net.pth'}), r"^path\.pretrain_netwrok_g: unknown option \(did you mean "
                                                            r"'pretrain_network_g'\?\)"),
    (dict(base(), path={'strict_load_g': 'yes'}), r"^path\.strict_load_g: expected true or false, got 'yes'$"),
    (dict(base(), path={'pretrain_network_g': 3}), r'^path\.pretrain_network_g: expected null or a string, got 3$'),
    (dict(base(), path=['x']), r"^path: expected a mapping, got \['x'\]$"),
    (dict(base(), dist_params={'backend': 'ncll', 'port': 29500}), r"^dist_params\.backend: expected one of nccl, "
                                                                   r"gloo, mpi; got 'ncll' \(did you mean 'nccl'\?\)$"),
    (dict(base(), dist_params={'backend': 'nccl', 'port': 70000}), r'^dist_params\.port: expected a port number'),
    (dict(base(), dist_params={'prot': 29500}), r"^dist_params\.prot: unknown option \(did you mean 'port'\?\)"),
    (_train_set(pin_memory='yes'), r"^datasets\.train\.pin_memory: expected true or false, got 'yes'$"),
])
def test_bad_train_loop_path_dist(opt, message):
    assert re.search(message, rejected(opt)), rejected(opt)


def test_accepted_train_loop_path_dist():
    ok = [_train(ema_decay=0.999, warmup_iter=-1), _train(warmup_iter=5000.0, ema_decay=0),
          dict(base(), path={'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                             'param_key_g': 'params_ema'}),
          dict(base(), dist_params={'backend': 'nccl', 'port': 29500}), _logger(save_checkpoint_freq=5000.0)]
    for opt in ok:
        check_sections(parsed(opt), True)


def test_mclir_options_are_validated_once_per_content(monkeypatch):
    """The start-up check, the model and the comparison tool each parse a copy of the option dict: the first
    validates, the others get a copy of its result, which they may change without touching each other's."""
    from mclir_basicsr import options
    calls = []
    parse = options._parse
    monkeypatch.setattr(options, '_parse', lambda opt: calls.append(1) or parse(opt))
    monkeypatch.setattr(options, '_PARSED', {})
    opt = base()
    first = options.parse_mclir_options(copy.deepcopy(opt))
    first.spn.loss_weight = 5.0
    second = options.parse_mclir_options(copy.deepcopy(opt))
    assert len(calls) == 1 and second.spn.loss_weight == SPN['loss_weight'] != 5.0
    opt['train']['spn_opt']['loss_weight'] = 0.5
    assert options.parse_mclir_options(opt).spn.loss_weight == 0.5 and len(calls) == 2
    opt['train']['spn_opt']['loss_weight'] = -1
    for _ in range(2):  # an error is not kept: it is raised each time
        with pytest.raises(MCLIROptionError, match=r'^train\.spn_opt\.loss_weight: '):
            options.parse_mclir_options(opt)
    assert len(calls) == 4


def test_a_missing_key_names_a_close_key_that_is_set():
    """In the sections that take other keys (train, datasets.train), a misspelt key is not unknown, but the key it
    was meant for is missing: the message names both."""
    opt = _train_set(batch_size_per_gpu=DROP, batch_size_per_gup=2)
    assert rejected(opt) == ('datasets.train.batch_size_per_gpu: not set (BasicSR reads it in training); '
                             'datasets.train.batch_size_per_gup is set: a typo?')
    opt = base()
    opt['train']['totl_iter'] = opt['train'].pop('total_iter')
    assert rejected(opt) == ('train.total_iter: not set (expected a positive integer, the number of iterations); '
                             'train.totl_iter is set: a typo?')


def test_vgg_layer_names_are_basicsrs():
    from basicsr.archs.vgg_arch import NAMES

    from mclir_basicsr.options import VGG_LAYERS
    assert VGG_LAYERS == {'vgg16': NAMES['vgg16'], 'vgg19': NAMES['vgg19']}


@pytest.mark.parametrize('change,message', [
    ({'spn_otp': SPN, 'spn_opt': DROP}, r"^train\.spn_otp: not read by ModelContrastiveModel \(did you mean "
                                        r"'spn_opt'\?\); as written, the run would train without it$"),
    ({'negatvies': {'update_every': [1]}}, r"^train\.negatvies: .*did you mean 'negatives'"),
    ({'ema_decy': 0.999}, r"^train\.ema_decy: .*did you mean 'ema_decay'"),
    ({'pixel_opt': None}, r'^train\.pixel_opt: not set \(the network needs a reconstruction loss: pixel_opt, '
                          r'perceptual_opt, uncertainty_opt or cr_opt; SPN only pushes away from the negatives\), '),
    ({'pixel_opt': DROP}, r'^train\.pixel_opt: not set \(the network needs a reconstruction loss'),
])
def test_a_train_key_misspelt_or_a_run_without_a_reconstruction_loss(change, message):
    opt = base()
    for key, value in change.items():
        if value is DROP:
            opt['train'].pop(key, None)
        else:
            opt['train'][key] = value
    assert re.search(message, rejected(opt)), rejected(opt)


def test_train_keys_of_other_models_or_far_from_any_pass():
    """Keys BasicSR's other models read (optim_d is one edit from optim_g), the official fork's use_grad_norm and
    keys close to nothing are left to the model's warning; a reconstruction loss other than pixel_opt is one."""
    for change in ({'optim_d': {'type': 'Adam', 'lr': 1e-4}, 'net_d_iters': 1, 'use_grad_norm': 0.05,
                    'my_own_setting': 3},
                   {'pixel_opt': None, 'uncertainty_opt': {'type': 'UncertaintyWeightedLoss'}},
                   {'pixel_opt': None,
                    'perceptual_opt': {'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1.0}}}):
        opt = base()
        opt['train'].update(change)
        check_sections(parsed(opt), True)
