"""The published code's training step (Aitical/MCLIR ``SRNegModel_Multi.optimize_parameters``), written
against this add-on's ModelContrastiveModel (its negatives and its SPN loss's VGG), so the bench's
``published_kN`` rows time the official per-negative perceptual calls and per-parameter refresh loop on
the same model as the ``spn_kN`` rows."""
from collections import OrderedDict

import torch
from torch.nn import functional as F


def published_neg_loss(spn, output, neg):
    """The official code's SPN term for ONE negative: BasicSR's PerceptualLoss(output, neg) with this
    SPNLoss's VGG, layer weights and weight (per-layer L1 by plain autograd, weighted sum): the output
    goes through VGG with grad once per negative."""
    f_out, f_neg = spn.phi(output), spn.phi(neg.detach())
    return spn.loss_weight * sum(w * F.l1_loss(f_out[n], f_neg[n]) for n, w in spn.layer_weights.items())


def published_refresh(pool, net_g, current_iter):
    """The official refresh: a per-parameter Python loop per negative (update_every reversed against the
    index, as the official code has it)."""
    for idx, period in enumerate(pool.update_every[::-1]):
        if current_iter % period == 0:
            src = dict(net_g.named_parameters())
            for name, p in pool.negatives[idx].named_parameters():
                p.data.mul_(pool.decay[idx]).add_(src[name].data, alpha=1 - pool.decay[idx])


def published_step(self, current_iter):
    """The official step (Aitical/MCLIR SRNegModel_Multi.optimize_parameters) on this model's negatives
    and VGG: L1 minus the mean over negatives of published_neg_loss, then published_refresh. Bound to a
    ModelContrastiveModel with types.MethodType."""
    self.optimizer_g.zero_grad()
    self.output = self.net_g(self.lq)
    with torch.no_grad():
        neg_out = [net(self.lq) for net in self.negatives.negatives]
    loss_dict = OrderedDict()
    l_total = loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
    l_neg = sum(published_neg_loss(self.cri_spn, self.output, neg) for neg in neg_out)
    l_total = l_total - l_neg / len(neg_out)
    loss_dict['l_neg'] = l_neg
    l_total.backward()
    self.optimizer_g.step()
    self.log_dict = self.reduce_loss_dict(loss_dict)
    published_refresh(self.negatives, self.get_bare_model(self.net_g), current_iter)
