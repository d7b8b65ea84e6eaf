"""UncertaintyWeightedLoss: a reconstruction loss weighted by where the history disagrees.

MCLIR's extended version derives an uncertainty map from the negative models and weights the
reconstruction loss with it; only its abstract is public (no formula, no code), so this is **our
design**, stated here and in docs/beyond_the_paper.md:

    s(p)  = sqrt( mean_k mean_c (neg_k(p) - out(p))^2 )        spread of the K negatives around the output
    r(p)  = s(p) / mean_p s(p)                                  normalised per image (mean 1)
    w(p)  = clamp(r(p), floor, cap)                             bounded, and no pixel below ``floor``
    L     = loss_weight * mean_{b, c, p} w(p) * criterion(out - gt)

The weight is computed without gradient (a fixed per-pixel weight of this step). Pixels where the
output has moved far from its own history, the ones the network is still unsure about, count more
(up to ``cap`` times the average pixel); pixels where it has settled count less, but never less than
``floor``. Because r has mean 1, the loss is on the scale of the plain criterion (exactly it when the
negatives agree with the output everywhere: then w = 1). With split-batch negatives each sample has
one negative, and the spread is that one's distance. :class:`~mclir_basicsr.models.ModelContrastiveModel`
feeds the negatives' outputs it already computes for SPN: no extra forward.
"""
import torch
from torch import nn

from mclir_basicsr.losses.criteria import pointwise
from mclir_basicsr.options import UncertaintyOptions
from mclir_basicsr.registration import component


def uncertainty_weights(out: torch.Tensor, negs: torch.Tensor, floor: float = 0.1, cap: float = 3.0) -> torch.Tensor:
    """Per-pixel weights (B, 1, H, W), no gradient. ``negs``: (K, B, C, H, W), or (B, C, H, W) for one
    negative per sample (split batch)."""
    with torch.no_grad():
        dtype = torch.promote_types(out.dtype, torch.float32)  # at least float32 under autocast
        out, negs = out.detach().to(dtype), negs.to(dtype)
        if negs.dim() == out.dim():
            negs = negs.unsqueeze(0)
        if negs.shape[1:] != out.shape:
            raise ValueError(f'negatives of shape {tuple(negs.shape)} do not fit the output {tuple(out.shape)}')
        spread = (negs - out).square().mean(dim=(0, 2)).sqrt().unsqueeze(1)  # (B, 1, H, W)
        mean = spread.mean(dim=(-2, -1), keepdim=True)
        ratio = torch.where(mean > 0, spread / mean.clamp_min(torch.finfo(spread.dtype).tiny), torch.ones_like(spread))
        return ratio.clamp_(floor, cap)


@component('loss')
class UncertaintyWeightedLoss(nn.Module):
    """loss_weight * mean(w * criterion(out - gt)), w from the negatives' spread (module docstring)."""

    def __init__(self, config=None, **options):
        super().__init__()
        opt = config if config is not None else UncertaintyOptions.parse(dict(options, type='UncertaintyWeightedLoss'))
        self.loss_weight, self.criterion = opt.loss_weight, opt.criterion
        self.floor, self.cap, self.save_map = opt.floor, opt.cap, opt.save_map

    def weights(self, out, negs, samples=None):
        """Per-pixel weights (B, 1, H, W). ``samples``: the indices of the samples ``negs`` belong to when only some
        samples of the batch have negatives this step (``negatives.samples_per_step``); the others get weight 1,
        the plain criterion (no history seen, no reweighting), never a weight from another step."""
        if samples is None:
            return uncertainty_weights(out, negs, self.floor, self.cap)
        w = out.new_ones((out.shape[0], 1) + out.shape[2:], dtype=torch.promote_types(out.dtype, torch.float32))
        if samples.numel() == 0:  # a micro-batch none of whose samples the step's subset drew
            return w
        w[samples.to(out.device)] = uncertainty_weights(out.index_select(0, samples.to(out.device)), negs, self.floor,
                                                        self.cap)
        return w

    def forward(self, out, gt, negs, samples=None):
        """The weighted reconstruction loss of ``out`` against ``gt``; ``negs`` as :func:`uncertainty_weights`, for
        the ``samples`` given (all when None)."""
        w = self.weights(out, negs, samples).to(out.dtype)
        return self.loss_weight * (w * pointwise(out - gt, self.criterion)).mean()
