"""Option files written for a GPU run on a machine without CUDA."""
import torch
from basicsr.utils import get_root_logger


def cpu_without_cuda(opt):
    """``num_gpu`` > 0 where CUDA is not available: train (or test) on the CPU with a warning, instead of BasicSR's
    failure deep inside torch when it moves the network to 'cuda' (the option file runs as it is)."""
    if opt.get('num_gpu') and not torch.cuda.is_available():
        get_root_logger().warning(f'num_gpu: {opt["num_gpu"]}, but CUDA is not available here '
                                  '(torch.cuda.is_available() is False): running on the CPU; set num_gpu: 0 to '
                                  'silence this.')
        opt['num_gpu'] = 0
