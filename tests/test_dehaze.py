"""Dehazing path: FFANet (keys, normalisation, any gps), prepare_data.py hazy / reside, FFA-Net training
through BasicSR's pipeline (our option style and the official fork's own option file), checkpoint format."""
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network

from mclir_basicsr.archs import FFANet

from helpers import PY, REPO, run, script_module, snapshot, write_yaml

SCRIPT = os.path.join(REPO, 'scripts', 'prepare_data.py')
MEAN, STD = (0.64, 0.6, 0.58), (0.14, 0.15, 0.152)
TINY = {'type': 'FFANet', 'gps': 2, 'blocks': 1, 'num_feat': 8}

# The official FFANet's state-dict keys for gps=3, blocks=2 (read from Aitical/MCLIR
# basicsr/archs/ffanet_arch.py: Block = conv1, act1, conv2, calayer(avg_pool, ca=[conv, relu, conv, sigmoid]),
# palayer(pa=[conv, relu, conv, sigmoid]); Group.gp = blocks + a conv; FFA = g1..g3, ca=[pool, conv, relu, conv,
# sigmoid], palayer, pre=[conv], post=[conv, conv]). This list is the compatibility contract.
OFFICIAL_KEYS_GPS3_BLOCKS2 = '''
g1.gp.0.conv1.weight g1.gp.0.conv1.bias g1.gp.0.conv2.weight g1.gp.0.conv2.bias
g1.gp.0.calayer.ca.0.weight g1.gp.0.calayer.ca.0.bias g1.gp.0.calayer.ca.2.weight g1.gp.0.calayer.ca.2.bias
g1.gp.0.palayer.pa.0.weight g1.gp.0.palayer.pa.0.bias g1.gp.0.palayer.pa.2.weight g1.gp.0.palayer.pa.2.bias
g1.gp.1.conv1.weight g1.gp.1.conv1.bias g1.gp.1.conv2.weight g1.gp.1.conv2.bias
g1.gp.1.calayer.ca.0.weight g1.gp.1.calayer.ca.0.bias g1.gp.1.calayer.ca.2.weight g1.gp.1.calayer.ca.2.bias
g1.gp.1.palayer.pa.0.weight g1.gp.1.palayer.pa.0.bias g1.gp.1.palayer.pa.2.weight g1.gp.1.palayer.pa.2.bias
g1.gp.2.weight g1.gp.2.bias
g2.gp.0.conv1.weight g2.gp.0.conv1.bias g2.gp.0.conv2.weight g2.gp.0.conv2.bias
g2.gp.0.calayer.ca.0.weight g2.gp.0.calayer.ca.0.bias g2.gp.0.calayer.ca.2.weight g2.gp.0.calayer.ca.2.bias
g2.gp.0.palayer.pa.0.weight g2.gp.0.palayer.pa.0.bias g2.gp.0.palayer.pa.2.weight g2.gp.0.palayer.pa.2.bias
g2.gp.1.conv1.weight g2.gp.1.conv1.bias g2.gp.1.conv2.weight g2.gp.1.conv2.bias
g2.gp.1.calayer.ca.0.weight g2.gp.1.calayer.ca.0.bias g2.gp.1.calayer.ca.2.weight g2.gp.1.calayer.ca.2.bias
g2.gp.1.palayer.pa.0.weight g2.gp.1.palayer.pa.0.bias g2.gp.1.palayer.pa.2.weight g2.gp.1.palayer.pa.2.bias
g2.gp.2.weight g2.gp.2.bias
g3.gp.0.conv1.weight g3.gp.0.conv1.bias g3.gp.0.conv2.weight g3.gp.0.conv2.bias
g3.gp.0.calayer.ca.0.weight g3.gp.0.calayer.ca.0.bias g3.gp.0.calayer.ca.2.weight g3.gp.0.calayer.ca.2.bias
g3.gp.0.palayer.pa.0.weight g3.gp.0.palayer.pa.0.bias g3.gp.0.palayer.pa.2.weight g3.gp.0.palayer.pa.2.bias
g3.gp.1.conv1.weight g3.gp.1.conv1.bias g3.gp.1.conv2.weight g3.gp.1.conv2.bias
g3.gp.1.calayer.ca.0.weight g3.gp.1.calayer.ca.0.bias g3.gp.1.calayer.ca.2.weight g3.gp.1.calayer.ca.2.bias
g3.gp.1.palayer.pa.0.weight g3.gp.1.palayer.pa.0.bias g3.gp.1.palayer.pa.2.weight g3.gp.1.palayer.pa.2.bias
g3.gp.2.weight g3.gp.2.bias
ca.1.weight ca.1.bias ca.3.weight ca.3.bias
palayer.pa.0.weight palayer.pa.0.bias palayer.pa.2.weight palayer.pa.2.bias
pre.0.weight pre.0.bias
post.0.weight post.0.bias post.1.weight post.1.bias
'''.split()

# The official fork's options/FFANet_RESIDE_IN_fromScratch.yml (Aitical/MCLIR), verbatim: test data.
OFFICIAL_FFANET_YML = '''\
name: MCLIR-FFANet_RESIDE_IN_Reproduce_FromScratch
model_type: ImageRestorationModel_FFANet_Neg_Multi
scale: 1
num_gpu: 1
manual_seed: 42

datasets:
  train:
    name: RESIDE-IN
    type: PairedImageDataset
    dataroot_gt: /data_nvme/AirNet-Data/test/dehaze/SOTS_outdoor/target/
    dataroot_lq: /data_nvme/AirNet-Data/test/dehaze/SOTS_outdoor/target/
    filename_tmpl: '{}'
    io_backend:
      type: disk

    gt_size: 128
    use_hflip: true
    use_rot: true

    # data loader
    use_shuffle: true
    num_worker_per_gpu: 4
    batch_size_per_gpu: 4
    dataset_enlarge_ratio: 1
    pin_memory: true

  val:
    name: ITS
    type: PairedImageDataset
    dataroot_gt: /data_nvme/AirNet-Data/test/dehaze/SOTS_outdoor/target/
    dataroot_lq: /data_nvme/AirNet-Data/test/dehaze/SOTS_outdoor/target/
    io_backend:
      type: disk

network_g:
  type: FFANet
  gps: 3
  blocks: 19

# path
path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

path_neg:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

# training settings
train:
  use_grad_norm: 0.05
  ema_decay: 0.999
  neg_decay: [0.1, 0.1, 0.1, 0.1]
  neg_iter: [100, 200, 500, 1000]
  neg_start: 0.1

  optim_g:
    type: AdamW
    lr: !!float 2e-4
    weight_decay: 0.0
    betas: [0.9, 0.9]

  scheduler:
    type: TrueCosineAnnealingLR
    T_max: 100000
    eta_min: !!float 1e-8

  total_iter: 500000
  warmup_iter: -1 # no warm up

  # losses
  pixel_opt:
    type: L1Loss
    loss_weight: 1.0
    reduction: mean
  perceptual_opt:
    type: PerceptualLoss
    layer_weights:
      'relu1_2': 0.2  # before relu
      'relu2_2': 0.3  # before relu
      'relu3_3': 0.5  # before relu
    vgg_type: vgg16
    use_input_norm: true
    range_norm: false
    perceptual_weight: 0.001
    style_weight: 0
    criterion: l1
# validation settings
val:
  val_freq: !!float 5e3
  save_img: false

  metrics:
    psnr: # metric name, can be arbitrary
      type: calculate_psnr
      crop_border: 0
      test_y_channel: false
    ssim:
      type: calculate_ssim
      crop_border: 0
      test_y_channel: false

# logging settings
logger:
  print_freq: 200
  save_checkpoint_freq: !!float 5e3
  use_tb_logger: true
  wandb:
    project: ~
    resume_id: ~

# dist training settings
dist_params:
  backend: nccl
  port: 29500
'''


def prepare(*args, check=True):
    return run([PY, SCRIPT, *map(str, args)], cwd=REPO, check=check)


@pytest.fixture(scope='module')
def hazy_data(tmp_path_factory):
    out = tmp_path_factory.mktemp('hazy') / 'seed0'
    prepare('hazy', '--out', out, '--seed', 0, '--val-size', 32, 48, '--tile', 192)
    return out


# ------------------------------------------------------------------------------------------------ FFANet
def test_state_dict_keys_are_the_official_layout():
    net = FFANet(gps=3, blocks=2)
    assert sorted(net.state_dict()) == sorted(OFFICIAL_KEYS_GPS3_BLOCKS2)
    assert len(OFFICIAL_KEYS_GPS3_BLOCKS2) == len(set(OFFICIAL_KEYS_GPS3_BLOCKS2))
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}  # num_feat 64, as the official
    assert shapes['pre.0.weight'] == (64, 3, 3, 3)
    assert shapes['g2.gp.1.calayer.ca.0.weight'] == (8, 64, 1, 1)  # reduction 8 in the blocks
    assert shapes['g2.gp.1.palayer.pa.2.weight'] == (1, 8, 1, 1)
    assert shapes['ca.1.weight'] == (4, 192, 1, 1) and shapes['ca.3.weight'] == (192, 4, 1, 1)  # C/16, gps*C
    assert shapes['post.1.weight'] == (3, 64, 3, 3)
    assert {'img_mean', 'img_std'} <= dict(net.named_buffers()).keys()  # buffers, but not saved


@pytest.mark.parametrize('gps', [1, 4])
def test_any_number_of_groups(gps):
    net = FFANet(gps=gps, blocks=1, num_feat=16)
    groups = sorted({k.split('.')[0] for k in net.state_dict() if k.startswith('g')})
    assert groups == [f'g{i}' for i in range(1, gps + 1)]
    assert net.state_dict()['ca.3.weight'].shape == (16 * gps, 1, 1, 1)
    assert net(torch.rand(1, 3, 10, 12)).shape == (1, 3, 10, 12)


def test_output_shape_and_gradients():
    torch.manual_seed(0)
    net = FFANet(**{k: v for k, v in TINY.items() if k != 'type'})
    out = net(torch.rand(2, 3, 12, 16))
    assert out.shape == (2, 3, 12, 16)
    out.abs().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.pre[0].weight.grad.abs().sum() > 0 and net.g1.gp[0].conv1.weight.grad.abs().sum() > 0


def test_normalisation_inside_matches_the_fork():
    """The fork feeds (x - mean) / std to a plain residual net; ours takes x and normalises first."""
    torch.manual_seed(0)
    ours = FFANet(gps=2, blocks=1, num_feat=8).eval()
    plain = FFANet(gps=2, blocks=1, num_feat=8, img_mean=(0, 0, 0), img_std=(1, 1, 1)).eval()
    plain.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(2, 3, 9, 11)
    normed = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), plain(normed))
        for net in (ours, plain):  # a zero last conv leaves only the global residual: the (normalised) input
            net.post[1].weight.zero_()
            net.post[1].bias.zero_()
        torch.testing.assert_close(ours(x), normed)
        torch.testing.assert_close(plain(x), x)


def test_bad_arguments():
    with pytest.raises(ValueError, match='gps >= 1'):
        FFANet(gps=0)


# -------------------------------------------------------------------------------------- prepare_data hazy
def test_hazy_layout_and_determinism(hazy_data, tmp_path):
    for split in ('train', 'val'):
        gt, lq = sorted(os.listdir(hazy_data / split / 'gt')), sorted(os.listdir(hazy_data / split / 'lq'))
        assert gt == lq and gt
    assert sorted(os.listdir(hazy_data / 'val' / 'gt')) == ['astronaut.png', 'chelsea.png', 'coffee.png',
                                                            'stereo_motorcycle.png']
    img = cv2.imread(str(hazy_data / 'val' / 'lq' / 'coffee.png'))
    assert img.shape == (32, 48, 3)
    rows = (hazy_data / 'params.csv').read_text().splitlines()
    assert len(rows) == 1 + sum(len(os.listdir(hazy_data / s / 'gt')) for s in ('train', 'val'))
    betas = [float(r.split(',')[2]) for r in rows[1:]]
    assert 0.6 <= min(betas) < max(betas) <= 1.8
    again, other = tmp_path / 'again', tmp_path / 'other'
    prepare('hazy', '--out', again, '--seed', 0, '--val-size', 32, 48, '--tile', 192)
    prepare('hazy', '--out', other, '--seed', 1, '--val-size', 32, 48, '--tile', 192)
    assert snapshot(again) == snapshot(hazy_data)
    first, second = snapshot(hazy_data), snapshot(other)
    assert all(first[k] == second[k] for k in first if f'{os.sep}gt{os.sep}' in k)  # the same clear images
    lq = [k for k in first if f'{os.sep}lq{os.sep}' in k]
    assert sum(first[k] != second[k] for k in lq) > 0.9 * len(lq)
    r = prepare('hazy', '--out', other, check=False)
    assert r.returncode == 2 and 'already exists' in r.stderr and '--overwrite' in r.stderr


def test_haze_follows_the_scattering_model():
    pd = script_module('data_preparation.hazy')
    clear = (np.random.default_rng(3).random((40, 60, 3)) * 255).astype(np.uint8)
    hazy, beta, air = pd.add_haze(clear, np.random.default_rng(7), (1.2, 1.2), (0.8, 0.8), 0.0)
    assert beta == 1.2 and np.allclose(air, 0.8)
    replay = np.random.default_rng(7)
    replay.uniform(1.2, 1.2), replay.uniform(0.8, 0.8), replay.uniform(0, 0, 3)  # beta, A, tint
    depth = pd.depth_map(replay, 40, 60)
    assert depth.min() == 0 and depth.max() == 1
    assert np.abs(np.diff(depth, axis=0)).max() < 0.2 and np.abs(np.diff(depth, axis=1)).max() < 0.2  # smooth
    t = np.exp(-1.2 * depth)[..., None]
    expected = clear / 255. * t + 0.8 * (1 - t)
    assert np.abs(hazy / 255. - expected).max() <= 0.5 / 255 + 1e-9


# ------------------------------------------------------------------------------------- prepare_data reside
def write(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def test_reside_its_symlinks(tmp_path):
    root = tmp_path / 'ITS'
    for i, stem in enumerate(['1_1_0.90179', '1_2_0.71938', '2_1_0.62']):
        write(root / 'hazy' / f'{stem}.png', 20, 30, i)
    write(root / 'clear' / '1.png', 20, 30, 10)
    write(root / 'clear' / '2.png', 20, 30, 11)
    r = prepare('reside', '--root', root, '--out', tmp_path / 'out')
    assert '[reside] 3 pairs (2 clear images)' in r.stdout and 'gt linked 3' in r.stdout
    for stem, clear in (('1_1_0.90179', '1'), ('1_2_0.71938', '1'), ('2_1_0.62', '2')):
        lq, gt = tmp_path / 'out' / 'lq' / f'{stem}.png', tmp_path / 'out' / 'gt' / f'{stem}.png'
        assert lq.is_symlink() and os.path.samefile(lq, root / 'hazy' / f'{stem}.png')
        assert gt.is_symlink() and os.path.samefile(gt, root / 'clear' / f'{clear}.png')


def test_reside_sots_center_crop_and_paired_dataset(tmp_path):
    root = tmp_path / 'SOTS' / 'indoor'
    write(root / 'gt' / '1400.png', 41, 51, 0)  # larger than the hazy, as SOTS indoor's 640x480 vs 620x460
    write(root / 'hazy' / '1400_1.png', 20, 30, 1)
    cv2.imwrite(str(root / 'hazy' / '1400_2.jpg'), cv2.imread(str(root / 'hazy' / '1400_1.png')))
    out = tmp_path / 'paired'
    r = prepare('reside', '--root', root, '--out', out)
    assert 'gt cropped 2' in r.stdout and 'lq converted 1' in r.stdout and 'lq linked 1' in r.stdout
    clear = cv2.imread(str(root / 'gt' / '1400.png'))
    gt = cv2.imread(str(out / 'gt' / '1400_1.png'))
    np.testing.assert_array_equal(gt, clear[10:30, 10:40])  # torchvision CenterCrop: round(21/2)=10, round(10.5)=10
    assert not (out / 'gt' / '1400_1.png').is_symlink()
    np.testing.assert_array_equal(cv2.imread(str(out / 'lq' / '1400_2.png')),
                                  cv2.imread(str(root / 'hazy' / '1400_2.jpg')))
    from basicsr.data.paired_image_dataset import PairedImageDataset
    ds = PairedImageDataset({'dataroot_gt': str(out / 'gt'), 'dataroot_lq': str(out / 'lq'), 'phase': 'val',
                             'io_backend': {'type': 'disk'}, 'scale': 1, 'filename_tmpl': '{}'})
    assert len(ds) == 2 and ds[0]['gt'].shape == ds[0]['lq'].shape == (3, 20, 30)


def test_reside_errors_name_the_file(tmp_path):
    root = tmp_path / 'ITS'
    write(root / 'hazy' / '7_1_0.8.png', 8, 8, 0)
    write(root / 'clear' / '1.png', 8, 8, 1)
    r = prepare('reside', '--root', root, '--out', tmp_path / 'out', check=False)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert f'no clear image for hazy image {root / "hazy" / "7_1_0.8.png"}' in r.stderr
    assert not (tmp_path / 'out').exists()
    shutil.rmtree(root / 'clear')
    r = prepare('reside', '--root', root, '--out', tmp_path / 'out', check=False)
    assert r.returncode == 2 and 'no clear-image folder' in r.stderr


# ---------------------------------------------------------------------------------------------- training
def load_options(name):
    with open(os.path.join(REPO, 'options', name)) as f:
        return yaml.safe_load(f)


def test_shipped_option_files_agree():
    spn, base = load_options('train_FFANet_RESIDE_SPN.yml'), load_options('train_FFANet_RESIDE_baseline.yml')
    assert spn['train'].pop('spn_opt')['feature'] == 'vgg16' and spn['train'].pop('negatives')
    assert {k: v for k, v in spn.items() if k != 'name'} == {k: v for k, v in base.items() if k != 'name'}
    test = load_options('test_FFANet_SOTS_indoor.yml')
    assert test['network_g'] == spn['network_g'] == {'type': 'FFANet', 'gps': 3, 'blocks': 19}
    assert test['path']['pretrain_network_g'] == f'experiments/{test["name"]}/models/net_g_latest.pth'
    assert all(m['crop_border'] == 0 and not m['test_y_channel'] for m in test['val']['metrics'].values())
    l1, hazy_spn = load_options('demo/hazy_FFANet_L1.yml'), load_options('demo/hazy_FFANet_SPN.yml')
    assert hazy_spn['train'].pop('spn_opt')['feature'] == 'pixel' and hazy_spn['train'].pop('negatives')
    assert {k: v for k, v in hazy_spn.items() if k != 'name'} == {k: v for k, v in l1.items() if k != 'name'}


@pytest.mark.slow
def test_ffanet_trains_and_checkpoint_is_plain_basicsr(workdir, hazy_data, vgg16_file):
    """options/train_FFANet_RESIDE_SPN.yml with the synthetic data and a tiny network, 3 iterations."""
    opt = load_options('train_FFANet_RESIDE_SPN.yml')
    for split in ('train', 'val'):
        opt['datasets'][split].update(dataroot_gt=str(hazy_data / split / 'gt'),
                                      dataroot_lq=str(hazy_data / split / 'lq'))
    opt['datasets']['train'].update(num_worker_per_gpu=0, gt_size=16)
    opt.update(num_gpu=0, network_g=dict(TINY))
    opt['train'].update(total_iter=3)
    opt['train']['spn_opt']['pretrained'] = vgg16_file
    opt['val']['val_freq'] = 3
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3, use_tb_logger=False)
    write_yaml(workdir / 'train.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'train.yml'], cwd=workdir)
    assert 'l_spn:' in proc.stdout + proc.stderr and '# psnr:' in proc.stdout + proc.stderr
    ckpt = workdir / 'experiments' / opt['name'] / 'models' / 'net_g_3.pth'
    saved = torch.load(ckpt, weights_only=True)  # plain tensors: BasicSR's format, loadable without the add-on
    assert set(saved) == {'params', 'params_ema'}  # ema_decay 0.999 in the file
    net = build_network(dict(TINY))
    net.load_state_dict(saved['params_ema'], strict=True)
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


# Keys changed in the official file: model_type and the four data paths (what the task allows), and, to make
# it a short CPU run (sizes only): train.total_iter, val.val_freq, logger.print_freq, the train loader's
# num_worker_per_gpu, batch_size_per_gpu and gt_size, and network_g.blocks. Kept as they are: num_gpu: 1 (no CUDA
# here: ModelContrastiveModel warns and runs on the CPU), AdamW (torch.optim by name), TrueCosineAnnealingLR,
# use_grad_norm (warned: never read), path_neg, dist_params. The VGG16 file (random weights) is put where BasicSR
# keeps pretrained models, experiments/pretrained_models/, so the option file needs no path for it.


@pytest.mark.slow
def test_official_fork_option_file_trains(workdir, hazy_data, vgg16_file):
    opt = yaml.safe_load(OFFICIAL_FFANET_YML)
    opt['model_type'] = 'ModelContrastiveModel'
    for split in ('train', 'val'):
        opt['datasets'][split].update(dataroot_gt=str(hazy_data / split / 'gt'),
                                      dataroot_lq=str(hazy_data / split / 'lq'))
    opt['train']['total_iter'] = 2
    opt['val']['val_freq'] = 2
    opt['logger']['print_freq'] = 1
    opt['datasets']['train'].update(num_worker_per_gpu=0, batch_size_per_gpu=2, gt_size=16)
    opt['network_g']['blocks'] = 1
    write_yaml(workdir / 'official.yml', opt)
    weights = workdir / 'experiments' / 'pretrained_models'  # BasicSR's place for pretrained files
    weights.mkdir(parents=True)
    shutil.copy(vgg16_file, weights / 'vgg16-397923af.pth')
    basicsr_train = os.path.join(os.path.dirname(__import__('basicsr').__file__), 'train.py')
    proc = run([PY, basicsr_train, '-opt', 'official.yml'], cwd=workdir)
    log = proc.stdout + proc.stderr
    assert 'l_spn:' in log and '# psnr:' in log
    if not torch.cuda.is_available():
        assert 'num_gpu: 1, but CUDA is not available here' in log
    assert 'train.use_grad_norm is not read' in log and 'AdamW' in log
    saved = torch.load(workdir / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth', weights_only=True)
    assert set(saved) == {'params', 'params_ema'}  # ema_decay 0.999
    FFANet(gps=3, blocks=1).load_state_dict(saved['params_ema'], strict=True)


@pytest.mark.parametrize('extra', [{}, {'neg_t': 0.03}])  # neg_t: the fork's adaptive FFA-Net model's key
def test_spn_off_on_the_fork_file_is_a_plain_baseline(extra):
    from mclir_basicsr.compare.options import has_method, strip_method
    from mclir_basicsr.options import OFFICIAL_NEGATIVE_KEYS, parse_mclir_options
    opt = yaml.safe_load(OFFICIAL_FFANET_YML)
    opt['model_type'] = 'ModelContrastiveModel'
    opt['train'].update(extra)
    assert parse_mclir_options(opt).spn_on and has_method(opt)
    baseline = strip_method(opt)
    assert not any(k in baseline['train'] for k in OFFICIAL_NEGATIVE_KEYS + ('perceptual_opt',))
    cfg = parse_mclir_options(baseline)
    assert not cfg.spn_on and cfg.negatives is None and not has_method(baseline)
