"""FFA-Net (Qin et al., AAAI 2020, "FFA-Net: Feature Fusion Attention Network for Single Image Dehazing").

Written from the paper's description; registered in BasicSR's ``ARCH_REGISTRY`` as ``FFANet``.
"""
import torch
from torch import nn

from mclir_basicsr.registration import component


def _conv(in_ch, out_ch, kernel_size=3):
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=True)


def _squeeze(ch, reduction):
    """Hidden width of an attention bottleneck: ch // reduction, at least 1 (for tiny test networks)."""
    return max(1, ch // reduction)


class PixelAttention(nn.Module):
    """x * sigmoid(conv1x1(relu(conv1x1(x)))) with a one-channel map: a weight per pixel."""

    def __init__(self, ch, reduction=8):
        super().__init__()
        hidden = _squeeze(ch, reduction)
        self.pa = nn.Sequential(_conv(ch, hidden, 1), nn.ReLU(), _conv(hidden, 1, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.pa(x)


class ChannelAttention(nn.Module):
    """x * sigmoid(conv1x1(relu(conv1x1(global average of x)))): a weight per channel."""

    def __init__(self, ch, reduction=8):
        super().__init__()
        hidden = _squeeze(ch, reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(_conv(ch, hidden, 1), nn.ReLU(), _conv(hidden, ch, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.ca(self.avg_pool(x))


class BasicBlock(nn.Module):
    """conv -> ReLU -> (+x) -> conv -> channel attention -> pixel attention -> (+x)."""

    def __init__(self, ch):
        super().__init__()
        self.conv1 = _conv(ch, ch)
        self.act1 = nn.ReLU()
        self.conv2 = _conv(ch, ch)
        self.calayer = ChannelAttention(ch)
        self.palayer = PixelAttention(ch)

    def forward(self, x):
        res = self.act1(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class Group(nn.Module):
    """`blocks` basic blocks and a conv, with a residual over the whole group."""

    def __init__(self, ch, blocks):
        super().__init__()
        self.gp = nn.Sequential(*[BasicBlock(ch) for _ in range(blocks)], _conv(ch, ch))

    def forward(self, x):
        return self.gp(x) + x


@component('arch')
class FFANet(nn.Module):
    """FFA-Net for single-image dehazing (scale 1, RGB in and out).

    Shallow conv 3 -> C; ``gps`` groups in sequence, each of ``blocks`` basic blocks; feature fusion:
    channel-attention weights over the concatenated group outputs (global pool, 1x1 conv to C/16, ReLU,
    1x1 conv to gps*C, sigmoid) give a weighted sum of the group outputs; pixel attention; two 3x3 convs
    (C -> C, C -> 3); global residual. Attention inside the blocks reduces by 8.

    * **Input normalisation is inside the network.** ``forward`` first maps the raw [0, 1] input to
      ``(x - img_mean) / img_std`` (default: the mean/std FFA-Net's training code uses for hazy images)
      and adds its residual to that *normalised* input, exactly as the official MCLIR fork does with the
      normalisation in its model's ``feed_data``. So the network takes raw images from any BasicSR model
      (SRModel, ModelContrastiveModel, the test script) and a checkpoint trained by the fork gives the same
      outputs here. ``img_mean=(0, 0, 0), img_std=(1, 1, 1)`` makes it a plain residual network.
    * **State-dict keys match the official FFANet** (``pre.0``, ``g1.gp.<i>.conv1``,
      ``g1.gp.<i>.calayer.ca.0`` / ``.2``, ``g1.gp.<i>.palayer.pa.0`` / ``.2``, ``g1.gp.<blocks>``, ``ca.1`` /
      ``ca.3``, ``palayer.pa.0`` / ``.2``, ``post.0`` / ``post.1``): its ``.pth`` files load with
      ``strict=True``. The mean/std are non-persistent buffers, not in the state dict.
    * **Any ``gps >= 1``** (the official code accepts only 3): the groups are ``g1`` ... ``g<gps>``.
      Attention widths are ``C // 16`` and ``C // 8`` (at least 1, for tiny test networks).
    """

    def __init__(self, gps=3, blocks=19, num_feat=64, img_mean=(0.64, 0.6, 0.58), img_std=(0.14, 0.15, 0.152)):
        super().__init__()
        if gps < 1 or blocks < 0 or num_feat < 1:
            raise ValueError(f'FFANet: gps >= 1, blocks >= 0 and num_feat >= 1 needed, got gps={gps}, '
                             f'blocks={blocks}, num_feat={num_feat}')
        self.gps, self.num_feat = gps, num_feat
        self.register_buffer('img_mean', torch.tensor(img_mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('img_std', torch.tensor(img_std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.pre = nn.Sequential(_conv(3, num_feat))
        for i in range(1, gps + 1):
            self.add_module(f'g{i}', Group(num_feat, blocks))
        hidden = _squeeze(num_feat, 16)
        self.ca = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv(num_feat * gps, hidden, 1), nn.ReLU(),
                                _conv(hidden, num_feat * gps, 1), nn.Sigmoid())
        self.palayer = PixelAttention(num_feat)
        self.post = nn.Sequential(_conv(num_feat, num_feat), _conv(num_feat, 3))

    def forward(self, x):
        x = (x - self.img_mean) / self.img_std
        feat = self.pre(x)
        outs = []
        for i in range(1, self.gps + 1):
            feat = getattr(self, f'g{i}')(feat)
            outs.append(feat)
        w = self.ca(torch.cat(outs, dim=1)).view(-1, self.gps, self.num_feat, 1, 1)
        fused = sum(w[:, i] * out for i, out in enumerate(outs))
        return self.post(self.palayer(fused)) + x
