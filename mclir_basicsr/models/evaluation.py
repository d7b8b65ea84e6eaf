"""What ModelContrastiveModel adds to SRModel's evaluation: the input padded to a multiple of
``network_g.window_size`` (as BasicSR's SwinIRModel pads it) and the output cropped back, and the uncertainty
weight map of a validation image written next to BasicSR's output image."""
import os

from basicsr.utils import imwrite
from torch.nn import functional as F


def pad_to_multiple(x, multiple):
    """(x reflect-padded at the bottom and right to a multiple of ``multiple``, its (h, w) before)."""
    h, w = x.shape[-2:]
    if multiple > 1:
        x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), 'reflect')
    return x, (h, w)


def crop_to(y, size, scale):
    """The output of a padded input, cropped to ``scale`` times the input's (h, w)."""
    return y[..., :size[0] * scale, :size[1] * scale]


def save_weight_map(weights, cap, visualization_dir, lq_path, current_iter):
    """Write a (H, W) weight map in [0, cap] as ``<image>/<image>_<iter>_uncertainty.png`` (0..255)."""
    img = (weights / cap * 255).round().byte().cpu().numpy()
    name = os.path.splitext(os.path.basename(lq_path or 'image'))[0]
    imwrite(img, os.path.join(visualization_dir, name, f'{name}_{current_iter}_uncertainty.png'))
