"""Feature pyramid network (FPN) neck.

Module names: ``lateral_convs.{i}`` (1x1), ``fpn_convs.{i}`` (3x3 outputs of the backbone
levels), ``extra_convs.{j}`` (3x3 stride-2 convs on the last output that add coarser levels,
mmdet ``add_extra_convs='on_output'`` with ReLU before all but the first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """Top-down FPN: ``forward(list of (N, C_in_i, h_i, w_i)) -> list of (N, C, h_l, w_l)``.

    Args:
        in_channels: channels of each input level (finest first).
        out_channels: channels of every output level.
        num_outs: number of outputs; levels beyond ``len(in_channels)`` come from stride-2
            convs on the coarsest output (each halves h and w, rounding up).
    """

    def __init__(self, in_channels: list[int], out_channels: int, num_outs: int):
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError("num_outs must be >= number of input levels")
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
            for _ in range(num_outs - len(in_channels))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        for j, conv in enumerate(self.extra_convs):
            outs.append(conv(outs[-1] if j == 0 else F.relu(outs[-1])))
        return outs
