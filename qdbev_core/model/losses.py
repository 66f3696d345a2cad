"""Losses of the detector: set-prediction losses per decoder layer and the dense heat-map losses.

Targets are a list (one per sample) of dicts ``{"boxes": (N, 9) [x, y, z, l, w, h, yaw, vx,
vy] ego frame (metres, rad, m/s), "labels": (N,) int64 class indices}`` (tensors or arrays).
Boxes whose centre lies outside the BEV x/y range are ignored. Non-finite velocities (nuScenes
boxes without velocity) are excluded from the velocity terms only.

``DetectionLoss(cfg)(outputs, targets)`` returns named terms (mmdet naming) and ``loss``:

- ``loss_cls`` / ``loss_bbox``: last decoder layer; ``d{i}.loss_cls`` / ``d{i}.loss_bbox`` the
  earlier layers (aux losses, same weight). Sigmoid focal loss (alpha 0.25, gamma 2) over all
  queries x classes, and weighted L1 on the box codes of Hungarian-matched queries, both divided
  by the number of ground-truth boxes in the batch (>= 1).
- ``loss_heatmap``: gaussian focal loss (CenterNet) of the dense head, per positive;
  ``loss_dense_reg``: weighted L1 of the dense regression at the object centre cells.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import CLASS_NAMES
from .config import ModelConfig
from .heads import CODE_SIZE, yaw_axis
from .matcher import HungarianMatcher


# --- box codes ---------------------------------------------------------------------------------


def encode_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 9)`` ego boxes -> ``(..., 10)`` codes ``[x, y, z, log l, log w, log h, sin, cos, vx, vy]``.

    Boxes with 7 columns get zero velocity.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.shape[-1] == 7:
        boxes = torch.cat([boxes, torch.zeros_like(boxes[..., :2])], -1)
    size = boxes[..., 3:6].clamp(min=1e-3).log()
    yaw = boxes[..., 6:7]
    return torch.cat([boxes[..., 0:3], size, yaw.sin(), yaw.cos(), boxes[..., 7:9]], dim=-1)


def decode_boxes(codes: torch.Tensor, max_log_size: float = 4.0) -> torch.Tensor:
    """``(..., 10)`` codes -> ``(..., 9)`` ego boxes (yaw = atan2(sin, cos) in ``(-pi, pi]``)."""
    size = codes[..., 3:6].clamp(max=max_log_size).exp()
    yaw = torch.atan2(codes[..., 6:7], codes[..., 7:8])
    return torch.cat([codes[..., 0:3], size, yaw, codes[..., 8:10]], dim=-1)


def yaw_axis_direction_loss(
    sin_cos: torch.Tensor, yaw: torch.Tensor, heading: torch.Tensor, axis_weights: torch.Tensor,
    direction_weight: float, sharpness: float = 4.0,
) -> torch.Tensor:
    """Summed ``yaw_loss='axis_direction'`` loss (``ModelConfig.yaw_loss``) of matched boxes.

    ``sin_cos (M, 2)`` predicted code entries, ``yaw (M,)`` target yaw (rad), ``heading (M,)``
    1 where the heading (front vs back) is supervised, ``axis_weights (2,)`` the sin / cos code
    weights. Axis: the chord between the doubled angles, ``2 |sin(yaw_pred - yaw)|`` (times the
    mean weight) -- unlike L1 on the two components, which has false local minima at the mirror
    angles, it falls monotonically towards the axis -- scaled by ``min(|v|, 1)`` (not
    differentiated): the angle's gradient grows as ``1 / |v|``, and unscaled it would stall a
    short ``v`` that has to pass through 0 to change heading. Heading: ``softplus(-sharpness * v . u)``.
    """
    s2, c2 = yaw_axis(sin_cos[:, 0], sin_cos[:, 1])
    chord = ((s2 - torch.sin(2 * yaw)).square() + (c2 - torch.cos(2 * yaw)).square() + 1e-8).sqrt()
    length = sin_cos.detach().norm(dim=-1).clamp(max=1.0)
    axis = chord * length * axis_weights.mean()
    proj = sin_cos[:, 0] * torch.sin(yaw) + sin_cos[:, 1] * torch.cos(yaw)
    direction = F.softplus(-sharpness * proj) * heading.to(sin_cos.dtype)
    return axis.sum() + direction_weight * direction.sum()


def _as_targets(targets: list[dict], cfg: ModelConfig, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per sample ``(labels (N,), boxes (N, 9))`` on ``device``, filtered to the BEV x/y range."""
    x0, y0, _, x1, y1, _ = cfg.pc_range
    out = []
    for t in targets:
        boxes = torch.as_tensor(np.asarray(t["boxes"], dtype=np.float32) if not torch.is_tensor(t["boxes"]) else t["boxes"])
        boxes = boxes.to(device=device, dtype=torch.float32).reshape(-1, boxes.shape[-1] if boxes.numel() else 9)
        if boxes.shape[-1] == 7:
            boxes = torch.cat([boxes, torch.zeros_like(boxes[:, :2])], -1)
        labels = torch.as_tensor(t["labels"]).to(device=device, dtype=torch.int64).reshape(-1)
        keep = (boxes[:, 0] >= x0) & (boxes[:, 0] < x1) & (boxes[:, 1] >= y0) & (boxes[:, 1] < y1)
        out.append((labels[keep], boxes[keep]))
    return out


# --- elementary losses -------------------------------------------------------------------------


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss (RetinaNet) of logits vs. {0, 1} targets (not reduced)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed, for logits vs. a gaussian heat-map.

    Positives are cells where ``target == 1``; negatives are down-weighted by
    ``(1 - target)^gamma`` near object centres. Divide by the number of positives yourself.
    """
    log_p = F.logsigmoid(logits)
    log_1p = F.logsigmoid(-logits)
    p = log_p.exp()
    pos = target.eq(1).to(logits.dtype)
    pos_loss = -log_p * (1 - p).pow(alpha) * pos
    neg_loss = -log_1p * p.pow(alpha) * (1 - target).pow(gamma) * (1 - pos)
    return pos_loss.sum() + neg_loss.sum()


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of ``|pred - target| * weights``; non-finite targets contribute nothing."""
    finite = torch.isfinite(target)
    diff = (pred - torch.where(finite, target, pred.detach())).abs()
    return (diff * weights * finite.to(pred.dtype)).sum()


# --- dense heat-map targets --------------------------------------------------------------------


def gaussian_radius(length: float, width: float, min_overlap: float) -> float:
    """CornerNet/CenterPoint heat-map radius (cells) for a ``length x width`` footprint (cells):
    the smallest of the three corner-shift cases that keep IoU >= ``min_overlap``."""
    h, w, o = length, width, min_overlap
    b1 = h + w
    c1 = w * h * (1 - o) / (1 + o)
    r1 = (b1 + math.sqrt(max(b1 * b1 - 4 * c1, 0.0))) / 2
    b2 = 2 * (h + w)
    c2 = (1 - o) * w * h
    r2 = (b2 + math.sqrt(max(b2 * b2 - 16 * c2, 0.0))) / 2
    a3 = 4 * o
    b3 = -2 * o * (h + w)
    c3 = (o - 1) * w * h
    r3 = (b3 + math.sqrt(max(b3 * b3 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def build_dense_targets(
    gt: list[tuple[torch.Tensor, torch.Tensor]], cfg: ModelConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense-head targets from per-sample ``(labels, boxes)``.

    Returns ``heatmap (B, K, H, W)`` (gaussian peaks of 1 at centre cells), ``index (B, M)``
    (flat cell index ``r * W + c`` of each object), ``mask (B, M)`` (1 for real objects) and
    ``reg (B, M, 10)`` ``[ox, oy, z, log l, log w, log h, sin, cos, vx, vy]`` (``DenseHead``).
    """
    b = len(gt)
    bh, bw, k = cfg.bev_h, cfg.bev_w, cfg.num_classes
    x0, y0 = cfg.pc_range[0], cfg.pc_range[1]
    cx, cy = cfg.bev_cell
    m = max([1] + [int(lb.numel()) for lb, _ in gt])
    heat = np.zeros((b, k, bh, bw), dtype=np.float32)
    index = np.zeros((b, m), dtype=np.int64)
    mask = np.zeros((b, m), dtype=np.float32)
    reg = np.zeros((b, m, CODE_SIZE), dtype=np.float32)
    for i, (labels, boxes) in enumerate(gt):
        if labels.numel() == 0:
            continue
        lb = labels.cpu().numpy()
        bx = boxes.detach().cpu().numpy().astype(np.float64)
        codes = encode_boxes(boxes.detach().cpu()).numpy()
        for j in range(len(lb)):
            fx = (bx[j, 0] - x0) / cx
            fy = (bx[j, 1] - y0) / cy
            c, r = int(np.floor(fx)), int(np.floor(fy))
            if not (0 <= c < bw and 0 <= r < bh):
                continue
            rad = max(cfg.heatmap_min_radius, int(gaussian_radius(bx[j, 3] / cx, bx[j, 4] / cy, cfg.heatmap_min_overlap)))
            sigma = (2 * rad + 1) / 6.0
            ys, xs = np.arange(-rad, rad + 1), np.arange(-rad, rad + 1)
            g = np.exp(-(xs[None, :] ** 2 + ys[:, None] ** 2) / (2 * sigma * sigma))
            r0, r1, c0, c1 = max(0, r - rad), min(bh, r + rad + 1), max(0, c - rad), min(bw, c + rad + 1)
            sub = g[r0 - r + rad : r1 - r + rad, c0 - c + rad : c1 - c + rad]
            heat[i, lb[j], r0:r1, c0:c1] = np.maximum(heat[i, lb[j], r0:r1, c0:c1], sub)
            index[i, j] = r * bw + c
            mask[i, j] = 1.0
            reg[i, j, 0] = fx - (c + 0.5)
            reg[i, j, 1] = fy - (r + 0.5)
            reg[i, j, 2:] = codes[j, 2:]
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return t(heat), t(index), t(mask), t(reg)


# --- the criterion -----------------------------------------------------------------------------


class DetectionLoss:
    """Callable criterion: ``loss(outputs, targets) -> dict[str, Tensor]`` (see module doc).

    ``outputs`` is ``BEVDetector.forward``'s dict (``cls_logits (L, B, Q, K)``, ``box_codes
    (L, B, Q, 10)``, optional ``heatmap`` / ``heatmap_reg``). ``last_indices`` holds the matches
    of the last call (per layer, per sample ``(pred_idx, gt_idx)``) for inspection.
    """

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.matcher = HungarianMatcher(cfg.match_cls_weight, cfg.match_bbox_weight, cfg.focal_alpha, cfg.focal_gamma,
                                        yaw_axis_only=cfg.yaw_loss == "axis_direction")
        axis_only = [CLASS_NAMES.index(c) for c in cfg.yaw_axis_only_classes]
        self._heading_supervised = torch.ones(cfg.num_classes, dtype=torch.bool)
        self._heading_supervised[axis_only] = False
        self.last_indices: list[list[tuple[torch.Tensor, torch.Tensor]]] = []

    def layer_loss(
        self, logits: torch.Tensor, codes: torch.Tensor, gt: list[tuple[torch.Tensor, torch.Tensor]], num_gt: float
    ) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Focal + L1 loss of one decoder layer: ``logits (B, Q, K)``, ``codes (B, Q, 10)``."""
        cfg = self.cfg
        cls_target = torch.zeros_like(logits)
        code_w = torch.tensor(cfg.code_weights, dtype=codes.dtype, device=codes.device)
        axis_dir = cfg.yaw_loss == "axis_direction"
        l1_w = code_w.clone()
        if axis_dir:
            l1_w[6:8] = 0.0  # yaw handled by yaw_axis_direction_loss
        heading_ok = self._heading_supervised.to(codes.device)
        l1 = codes.new_zeros(())
        indices = []
        for b, (labels, boxes) in enumerate(gt):
            gt_codes = encode_boxes(boxes)
            pi, gi = self.matcher.match(logits[b].detach(), codes[b].detach(), labels, gt_codes)
            indices.append((pi, gi))
            if pi.numel():
                cls_target[b, pi, labels[gi]] = 1.0
                l1 = l1 + weighted_l1(codes[b, pi], gt_codes[gi], l1_w)
                if axis_dir:
                    l1 = l1 + yaw_axis_direction_loss(codes[b, pi, 6:8], boxes[gi, 6], heading_ok[labels[gi]],
                                                      code_w[6:8], cfg.yaw_direction_weight)
        focal = sigmoid_focal_loss(logits, cls_target, cfg.focal_alpha, cfg.focal_gamma).sum()
        return cfg.loss_cls_weight * focal / num_gt, cfg.loss_bbox_weight * l1 / num_gt, indices

    def dense_loss(self, heatmap, heatmap_reg, gt) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        heat_t, index, mask, reg_t = build_dense_targets(gt, cfg, heatmap.device)
        num = mask.sum().clamp(min=1.0)
        l_hm = gaussian_focal_loss(heatmap, heat_t) / num
        b, c = heatmap_reg.shape[:2]
        pred = heatmap_reg.flatten(2).transpose(1, 2)  # (B, HW, 10)
        pred = torch.gather(pred, 1, index.unsqueeze(-1).expand(-1, -1, c))
        w = torch.tensor(cfg.code_weights, dtype=pred.dtype, device=pred.device) * mask.unsqueeze(-1)
        l_reg = weighted_l1(pred, reg_t, w) / num
        return cfg.loss_heatmap_weight * l_hm, cfg.loss_dense_reg_weight * l_reg

    def __call__(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        logits_all, codes_all = outputs["cls_logits"], outputs["box_codes"]
        gt = _as_targets(targets, self.cfg, logits_all.device)
        num_gt = float(max(1, sum(int(lb.numel()) for lb, _ in gt)))
        n_layers = logits_all.shape[0]
        layers = range(n_layers) if self.cfg.aux_loss else [n_layers - 1]
        losses: dict[str, torch.Tensor] = {}
        self.last_indices = []
        for i in layers:
            lc, lb, idx = self.layer_loss(logits_all[i], codes_all[i], gt, num_gt)
            prefix = "" if i == n_layers - 1 else f"d{i}."
            losses[f"{prefix}loss_cls"] = lc
            losses[f"{prefix}loss_bbox"] = lb
            self.last_indices.append(idx)
        if outputs.get("heatmap") is not None:
            losses["loss_heatmap"], losses["loss_dense_reg"] = self.dense_loss(outputs["heatmap"], outputs["heatmap_reg"], gt)
        losses["loss"] = sum(losses.values())
        return losses
