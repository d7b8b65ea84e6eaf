"""CRLoss: the contrastive regularisation of AECR-Net (Wu et al., CVPR 2021, "Contrastive Learning for
Compact Single Image Dehazing"), a task-oriented contrastive baseline for MCLIR.

    L = lambda * sum_l w_l * D(phi_l(out), phi_l(gt)) / (D(phi_l(out), phi_l(input)) + eps)

The positive is the ground truth, the negative the degraded input. D is the criterion's mean over the
whole batch (``l1``: mean |a - b| over all samples and elements), so each layer's term is a ratio of
batch means, as AECR-Net computes it (not a mean of per-sample ratios). phi is VGG19 features
(AECR-Net: relu1_1 ... relu5_1 with weights 1/32, 1/16, 1/8, 1/4, 1; BasicSR layer names, weights from
a local torchvision file, :mod:`mclir_basicsr.losses.vgg`) or the pixels themselves (``feature: pixel``,
one "layer" of weight 1). The output's features are computed once, with gradient; the ground truth's
and the input's in one batched pass without gradient.

When the input's spatial size differs from the output's (super-resolution), the input is resized to
the output's size with ``torch.nn.functional.interpolate(mode='bicubic', align_corners=False)`` and
clamped to the data range ([0, 1], or [-1, 1] with ``range_norm``): the negative is the upscaled
degraded image. Scale-1 tasks (dehazing, denoising) use the input as it is.

BasicSR's SRModel calls its losses with (output, gt) only; ModelContrastiveModel passes the input
too (``train.cr_opt``), with or without SPN.
"""
import torch
from torch.nn import functional as F

from mclir_basicsr.losses.criteria import pointwise
from mclir_basicsr.losses.features import FeatureSpace
from mclir_basicsr.options import CROptions
from mclir_basicsr.registration import component


def batch_distance(a, b, criterion):
    """Mean over the whole batch of criterion(a - b): l1, l2 (squared error) or Charbonnier (eps 1e-12,
    as BasicSR's CharbonnierLoss)."""
    return pointwise(a - b, criterion).mean()


def match_input(lq, out, range_norm=False):
    """The degraded input as a negative for ``out``: checked, and bicubic-resized (clamped to the data
    range) when its spatial size differs from the output's."""
    if lq.dim() != 4 or out.dim() != 4:
        raise ValueError(f'CRLoss: expected (N, C, H, W) tensors, got input {tuple(lq.shape)} and output '
                         f'{tuple(out.shape)}')
    if lq.shape[:2] != out.shape[:2]:
        raise ValueError(f'CRLoss: the input {tuple(lq.shape)} and the output {tuple(out.shape)} differ in batch '
                         'size or channels; the degraded input is the negative and must be an image like the output')
    if lq.shape[-2:] == out.shape[-2:]:
        return lq
    x = lq if lq.dtype in (torch.float32, torch.float64) else lq.float()
    resized = F.interpolate(x, size=out.shape[-2:], mode='bicubic', align_corners=False)
    return resized.clamp(-1 if range_norm else 0, 1).to(lq.dtype)


@component('loss')
class CRLoss(FeatureSpace):
    """The CR term; its options are documented in :mod:`mclir_basicsr.options` (docs/options.md) and validated
    there (``config``: a validated :class:`~mclir_basicsr.options.CROptions`, as ``SPNLoss`` takes its own)."""

    def __init__(self, config=None, **options):
        super().__init__()
        cfg = config if config is not None else CROptions.parse(dict(options, type='CRLoss'))
        self.cfg = cfg
        self.loss_weight, self.criterion, self.eps = cfg.loss_weight, cfg.criterion, cfg.eps
        self.range_norm = cfg.range_norm
        self.init_features(cfg, ('CRLoss', 'train.cr_opt'))

    def forward(self, out, gt, lq):
        """The CR term (a scalar): out (N, C, H, W) with gradient, gt like out, lq the degraded input
        (N, C, h, w), resized to out's size when h, w differ."""
        if gt.shape != out.shape:
            raise ValueError(f'CRLoss: the ground truth {tuple(gt.shape)} and the output {tuple(out.shape)} differ')
        neg = match_input(lq, out, self.range_norm)
        with torch.no_grad():
            refs = self.phi(torch.cat([gt, neg.to(gt.dtype)]))
        feats = self.phi(out)
        n = out.shape[0]
        total = 0
        for layer, w in self.layer_weights.items():
            f, pos, negative = feats[layer], refs[layer][:n], refs[layer][n:]
            d_pos = batch_distance(f, pos, self.criterion)
            d_neg = batch_distance(f, negative, self.criterion)
            total = total + w * d_pos / (d_neg + self.eps)
        return self.loss_weight * total
