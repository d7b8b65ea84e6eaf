"""scripts/prepare_data.py: DIV2K sub-images / bicubic LR / meta info / LMDB, benchmark layout, errors.

The script runs as a subprocess from the repo root, on a few small images in tmp folders.
"""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import REPO, script_module

SCRIPT = os.path.join(REPO, 'scripts', 'prepare_data.py')
SCALES = (2, 3, 4)
CROP, STEP = 48, 24


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)


def matlab_bicubic(img, s):
    """BasicSR's generate_bicubic_img.py recipe: float [0, 1], MATLAB imresize, *255, round, clip."""
    import mclir_basicsr  # noqa: F401, I001  (first: makes basicsr importable)
    from basicsr.utils.matlab_functions import imresize
    out = imresize(img.astype(np.float32) / 255., 1 / s)
    return np.clip((out * 255).round(), 0, 255).astype(np.uint8)


def photo(i, h, w):
    from skimage import data
    img = [data.astronaut, data.coffee, data.chelsea][i]()
    return np.ascontiguousarray(img[:h, :w, ::-1])  # RGB -> BGR


# 0001, 0002: 96x120 (divisible by 12): 3 x 4 crops; 0003: 110x130 -> mod-cropped to 108x120: rows
# 0, 24, 48 + the border crop at 60 -> 4 x 4 crops.
SIZES = {'0001': (96, 120), '0002': (96, 120), '0003': (110, 130)}
COUNTS = {'0001': 12, '0002': 12, '0003': 16}


@pytest.fixture(scope='module')
def div2k(tmp_path_factory):
    root = tmp_path_factory.mktemp('div2k')
    hr = root / 'DIV2K_train_HR'
    hr.mkdir()
    for i, (stem, (h, w)) in enumerate(SIZES.items()):
        cv2.imwrite(str(hr / f'{stem}.png'), photo(i, h, w))
    out = root / 'out'
    r = run('div2k', '--hr', hr, '--out', out, '--crop-size', CROP, '--step', STEP, '--scales', *SCALES,
            '--lmdb', '--workers', 2)
    assert r.returncode == 0, r.stderr
    return hr, out, r


def test_help():
    for args in ([], ['div2k'], ['benchmark']):
        r = run(*args, '--help')
        assert r.returncode == 0, r.stderr
        assert 'usage' in r.stdout
    assert '--crop-size' in run('div2k', '--help').stdout
    assert 'GTmod' in run('benchmark', '--help').stdout


def test_crop_positions_follow_basicsr():
    pd = script_module('data_preparation.div2k')
    assert pd.crop_positions(96, 48, 24, 0) == [0, 24, 48]
    assert pd.crop_positions(108, 48, 24, 0) == [0, 24, 48, 60]  # 12 px left over > thresh 0
    assert pd.crop_positions(108, 48, 24, 12) == [0, 24, 48]  # not more than thresh 12
    assert pd.crop_positions(2040, 480, 240, 0) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert pd.crop_positions(40, 48, 24, 0) == []


def test_div2k_layout_counts_sizes(div2k):
    _, out, r = div2k
    hr_sub = out / 'DIV2K_train_HR_sub'
    names = sorted(os.listdir(hr_sub))
    expected = sorted(f'{stem}_s{i:03d}.png' for stem, n in COUNTS.items() for i in range(1, n + 1))
    assert names == expected
    for n in names[::7]:
        assert cv2.imread(str(hr_sub / n), cv2.IMREAD_UNCHANGED).shape == (CROP, CROP, 3)
    for s in SCALES:
        lr_sub = out / 'DIV2K_train_LR_bicubic' / f'X{s}_sub'
        assert sorted(os.listdir(lr_sub)) == expected
        for n in names[::7]:
            assert cv2.imread(str(lr_sub / n), cv2.IMREAD_UNCHANGED).shape == (CROP // s, CROP // s, 3)
        full = out / 'DIV2K_train_LR_bicubic' / f'X{s}'
        assert sorted(os.listdir(full)) == [f'{stem}x{s}.png' for stem in SIZES]
        h, w = 108, 120  # 0003 after the mod-12 crop
        assert cv2.imread(str(full / f'0003x{s}.png')).shape == (h // s, w // s, 3)
    # progress and the mod-crop note
    assert '[div2k] 3/3 0003.png: 16 sub-images (total 40)' in r.stdout
    assert 'note: 0003.png: 110x130 not divisible by 12, mod-cropped to 108x120' in r.stdout


def test_div2k_lr_is_matlab_bicubic_and_subimages_align(div2k):
    hr_dir, out, _ = div2k
    pd = script_module('data_preparation.div2k')
    for stem, (h, w) in SIZES.items():
        hr = cv2.imread(str(hr_dir / f'{stem}.png'))[:h - h % 12, :w - w % 12]
        corners = [(y, x) for y in pd.crop_positions(hr.shape[0], CROP, STEP, 0)
                   for x in pd.crop_positions(hr.shape[1], CROP, STEP, 0)]
        assert len(corners) == COUNTS[stem]
        for s in SCALES:
            lr = matlab_bicubic(hr, s)
            assert lr.shape == (hr.shape[0] // s, hr.shape[1] // s, 3)
            np.testing.assert_array_equal(
                cv2.imread(str(out / 'DIV2K_train_LR_bicubic' / f'X{s}' / f'{stem}x{s}.png')), lr)
            for i, (y, x) in enumerate(corners, 1):
                name = f'{stem}_s{i:03d}.png'
                got = cv2.imread(str(out / 'DIV2K_train_LR_bicubic' / f'X{s}_sub' / name))
                np.testing.assert_array_equal(got, lr[y // s:(y + CROP) // s, x // s:(x + CROP) // s])
        for i, (y, x) in enumerate(corners, 1):
            got = cv2.imread(str(out / 'DIV2K_train_HR_sub' / f'{stem}_s{i:03d}.png'))
            np.testing.assert_array_equal(got, hr[y:y + CROP, x:x + CROP])


def test_div2k_meta_info(div2k):
    _, out, _ = div2k
    lines = (out / 'meta_info_DIV2K_sub.txt').read_text().splitlines()
    names = sorted(os.listdir(out / 'DIV2K_train_HR_sub'))
    assert lines == [f'{n} ({CROP},{CROP},3)' for n in names]


def test_div2k_lmdb(div2k):
    import lmdb
    _, out, r = div2k
    names = sorted(os.listdir(out / 'DIV2K_train_HR_sub'))
    folders = {'DIV2K_train_HR_sub.lmdb': (out / 'DIV2K_train_HR_sub', CROP)}
    for s in SCALES:
        folders[f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb'] = (out / 'DIV2K_train_LR_bicubic' / f'X{s}_sub', CROP // s)
    for lmdb_name, (folder, size) in folders.items():
        path = out / lmdb_name
        assert (path / 'data.mdb').is_file()
        meta = (path / 'meta_info.txt').read_text().splitlines()
        assert meta == [f'{n} ({size},{size},3) 1' for n in names]
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
        with env.begin(write=False) as txn:
            assert txn.stat()['entries'] == len(names)
            for n in (names[0], names[-1]):
                buf = txn.get(os.path.splitext(n)[0].encode('ascii'))
                img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(img, cv2.imread(str(folder / n), cv2.IMREAD_UNCHANGED))
        env.close()
        assert f'[div2k] lmdb: {path} ({len(names)} keys)' in r.stdout


def test_div2k_reuses_given_lr_and_refuses_to_overwrite(div2k, tmp_path):
    hr, out, _ = div2k
    out2 = tmp_path / 'out2'
    r = run('div2k', '--hr', hr, '--out', out2, '--crop-size', CROP, '--step', STEP, '--scales', *SCALES,
            '--lr-dir', out / 'DIV2K_train_LR_bicubic', '--workers', 1)
    assert r.returncode == 0, r.stderr
    for s in SCALES:
        assert not (out2 / 'DIV2K_train_LR_bicubic' / f'X{s}').exists()  # nothing regenerated
        sub = os.path.join('DIV2K_train_LR_bicubic', f'X{s}_sub')
        names = sorted(os.listdir(out / sub))
        assert sorted(os.listdir(out2 / sub)) == names
        for n in names[::5]:
            np.testing.assert_array_equal(cv2.imread(str(out2 / sub / n)), cv2.imread(str(out / sub / n)))
    # a second run into the same outputs is refused (before any work), --overwrite allows it
    r = run('div2k', '--hr', hr, '--out', out2, '--crop-size', CROP, '--step', STEP, '--scales', 4)
    assert r.returncode == 2
    assert 'already exists' in r.stderr and 'DIV2K_train_HR_sub' in r.stderr and '--overwrite' in r.stderr


def test_benchmark_layout_modcrop_and_bicubic(tmp_path):
    hr = tmp_path / 'Set5_HR'
    hr.mkdir()
    imgs = {'baby': photo(0, 101, 77), 'bird': photo(1, 64, 90)}
    cv2.imwrite(str(hr / 'baby.png'), imgs['baby'])
    cv2.imwrite(str(hr / 'bird.bmp'), imgs['bird'])  # non-png input: output keeps the name, as .png
    out = tmp_path / 'datasets'
    r = run('benchmark', '--name', 'Set5', '--hr', hr, '--scales', *SCALES, '--out', out, '--workers', 2)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out / 'Set5')) == sorted([f'GTmod{s}' for s in SCALES] + [f'LRbicx{s}' for s in SCALES])
    for s in SCALES:
        for stem, img in imgs.items():
            gt = cv2.imread(str(out / 'Set5' / f'GTmod{s}' / f'{stem}.png'))
            lr = cv2.imread(str(out / 'Set5' / f'LRbicx{s}' / f'{stem}.png'))
            h, w = img.shape[0] // s * s, img.shape[1] // s * s
            np.testing.assert_array_equal(gt, img[:h, :w])
            assert lr.shape == (h // s, w // s, 3)
            np.testing.assert_array_equal(lr, matlab_bicubic(gt, s))
    assert '[benchmark] 2/2 bird.bmp: x2 GT 64x90 LR 32x45, x3 GT 63x90 LR 21x30, x4 GT 64x88 LR 16x22' in r.stdout


@pytest.mark.parametrize('command', ['div2k', 'benchmark'])
def test_missing_folder(tmp_path, command):
    missing = tmp_path / 'no_such_HR'
    extra = ['--out', tmp_path / 'out'] + (['--name', 'Set5'] if command == 'benchmark' else [])
    r = run(command, '--hr', missing, *extra)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr
    assert f'HR folder not found: {missing}' in r.stderr
    assert not (tmp_path / 'out').exists()


def test_empty_folder(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('not an image')
    r = run('div2k', '--hr', tmp_path / 'empty', '--out', tmp_path / 'out')
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr
    assert 'holds no image' in r.stderr and str(tmp_path / 'empty') in r.stderr


def test_crop_not_divisible_by_scale(tmp_path):
    (tmp_path / 'hr').mkdir()
    cv2.imwrite(str(tmp_path / 'hr' / '0001.png'), photo(0, 96, 120))
    r = run('div2k', '--hr', tmp_path / 'hr', '--out', tmp_path / 'out', '--crop-size', 50, '--step', 24)
    assert r.returncode == 2
    assert '--crop-size 50' in r.stderr and 'Traceback' not in r.stderr


def test_corrupt_image(tmp_path):
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / '0001.png'), photo(0, 96, 120))
    (hr / 'bad.png').write_bytes(b'this is not a png \x00\x01\x02' * 10)
    r = run('div2k', '--hr', hr, '--out', tmp_path / 'out', '--crop-size', CROP, '--step', STEP,
            '--scales', 4, '--workers', 2)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr
    assert f'cannot read image (missing, corrupt or unsupported format): {hr / "bad.png"}' in r.stderr


def test_truncated_image_reported_from_worker(tmp_path):
    """A PNG with a valid header but cut short passes the up-front check and fails when decoded in a worker."""
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / '0001.png'), photo(0, 48, 48))
    data = cv2.imencode('.png', photo(1, 48, 48))[1].tobytes()
    (hr / 'cut.png').write_bytes(data[:len(data) // 3])
    r = run('benchmark', '--name', 'Set5', '--hr', hr, '--scales', 4, '--out', tmp_path / 'out', '--workers', 2)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr
    assert f'cannot read image (missing, corrupt or unsupported format): {hr / "cut.png"}' in r.stderr
