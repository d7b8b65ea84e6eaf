"""Test helpers: a tiny paired dataset from scikit-image's photos, VGG weight files, option files."""
import hashlib
import os
import socket
import subprocess
import sys

import cv2
import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_paired_dataset(root, scale, n=6, size=48, noise=0.0, seed=0):
    """root/{gt,lq}/NNN.png: HR crops of scikit-image photos and their bicubic x`scale` LR
    (scale 1: the HR with Gaussian noise `noise`, a denoising pair)."""
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(),
              data.immunohistochemistry()]
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, 'gt'), exist_ok=True)
    os.makedirs(os.path.join(root, 'lq'), exist_ok=True)
    for i in range(n):
        img = photos[i % len(photos)]
        y = rng.integers(0, img.shape[0] - size)
        x = rng.integers(0, img.shape[1] - size)
        hr = np.ascontiguousarray(img[y:y + size, x:x + size, ::-1])  # RGB -> BGR for cv2
        if scale == 1:
            lq = np.clip(hr + rng.normal(0, noise * 255, hr.shape), 0, 255).astype(np.uint8)
        else:
            lq = cv2.resize(hr, (size // scale, size // scale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(os.path.join(root, 'gt', f'{i:03d}.png'), hr)
        cv2.imwrite(os.path.join(root, 'lq', f'{i:03d}.png'), lq)
    return root


def write_vgg_weights(path, vgg_type='vgg16', legacy=False):
    """Random VGG weights saved as torchvision saves them (``features.N.*`` keys)."""
    from mclir_basicsr.losses.vgg import write_random_weights
    return write_random_weights(path, vgg_type, legacy)


NETWORKS = {
    'EDSR': lambda scale: {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16, 'num_block': 2,
                           'upscale': scale, 'res_scale': 1, 'img_range': 255.,
                           'rgb_mean': [0.4488, 0.4371, 0.4040]},
    'SwinIR': lambda scale: {'type': 'SwinIR', 'upscale': scale, 'in_chans': 3, 'img_size': 8, 'window_size': 4,
                             'img_range': 1., 'depths': [1], 'embed_dim': 12, 'num_heads': [2], 'mlp_ratio': 2,
                             'upsampler': 'pixelshuffledirect' if scale > 1 else '', 'resi_connection': '1conv'},
    'RRDBNet': lambda scale: {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                              'num_grow_ch': 4, 'scale': scale},
    'MSRResNet': lambda scale: {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8,
                                'num_block': 1, 'upscale': scale},
}


def train_options(name, data_root, scale=2, arch='EDSR', total_iter=3, spn=None, negatives=None, gt_size=16,
                  val=True, extra_train=None, **top):
    """A complete BasicSR training option dict for a tiny run."""
    train = {
        'ema_decay': 0,
        'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5},
        'total_iter': total_iter,
        'warmup_iter': -1,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
    }
    if spn is not None:
        train['spn_opt'] = spn
        train['negatives'] = negatives or {'update_every': [1, 2], 'decay': [0.5, 0.9], 'init_decay': 0.1}
    train.update(extra_train or {})
    dataset = {'type': 'PairedImageDataset', 'dataroot_gt': os.path.join(data_root, 'gt'),
               'dataroot_lq': os.path.join(data_root, 'lq'), 'io_backend': {'type': 'disk'}}
    opt = {
        'name': name,
        'model_type': 'ModelContrastiveModel' if spn is not None or 'neg_iter' in train else 'SRModel',
        'scale': scale,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'train': dict(dataset, name='tiny', filename_tmpl='{}', gt_size=gt_size, use_hflip=True, use_rot=True,
                          num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1, prefetch_mode=None),
        },
        'network_g': NETWORKS[arch](scale),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': train,
        'logger': {'print_freq': 1, 'save_checkpoint_freq': total_iter, 'use_tb_logger': True, 'wandb': None},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }
    if val:
        opt['datasets']['val'] = dict(dataset, name='tinyval')
        opt['val'] = {'val_freq': total_iter, 'save_img': False,
                      'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': scale, 'test_y_channel': False}}}
    opt.update(top)
    return opt


def test_options(name, data_root, weights, scale=2, arch='EDSR', model_type='ModelContrastiveModel'):
    dataset = {'type': 'PairedImageDataset', 'name': 'tinytest', 'dataroot_gt': os.path.join(data_root, 'gt'),
               'dataroot_lq': os.path.join(data_root, 'lq'), 'io_backend': {'type': 'disk'}}
    return {
        'name': name, 'model_type': model_type, 'scale': scale, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': dataset},
        'network_g': NETWORKS[arch](scale),
        'path': {'pretrain_network_g': weights, 'strict_load_g': True, 'param_key_g': 'params'},
        'val': {'save_img': True, 'suffix': None,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': scale, 'test_y_channel': False}}},
    }


def load_script(name):
    """A module loaded from scripts/<name>.py, e.g. 'compare_methods' or 'dev/bench_threads' (the scripts are
    files, not an importable package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(os.path.basename(name), os.path.join(REPO, 'scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_module(name, folder=''):
    """A module of a script's parts, imported as that script imports it: with scripts/<folder> on sys.path,
    e.g. script_module('data_preparation.div2k') (scripts/data_preparation/div2k.py) or
    script_module('bench', 'dev') (the package scripts/dev/bench/)."""
    import importlib
    path = os.path.join(REPO, 'scripts', folder) if folder else os.path.join(REPO, 'scripts')
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(name)


def write_yaml(path, opt):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def run(cmd, cwd, env=None, timeout=600, check=True):
    """Run a command, return CompletedProcess; on failure the assertion shows its output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}'
    return proc


def train_run(workdir, opt, *args, check=True, env=None):
    """Write ``opt`` as workdir/<name>.yml and train it with ``python -m mclir_basicsr.train`` there."""
    write_yaml(workdir / f'{opt["name"]}.yml', opt)
    return run([PY, '-m', 'mclir_basicsr.train', '-opt', f'{opt["name"]}.yml', *args], cwd=workdir, env=env,
               check=check)


def load_output(workdir, name, what):
    """A file of run ``name`` under workdir/experiments (checkpoint or training state), loaded with torch."""
    import torch  # here: the other helpers are used by tests that must not import torch first
    return torch.load(workdir / 'experiments' / name / what, weights_only=False)


def first_conv_dtypes_of_one_step(root, opt):
    """``opt``'s model built in this process and one training step on a random batch: the dtypes the first
    convolution of net_g, of each negative and of the SPN loss's VGG computed in ({'net_g': [...], 'negatives':
    [...], 'vgg': [...]}, one entry per call), and the model."""
    import torch
    from basicsr.models import build_model
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(root),
               path=dict(opt['path'], experiments_root=str(root), models=str(root), training_states=str(root),
                         log=str(root), visualization=str(root)))
    model = build_model(opt)
    computed = {'net_g': [], 'negatives': [], 'vgg': []}
    spn = getattr(model, 'cri_spn', None)
    nets = [('net_g', model.net_g)] + [('negatives', n) for n in (model.negatives.negatives if model.negatives else [])]
    nets += [('vgg', spn.features)] if spn is not None and spn.features is not None else []
    for key, net in nets:
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, inp, out, key=key: computed[key].append(out.dtype))
    model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 8 * opt['scale'], 8 * opt['scale'])})
    model.optimize_parameters(1)
    return computed, model


def snapshot(root):
    """{path relative to root: sha256} of every file under root."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def assert_nothing_overwritten(before, after):
    """Every file of `before` is still there, byte for byte; new files are only logs and BasicSR's
    copy of the option file, which it rewrites at every start (``<experiment>/<option file>.yml``)."""
    rewritten_at_start = {p for p in before if p.endswith('.yml') and p.count(os.sep) == 1}
    changed = sorted(p for p in before if p not in rewritten_at_start and after.get(p) != before[p])
    added = sorted(p for p in set(after) - set(before) if not p.endswith(('.log', '.yml')) and 'tb_logger' not in p)
    assert not changed and not added, f'changed: {changed}; new: {added}'


def free_port():
    """A TCP port that is free now (the OS picks it): no collisions between runs sharing a machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


PY = sys.executable


test_options.__test__ = False  # a helper, not a test


TORCHRUN = os.path.join(os.path.dirname(PY), 'torchrun')


def has_torchrun():
    """Whether the environment's torchrun launcher is there (the 2-process gloo tests need it)."""
    import shutil
    return shutil.which('torchrun') is not None or os.path.exists(TORCHRUN)


def train_on_two_ranks(workdir, opt):
    """Write ``opt`` as workdir/<name>.yml and train it on 2 gloo ranks: ``torchrun --standalone
    --nproc_per_node=2 -m mclir_basicsr.train --launcher pytorch``, one thread each."""
    write_yaml(workdir / f'{opt["name"]}.yml', opt)
    return run([TORCHRUN, '--standalone', '--nproc_per_node=2', '-m', 'mclir_basicsr.train', '-opt',
                f'{opt["name"]}.yml', '--launcher', 'pytorch'], cwd=workdir, env={'OMP_NUM_THREADS': '1'})
