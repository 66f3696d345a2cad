"""QD-BEV view-guided distillation (VGD) from a frozen full-precision teacher.

    from qdbev_core.distill import VGDConfig, ViewGuidedDistillation, freeze_teacher, teacher_forward
    vgd = ViewGuidedDistillation(VGDConfig(), student.cfg)
    t_out = teacher_forward(freeze_teacher(teacher), img, intrinsics, cam2ego)
    s_out = student(img, intrinsics, cam2ego)
    terms = vgd(s_out, t_out, intrinsics, cam2ego, gt_boxes=[t["boxes"] for t in targets])
    loss = det_loss + terms["vgd"]

Modules: ``masks`` (view-guided image masks, BEV foreground weights), ``losses`` (channel-wise
KL with a spatial weight, MSE), ``vgd`` (the objective and its config).
"""

from .losses import binary_kl, channel_wise_kl, feature_divergence, masked_mse
from .masks import bev_foreground_weights, box_image_rects, pillar_points, rasterize_hits, view_guided_masks
from .vgd import VGDConfig, ViewGuidedDistillation, freeze_teacher, teacher_forward

__all__ = [
    "binary_kl",
    "channel_wise_kl",
    "feature_divergence",
    "masked_mse",
    "bev_foreground_weights",
    "box_image_rects",
    "pillar_points",
    "rasterize_hits",
    "view_guided_masks",
    "VGDConfig",
    "ViewGuidedDistillation",
    "freeze_teacher",
    "teacher_forward",
]
