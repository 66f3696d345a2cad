"""``TrainConfig``: everything a training run needs, printable and saved with the run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .qat import QatConfig
from .twin_distill import TwinDistillConfig


@dataclass
class TrainConfig:
    """One training run (full precision). Units: steps are optimizer steps of one global batch.

    The global batch is ``batch_size`` per process times the number of processes (``torchrun``).
    """

    model: str = "nano"
    """Named model config (``qdbev models --configs``)."""
    dataroot: Path = Path("data/synthscenes")
    version: str = "v1.0-mini"
    split: str = "synth_train"
    out: Path = Path("runs/nano-fp32")
    steps: int = 10000
    batch_size: int = 2
    lr: float = 1e-3
    """Peak AdamW learning rate (BEVFormer: 2e-4 at batch 8 on GPUs; nano trains from scratch)."""
    backbone_lr_mult: float = 1.0
    weight_decay: float = 0.01
    warmup_steps: int = 300
    min_lr_ratio: float = 0.01
    grad_clip: float = 35.0
    """Max global gradient L2 norm (BEVFormer's 35)."""
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 10
    eval_every: int = 0
    """Score the val split with the official evaluator every N steps (0 = only at the end)."""
    eval_split: str | None = "synth_val"
    eval_dataroot: Path | None = None
    """Dataroot of the evaluation split (default: ``dataroot``; e.g. a val set of another seed)."""
    augment: bool = True
    image_aug: str = ""
    """Per-camera image augmentations, comma-separated: ``photometric`` (or ``photometric-mild``), ``gridmask``,
    ``resize-crop-flip`` (or ``all``); ``""`` = none, the batches of runs made before it existed
    (see ``train.augment.ImageAugConfig``; training only, never at evaluation)."""
    temporal: bool = True
    """Train with the previous sample's BEV (computed without gradients) as ``prev_bev``."""
    num_workers: int = 1
    device: str = "cpu"
    amp: bool = True
    """bfloat16 autocast on CUDA (ignored on CPU)."""
    threads: int = 0
    """torch CPU threads per process (0 = leave the default)."""
    model_overrides: dict = field(default_factory=dict)
    """``ModelConfig`` fields changed from the named config (``--model-set key=value``)."""
    init_from: str | None = None
    """Warm start: a manifest name or ``.safetensors`` path whose weights initialise a new run
    (BEV-grid parameters resampled; see ``train.warm_start``). Ignored when resuming."""
    qat: QatConfig | None = None
    """Quantization-aware training (``qdbev qat``); ``None`` trains in full precision."""
    twin_distill: TwinDistillConfig | None = None
    """Full-precision training with twin-render distillation (``train.twin_distill``); ``None`` = off."""
    command: str = ""

    def __post_init__(self) -> None:
        if self.twin_distill is not None and self.qat is not None:
            raise ValueError("twin distillation is a full-precision training option; QAT has its own teacher")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.twin_distill is not None:
            d["twin_distill"] = self.twin_distill.to_dict()
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if isinstance(kw.get("qat"), dict):
            kw["qat"] = QatConfig(**kw["qat"])
        if isinstance(kw.get("twin_distill"), dict):
            kw["twin_distill"] = TwinDistillConfig(**kw["twin_distill"])
        for k in ("dataroot", "out", "eval_dataroot"):
            if kw.get(k) is not None:
                kw[k] = Path(kw[k])
        return cls(**kw)
