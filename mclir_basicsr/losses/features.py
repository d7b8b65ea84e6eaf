"""The feature space phi shared by SPNLoss and CRLoss: VGG features (BasicSR layer names, weights from a
local torchvision file, :mod:`mclir_basicsr.losses.vgg`) or the pixels themselves, with the options'
autocast and channels_last handling (features come out in at least float32 whatever the autocast)."""
import torch
from torch import nn

from mclir_basicsr.losses.vgg import VGGFeatures
from mclir_basicsr.options import dtype_or_none


def _at_least_fp32(t):
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class FeatureSpace(nn.Module):
    """Base of the feature-space losses: :meth:`init_features` from a validated option section, :meth:`phi`."""

    def init_features(self, cfg, owner):
        """``cfg``: the loss's validated section (feature, layer_weights, use_input_norm, range_norm, pretrained,
        download, autocast, channels_last); ``owner``: (loss, option section) named when the VGG file is missing."""
        self.channels_last = cfg.channels_last
        self.autocast = dtype_or_none(cfg.autocast)
        if cfg.feature == 'pixel':
            self.features, self.layer_weights = None, {'pixel': 1.0}
            return
        self.layer_weights = dict(cfg.layer_weights)
        self.features = VGGFeatures(cfg.feature, list(self.layer_weights), cfg.use_input_norm, cfg.range_norm,
                                    cfg.pretrained, cfg.download, owner)
        if self.autocast is not None:  # autocast re-casts frozen fp32 weights at every call
            self.features.body.to(self.autocast)

    def use_channels_last(self, device):
        """Whether the VGG passes on `device` run in channels_last (option `channels_last`; `auto`: on CPU,
        where oneDNN's convolutions take channels_last directly instead of reordering every tensor)."""
        return self.channels_last is True or (self.channels_last == 'auto' and device.type == 'cpu')

    def phi(self, x):
        """{layer: features} of a batch (N, C, H, W); at least float32 out whatever the autocast."""
        if self.features is None:
            return {'pixel': _at_least_fp32(x)}
        if self.autocast is None:  # e.g. an output computed under train.amp with this loss's autocast switched off
            x = x.to(self.features.mean.dtype)
        if self.use_channels_last(x.device):
            x = x.contiguous(memory_format=torch.channels_last)
            if not self.features.body[0].weight.is_contiguous(memory_format=torch.channels_last):
                with torch.inference_mode(False):  # once: the weights in the same layout (normal tensors)
                    self.features.to(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            feats = self.features(x)
        return {k: _at_least_fp32(v) for k, v in feats.items()}
