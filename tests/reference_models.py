"""Reference networks written directly in torch, following the Keras / paper code layer by layer.

They are independent of dscalc: the tests count them with FlopCounterMode and sum(p.numel()), and
compare with what dscalc computes from its YAML specs.
"""

from __future__ import annotations

import torch.nn.functional as TF
from torch import nn


class Pad(nn.Module):
    """Keras ZeroPadding2D(((top, bottom), (left, right)))."""

    def __init__(self, top: int, bottom: int, left: int, right: int) -> None:
        super().__init__()
        self.pad = (left, right, top, bottom)

    def forward(self, x):
        return TF.pad(x, self.pad)


def _same(k: int) -> int:
    return (k - 1) // 2


def conv_bn(cin, cout, k=3, stride=1, groups=1, bias=False, act=nn.ReLU6):
    layers: list[nn.Module] = []
    if stride == 2 and k == 3:  # Keras MobileNet: pad (0, 1) then 'valid'
        layers += [Pad(0, 1, 0, 1), nn.Conv2d(cin, cout, k, stride, 0, groups=groups, bias=bias)]
    else:
        layers.append(nn.Conv2d(cin, cout, k, stride, _same(k), groups=groups, bias=bias))
    layers += [nn.BatchNorm2d(cout), act()]
    return layers


def mobilenet_v1(alpha: float = 1.0, conv_mobilenet: bool = False, classes: int = 1000) -> nn.Module:
    """keras.applications.MobileNet (include_top, dense classifier); Conv MobileNet: full convs instead."""
    def c(n):
        return int(n * alpha)

    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    layers = conv_bn(3, c(32), 3, 2)
    cin = c(32)
    for filters, stride in plan:
        if conv_mobilenet:
            layers += conv_bn(cin, c(filters), 3, stride)
        else:
            layers += conv_bn(cin, cin, 3, stride, groups=cin)
            layers += conv_bn(cin, c(filters), 1, 1)
        cin = c(filters)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D(padding='same'): depthwise then pointwise, bias on the pointwise part."""

    def __init__(self, cin, cout, bias):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=bias)

    def forward(self, x):
        return self.pw(self.dw(x))


class XceptionBlock(nn.Module):
    def __init__(self, cin, mid, cout, reps_relu_first=True, down=True):
        super().__init__()
        main: list[nn.Module] = []
        if reps_relu_first:
            main.append(nn.ReLU())
        main += [SeparableConv2d(cin, mid, False), nn.BatchNorm2d(mid), nn.ReLU(),
                 SeparableConv2d(mid, cout, False), nn.BatchNorm2d(cout)]
        if down:
            main.append(nn.MaxPool2d(3, 2, 1))
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
        else:
            main += [nn.ReLU(), SeparableConv2d(cout, cout, False), nn.BatchNorm2d(cout)]
            self.shortcut = nn.Identity()
        self.main = nn.Sequential(*main)

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


def xception(classes: int = 1000) -> nn.Module:
    """keras.applications.Xception (include_top)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        XceptionBlock(64, 128, 128, reps_relu_first=False),
        XceptionBlock(128, 256, 256),
        XceptionBlock(256, 728, 728),
        *[XceptionBlock(728, 728, 728, down=False) for _ in range(8)],
        XceptionBlock(728, 728, 1024),
        SeparableConv2d(1024, 1536, False), nn.BatchNorm2d(1536), nn.ReLU(),
        SeparableConv2d(1536, 2048, False), nn.BatchNorm2d(2048), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, classes),
    )


def cifar(x_kind: str) -> nn.Module:
    """The seed study's CIFAR-10 networks, Keras default bias everywhere."""
    layers: list[nn.Module] = []
    cin = 3
    for m, c in enumerate((64, 128, 256)):
        layers += [nn.Conv2d(cin, c, 1), nn.BatchNorm2d(c), nn.ReLU()]
        for _ in range(2):
            if x_kind == "conv":
                layers.append(nn.Conv2d(c, c, 3, padding=1))
            elif x_kind == "depthwise":
                layers.append(nn.Conv2d(c, c, 3, padding=1, groups=c))
            else:
                layers.append(SeparableConv2d(c, c, True))
            layers += [nn.BatchNorm2d(c), nn.ReLU()]
        layers.append(nn.AvgPool2d(2) if m < 2 else nn.AdaptiveAvgPool2d(1))
        cin = c
    layers += [nn.Flatten(), nn.Linear(256, 10), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)
