"""Where orientation and velocity errors come from: a per-class breakdown of matched boxes.

The devkit reports one mean orientation error (AOE, rad) per class. That number cannot tell a
model that points boxes backwards (180 degrees off: it cannot see front from back) from one that
points them *across* the box (90 degrees off: what L1 on ``(sin, cos)`` produces when it hedges
between the two), and those need different fixes. This module matches predictions to ground truth
the devkit's way (by descending score, nearest unmatched same-class box centre within
``max_dist_m``) and splits the yaw error of the matches into three bins, separately for static
and moving ground truth, with the mean ground-truth and predicted speed of the moving ones.

Boxes are the devkit's ``EvalBoxes`` (global frame, after its range filter), e.g.
``DetectionEval(...).gt_boxes`` / ``.pred_boxes``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..geometry import quat_to_yaw

MOVING_SPEED_MPS = 0.5
"""Ground-truth speed (m/s) from which a box counts as moving."""


@dataclass
class HeadingBins:
    """Yaw errors of one class's matches in one motion state (static or moving)."""

    count: int
    aligned: float
    """Share with error < 45 degrees."""
    across: float
    """Share with error in [45, 135) degrees."""
    flipped: float
    """Share with error >= 135 degrees."""
    mean_error_rad: float
    gt_speed_mps: float
    """Mean ground-truth speed of these matches."""
    pred_speed_mps: float
    """Mean predicted speed of these matches."""


def match_boxes(gt_boxes, pred_boxes, score_threshold: float = 0.3, max_dist_m: float = 2.0) -> list[tuple]:
    """``[(gt_box, pred_box), ...]``: each prediction scoring >= ``score_threshold``, by descending
    score, takes the nearest unmatched ground truth of its class within ``max_dist_m`` (x/y)."""
    pairs = []
    for token in gt_boxes.sample_tokens:
        gts = list(gt_boxes[token])
        taken = np.zeros(len(gts), dtype=bool)
        preds = sorted((p for p in pred_boxes[token] if p.detection_score >= score_threshold),
                       key=lambda p: -p.detection_score) if token in pred_boxes.sample_tokens else []
        for p in preds:
            best, best_d = -1, max_dist_m
            for j, g in enumerate(gts):
                if taken[j] or g.detection_name != p.detection_name:
                    continue
                d = math.hypot(g.translation[0] - p.translation[0], g.translation[1] - p.translation[1])
                if d < best_d:
                    best, best_d = j, d
            if best >= 0:
                taken[best] = True
                pairs.append((gts[best], p))
    return pairs


def heading_breakdown(gt_boxes, pred_boxes, score_threshold: float = 0.3, max_dist_m: float = 2.0) -> dict[str, dict[str, HeadingBins]]:
    """``{class: {"static" | "moving": HeadingBins}}`` over the matches of ``match_boxes``
    (a motion state without matches is left out)."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for g, p in match_boxes(gt_boxes, pred_boxes, score_threshold, max_dist_m):
        err = abs(math.remainder(quat_to_yaw(p.rotation) - quat_to_yaw(g.rotation), 2 * math.pi))
        gv = np.nan_to_num(np.asarray(g.velocity, dtype=float))
        pv = np.nan_to_num(np.asarray(p.velocity, dtype=float))
        rows.setdefault(g.detection_name, []).append((err, float(np.hypot(*gv)), float(np.hypot(*pv))))
    out: dict[str, dict[str, HeadingBins]] = {}
    for name, vals in sorted(rows.items()):
        a = np.asarray(vals)
        moving = a[:, 1] >= MOVING_SPEED_MPS
        out[name] = {}
        for state, m in (("static", ~moving), ("moving", moving)):
            if not m.any():
                continue
            e = a[m, 0]
            out[name][state] = HeadingBins(
                count=int(m.sum()),
                aligned=float(np.mean(e < math.pi / 4)),
                across=float(np.mean((e >= math.pi / 4) & (e < 3 * math.pi / 4))),
                flipped=float(np.mean(e >= 3 * math.pi / 4)),
                mean_error_rad=float(e.mean()),
                gt_speed_mps=float(a[m, 1].mean()),
                pred_speed_mps=float(a[m, 2].mean()),
            )
    return out


def breakdown_to_dict(breakdown: dict[str, dict[str, HeadingBins]]) -> dict:
    """JSON-ready form of ``heading_breakdown``'s result."""
    return {c: {s: asdict(b) for s, b in states.items()} for c, states in breakdown.items()}


def format_breakdown(breakdown: dict[str, dict[str, dict]]) -> str:
    """Aligned table of ``breakdown_to_dict``'s form (as ``evaluate(..., heading=True)`` returns it):
    class, state, matches, aligned / across / flipped shares, mean error, speeds."""
    header = f"{'class':<22}{'state':<8}{'n':>6}{'<45deg':>8}{'across':>8}{'flipped':>8}{'err rad':>9}{'|v| gt':>8}{'|v| pred':>9}"
    lines = [header, "-" * len(header)]
    for name, states in breakdown.items():
        for state, b in states.items():
            lines.append(f"{name:<22}{state:<8}{b['count']:6d}{b['aligned']:8.2f}{b['across']:8.2f}{b['flipped']:8.2f}"
                         f"{b['mean_error_rad']:9.2f}{b['gt_speed_mps']:8.2f}{b['pred_speed_mps']:9.2f}")
    return "\n".join(lines)
