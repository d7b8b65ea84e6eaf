"""SPNLoss: the Self-Prior guided Negative loss of MCLIR.

    D_k = sum_l w_l * mean criterion(phi_l(out) - phi_l(neg_k))     (one value per negative)
    subtract:  L = -lambda * mean_k min(D_k, max_distance)          (the paper)
    ratio:     L =  lambda * D(out, gt) / mean_k D_k                (bounded below by 0)

The means are over the samples the term is given. Cheaper estimators feed it less (the negative pool's
routing, :meth:`mclir_basicsr.history.NegativePool.route`, decides which):

* split batch: sample i meets only negative o_i = (i + r) mod K (``owners``), and mean_k D_k becomes
  (1/B) sum_i D_{i, o_i}, with D_{i, k} the per-sample distance. Averaged over the K rotations r it equals
  the full term exactly (VGG has no batch statistics); ``max_distance`` then clamps each sample's distance;
* a subset (``samples_per_step`` n of the B samples, drawn uniformly at random): the model passes only those
  samples. For ``subtract`` without ``max_distance`` the term is linear in the per-sample distances, so its
  expectation over the draws is the full-batch term: E_S[(1/n) sum_{i in S} D_i] = (1/B) sum_i D_i, each
  sample being in S with probability n/B. ``ratio`` and ``max_distance`` are not linear: there the subset (and
  split) estimate is consistent, not unbiased.

phi is VGG16/VGG19 features (BasicSR layer names, weights and input normalisation, as BasicSR's
PerceptualLoss) or the pixels themselves. The output's features are computed once per step, with
gradient; the negatives' (and, for ``ratio``, the ground truth's) in one batched pass under
``torch.inference_mode``. :func:`distances` defines D; the loss computes it with
:func:`low_memory_distances`, the same values and gradients at a fraction of the memory. With criterion l1
and mode subtract, D_k equals BasicSR's ``PerceptualLoss(layer_weights, perceptual_weight=1)(out, neg_k)``,
so the term matches the official code, which subtracts the mean of that over the negatives.
"""
import torch

from mclir_basicsr.losses.criteria import derivative_, pointwise, pointwise_
from mclir_basicsr.losses.features import FeatureSpace
from mclir_basicsr.options import SPNOptions
from mclir_basicsr.registration import component


def distances(out, refs, criterion):
    """The definition: d[k, i] = mean over sample i's elements of criterion(out[i] - refs[k, i]), for the n
    reference batches stacked in ``refs`` (n, B, ...) (or flattened to (n * B, ...)). Returns (n, B)."""
    return pointwise(out.unsqueeze(0) - refs.reshape(-1, *out.shape), criterion).flatten(2).mean(2)


class _LowMemoryDistances(torch.autograd.Function):
    """:func:`distances`, computed one reference batch at a time in a single reused buffer, forward and backward,
    with the gradient to ``out`` only. Autograd on the definition keeps the n-fold difference tensor (n times the
    size of the output's features) for the backward pass; this keeps none of it: same values and gradients
    (tests/test_spn_loss.py), about half the time and a fraction of the memory for the largest VGG layers."""

    @staticmethod
    def forward(ctx, out, refs, criterion):
        refs = refs.reshape(-1, *out.shape)
        buf, d = torch.empty_like(out), out.new_empty(refs.shape[0], out.shape[0])
        for k in range(refs.shape[0]):
            torch.sub(out, refs[k], out=buf)
            d[k] = pointwise_(buf, criterion).flatten(1).sum(1)
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
            grad.add_(derivative_(buf, ctx.criterion).mul_(grad_d[k]))
        return grad, None, None


def low_memory_distances(out, refs, criterion):
    """:func:`distances` at a fraction of the memory (:class:`_LowMemoryDistances`): what the loss uses."""
    return _LowMemoryDistances.apply(out, refs, criterion)


def _per_owner_mean(d, owners, k):
    """Mean of the per-sample distances d (B,) over the samples each of the k negatives saw: (k,)."""
    sums = torch.zeros(k, dtype=d.dtype, device=d.device).index_add_(0, owners, d)
    counts = torch.zeros(k, dtype=d.dtype, device=d.device).index_add_(0, owners, torch.ones_like(d))
    return sums / counts.clamp(min=1)


@component('loss')
class SPNLoss(FeatureSpace):
    """The SPN term. Its options (keyword arguments, as BasicSR's ``build_loss`` passes them) are documented in
    :mod:`mclir_basicsr.options` (docs/options.md) and validated there by :class:`~mclir_basicsr.options.SPNOptions`;
    ``config``: one already validated (``MCLIRConfig.spn``, as :class:`~mclir_basicsr.models.ModelContrastiveModel`
    passes it)."""

    def __init__(self, config=None, **options):
        super().__init__()
        cfg = config if config is not None else SPNOptions.parse(dict(options, type='SPNLoss'))
        self.cfg = cfg
        self.loss_weight, self.mode, self.criterion = cfg.loss_weight, cfg.mode, cfg.criterion
        self.max_distance = cfg.max_distance
        self.init_features(cfg, ('SPNLoss', 'train.spn_opt'))

    def distances(self, out_feats, ref_feats):
        """Per-sample distances of the output to each reference batch stacked in ref_feats: (n_ref, B)."""
        total = 0
        for layer, w in self.layer_weights.items():
            total = total + w * low_memory_distances(out_feats[layer], ref_feats[layer], self.criterion)
        return total

    def forward(self, out, negs, gt=None, owners=None, num_negatives=None):
        """The SPN term and the mean distance to each negative, D: (K,), detached.

        ``out`` (and ``gt``): the samples the term uses (the whole batch, or the step's subset).
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
