"""Hungarian matching of decoder predictions to ground truth (scipy ``linear_sum_assignment``).

Cost per (prediction, ground truth) pair, as BEVFormer / Deformable DETR:

- class: focal-style ``w_cls * (pos(p) - neg(p))`` at the ground-truth class, with
  ``pos(p) = alpha (1 - p)^gamma (-log p)`` and ``neg(p) = (1 - alpha) p^gamma (-log(1 - p))``;
- box: ``w_box * L1`` between the first 8 entries of the box codes
  ``[x, y, z, log l, log w, log h, sin, cos]`` (metres / log-metres; velocity is not matched,
  as in BEVFormer). With ``yaw_axis_only`` (``ModelConfig.yaw_loss='axis_direction'``) the
  ``sin, cos`` pair of both sides is replaced by its doubled angle first (the box axis), so a
  prediction is not kept from a match by a 180-degree heading flip.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .heads import yaw_axis


class HungarianMatcher:
    """``match(logits (Q, K), codes (Q, 10), gt_labels (G,), gt_codes (G, 10))``
    -> ``(pred_idx (M,), gt_idx (M,))`` int64 tensors with ``M = min(Q, G)``."""

    def __init__(self, cls_weight: float = 2.0, box_weight: float = 0.25, alpha: float = 0.25, gamma: float = 2.0,
                 yaw_axis_only: bool = False):
        self.yaw_axis_only = yaw_axis_only
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.alpha = alpha
        self.gamma = gamma

    @torch.no_grad()
    def cost(self, logits: torch.Tensor, codes: torch.Tensor, gt_labels: torch.Tensor, gt_codes: torch.Tensor) -> torch.Tensor:
        """``(Q, G)`` matching cost (float32)."""
        p = logits.float().sigmoid()
        eps = 1e-8
        neg = (1 - self.alpha) * p.pow(self.gamma) * (-(1 - p + eps).log())
        pos = self.alpha * (1 - p).pow(self.gamma) * (-(p + eps).log())
        cls_cost = (pos - neg)[:, gt_labels]
        gt = torch.nan_to_num(gt_codes.float()[:, :8])
        pred = codes.float()[:, :8]
        if self.yaw_axis_only:
            gt = torch.cat([gt[:, :6], torch.stack(yaw_axis(gt[:, 6], gt[:, 7], eps=0.0), -1)], -1)
            pred = torch.cat([pred[:, :6], torch.stack(yaw_axis(pred[:, 6], pred[:, 7]), -1)], -1)
        box_cost = torch.cdist(pred, gt, p=1)
        return self.cls_weight * cls_cost + self.box_weight * box_cost

    @torch.no_grad()
    def match(
        self, logits: torch.Tensor, codes: torch.Tensor, gt_labels: torch.Tensor, gt_codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if gt_labels.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=logits.device)
            return empty, empty
        c = self.cost(logits, codes, gt_labels, gt_codes).cpu().numpy()
        c = np.nan_to_num(c, nan=1e6, posinf=1e6, neginf=-1e6)
        rows, cols = linear_sum_assignment(c)
        dev = logits.device
        return torch.as_tensor(rows, dtype=torch.int64, device=dev), torch.as_tensor(cols, dtype=torch.int64, device=dev)
