"""mclir-basicsr: Model Contrastive Learning for Image Restoration as a BasicSR add-on.

Importing this package registers ``ModelContrastiveModel`` (MODEL_REGISTRY) and ``SPNLoss``
(LOSS_REGISTRY) with BasicSR: immediately if basicsr is already imported, otherwise the moment it
is (see :mod:`mclir_basicsr._autoload`). Importing it does not import torch by itself.
"""
from mclir_basicsr import _autoload

__version__ = '0.1.0'

_autoload.install()
