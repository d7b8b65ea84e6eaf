"""The distance criteria of every add-on loss, defined once: ``l1`` |d|, ``l2`` d^2 and ``charbonnier``
sqrt(d^2 + eps) with BasicSR's CharbonnierLoss eps (1e-12), per element of a difference d.

:func:`pointwise` is the definition (out of place, differentiable by autograd). :func:`pointwise_` and
:func:`derivative_` compute the same values and the criterion's derivative in place, for SPN's low-memory
distance (:mod:`mclir_basicsr.losses.spn_loss`); tests/test_spn_loss.py checks both against the definition.
"""
import torch

from mclir_basicsr.options import CRITERIA

CHARBONNIER_EPS = 1e-12


def pointwise(diff: torch.Tensor, criterion: str) -> torch.Tensor:
    """criterion(diff) per element: the definition."""
    if criterion == 'l1':
        return diff.abs()
    if criterion == 'l2':
        return diff.square()
    if criterion == 'charbonnier':
        return (diff.square() + CHARBONNIER_EPS).sqrt()
    raise ValueError(f'unknown criterion {criterion!r}: one of {", ".join(CRITERIA)}')


def pointwise_(buf: torch.Tensor, criterion: str) -> torch.Tensor:
    """:func:`pointwise` in place (no autograd): buf holds a difference and becomes its criterion."""
    if criterion == 'l1':
        return buf.abs_()
    if criterion == 'l2':
        return buf.square_()
    return buf.square_().add_(CHARBONNIER_EPS).sqrt_()


def derivative_(buf: torch.Tensor, criterion: str) -> torch.Tensor:
    """In place (no autograd): buf holds a difference d and becomes d pointwise(d) / d d."""
    if criterion == 'l1':
        return buf.sign_()
    if criterion == 'l2':
        return buf.mul_(2)
    return buf.div_(buf.square().add_(CHARBONNIER_EPS).sqrt_())
