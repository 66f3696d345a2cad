"""ResNet-18/34/50/101 image backbone (written here; torchvision does not import next to torch 2.13).

Module names a quantizer can rely on: ``stem.conv`` (the first conv, kept at 8 bit by the QAT
recipe), ``stem.bn``, ``layer1`` .. ``layer4`` (stages C2..C5, strides 4, 8, 16, 32), each a
sequence of ``BasicBlock`` (18/34) or ``Bottleneck`` (50/101) with ``conv1, bn1, conv2, bn2,
[conv3, bn3,] downsample.{0: conv, 1: bn}``. No DCN (see ``config.py`` notes).
"""

from __future__ import annotations

import torch
from torch import nn

_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, "pytorch" style), 1x1 expand x4, plus shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class Stem(nn.Module):
    """7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (stride 4 overall)."""

    def __init__(self, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(3, out_ch, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class ResNet(nn.Module):
    """ResNet returning the feature maps of the selected stages.

    Args:
        depth: 18, 34, 50 or 101.
        width: channel multiplier (0.5 halves every stage).
        out_stages: stages to return, 1..4 = C2..C5 (strides 4, 8, 16, 32).
        frozen_stages: freeze the stem and stages ``1..frozen_stages`` (no gradients; their BN
            stays in eval mode). 0 freezes nothing.
        frozen_bn: every BatchNorm in eval mode (running statistics fixed) with
            ``requires_grad=False`` affine parameters, as BEVFormer fine-tunes from ImageNet.

    ``forward(x (N, 3, H, W)) -> list[(N, C_s, H / stride_s, W / stride_s)]`` in ``out_stages``
    order; ``out_channels`` lists ``C_s``.
    """

    def __init__(
        self,
        depth: int = 50,
        width: float = 1.0,
        out_stages: tuple[int, ...] = (4,),
        frozen_stages: int = 0,
        frozen_bn: bool = False,
    ):
        super().__init__()
        if depth not in _LAYERS:
            raise ValueError(f"unsupported ResNet depth {depth}")
        block = BasicBlock if depth in (18, 34) else Bottleneck
        planes = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.stem = Stem(planes[0])
        in_ch = planes[0]
        self.out_stages = tuple(out_stages)
        self.frozen_stages = frozen_stages
        self.frozen_bn = frozen_bn
        channels = []
        # stages after the last requested one are not built (they would hold dead parameters)
        for i, (n, p) in enumerate(zip(_LAYERS[depth][: max(out_stages)], planes)):
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, p, stride=(1 if i == 0 or j > 0 else 2)))
                in_ch = p * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            channels.append(in_ch)
        self.out_channels = [channels[s - 1] for s in self.out_stages]
        self._init_weights()
        self._freeze()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if self.frozen_stages > 0:
            mods.append(self.stem)
            mods += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return mods

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.frozen_bn:
                for m in self.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i in range(1, max(self.out_stages) + 1):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_stages:
                outs.append(x)
        return outs
