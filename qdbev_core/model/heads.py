"""Prediction heads: per-decoder-layer classification / box regression, and the dense BEV head.

Box code (10 numbers, used by targets, losses and the matcher; ``encode_boxes`` /
``decode_boxes`` in ``losses.py`` convert from/to the 9-number ego box):

    [x, y, z, log l, log w, log h, sin yaw, cos yaw, vx, vy]

``x, y, z`` in metres (ego frame, centre at mid-height), sizes full extents in metres, yaw about
+z, velocity m/s.

Module names (final prediction layers, kept at 8 bit by the QAT recipe, end in ``.out``):
``heads.cls_branches.{i}.out``, ``heads.reg_branches.{i}.out``, ``heads.dense.heatmap_out``,
``heads.dense.reg_out``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .ops import inverse_sigmoid

CODE_SIZE = 10
"""Length of the box code."""


def yaw_axis(sin: torch.Tensor, cos: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Doubled angle ``(sin 2a, cos 2a)`` of the code's ``(sin, cos)`` pair (any length; ``a`` its
    ``atan2``): the box axis, the same for ``a`` and ``a + pi``. ``eps`` keeps it finite at 0."""
    n2 = sin * sin + cos * cos + eps
    return 2 * sin * cos / n2, (cos * cos - sin * sin) / n2


def prior_bias(prob: float = 0.01) -> float:
    """Logit bias that makes the initial sigmoid output ``prob`` (focal-loss init)."""
    return -math.log((1 - prob) / prob)


class ClsBranch(nn.Module):
    """``num_reg_fcs x (Linear, LayerNorm, ReLU)`` then ``out``: Linear C -> num_classes."""

    def __init__(self, c: int, num_fcs: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_fcs):
            layers += [nn.Linear(c, c), nn.LayerNorm(c), nn.ReLU(inplace=True)]
        self.fcs = nn.Sequential(*layers)
        self.out = nn.Linear(c, num_classes)
        nn.init.constant_(self.out.bias, prior_bias(0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fcs(x))


class RegBranch(nn.Module):
    """``num_reg_fcs x (Linear, ReLU)`` then ``out``: Linear C -> 10 (box code deltas)."""

    def __init__(self, c: int, num_fcs: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_fcs):
            layers += [nn.Linear(c, c), nn.ReLU(inplace=True)]
        self.fcs = nn.Sequential(*layers)
        self.out = nn.Linear(c, CODE_SIZE)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():  # start near a 1-2 m box facing +x
            self.out.bias[3:6] = 0.5
            self.out.bias[7] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fcs(x))


class DenseHead(nn.Module):
    """CenterPoint-style head on the BEV map (auxiliary supervision; also a decodable output).

    ``forward(bev (B, C, H, W)) -> (heatmap (B, K, H, W) logits, reg (B, 10, H, W))`` with
    ``reg`` channels ``[ox, oy, z, log l, log w, log h, sin, cos, vx, vy]``: ``ox, oy`` the
    object centre's offset from the cell centre in cells (x along columns, y along rows), ``z``
    metres, the rest as the box code.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, h = cfg.embed_dims, cfg.dense_channels

        def block(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, h, 3, padding=1, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True))

        self.shared = block(c)
        self.heatmap_conv = block(h)
        self.heatmap_out = nn.Conv2d(h, cfg.num_classes, 1)
        self.reg_conv = block(h)
        self.reg_out = nn.Conv2d(h, CODE_SIZE, 1)
        nn.init.constant_(self.heatmap_out.bias, prior_bias(0.1))  # CenterPoint's -2.19
        nn.init.normal_(self.reg_out.weight, std=0.001)
        nn.init.zeros_(self.reg_out.bias)

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.shared(bev)
        return self.heatmap_out(self.heatmap_conv(x)), self.reg_out(self.reg_conv(x))


class Heads(nn.Module):
    """Decoder heads (one ``ClsBranch`` + one ``RegBranch`` per decoder layer, not shared, as
    BEVFormer) and the optional ``dense`` head.

    ``predict(i, query (B, Q, C), reference (B, Q, 3)) -> (logits (B, Q, K), code (B, Q, 10),
    new_reference (B, Q, 3))``: the regression's first three outputs refine the reference in
    inverse-sigmoid space, ``new_ref = sigmoid(logit(ref) + delta)``; the code's centre is
    ``new_ref`` mapped to metres over ``pc_range``; the rest of the code is the raw regression.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cls_branches = nn.ModuleList(
            ClsBranch(cfg.embed_dims, cfg.num_reg_fcs, cfg.num_classes) for _ in range(cfg.dec_layers)
        )
        self.reg_branches = nn.ModuleList(RegBranch(cfg.embed_dims, cfg.num_reg_fcs) for _ in range(cfg.dec_layers))
        self.dense = DenseHead(cfg) if cfg.dense_head else None
        x0, y0, z0, x1, y1, z1 = cfg.pc_range
        self.register_buffer("pc_min", torch.tensor([x0, y0, z0]), persistent=False)
        self.register_buffer("pc_size", torch.tensor([x1 - x0, y1 - y0, z1 - z0]), persistent=False)

    def predict(self, i: int, query: torch.Tensor, reference: torch.Tensor):
        logits = self.cls_branches[i](query)
        reg = self.reg_branches[i](query)
        new_ref = torch.sigmoid(inverse_sigmoid(reference) + reg[..., :3])
        code = torch.cat([new_ref * self.pc_size + self.pc_min, reg[..., 3:]], dim=-1)
        return logits, code, new_ref
