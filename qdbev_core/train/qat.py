"""Quantization-aware training on top of the training loop: the three modes QD-BEV compares.

- ``standard``: every layer quantized (W4A6 by default) from the first step.
- ``progressive``: the paper's baseline: quantize stage by stage (backbone -> neck -> BEV encoder
  -> decoder + heads, ``QuantSpec.stages``), each stage trained for an equal share of the steps
  before the next is switched on; each newly enabled stage is calibrated on the data first and
  gets a learning-rate warm-up and cosine decay of its own (``QatRun.lr_multiplier``).
- ``qdbev``: standard (or, with ``progressive=True``, progressive) QAT plus view-guided
  distillation (VGD) from the frozen full-precision teacher on image-view and BEV features.

The student starts from the teacher's weights (same config); quantizer steps are initialised by
a calibration pass over ``calib_batches`` training batches. Everything lives in the model's
state dict (steps, zero points, enabled flags), so checkpoints resume exactly.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..distill import VGDConfig, ViewGuidedDistillation
from ..distill.vgd import freeze_teacher, teacher_forward_batch
from ..quant import QuantSpec, calibrate, enable_stage, quantize_model, set_quant_enabled
from .schedule import staged_warmup_cosine, warmup_cosine

MODES = ("standard", "progressive", "qdbev")


@dataclass
class QatConfig:
    """How a QAT run quantizes and distills (see module doc for the modes)."""

    teacher: str
    """Full-precision model (manifest name or .safetensors path): student init and VGD teacher."""
    bits: str = "w4a6"
    mode: str = "qdbev"
    progressive: bool = False
    """``qdbev`` mode only: switch stages on progressively as in ``progressive`` mode."""
    distill: tuple[str, ...] = ("img", "bev")
    """VGD terms for ``qdbev`` mode: ``img`` (view-guided image features), ``bev``."""
    distill_weight: float = 1.0
    divergence: str = "kl"
    temperature: float = 1.0
    calib_batches: int = 8
    vgd: dict = field(default_factory=dict)
    """Extra ``VGDConfig`` fields (e.g. ``{"fg_weight": 2.0}``)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"QAT mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self.distill = tuple(self.distill)
        bad = sorted(set(self.distill) - {"img", "bev"})
        if bad:
            raise ValueError(f"unknown distillation terms {bad}; use img and/or bev")

    @property
    def staged(self) -> bool:
        return self.mode == "progressive" or (self.mode == "qdbev" and self.progressive)

    @property
    def distills(self) -> bool:
        return self.mode == "qdbev" and bool(self.distill)


class QatRun:
    """The QAT state of one training run: quantized student, frozen teacher, stage schedule."""

    def __init__(self, cfg: QatConfig, model: torch.nn.Module, total_steps: int, device: torch.device) -> None:
        from ..models_manifest import load_model

        self.cfg = cfg
        self.total_steps = total_steps
        teacher = load_model(cfg.teacher)
        if teacher.cfg.to_dict() != model.cfg.to_dict():
            raise ValueError(f"teacher {cfg.teacher} has config {teacher.cfg.name!r} with other hyper-parameters than "
                             f"the student {model.cfg.name!r}; QAT starts the student from the teacher's weights")
        model.load_state_dict(teacher.state_dict())
        self.spec = QuantSpec.from_bits(cfg.bits)
        quantize_model(model, self.spec)
        self.model = model.to(device)
        self.teacher = freeze_teacher(teacher).to(device) if cfg.distills else None
        vgd_cfg = VGDConfig(terms=cfg.distill, divergence=cfg.divergence, temperature=cfg.temperature, **cfg.vgd)
        self.vgd = ViewGuidedDistillation(vgd_cfg, model.cfg) if cfg.distills else None
        self.calib: list[dict] = []

    # --- schedule ---------------------------------------------------------------------------------
    def stage_starts(self) -> list[int]:
        """Step at which each stage is switched on: equal shares of the run (``[0]`` when not staged)."""
        if not self.cfg.staged:
            return [0]
        n = len(self.spec.stages)
        return [-(-i * self.total_steps // n) for i in range(n)]

    def stage_at(self, step: int) -> int:
        """Index of the last enabled stage at ``step`` (all stages when not staged)."""
        if not self.cfg.staged:
            return len(self.spec.stages) - 1
        return bisect.bisect_right(self.stage_starts(), step) - 1

    def lr_multiplier(self, step: int, warmup_steps: int, min_ratio: float) -> float:
        """Learning-rate multiplier at ``step``: one warm-up + cosine per stage when staged
        (``schedule.staged_warmup_cosine``), one over the run otherwise."""
        if self.cfg.staged:
            return staged_warmup_cosine(step, self.stage_starts(), self.total_steps, warmup_steps, min_ratio)
        return warmup_cosine(step, self.total_steps, warmup_steps, min_ratio)

    def initialize(self, calib_batches: list[dict]) -> dict:
        """Fresh start: calibrate the quantizers that are on at step 0 on ``calib_batches``."""
        self.calib = calib_batches
        if self.cfg.staged:
            set_quant_enabled(self.model, False)
            enable_stage(self.model, self.spec.stages[0])
            return calibrate(self.model, self._inputs(), forward_fn=_forward, only_prefixes=self.spec.stages[0])
        return calibrate(self.model, self._inputs(), forward_fn=_forward)

    def on_step(self, step: int, batch_for_calib: dict | None = None) -> list[str]:
        """Switch on the stages due at ``step``; newly enabled ones are calibrated first."""
        if not self.cfg.staged:
            return []
        switched = []
        for i in range(self.stage_at(step) + 1):
            prefixes = self.spec.stages[i]
            if enable_stage(self.model, prefixes):
                calibrate(self.model, self._inputs(batch_for_calib), forward_fn=_forward, only_prefixes=prefixes)
                switched.extend(prefixes)
        return switched

    def _inputs(self, extra: dict | None = None) -> list[dict]:
        return self.calib or ([extra] if extra is not None else [])

    # --- losses -------------------------------------------------------------------------------------
    def distillation_losses(self, student_out: dict, batch: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """VGD terms (scaled by ``distill_weight``) against the teacher on the same inputs."""
        if self.vgd is None:
            return {}
        t_out = teacher_forward_batch(self.teacher, batch)
        terms = self.vgd(student_out, t_out, batch["intrinsics"], batch["cam2ego"], tuple(batch["img"].shape[-2:]),
                         gt_boxes=[t["boxes"] for t in targets])
        w = self.cfg.distill_weight
        return {k: (v * w if k == "vgd" else v.detach()) for k, v in terms.items()}

    def sidecar(self) -> dict:
        """What the saved files record about this QAT run (the effective VGD weights included)."""
        qat = {**self.cfg.__dict__, "distill": list(self.cfg.distill)}
        if self.vgd is not None:
            qat["vgd_effective"] = {k: (list(v) if isinstance(v, tuple) else v)
                                    for k, v in dataclasses.asdict(self.vgd.cfg).items()}
        return {"quant_spec": self.spec.to_dict(), "qat": qat, "precision": f"{self.spec.name}-fakequant"}

    def pack(self, path: Path, meta: dict) -> dict:
        """Write the real low-bit file (integers on disk) of the current student."""
        from ..quant import pack_model

        return pack_model(self.model, path, {**meta, **self.sidecar(), "precision": self.spec.name})


def _forward(model: torch.nn.Module, batch: dict):
    return model(batch["img"], batch["intrinsics"], batch["cam2ego"])
