"""View-guided distillation (VGD): the QD-BEV objective that stabilises W4A6 QAT.

``ViewGuidedDistillation(VGDConfig(), model_cfg)(student_out, teacher_out, intrinsics, cam2ego,
gt_boxes=...)`` returns a dict of loss terms computed from two ``BEVDetector`` output dicts
(same config; the teacher's computed under ``torch.no_grad()`` by ``teacher_forward``):

- ``vgd_img``: image-view term, ``mean over neck levels`` of the divergence between student
  and teacher ``img_feats`` (all six cameras, ``(B*6, C, h_l, w_l)``), spatially weighted by
  the view-guided mask (``masks.view_guided_masks``: feature cells hit by the projected BEV
  pillars, ``fg_weight`` on GT-box projections when boxes are given);
- ``vgd_bev``: BEV term, divergence between the BEV features reshaped to
  ``(B, C, bev_h, bev_w)``, uniform weight or ``bev_fg_weight`` on cells inside GT boxes;
- ``vgd_resp`` (optional, ``response_weight > 0``): response distillation: Bernoulli KL on
  the dense heat-map logits, plus, for ``query_init="learned"`` models whose query slots
  correspond between teacher and student, Bernoulli KL on the last decoder layer's class
  logits and L1 on its box codes (heat-map-initialised queries pick different peaks in the
  two models, so slot-wise comparison would be meaningless there);
- ``vgd``: ``img_weight * vgd_img + bev_weight * vgd_bev + response_weight * vgd_resp`` over
  the enabled terms.

Divergence (``divergence``): ``"kl"`` = channel-wise spatial-softmax KL with temperature
(``losses.channel_wise_kl``; how the mask enters is documented there) or ``"mse"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..model.config import ModelConfig, get_config
from .losses import binary_kl, feature_divergence
from .masks import bev_foreground_weights, view_guided_masks


@dataclass
class VGDConfig:
    """Weights and switches of the VGD objective. Defaults and why:

    - ``terms=("img", "bev")``: the paper's VGD uses both views; ``("img",)`` / ``("bev",)``
      are its ablations.
    - ``img_weight = 1.0``, ``bev_weight = 70.0``: chosen so that the two terms are of similar
      size at the start of QAT (the paper publishes no ratio), measured with ``qdbev experiment
      vgd-balance`` (teacher vs its freshly calibrated W4A6 student, 8 batches of 2, student in
      train mode as the loop runs it). Teacher ``nano-fp32-yaw`` (192x352 input, 48x48 BEV, two
      encoder layers; ``--dataroot data/synth-val --split synth_train``): ``vgd_img`` 0.524,
      ``vgd_bev`` 0.00757, ratio 0.0144, so x70 makes the BEV term 0.53, the image term's size.
      (The earlier teacher ``nano-fp32``, 128x352 / 32x32: 0.313 vs 0.0067, ratio 0.021, x50.)
      Why the BEV KL is so small: the BEV features are LayerNorm-ed tokens whose channels vary
      little over the grid, so each channel's spatial softmax is almost flat (teacher entropy
      0.98 of the uniform distribution's, vs 0.25 for the neck features), and for small
      student-teacher differences ``d`` the scaled KL is ``~ 0.5 * Var_p(d)``: it depends on the
      size of the feature error, not on the number of cells, and hardly on the temperature
      (``vgd_bev`` 0.0076 / 0.0071 / 0.0070 at T = 1 / 2 / 4, while ``vgd_img`` grows 0.52 /
      0.94 / 1.51 because the neck features are peaked). A weight is therefore the knob, not the
      temperature. Re-measure after changing the teacher.
    - ``divergence="kl"``, ``temperature=1.0``: channel-wise distillation's KL form
      (docs/DESIGN.md §2); T = 1 keeps each channel's distribution as peaked as the features
      are (the salient regions dominate, which is the point of channel-wise distillation);
      higher T spreads weight to background positions (and, measured above, only inflates the
      image term). ``"mse"`` is the ablation (its terms are not balanced by these weights:
      MSE 3.7 vs 0.015 x 50).
    - ``view_guided=True``: the image term is masked by the projected BEV pillars (False =
      plain channel-wise distillation over the whole image, the ablation).
    - ``fg_weight = bev_fg_weight = 2.0``: GT boxes (when passed) count twice as much as other
      seen cells: emphasis on objects without discarding the background context the encoder
      also reads.
    - ``mask_subdivide=2``: 2x2 pillars per BEV cell so that near-field cells (a 3.2 m cell
      spans many feature cells close to the car) leave no holes in the mask.
    - ``response_weight=0.0``: off; VGD is a feature-level objective; response distillation
      is an extra for ablations.
    """

    terms: tuple[str, ...] = ("img", "bev")
    img_weight: float = 1.0
    bev_weight: float = 70.0
    response_weight: float = 0.0
    divergence: str = "kl"
    temperature: float = 1.0
    view_guided: bool = True
    fg_weight: float = 2.0
    bev_fg_weight: float = 2.0
    mask_subdivide: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.terms, str):
            self.terms = tuple(t for t in self.terms.split(",") if t)
        self.terms = tuple(self.terms)
        bad = [t for t in self.terms if t not in ("img", "bev")]
        if bad:
            raise ValueError(f"VGD terms must be 'img' and/or 'bev', got {bad}")
        if self.divergence not in ("kl", "mse"):
            raise ValueError(f"divergence must be 'kl' or 'mse', got {self.divergence!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["terms"] = list(self.terms)
        return d


def freeze_teacher(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter; returns the model."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def teacher_forward(teacher: nn.Module, *args, **kwargs) -> dict:
    """The teacher's output dict, computed in eval mode without gradients."""
    if teacher.training:
        teacher.eval()
    return teacher(*args, **kwargs)


@torch.no_grad()
def teacher_forward_batch(teacher: nn.Module, batch: dict, img_key: str = "img",
                          prev_img_key: str = "prev_img") -> dict:
    """The teacher's output dict on a training batch, temporal like the student's step: the
    previous frame's BEV comes from the teacher itself (on ``batch[prev_img_key]``) when the batch
    has a previous frame. ``img_key`` / ``prev_img_key`` pick which images it sees (the batch's
    own, or e.g. a twin render's ``twin_img``); intrinsics and camera->ego are the batch's."""
    if teacher.training:
        teacher.eval()
    prev_bev = ego_motion = prev_valid = None
    if prev_img_key in batch:
        prev_bev, _, _ = teacher.extract_bev(batch[prev_img_key], batch["prev_intrinsics"], batch["prev_cam2ego"])
        ego_motion, prev_valid = batch["ego_motion"], batch["has_prev"].float()
    return teacher(batch[img_key], batch["intrinsics"], batch["cam2ego"], prev_bev, ego_motion, prev_valid)


class ViewGuidedDistillation(nn.Module):
    """The VGD loss; see the module doc. ``model_cfg``: the student's ``ModelConfig`` (or name)."""

    def __init__(self, cfg: VGDConfig | None = None, model_cfg: ModelConfig | str = "nano"):
        super().__init__()
        self.cfg = cfg or VGDConfig()
        self.model_cfg = get_config(model_cfg) if isinstance(model_cfg, str) else model_cfg

    def image_masks(self, student_out: dict, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
                    image_hw: tuple[int, int] | None = None, gt_boxes=None) -> list[torch.Tensor]:
        """The view-guided masks for the levels of ``student_out["img_feats"]``."""
        shapes = [tuple(f.shape[-2:]) for f in student_out["img_feats"]]
        return view_guided_masks(
            self.model_cfg, intrinsics, cam2ego, shapes, image_hw, gt_boxes, self.cfg.fg_weight, self.cfg.mask_subdivide
        )

    def forward(
        self,
        student_out: dict,
        teacher_out: dict,
        intrinsics: torch.Tensor,
        cam2ego: torch.Tensor,
        image_hw: tuple[int, int] | None = None,
        gt_boxes: Any = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms (scalars): ``vgd_img``, ``vgd_bev``, ``vgd_resp`` (those enabled) and ``vgd``.

        ``image_hw`` defaults to ``model_cfg.image_size`` (pass the real input size when it
        differs); ``gt_boxes``: optional per-sample ``(Ni, >=7)`` ego-frame boxes for the
        foreground emphasis (e.g. ``[t["boxes"] for t in targets]``).
        """
        c = self.cfg
        mc = self.model_cfg
        out: dict[str, torch.Tensor] = {}
        total = None
        if "img" in c.terms:
            fs, ft = student_out["img_feats"], teacher_out["img_feats"]
            if len(fs) != len(ft):
                raise ValueError(f"student has {len(fs)} neck levels, teacher {len(ft)}")
            masks = (
                self.image_masks(student_out, intrinsics, cam2ego, image_hw, gt_boxes)
                if c.view_guided else [None] * len(fs)
            )
            terms = [
                feature_divergence(s, t, None if m is None else m.to(s.device), c.divergence, c.temperature)
                for s, t, m in zip(fs, ft, masks)
            ]
            out["vgd_img"] = torch.stack(terms).mean()
            total = c.img_weight * out["vgd_img"]
        if "bev" in c.terms:
            bs, bt = student_out["bev"], teacher_out["bev"]
            b, _, ch = bs.shape
            ms = bs.transpose(1, 2).reshape(b, ch, mc.bev_h, mc.bev_w)
            mt = bt.transpose(1, 2).reshape(b, ch, mc.bev_h, mc.bev_w)
            w = None
            if gt_boxes is not None and c.bev_fg_weight != 1.0:
                w = bev_foreground_weights(mc, gt_boxes, b, c.bev_fg_weight).to(bs.device)
            out["vgd_bev"] = feature_divergence(ms, mt, w, c.divergence, c.temperature)
            total = c.bev_weight * out["vgd_bev"] if total is None else total + c.bev_weight * out["vgd_bev"]
        if c.response_weight > 0:
            parts = []
            if "heatmap" in student_out and "heatmap" in teacher_out:
                parts.append(binary_kl(student_out["heatmap"], teacher_out["heatmap"], c.temperature))
            if mc.query_init == "learned":
                parts.append(binary_kl(student_out["cls_logits"][-1], teacher_out["cls_logits"][-1], c.temperature))
                parts.append((student_out["box_codes"][-1] - teacher_out["box_codes"][-1].detach()).abs().mean())
            if parts:
                out["vgd_resp"] = torch.stack(parts).sum()
                total = c.response_weight * out["vgd_resp"] if total is None else total + c.response_weight * out["vgd_resp"]
        if total is None:
            ref = student_out["bev"]
            total = ref.sum() * 0.0
        out["vgd"] = total
        return out
