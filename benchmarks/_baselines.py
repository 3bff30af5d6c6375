"""The references our networks are timed against in `speed.py`: a hand-written ResNet and
torchdiffeq's fixed-grid ``odeint`` on the same field."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torchdiffeq import odeint
except ImportError:
    odeint = None


class HandBlock(nn.Module):
    """relu(S(x) + bn2(conv2(relu(bn1(conv1(x)))))), S = option-A subsample + zero-pad."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            s = F.pad(s, (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + s)


class HandResNet(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. (2016a) in plain PyTorch, the layers of odenets' resnet."""

    def __init__(self, n=9, num_classes=10, in_channels=3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(HandBlock(cin, width, stride if i == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TorchdiffeqFlow(nn.Module):
    """u(1) of u' = field(u) by torchdiffeq's fixed-grid ``odeint`` with step 1/steps."""

    def __init__(self, field, steps, method):
        super().__init__()
        self.field, self.steps, self.method = field, steps, method

    def forward(self, u):
        t = torch.tensor([0.0, 1.0], device=u.device)
        return odeint(lambda t, v: self.field(v), u, t, method=self.method,
                      options=dict(step_size=1.0 / self.steps))[-1]
