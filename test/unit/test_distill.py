"""Unit tests of qdbev_core.distill: view-guided mask geometry on the nuScenes rig, channel-wise
KL properties, and the VGD objective on nano (zero for identical models, lowered by a few
student steps, gradients only into the student). Single-threaded, well under a minute."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from qdbev_core.data.rig import NUSCENES_RIG, rig_arrays, scaled_intrinsics
from qdbev_core.distill import (
    VGDConfig,
    ViewGuidedDistillation,
    bev_foreground_weights,
    channel_wise_kl,
    freeze_teacher,
    masked_mse,
    pillar_points,
    teacher_forward,
    view_guided_masks,
)
from qdbev_core.geometry import project_points
from qdbev_core.model import BEVDetector, get_config
from qdbev_core.quant import QuantSpec, calibrate, quantize_model
from qdbev_core.types import CAMERA_NAMES

torch.set_num_threads(1)

# the geometry these expectations were worked out for (nano as bundled: 128x352 input, 32x32 BEV)
CFG = get_config("nano", image_size=(128, 352), bev_h=32, bev_w=32)
FEATS = [(8, 22), (4, 11)]  # nano neck levels (stride 16, 32) at 128x352
FRONT, BACK = CAMERA_NAMES.index("CAM_FRONT"), CAMERA_NAMES.index("CAM_BACK")


def rig(cfg=CFG, batch: int = 1):
    h, w = cfg.image_size
    _, t = rig_arrays()
    k = np.stack([scaled_intrinsics(NUSCENES_RIG[n].intrinsics(), w / 1600, h / 900) for n in CAMERA_NAMES])
    kt = torch.tensor(k, dtype=torch.float32).expand(batch, -1, -1, -1).contiguous()
    tt = torch.tensor(t, dtype=torch.float32).expand(batch, -1, -1, -1).contiguous()
    return kt, tt


# --- masks ------------------------------------------------------------------------------------
def test_pillar_straight_ahead_hits_front_centre_only():
    # one BEV cell, centred 11.6 m straight ahead on the x axis
    cfg = get_config("nano", query_init="learned", bev_h=1, bev_w=1, pc_range=(10.0, -1.6, -5.0, 13.2, 1.6, 3.0))
    k, t = rig(cfg)
    masks = view_guided_masks(cfg, k, t, FEATS, subdivide=1)
    for m, (h, w) in zip(masks, FEATS):
        front = m[FRONT, 0]
        cols = torch.nonzero(front.sum(0)).flatten()
        assert cols.numel() > 0
        assert cols.min() >= w // 2 - 2 and cols.max() <= w // 2 + 1, cols
        assert front.sum(1).nonzero().numel() >= 2  # several heights -> several rows (8 x 22 level)
        others = [i for i in range(6) if i != FRONT]
        assert m[others].sum() == 0  # nowhere in CAM_BACK (nor any other camera)
        assert m[BACK].sum() == 0


def test_mask_marks_exactly_the_cells_hit_by_projected_pillars():
    k, t = rig()
    masks = view_guided_masks(CFG, k, t, FEATS, subdivide=1)
    pts = pillar_points(CFG).double().numpy()
    h_img, w_img = CFG.image_size
    for cam in range(6):
        uv, depth = project_points(pts, k[0, cam].double().numpy(), t[0, cam].double().numpy())
        nu, nv = (uv[:, 0] + 0.5) / w_img, (uv[:, 1] + 0.5) / h_img
        ok = (depth > 1e-5) & (nu > 0) & (nu < 1) & (nv > 0) & (nv < 1)
        for m, (h, w) in zip(masks, FEATS):
            want = np.zeros((h, w))
            want[np.floor(nv[ok] * h).astype(int), np.floor(nu[ok] * w).astype(int)] = 1
            assert np.array_equal(m[cam, 0].numpy(), want), (CAMERA_NAMES[cam], h, w)
    # every camera sees the ground band; the top row (sky) is mostly unseen
    assert all(float(m[c].mean()) > 0.3 for m in masks for c in range(6))
    assert float(masks[0][:, 0, 0].mean()) < 0.2


def test_gt_boxes_are_emphasised_in_the_camera_that_sees_them():
    k, t = rig()
    box = torch.tensor([[15.0, 0.0, 0.0, 4.5, 2.0, 1.6, 0.0, 0.0, 0.0]])  # a car 15 m ahead
    m = view_guided_masks(CFG, k, t, FEATS, gt_boxes=[box], fg_weight=3.0)[0]
    fg = m[:, 0] == 3.0
    assert fg[FRONT].any() and not fg[[i for i in range(6) if i != FRONT]].any()
    cols = torch.nonzero(fg[FRONT].any(0)).flatten()
    assert cols.min() >= 8 and cols.max() <= 13
    plain = view_guided_masks(CFG, k, t, FEATS)[0]
    assert torch.equal(plain[BACK], m[BACK]) and set(plain.unique().tolist()) <= {0.0, 1.0}

    bev = bev_foreground_weights(CFG, [box], 1, fg_weight=2.0)
    # x = 15 m -> column (15 + 51.2) / 3.2 = 20.7; y = 0 -> rows 15/16
    hot = torch.nonzero(bev[0, 0] == 2.0)
    assert set(hot[:, 1].tolist()) <= {19, 20, 21, 22} and set(hot[:, 0].tolist()) <= {14, 15, 16, 17}
    assert (bev == 1.0).sum() == bev.numel() - hot.shape[0]


# --- divergences ------------------------------------------------------------------------------
def test_channel_wise_kl_properties():
    torch.manual_seed(0)
    t = torch.randn(4, 8, 6, 10)
    assert float(channel_wise_kl(t.clone(), t)) == pytest.approx(0.0, abs=1e-6)
    assert float(channel_wise_kl(t + 3.0, t)) == pytest.approx(0.0, abs=1e-5)  # per-channel shift
    s = t + 0.5 * torch.randn_like(t)
    assert float(channel_wise_kl(s, t)) > 1e-3
    assert float(channel_wise_kl(s, t, temperature=4.0)) > 0
    # masked: positions with weight 0 do not count, gradients stay finite
    w = torch.zeros(4, 1, 6, 10)
    w[..., :3, :] = 1.0
    s2 = t.clone()
    s2[..., 3:, :] += 5 * torch.randn_like(s2[..., 3:, :])
    assert float(channel_wise_kl(s2, t, w)) == pytest.approx(0.0, abs=1e-6)
    s3 = s.clone().requires_grad_(True)
    loss = channel_wise_kl(s3, t, w * 2.0)
    loss.backward()
    assert float(loss.detach()) > 0 and torch.isfinite(s3.grad).all()
    assert s3.grad[..., 3:, :].abs().max() == 0
    # all-zero mask for one sample: it is left out, not NaN
    w[0] = 0
    assert torch.isfinite(channel_wise_kl(s, t, w))
    assert float(masked_mse(t, t, w)) == 0.0 and float(masked_mse(s, t, w)) > 0


# --- VGD on nano ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    teacher = freeze_teacher(BEVDetector(CFG))
    k, t = rig()
    img = torch.randn(1, 6, 3, *CFG.image_size, generator=torch.Generator().manual_seed(1))
    student = quantize_model(copy.deepcopy(teacher), QuantSpec())
    for p in student.parameters():
        p.requires_grad_(True)
    calibrate(student, [(img, k, t)])
    return teacher, student, (img, k, t)


@pytest.mark.parametrize("divergence", ["kl", "mse"])
def test_vgd_is_zero_for_identical_models_and_positive_otherwise(models, divergence):
    teacher, student, (img, k, t) = models
    vgd = ViewGuidedDistillation(VGDConfig(divergence=divergence, response_weight=1.0), CFG)
    to = teacher_forward(teacher, img, k, t)
    same = vgd(to, to, k, t)
    assert set(same) == {"vgd_img", "vgd_bev", "vgd_resp", "vgd"}
    assert all(abs(float(v)) < 1e-6 for v in same.values())
    with torch.no_grad():
        so = student.eval()(img, k, t)
    diff = vgd(so, to, k, t, gt_boxes=[torch.tensor([[15.0, 0.0, 0.0, 4.5, 2.0, 1.6, 0.0, 0.0, 0.0]])])
    assert float(diff["vgd_img"]) > 0 and float(diff["vgd_bev"]) > 0 and float(diff["vgd"]) > 0
    only_img = ViewGuidedDistillation(VGDConfig(terms=("img",), divergence=divergence), CFG)(so, to, k, t)
    assert set(only_img) == {"vgd_img", "vgd"}


def test_vgd_training_lowers_the_loss_and_only_the_student_gets_gradients(models):
    teacher, student, (img, k, t) = models
    student = copy.deepcopy(student).train()
    vgd = ViewGuidedDistillation(VGDConfig(), CFG)
    to = teacher_forward(teacher, img, k, t)
    assert not any(p.requires_grad for p in teacher.parameters())
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(4):
        terms = vgd(student(img, k, t), to, k, t)
        opt.zero_grad()
        terms["vgd"].backward()
        if not losses:
            assert all(p.grad is None for p in teacher.parameters())
            # the feature terms reach everything up to the BEV (not the decoder / heads); activation
            # zero points are left out: their LSQ gradient comes from clipped values only, and a
            # signed tensor calibrated on this very image has none
            up = [p.grad for n, p in student.named_parameters()
                  if n.split(".")[0] in ("backbone", "neck", "encoder") and not n.endswith(".zero_point")]
            assert sum(g is not None and bool(g.abs().sum() > 0) for g in up) > 0.9 * len(up)
            assert all(p.grad is None for n, p in student.named_parameters() if n.startswith("decoder."))
        opt.step()
        losses.append(float(terms["vgd"].detach()))
    print("VGD loss over 4 student steps:", [round(x, 4) for x in losses])
    assert losses[-1] < 0.8 * losses[0]
