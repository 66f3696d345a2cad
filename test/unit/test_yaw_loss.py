"""``ModelConfig.yaw_loss='axis_direction'``: the box axis and the heading learnt apart.

The failure it fixes: when the image cannot tell front from back, L1 on ``(sin, cos)`` against
the two targets ``yaw`` and ``yaw + pi`` has no gradient anywhere between them, so an output
lying across the box (90 degrees off, what the bundled nano models predict for barriers) stays
there. The axis term turns it onto the axis; the heading term follows the majority.
"""

from __future__ import annotations

import math

import pytest
import torch

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.model.config import get_config
from qdbev_core.model.heads import yaw_axis
from qdbev_core.model.losses import DetectionLoss, encode_boxes, weighted_l1, yaw_axis_direction_loss
from qdbev_core.model.matcher import HungarianMatcher


def _axis_error(v: torch.Tensor, yaw: float) -> float:
    """Angle (rad, in [0, pi/2]) between the axis of ``v = (sin, cos)`` and ``yaw``, modulo pi."""
    a = math.atan2(float(v[0]), float(v[1]))
    d = (a - yaw) % math.pi
    return min(d, math.pi - d)


def _fit(loss_of, yaw: float, start: float, steps: int = 300, length: float = 1.0) -> torch.Tensor:
    v = torch.tensor([length * math.sin(start), length * math.cos(start)], requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)  # no jitter at the end
    for _ in range(steps):
        opt.zero_grad()
        loss_of(v).backward()
        opt.step()
        sched.step()
    return v.detach()


@pytest.mark.parametrize("yaw", [0.3, 1.0, -2.0])
def test_ambiguous_heading_sincos_stays_across_axis_direction_turns_onto_axis(yaw):
    targets = torch.tensor([yaw, yaw + math.pi])  # front and back look alike: both seen equally often
    w = torch.ones(2)
    across = yaw + math.pi / 2

    def sincos(v):
        t = torch.stack([targets.sin(), targets.cos()], -1)
        return weighted_l1(v.expand(2, 2), t, w)

    def axis_direction(v):
        return yaw_axis_direction_loss(v.expand(2, 2), targets, torch.ones(2), w, 0.5)

    # a short output across the box: L1 is flat there (every point between the two targets is
    # optimal), so it stays; the axis term turns it
    assert _axis_error(_fit(sincos, yaw, across, length=0.2), yaw) > math.radians(80)
    assert _axis_error(_fit(axis_direction, yaw, across, length=0.2), yaw) < math.radians(3)
    assert _axis_error(_fit(axis_direction, yaw, across), yaw) < math.radians(3)


def test_heading_follows_the_majority_and_axis_only_ignores_it():
    yaw = 0.8
    targets = torch.tensor([yaw, yaw, yaw + math.pi])  # 2:1 for the front
    w = torch.ones(2)
    v = _fit(lambda v: yaw_axis_direction_loss(v.expand(3, 2), targets, torch.ones(3), w, 0.5), yaw, yaw + 2.0, steps=800)
    assert abs(math.remainder(math.atan2(float(v[0]), float(v[1])) - yaw, 2 * math.pi)) < math.radians(3)
    # without heading supervision a flipped prediction costs nothing more
    flip = torch.tensor([[math.sin(yaw + math.pi), math.cos(yaw + math.pi)]])
    same = torch.tensor([[math.sin(yaw), math.cos(yaw)]])
    t = torch.tensor([yaw])
    assert yaw_axis_direction_loss(flip, t, torch.zeros(1), w, 0.5) == pytest.approx(
        float(yaw_axis_direction_loss(same, t, torch.zeros(1), w, 0.5)), abs=1e-5)
    assert yaw_axis_direction_loss(flip, t, torch.ones(1), w, 0.5) > yaw_axis_direction_loss(same, t, torch.ones(1), w, 0.5) + 1.0


def test_yaw_axis_is_the_doubled_angle_and_finite_at_zero():
    a = torch.linspace(-3, 3, 7)
    s2, c2 = yaw_axis(2 * a.sin(), 2 * a.cos(), eps=0.0)
    torch.testing.assert_close(s2, (2 * a).sin(), atol=1e-6, rtol=0)
    torch.testing.assert_close(c2, (2 * a).cos(), atol=1e-6, rtol=0)
    z = torch.zeros(1, requires_grad=True)
    s2, c2 = yaw_axis(z, z)
    (s2 + c2).sum().backward()
    assert torch.isfinite(z.grad).all()


def _one_box(name: str, yaw: float) -> dict:
    return {"boxes": torch.tensor([[10.0, 5.0, 0.5, 2.0, 1.0, 1.0, yaw, 0.0, 0.0]]),
            "labels": torch.tensor([CLASS_NAMES.index(name)])}


def _outputs_predicting(yaw: float, cfg) -> dict:
    q = 5
    box = torch.tensor([[10.0, 5.0, 0.5, 2.0, 1.0, 1.0, yaw, 0.0, 0.0]])
    codes = encode_boxes(torch.cat([box, box.new_tensor([[-20.0, -20.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]).expand(q - 1, 9)]))
    return {"cls_logits": torch.zeros(1, 1, q, cfg.num_classes), "box_codes": codes[None, None]}


@pytest.mark.parametrize("name,flip_costs_more", [("barrier", False), ("car", True)])
def test_detection_loss_axis_direction_per_class(name, flip_costs_more):
    cfg = get_config("nano", yaw_loss="axis_direction", dense_head=False, query_init="learned")
    crit = DetectionLoss(cfg)
    yaw = 0.4
    right = crit(_outputs_predicting(yaw, cfg), [_one_box(name, yaw)])["loss_bbox"]
    flipped = crit(_outputs_predicting(yaw + math.pi, cfg), [_one_box(name, yaw)])["loss_bbox"]
    across = crit(_outputs_predicting(yaw + math.pi / 2, cfg), [_one_box(name, yaw)])["loss_bbox"]
    assert across > right + 0.1 and across > flipped
    assert (flipped > right + 0.1) == flip_costs_more
    # the BEVFormer loss charges the flip for every class
    base = DetectionLoss(get_config("nano", dense_head=False, query_init="learned"))
    assert base(_outputs_predicting(yaw + math.pi, cfg), [_one_box(name, yaw)])["loss_bbox"] > right + 0.1


def test_matcher_axis_mode_ignores_heading_flip_not_axis():
    gt = encode_boxes(torch.tensor([[0.0, 0.0, 0.5, 2.0, 1.0, 1.0, 0.4, 0.0, 0.0]]))
    preds = encode_boxes(torch.tensor([[0.0, 0.0, 0.5, 2.0, 1.0, 1.0, 0.4 + math.pi, 0.0, 0.0],
                                       [0.0, 0.0, 0.5, 2.0, 1.0, 1.0, 0.4 + math.pi / 2, 0.0, 0.0]]))
    logits = torch.zeros(2, 10)
    cost = HungarianMatcher(yaw_axis_only=True).cost(logits, preds, torch.tensor([0]), gt)[:, 0]
    assert cost[0] < cost[1] - 0.1
    plain = HungarianMatcher().cost(logits, preds, torch.tensor([0]), gt)[:, 0]
    assert plain[0] > cost[0] + 0.1


def test_config_rejects_unknown_yaw_loss_and_classes():
    with pytest.raises(ValueError, match="yaw_loss"):
        get_config("nano", yaw_loss="bins")
    with pytest.raises(ValueError, match="yaw_axis_only_classes"):
        get_config("nano", yaw_axis_only_classes=("wall",))
