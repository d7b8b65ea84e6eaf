"""The GT and LQ folders of BasicSR's paired datasets, checked when the option file is parsed: they pair one to one
by name (after filename_tmpl), the first pair is `scale` apart, gt_size fits the GT images (a sample of them read
from their headers). End-to-end runs through BasicSR's scripts: test_preflight_sections.py."""
import os
import shutil

import cv2
import pytest

from mclir_basicsr.preflight import PreflightError
from mclir_basicsr.preflight.pairs import SAMPLE, check_pairs, image_size, sample, suggest_template

from helpers import make_paired_dataset, train_options

SPN = {'type': 'SPNLoss', 'loss_weight': 0.1, 'feature': 'pixel'}


def opt_for(data, scale=2, **train):
    opt = train_options('pairs', data, scale=scale, spn=SPN, gt_size=8 * scale)
    opt['datasets']['train'].update(train)
    for phase, dataset in opt['datasets'].items():
        dataset.update(phase=phase.split('_')[0], scale=scale)
    return opt


def problem(opt):
    with pytest.raises(PreflightError) as e:
        check_pairs(opt)
    assert '\n' not in str(e.value)
    return str(e.value)


@pytest.fixture
def data(tmp_path):
    return make_paired_dataset(str(tmp_path / 'data'), 2)


def _rename(folder, template, ext=None):
    for name in sorted(os.listdir(folder)):
        stem, old_ext = os.path.splitext(name)
        os.rename(os.path.join(folder, name), os.path.join(folder, template.format(stem) + (ext or old_ext)))


# --------------------------------------------------------------------------- what passes
def test_the_suites_datasets_pass(data_x1, data_x2, data_x3, data_x4):
    for data, scale in ((data_x1, 1), (data_x2, 2), (data_x3, 3), (data_x4, 4)):
        check_pairs(opt_for(data, scale))


def test_filename_tmpl_and_hidden_files(data):
    _rename(os.path.join(data, 'lq'), '{}x2')
    opt = opt_for(data, filename_tmpl='{}x2')
    opt['datasets']['val']['filename_tmpl'] = '{}x2'
    check_pairs(opt)
    open(os.path.join(data, 'lq', '.DS_Store'), 'w').write('hidden: BasicSR does not list it')
    os.makedirs(os.path.join(data, 'gt', 'sub'))  # a folder: not listed either
    check_pairs(opt)


def test_unchecked_datasets_are_skipped(tmp_path):
    opt = opt_for(str(tmp_path / 'nowhere'))
    opt['datasets']['train']['io_backend'] = {'type': 'lmdb'}
    opt['datasets']['val'] = {'type': 'SingleImageDataset', 'phase': 'val', 'dataroot_lq': str(tmp_path / 'x'),
                              'io_backend': {'type': 'disk'}}
    check_pairs(opt)  # nothing listed: lmdb keys live in the database; SingleImageDataset pairs nothing


def _subclasses():
    """Two PairedImageDataset subclasses registered for these tests: one that keeps BasicSR's loading, one with
    its own (which may resize: only its names are checked)."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.utils.registry import DATASET_REGISTRY

    class PairsKeptForTest(PairedImageDataset):
        pass

    class PairsResizedForTest(PairedImageDataset):
        def __getitem__(self, index):
            return super().__getitem__(index)

    for cls in (PairsKeptForTest, PairsResizedForTest):
        if cls.__name__ not in DATASET_REGISTRY:
            DATASET_REGISTRY.register(cls)
    return 'PairsKeptForTest', 'PairsResizedForTest'


def test_subclasses_of_paired_image_dataset(data):
    kept, resized = _subclasses()
    for name, sizes_checked in ((kept, True), (resized, False)):
        opt = opt_for(data, scale=3, type=name)
        del opt['datasets']['val']
        if sizes_checked:
            assert problem(opt).endswith('(x2), but scale is 3')
        else:
            check_pairs(opt)
    os.remove(os.path.join(data, 'lq', '001.png'))
    opt = opt_for(data, type=resized)
    del opt['datasets']['val']
    assert problem(opt).startswith('datasets.train.dataroot_lq: 5 files, but dataroot_gt has 6')


# --------------------------------------------------------------------------- names
def test_one_lq_file_missing(data):
    os.remove(os.path.join(data, 'lq', '004.png'))
    assert problem(opt_for(data)) == ('datasets.train.dataroot_lq: 5 files, but dataroot_gt has 6; '
                                      'missing from dataroot_lq: 004.png')


def test_one_gt_file_missing_and_an_extra_lq_file(data):
    os.remove(os.path.join(data, 'gt', '000.png'))
    assert problem(opt_for(data)) == ('datasets.train.dataroot_lq: 6 files, but dataroot_gt has 5; '
                                      'not paired with a GT file: 000.png')
    shutil.copy(os.path.join(data, 'gt', '001.png'), os.path.join(data, 'gt', '000.png'))
    shutil.copy(os.path.join(data, 'lq', '001.png'), os.path.join(data, 'lq', 'extra.png'))
    assert problem(opt_for(data)).endswith('not paired with a GT file: extra.png')


def test_misnamed_lq_files_suggest_the_template(data):
    _rename(os.path.join(data, 'lq'), '{}x2')
    assert problem(opt_for(data)) == (
        "datasets.train.dataroot_lq: 6 of the 6 GT files have no LQ file of the name filename_tmpl '{}' gives; "
        'missing from dataroot_lq: 000.png, 001.png, 002.png and 3 more; not paired with a GT file: 000x2.png, '
        "001x2.png, 002x2.png and 3 more; filename_tmpl '{}x2' would pair them all")
    _rename(os.path.join(data, 'lq'), 'LR_{}')
    assert "filename_tmpl 'LR_{}x2' would pair them all" in problem(opt_for(data, filename_tmpl='{}x2'))


def test_names_that_no_template_pairs(data):
    os.rename(os.path.join(data, 'lq', '002.png'), os.path.join(data, 'lq', 'two.png'))
    message = problem(opt_for(data))
    assert message == ("datasets.train.dataroot_lq: 1 of the 6 GT files have no LQ file of the name filename_tmpl "
                       "'{}' gives; missing from dataroot_lq: 002.png; not paired with a GT file: two.png; BasicSR "
                       'pairs each GT file with the LQ file of its name after filename_tmpl, same extension')
    _rename(os.path.join(data, 'lq'), '{}', ext='.jpg')  # the extension is the GT file's
    assert 'missing from dataroot_lq: 000.png, 001.png' in problem(opt_for(data))


def test_template_names_the_lq_file_of_each_gt(data):
    _rename(os.path.join(data, 'lq'), '{}x2')
    os.remove(os.path.join(data, 'lq', '001x2.png'))
    assert problem(opt_for(data, filename_tmpl='{}x2')) == (
        'datasets.train.dataroot_lq: 5 files, but dataroot_gt has 6; missing from dataroot_lq: 001x2.png (for GT '
        '001.png)')


def test_suggest_template():
    assert suggest_template(['0001.png', '0002.png'], ['0001x4.png', '0002x4.png']) == '{}x4'
    assert suggest_template(['a.png', 'b.png'], ['a_lr.png', 'c_lr.png']) is None  # b has no partner
    assert suggest_template(['a.png'], ['a.jpg']) is None  # BasicSR keeps the GT's extension
    assert suggest_template([], ['a.png']) is None


def test_meta_info_file_names(tmp_path, data):
    meta = tmp_path / 'meta.txt'
    meta.write_text(''.join(f'{i:03d}.png (48,48,3)\n' for i in range(6)))
    check_pairs(opt_for(data, meta_info_file=str(meta)))
    meta.write_text('000.png (48,48,3)\n007.png (48,48,3)\n')
    assert problem(opt_for(data, meta_info_file=str(meta))) == (
        'datasets.train.meta_info_file: 1 of its 2 GT files are not in dataroot_gt: 007.png')
    meta.write_text('000.png\n001.png\n')
    os.remove(os.path.join(data, 'lq', '001.png'))
    assert problem(opt_for(data, meta_info_file=str(meta))) == (
        "datasets.train.dataroot_lq: 1 of the 2 LQ files named after meta_info_file (filename_tmpl '{}') are "
        'missing: 001.png')
    meta.write_text('000.png\n\n002.png\n')
    assert problem(opt_for(data, meta_info_file=str(meta))).startswith(
        'datasets.train.meta_info_file: line 2 names no file')


def test_meta_info_file_in_subfolders(tmp_path, data):
    sub = os.path.join(data, 'gt', 'part')
    os.makedirs(sub)
    shutil.move(os.path.join(data, 'gt', '003.png'), os.path.join(sub, '003.png'))
    meta = tmp_path / 'meta.txt'
    meta.write_text('000.png\npart/003.png\n')  # BasicSR: gt/part/003.png with lq/003.png
    opt = opt_for(data, meta_info_file=str(meta))
    del opt['datasets']['val']
    check_pairs(opt)
    meta.write_text('000.png\npart/004.png\n')
    assert problem(opt).endswith('are not in dataroot_gt: part/004.png')


# --------------------------------------------------------------------------- sizes
def test_scale_of_the_first_pair(data):
    assert problem(opt_for(data, scale=3)) == ('datasets.train.dataroot_lq: LQ 000.png is 24x24 and GT 000.png is '
                                               '48x48 (x2), but scale is 3')
    assert problem(opt_for(data, scale=1)).endswith('(x2), but scale is 1')


def test_swapped_folders_are_pointed_at(data):
    opt = opt_for(data)
    for dataset in opt['datasets'].values():
        dataset['dataroot_gt'], dataset['dataroot_lq'] = dataset['dataroot_lq'], dataset['dataroot_gt']
    assert problem(opt) == ('datasets.train.dataroot_lq: LQ 000.png is 48x48 and GT 000.png is 24x24 (x0.5), but '
                            'scale is 2 (are dataroot_gt and dataroot_lq swapped?)')


def test_validation_accepts_a_gt_that_basicsr_crops(data):
    """PairedImageDataset crops a validation GT to scale x LQ: up to scale - 1 more pixels are fine there."""
    gt = os.path.join(data, 'gt', '000.png')
    cv2.imwrite(gt, cv2.copyMakeBorder(cv2.imread(gt), 0, 1, 0, 1, cv2.BORDER_REFLECT))  # 49x49, LQ 24x24
    opt = opt_for(data)
    opt['datasets']['val_2'] = dict(opt['datasets']['val'])
    del opt['datasets']['train']
    check_pairs(opt)
    opt['datasets']['val']['type'] = 'RealESRGANPairedDataset'  # does not crop: exact
    assert problem(opt) == ('datasets.val.dataroot_lq: LQ 000.png is 24x24 and GT 000.png is 49x49 (x2.04167), but '
                            'scale is 2')
    assert problem(opt_for(data)).startswith('datasets.train.dataroot_lq: LQ 000.png is 24x24 and GT 000.png is 49x49')


def test_gt_size_larger_than_the_smallest_sampled_gt(data):
    gt, lq = os.path.join(data, 'gt', '003.png'), os.path.join(data, 'lq', '003.png')
    cv2.imwrite(gt, cv2.imread(gt)[:40, :32])
    cv2.imwrite(lq, cv2.imread(lq)[:20, :16])
    check_pairs(opt_for(data, gt_size=32))
    assert problem(opt_for(data, gt_size=34)) == ('datasets.train.gt_size: 34 is larger than GT 003.png (32x40, '
                                                  'the smallest of 6 GT images sampled from 6); expected at most 32')
    opt = opt_for(data, gt_size=34)
    del opt['datasets']['train']
    check_pairs(opt)  # gt_size is a training option: validation sets are not cropped


def test_sample_is_spread_and_deterministic():
    items = list(range(800))
    chosen = sample(items)
    assert len(chosen) == SAMPLE and chosen[0] == 0 and chosen[-1] == 799 and chosen == sample(items)
    gaps = {b - a for a, b in zip(chosen, chosen[1:])}
    assert max(gaps) - min(gaps) <= 1
    assert sample(items[:5]) == items[:5] and sample([]) == []


def test_sizes_come_from_the_header(tmp_path, data):
    """A PNG cut after its header still has its size read (the pixels are not decoded); a file that is no
    image at all is named."""
    raw = open(os.path.join(data, 'gt', '000.png'), 'rb').read()
    cut = tmp_path / 'cut.png'
    cut.write_bytes(raw[:64])
    assert image_size('datasets.train.dataroot_gt', str(cut)) == (48, 48)
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    with pytest.raises(PreflightError, match=rf'^datasets\.train\.dataroot_gt: {bad} cannot be read as an image$'):
        image_size('datasets.train.dataroot_gt', str(bad))


def test_a_sampled_gt_that_is_no_image_is_named(data):
    open(os.path.join(data, 'gt', 'zz.png'), 'wb').write(b'not an image')
    shutil.copy(os.path.join(data, 'lq', '000.png'), os.path.join(data, 'lq', 'zz.png'))
    message = problem(opt_for(data))
    assert message.startswith('datasets.train.dataroot_gt: ') and message.endswith('zz.png cannot be read as an image')


@pytest.mark.parametrize('batch, ratio, world_size, runs', [
    (6, 1, 1, True), (7, 1, 1, False), (7, 2, 1, True), (3, 1, 2, True), (4, 1, 2, False), (4, 1.5, 2, True)])
def test_a_batch_larger_than_each_process_share_is_named(data, batch, ratio, world_size, runs):
    """BasicSR's training loader drops an incomplete batch: with a batch larger than a process's share of the
    (enlarged) pairs it yields nothing, and the run ends at once with exit code 0. The check agrees with BasicSR's
    own sampler and loader, built here for each rank."""
    import torch
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler
    opt = opt_for(data, batch_size_per_gpu=batch, dataset_enlarge_ratio=ratio)
    opt['world_size'] = world_size
    train = dict(opt['datasets']['train'], num_worker_per_gpu=0)
    dataset = build_dataset(train)
    batches = [len(build_dataloader(dataset, train, num_gpu=0, dist=world_size > 1,
                                    sampler=EnlargedSampler(dataset, world_size, rank, ratio), seed=0))
               for rank in range(world_size)]
    assert all(batches) is runs and torch.is_tensor(dataset[0]['gt'])
    if runs:
        check_pairs(opt)
    else:
        message = problem(opt)
        assert message.startswith(f'datasets.train.batch_size_per_gpu: {batch} is more than the ')
        assert 'not one iteration would run' in message and (f'each of {world_size}' in message) is (world_size > 1)
