"""Models registered with BasicSR's MODEL_REGISTRY."""
from mclir_basicsr.models.model_contrastive_model import ModelContrastiveModel

__all__ = ['ModelContrastiveModel']
