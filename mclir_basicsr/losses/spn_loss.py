"""SPNLoss: the Self-Prior guided Negative loss of MCLIR.

    D_k = sum_l w_l * mean criterion(phi_l(out) - phi_l(neg_k))     (one value per negative)
    subtract:  L = -lambda * mean_k min(D_k, max_distance)          (the paper)
    ratio:     L =  lambda * D(out, gt) / mean_k D_k                (bounded below by 0)

Split batch (``negatives.split_batch``): sample i meets only negative o_i = (i + r) mod K, and
mean_k D_k becomes (1/B) sum_i D_{i, o_i}, with D_{i, k} the per-sample distance (the means above
are means over samples of those). Averaged over the K rotations r it equals the full term exactly
(VGG has no batch statistics); ``max_distance`` then clamps each sample's distance.

phi is VGG16/VGG19 features (BasicSR layer names, weights and input normalisation, as BasicSR's
PerceptualLoss) or the pixels themselves. The output's features are computed once per step, with
gradient; the K negatives' (and, for ``ratio``, the ground truth's) in one batched pass under
``torch.inference_mode``. With criterion l1 and mode subtract, D_k equals BasicSR's
``PerceptualLoss(layer_weights, perceptual_weight=1)(out, neg_k)``, so the term matches the
official code, which subtracts the mean of that over the negatives.
"""
import torch

from mclir_basicsr.losses.features import FeatureSpace, pointwise
from mclir_basicsr.options import SPN, validate_section
from mclir_basicsr.registration import component


def _criterion_(buf, criterion):
    """In place: |d|, d^2 or the Charbonnier sqrt(d^2 + eps) (eps as BasicSR's CharbonnierLoss)."""
    if criterion == 'l1':
        return buf.abs_()
    if criterion == 'l2':
        return buf.square_()
    return buf.square_().add_(1e-12).sqrt_()


def _criterion_grad_(buf, criterion):
    """In place: the derivative of the criterion at the difference d held in buf."""
    if criterion == 'l1':
        return buf.sign_()
    if criterion == 'l2':
        return buf.mul_(2)
    return buf.div_(buf.square().add_(1e-12).sqrt_())


class _Distances(torch.autograd.Function):
    """d[k, i] = mean over sample i's elements of criterion(out[i] - refs[k, i]), for the n reference
    batches stacked in ``refs`` (n, B, ...). Returns (n, B).

    The gradient flows to ``out`` only. Autograd would keep the n-fold difference tensor (n times
    the size of the output's features) for the backward pass; this recomputes one difference at a
    time in a single reused buffer, forward and backward: same values as :func:`reference_distances`,
    about half the time and a fraction of the memory for the largest VGG layers.
    """

    @staticmethod
    def forward(ctx, out, refs, criterion):
        refs = refs.reshape(-1, *out.shape)
        buf, d = torch.empty_like(out), out.new_empty(refs.shape[0], out.shape[0])
        for k in range(refs.shape[0]):
            torch.sub(out, refs[k], out=buf)
            d[k] = _criterion_(buf, criterion).flatten(1).sum(1)
        ctx.save_for_backward(out)
        ctx.refs, ctx.criterion = refs, criterion  # refs come from inference mode: not saved for autograd
        return d / out[0].numel()

    @staticmethod
    def backward(ctx, grad_d):
        out, = ctx.saved_tensors
        grad_d = (grad_d / out[0].numel()).reshape(grad_d.shape + (1,) * (out.dim() - 1))
        grad, buf = torch.zeros_like(out), torch.empty_like(out)
        for k in range(ctx.refs.shape[0]):
            torch.sub(out, ctx.refs[k], out=buf)
            grad.add_(_criterion_grad_(buf, ctx.criterion).mul_(grad_d[k]))
        return grad, None, None


def reference_distances(out, refs, criterion):
    """Plain-autograd reference of :class:`_Distances` (for tests): (n, B) per-sample mean distances."""
    return pointwise(out.unsqueeze(0) - refs.reshape(-1, *out.shape), criterion).flatten(2).mean(2)


def _per_owner_mean(d, owners, k):
    """Mean of the per-sample distances d (B,) over the samples each of the k negatives saw: (k,)."""
    sums = torch.zeros(k, dtype=d.dtype, device=d.device).index_add_(0, owners, d)
    counts = torch.zeros(k, dtype=d.dtype, device=d.device).index_add_(0, owners, torch.ones_like(d))
    return sums / counts.clamp(min=1)


@component('loss')
class SPNLoss(FeatureSpace):
    """The SPN term; every argument is documented in :mod:`mclir_basicsr.options` (docs/options.md)."""

    def __init__(self, loss_weight=SPN['loss_weight'].default, feature=SPN['feature'].default,
                 layer_weights=SPN['layer_weights'].default, criterion=SPN['criterion'].default,
                 mode=SPN['mode'].default, max_distance=None, use_input_norm=True, range_norm=False,
                 pretrained=None, download=False, autocast=None, channels_last=SPN['channels_last'].default,
                 **unknown):
        super().__init__()
        cfg = validate_section('spn_opt', dict(  # unknown keys: an MCLIROptionError with a "did you mean"
            unknown, type='SPNLoss', loss_weight=loss_weight, feature=feature, layer_weights=layer_weights,
            criterion=criterion, mode=mode, max_distance=max_distance, use_input_norm=use_input_norm,
            range_norm=range_norm, pretrained=pretrained, download=download, autocast=autocast,
            channels_last=channels_last), SPN)
        self.cfg = cfg
        self.loss_weight, self.mode, self.criterion = cfg['loss_weight'], cfg['mode'], cfg['criterion']
        self.max_distance = cfg['max_distance']
        self.init_features(cfg, ('SPNLoss', 'train.spn_opt'))

    def distances(self, out_feats, ref_feats):
        """Per-sample distances of the output to each reference batch stacked in ref_feats: (n_ref, B)."""
        total = 0
        for layer, w in self.layer_weights.items():
            total = total + w * _Distances.apply(out_feats[layer], ref_feats[layer], self.criterion)
        return total

    def forward(self, out, negs, gt=None, owners=None, num_negatives=None):
        """The SPN term and the mean distance to each negative, D: (K,), detached.

        Full estimator (the paper): negs (K, B, C, H, W), every sample against every negative.
        Split batch: negs (B, C, H, W), sample i from negative ``owners[i]`` (one of ``num_negatives``);
        the term is the per-sample mean, whose average over the K rotations of ``owners`` is the full
        term, and D[k] is the mean over the samples negative k saw."""
        split = owners is not None
        refs = negs.unsqueeze(0) if split else negs
        if self.mode == 'ratio':
            if gt is None:
                raise ValueError('SPNLoss(mode=ratio) needs the ground truth')
            refs = torch.cat([refs, gt.to(refs.dtype).unsqueeze(0)])
        with torch.inference_mode():
            ref_feats = self.phi(refs.flatten(0, 1))
        d = self.distances(self.phi(out), ref_feats)  # (n_ref, B)
        d_neg = d[:-1] if self.mode == 'ratio' else d  # (K, B), or (1, B) when split
        if split:
            logged = _per_owner_mean(d_neg[0].detach(), owners, num_negatives)
        else:
            logged = d_neg.detach().mean(1)
        if self.mode == 'ratio':
            return self.loss_weight * d[-1].mean() / (d_neg.mean() + 1e-8), logged
        if self.max_distance is not None:  # per sample when split, per negative (batch mean) when full
            d_neg = d_neg.clamp(max=self.max_distance) if split else d_neg.mean(1).clamp(max=self.max_distance)
        return -self.loss_weight * d_neg.mean(), logged
