"""Quantization-aware training (QD-BEV): start from a full-precision teacher, quantize to
--bits, and train with one of the paper's modes on the same data and budget as `qdbev train`.

Modes: standard (all layers quantized at once), progressive (backbone -> neck -> BEV encoder ->
decoder, equal shares of the steps), qdbev (standard, or progressive with --progressive, plus
view-guided distillation of image-view and BEV features from the teacher, --distill img,bev).
Writes the same run files as `qdbev train` plus model.packed.safetensors, the real low-bit
model (integers on disk) at the end.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from . import train as train_cli


def add_arguments(p: argparse.ArgumentParser) -> None:
    train_cli.add_arguments(p, twin=False)
    p.add_argument("--teacher", required=True, help="full-precision model (manifest name or .safetensors path)")
    p.add_argument("--bits", default="w4a6", help="default weight/activation bits, e.g. w4a6, w8a8 (first conv and final layers stay 8 bit)")
    p.add_argument("--mode", choices=("standard", "progressive", "qdbev"), default="qdbev", help="QAT mode")
    p.add_argument("--progressive", action="store_true", help="qdbev mode: switch stages on progressively")
    p.add_argument("--distill", default="img,bev", help="qdbev mode: VGD terms (img, bev, or both)")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the VGD loss")
    p.add_argument("--divergence", choices=("kl", "mse"), default="kl", help="feature divergence of VGD")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the channel-wise KL")
    p.add_argument("--calib-batches", type=int, default=8, help="batches of the calibration pass that initialises the steps")
    p.set_defaults(lr=2e-4, warmup_steps=100)


def run(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig
    from ..train.qat import QatConfig
    from ..train.trainer import train

    qat = QatConfig(teacher=args.teacher, bits=args.bits, mode=args.mode, progressive=args.progressive,
                    distill=tuple(t for t in args.distill.split(",") if t), distill_weight=args.distill_weight,
                    divergence=args.divergence, temperature=args.temperature, calib_batches=args.calib_batches)
    kw = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    kw["eval_split"] = kw.get("eval_split") or None
    cfg = TrainConfig(**kw, qat=qat, command="qdbev " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    metrics = train(cfg, progress=args.progress, stop_at=args.stop_at)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return 0
