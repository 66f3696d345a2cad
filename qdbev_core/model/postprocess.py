"""Turn model outputs into ``Detections`` (NMS-free, as BEVFormer's set prediction).

``decode_detections`` reads the decoder outputs; ``decode_dense_detections`` reads the dense
heat-map head (3x3 max-pool peak picking, CenterPoint style), useful early in CPU training when
the set-prediction decoder has not converged yet. Both accept the ``BEVDetector.forward`` dict
(torch) or the same keys as NumPy arrays (e.g. from onnxruntime, last layer only).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import CLASS_NAMES
from ..types import Detections
from .losses import decode_boxes


def _t(x) -> torch.Tensor:
    return x.detach().float().cpu() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x), dtype=torch.float32)


@torch.no_grad()
def decode_detections(outputs: dict, score_threshold: float = 0.05, topk: int = 300, layer: int = -1) -> list[Detections]:
    """Top-k over queries x classes of the sigmoid class scores, one ``Detections`` per sample.

    Args:
        outputs: ``cls_logits`` ``(L, B, Q, K)`` or ``(B, Q, K)`` and ``boxes`` ``(L, B, Q, 9)`` or
            ``(B, Q, 9)`` (ego frame, see ``detector``).
        score_threshold: drop detections scoring below this (after top-k).
        topk: at most this many detections per sample (BEVFormer: 300).
        layer: decoder layer to read when a layer axis is present (default the last).

    A query may appear with several classes (as in BEVFormer's NMS-free coder). Detections are
    sorted by decreasing score.
    """
    logits, boxes = _t(outputs["cls_logits"]), _t(outputs["boxes"])
    if logits.dim() == 4:
        logits, boxes = logits[layer], boxes[layer]
    b, q, k = logits.shape
    scores = logits.sigmoid().reshape(b, q * k)
    n = min(topk, q * k)
    top, idx = scores.topk(n, dim=1)
    dets = []
    for i in range(b):
        keep = top[i] >= score_threshold
        sel = idx[i][keep]
        dets.append(
            Detections(
                boxes=boxes[i, sel // k].double().numpy().reshape(-1, 9),
                scores=top[i][keep].double().numpy(),
                labels=(sel % k).long().numpy(),
                class_names=CLASS_NAMES[:k] if k <= len(CLASS_NAMES) else tuple(str(j) for j in range(k)),
            )
        )
    return dets


@torch.no_grad()
def decode_dense_detections(
    outputs: dict,
    pc_range: tuple[float, ...],
    score_threshold: float = 0.1,
    topk: int = 300,
    max_log_size: float = 4.0,
) -> list[Detections]:
    """Detections from the dense head: local maxima (3x3) of the class heat-maps, top-k.

    ``outputs["heatmap"]`` ``(B, K, H, W)`` logits and ``outputs["heatmap_reg"]`` ``(B, 10, H, W)``;
    ``pc_range`` the model's ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
    """
    heat = _t(outputs["heatmap"]).sigmoid()
    reg = _t(outputs["heatmap_reg"])
    b, k, h, w = heat.shape
    heat = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
    n = min(topk, k * h * w)
    top, idx = heat.reshape(b, -1).topk(n, dim=1)
    cell_x = (pc_range[3] - pc_range[0]) / w
    cell_y = (pc_range[4] - pc_range[1]) / h
    dets = []
    for i in range(b):
        keep = top[i] >= score_threshold
        sel = idx[i][keep]
        label = sel // (h * w)
        cell = sel % (h * w)
        r, c = cell // w, cell % w
        rg = reg[i].reshape(10, h * w)[:, cell].T  # (n, 10)
        x = pc_range[0] + (c.float() + 0.5 + rg[:, 0]) * cell_x
        y = pc_range[1] + (r.float() + 0.5 + rg[:, 1]) * cell_y
        code = torch.cat([x[:, None], y[:, None], rg[:, 2:]], 1)
        dets.append(
            Detections(
                boxes=decode_boxes(code, max_log_size).double().numpy().reshape(-1, 9),
                scores=top[i][keep].double().numpy(),
                labels=label.long().numpy(),
                class_names=CLASS_NAMES[:k],
            )
        )
    return dets
