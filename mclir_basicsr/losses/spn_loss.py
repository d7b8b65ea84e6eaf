"""SPNLoss: the Self-Prior guided Negative loss of MCLIR.

    D_k = sum_l w_l * mean criterion(phi_l(out) - phi_l(neg_k))     (one value per negative)
    subtract:  L = -lambda * mean_k min(D_k, max_distance)          (the paper)
    ratio:     L =  lambda * D(out, gt) / mean_k D_k                (bounded below by 0)

phi is VGG16/VGG19 features (BasicSR layer names, weights and input normalisation, as BasicSR's
PerceptualLoss) or the pixels themselves. The output's features are computed once per step, with
gradient; the K negatives' (and, for ``ratio``, the ground truth's) in one batched pass under
``torch.inference_mode``. With criterion l1 and mode subtract, D_k equals BasicSR's
``PerceptualLoss(layer_weights, perceptual_weight=1)(out, neg_k)``, so the term matches the
official code, which subtracts the mean of that over the negatives.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from mclir_basicsr.losses.vgg import VGGFeatures
from mclir_basicsr.options import SPN, validate_section


class _Distances(torch.autograd.Function):
    """d[k] = mean(criterion(out - refs[k])) for the n reference batches stacked in ``refs``.

    The gradient flows to ``out`` only. Autograd would keep the n-fold difference tensor (n times
    the size of the output's features) for the backward pass; this recomputes one difference at a
    time in a single reused buffer, forward and backward: same values, about half the time and a
    fraction of the memory for the largest VGG layers.
    """

    @staticmethod
    def forward(ctx, out, refs, criterion):
        refs = refs.reshape(-1, *out.shape)
        buf, d = torch.empty_like(out), out.new_empty(refs.shape[0])
        for k in range(refs.shape[0]):
            torch.sub(out, refs[k], out=buf)
            if criterion == 'l1':
                buf.abs_()
            elif criterion == 'l2':
                buf.square_()
            else:  # charbonnier, eps as BasicSR's CharbonnierLoss
                buf.square_().add_(1e-12).sqrt_()
            d[k] = buf.sum()
        ctx.save_for_backward(out)
        ctx.refs, ctx.criterion = refs, criterion  # refs come from inference mode: not saved for autograd
        return d / out.numel()

    @staticmethod
    def backward(ctx, grad_d):
        out, = ctx.saved_tensors
        grad_d = grad_d / out.numel()
        grad, buf = torch.zeros_like(out), torch.empty_like(out)
        for k in range(ctx.refs.shape[0]):
            torch.sub(out, ctx.refs[k], out=buf)
            if ctx.criterion == 'l1':
                buf.sign_()
            elif ctx.criterion == 'l2':
                buf.mul_(2)
            else:
                buf.div_(buf.square().add_(1e-12).sqrt_())
            grad.add_(buf.mul_(grad_d[k]))
        return grad, None, None


@LOSS_REGISTRY.register()
class SPNLoss(nn.Module):
    """See the module docstring; every argument is documented in :mod:`mclir_basicsr.options`."""

    def __init__(self, **kwargs):
        super().__init__()
        cfg = validate_section('spn_opt', dict(kwargs, type='SPNLoss'), SPN)
        self.cfg = cfg
        self.loss_weight = cfg['loss_weight']
        self.mode, self.criterion, self.max_distance = cfg['mode'], cfg['criterion'], cfg['max_distance']
        self.autocast = cfg['autocast'] and getattr(torch, cfg['autocast'])  # None, bfloat16 or float16
        self.channels_last = cfg['channels_last']
        if cfg['feature'] == 'pixel':
            self.features = None
            self.layer_weights = {'pixel': 1.0}
        else:
            self.layer_weights = dict(cfg['layer_weights'])
            self.features = VGGFeatures(cfg['feature'], list(self.layer_weights), cfg['use_input_norm'],
                                        cfg['range_norm'], cfg['pretrained'], cfg['download'])
            if self.autocast is not None:  # autocast re-casts frozen fp32 weights at every call
                self.features.body.to(self.autocast)

    def use_channels_last(self, device):
        """Whether the VGG passes on `device` run in channels_last (option `channels_last`; `auto`: on CPU,
        where oneDNN's convolutions take channels_last directly instead of reordering every tensor)."""
        return self.channels_last is True or (self.channels_last == 'auto' and device.type == 'cpu')

    def phi(self, x):
        """{layer: features} of a batch (N, C, H, W); fp32 out whatever the autocast."""
        if self.features is None:
            return {'pixel': x}
        if self.use_channels_last(x.device):
            x = x.contiguous(memory_format=torch.channels_last)
            if not self.features.body[0].weight.is_contiguous(memory_format=torch.channels_last):
                with torch.inference_mode(False):  # once: the weights in the same layout (normal tensors)
                    self.features.to(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            feats = self.features(x)
        return {k: v.float() for k, v in feats.items()}

    def distances(self, out_feats, ref_feats):
        """Distances of the output to each reference batch stacked in ref_feats: (n_ref,)."""
        total = 0
        for layer, w in self.layer_weights.items():
            total = total + w * _Distances.apply(out_feats[layer], ref_feats[layer], self.criterion)
        return total

    def forward(self, out, negs, gt=None):
        """out: (B, C, H, W) with grad; negs: (K, B, C, H, W). Returns (loss, D) with D: (K,), detached."""
        k = negs.shape[0]
        refs = negs.flatten(0, 1)
        if self.mode == 'ratio':
            if gt is None:
                raise ValueError('SPNLoss(mode=ratio) needs the ground truth')
            refs = torch.cat([refs, gt.to(refs.dtype)])
        with torch.inference_mode():
            ref_feats = self.phi(refs)
        d = self.distances(self.phi(out), ref_feats)
        d_neg = d[:k]
        if self.mode == 'ratio':
            loss = self.loss_weight * d[k] / (d_neg.mean() + 1e-8)
        else:
            if self.max_distance is not None:
                d_neg = d_neg.clamp(max=self.max_distance)
            loss = -self.loss_weight * d_neg.mean()
        return loss, d[:k].detach()
