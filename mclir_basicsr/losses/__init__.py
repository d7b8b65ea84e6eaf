"""Losses registered with BasicSR's LOSS_REGISTRY."""
from mclir_basicsr.losses.cr_loss import CRLoss
from mclir_basicsr.losses.spn_loss import SPNLoss
from mclir_basicsr.losses.uncertainty_loss import UncertaintyWeightedLoss

__all__ = ['CRLoss', 'SPNLoss', 'UncertaintyWeightedLoss']
