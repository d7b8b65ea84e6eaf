"""torch's optimisers and learning-rate schedulers by name, for the add-on's models only.

BasicSR 1.4.2 builds one optimiser (``Adam``: ``get_optimizer`` raises ``NotImplementedError`` for
anything else) and three schedulers (``MultiStepLR``, ``MultiStepRestartLR``,
``CosineAnnealingRestartLR``). Option files of the official MCLIR fork (and of NAFNet/FFA-Net style
code bases) use ``AdamW`` and ``TrueCosineAnnealingLR`` (torch's ``CosineAnnealingLR`` under another
name). :class:`TorchOptimMixin` builds ``train.optim_g`` as the ``torch.optim`` class of that name
(``Adam`` included: BasicSR's is exactly ``torch.optim.Adam``) and keeps BasicSR's three schedulers
as BasicSR builds them, adding every other scheduler of ``torch.optim.lr_scheduler`` that is stepped
once per iteration without arguments and built from plain YAML values, plus that alias. Both are
checked when the options are parsed (:mod:`mclir_basicsr.preflight.optim`), before any network is built, so a
misspelt type or argument is a one-line error naming the option.
"""
import torch

from mclir_basicsr.preflight.optim import torch_class


class TorchOptimMixin:
    """``get_optimizer`` for any torch.optim class; ``setup_schedulers`` that also builds torch's schedulers
    (and ``TrueCosineAnnealingLR``)."""

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        return getattr(torch.optim, optim_type)(params, lr, **kwargs)

    def setup_schedulers(self):
        sched = self.opt['train']['scheduler']
        cls = torch_class(sched['type'])
        if cls is None:
            return super().setup_schedulers()
        kwargs = {k: v for k, v in sched.items() if k != 'type'}
        for optimizer in self.optimizers:
            self.schedulers.append(cls(optimizer, **kwargs))
