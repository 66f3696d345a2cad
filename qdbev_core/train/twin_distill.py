"""Twin-render distillation: learn to see through appearance changes from a teacher that sees
the same scene in its own look.

SynthScenes renders any scene in several appearance styles with identical tables (same boxes,
rig, ego poses; only the JPEGs differ). Training a detector on restyled images alone teaches it
that colour does not identify the class, but it also loses accuracy on the look it was good at
(docs/CROSS_STYLE.md: ``nano-fp32-aug2`` -0.05 NDS on the default look). Here the student trains
on the restyled (and augmented) images as usual and, in addition, its image-view and BEV
features are pulled towards those of a frozen full-precision teacher that sees the *twin* of
each training image: the same scene in the look the teacher was trained on, through the same
BEV transform and resize / crop / flip, without photometric distortion or GridMask. The loss is
QD-BEV's view-guided distillation (``distill.ViewGuidedDistillation``), only the teacher's input
differs: what the student should compute from a dusk image is what the teacher computes from the
same scene in daylight.

``TwinDistillConfig`` is part of ``TrainConfig`` (``qdbev train --twin-teacher M --twin-dataroot
DIR``); ``DetectionDataset(..., twin=reader)`` supplies ``twin_img`` / ``twin_prev_img``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..distill import VGDConfig, ViewGuidedDistillation, freeze_teacher
from ..distill.vgd import teacher_forward_batch


@dataclass
class TwinDistillConfig:
    """Teacher, twin dataset and loss weights of a twin-render distillation run (module doc)."""

    teacher: str
    """Full-precision model (manifest name or .safetensors path) with the student's architecture."""
    twin_dataroot: Path
    """Dataset with the training split's samples rendered in the teacher's look (same ``version`` and ``split``)."""
    terms: tuple[str, ...] = ("img", "bev")
    """VGD terms: ``img`` (view-guided image features), ``bev``."""
    weight: float = 1.0
    """Multiplier of the VGD total (``vgd``) added to the detection loss."""
    vgd: dict = field(default_factory=dict)
    """Extra ``VGDConfig`` fields (e.g. ``{"bev_weight": 70.0}``); defaults are QAT's balance."""

    def __post_init__(self) -> None:
        self.twin_dataroot = Path(self.twin_dataroot)
        self.terms = tuple(self.terms.split(",") if isinstance(self.terms, str) else self.terms)
        bad = sorted(set(self.terms) - {"img", "bev"})
        if bad or not self.terms:
            raise ValueError(f"twin distillation terms must be img and/or bev, got {list(self.terms)}")
        if not self.weight > 0:
            raise ValueError(f"twin distillation weight must be > 0, got {self.weight}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {**d, "twin_dataroot": str(self.twin_dataroot), "terms": list(self.terms)}


class TwinDistillation:
    """Frozen teacher + VGD loss of one run; ``losses(student_out, batch, targets)`` per step."""

    def __init__(self, cfg: TwinDistillConfig, student_cfg, device: torch.device) -> None:
        from ..models_manifest import load_model

        teacher = load_model(cfg.teacher)
        if teacher.cfg.to_dict() != student_cfg.to_dict():
            raise ValueError(f"twin teacher {cfg.teacher} has config {teacher.cfg.name!r} with other hyper-parameters "
                             "than the student; its image-view and BEV features must have the student's shapes "
                             "(use the model the student starts from, or pass its --model-set overrides)")
        self.cfg = cfg
        self.teacher = freeze_teacher(teacher).to(device)
        self.vgd = ViewGuidedDistillation(VGDConfig(terms=cfg.terms, **cfg.vgd), student_cfg)

    def losses(self, student_out: dict, batch: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """``twin_vgd`` (weighted, enters the loss) and the unweighted terms ``twin_vgd_img`` /
        ``twin_vgd_bev`` (detached, for the log) against the teacher on the twin images."""
        if "twin_img" not in batch:
            raise KeyError("twin distillation needs batches with twin_img (DetectionDataset(..., twin=reader))")
        t_out = teacher_forward_batch(self.teacher, batch, img_key="twin_img", prev_img_key="twin_prev_img")
        terms = self.vgd(student_out, t_out, batch["intrinsics"], batch["cam2ego"], tuple(batch["img"].shape[-2:]),
                         gt_boxes=[t["boxes"] for t in targets])
        out = {f"twin_{k}": v.detach() for k, v in terms.items() if k != "vgd"}
        out["twin_vgd"] = terms["vgd"] * self.cfg.weight
        return out

    def sidecar(self) -> dict:
        """What the saved weights record about the distillation (effective VGD settings included)."""
        return {"twin_distill": {**self.cfg.to_dict(), "vgd_effective": self.vgd.cfg.to_dict()}}
