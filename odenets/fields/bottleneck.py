"""Bottleneck fields (1x1 - 3x3 - 1x1 convolutions): ResNet-50 and ResNeXt."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class BottleneckField(nn.Module):
    """Post-activation bottleneck field (He et al. 2016a; torchvision's "ResNet v1.5").

        f(u) = BN3(W3 * relu(BN2(W2 * relu(BN1(W1 * u)))))
        W1: 1x1, C_in -> D;  W2: 3x3, D -> D, stride s, ``groups`` g;  W3: 1x1, D -> C_out

    with D = ``planes * base_width / 64 * groups`` and C_out = ``planes * expansion`` (unless
    given). The stride sits on the 3x3 convolution, as in torchvision, so torchvision's
    weights load one-to-one (same attribute names conv1..bn3). ``groups > 1`` is the ResNeXt
    aggregated transform (see `ResNeXtField`).
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, groups: int = 1,
                 base_width: int = 64, out_channels: int | None = None):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_channels = out_channels or planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, u):
        v = F.relu(self.bn1(self.conv1(u)))
        v = F.relu(self.bn2(self.conv2(v)))
        return self.bn3(self.conv3(v))


class ResNeXtField(BottleneckField):
    """ResNeXt aggregated-transform field (Xie et al. 2017): a bottleneck whose 3x3 convolution
    has ``cardinality`` groups of width ``bottleneck_width`` each.

        f(u) = sum_{i=1..cardinality} T_i(u)   (one grouped 3x3 conv computes all T_i)

    CIFAR ResNeXt-29 (8x64d): cardinality 8, bottleneck_width 64 at the first stage, doubling
    per stage; D = cardinality * bottleneck_width * planes / 64 channels inside.
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1, cardinality: int = 8,
                 bottleneck_width: int = 64, out_channels: int | None = None):
        super().__init__(in_channels, planes, stride, groups=cardinality,
                         base_width=bottleneck_width, out_channels=out_channels)
