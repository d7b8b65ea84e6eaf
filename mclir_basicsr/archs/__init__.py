"""Networks registered with BasicSR's ARCH_REGISTRY (BasicSR's own scan covers only its own folder)."""
from mclir_basicsr.archs.ffanet_arch import FFANet

__all__ = ['FFANet']
