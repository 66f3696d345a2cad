"""Sizes of the twin-render distillation terms next to the detection loss, per style.

Student and teacher are the same model; the student sees each style's images (with the chosen
image augmentation, in train mode as the training loop runs it), the teacher the default-look
twin. What the terms weigh at the start of a twin-distillation fine-tune is what this prints
(docs/AUGMENTATION.md). Synthetic data (SynthScenes). Writes a JSON with the means.

    python tools/twin_loss_sizes.py --root data/cross-style-val-5x20 --styles default,random,dusk
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from qdbev_core.data.reader import NuScenesReader
from qdbev_core.model import DetectionLoss
from qdbev_core.models_manifest import load_model
from qdbev_core.train.augment import BevAugmentConfig, ImageAugConfig
from qdbev_core.train.data import DataConfig, DetectionDataset, collate
from qdbev_core.train.trainer import training_step_losses
from qdbev_core.train.twin_distill import TwinDistillation, TwinDistillConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="cross-style data dir (one dataroot per style)")
    ap.add_argument("--styles", default="default,random,dusk", help="student styles; the twin is <root>/default")
    ap.add_argument("--model", default="nano-fp32-yaw", help="student and teacher")
    ap.add_argument("--split", default="synth_val")
    ap.add_argument("--image-aug", default="photometric,gridmask")
    ap.add_argument("--batches", type=int, default=4, help="batches of 2 per style")
    ap.add_argument("--json", type=Path, default=Path("out/twin-loss-sizes.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    student = load_model(args.model).train()
    criterion = DetectionLoss(student.cfg)
    twin_root = args.root / "default"
    twin = TwinDistillation(TwinDistillConfig(args.model, twin_root), student.cfg, torch.device("cpu"))
    data_cfg = DataConfig(input_hw=tuple(student.cfg.image_size), augment=BevAugmentConfig(), temporal=True,
                          image_aug=ImageAugConfig.from_names(args.image_aug))
    result = {}
    print(f"{'style':10s} {'detection':>10s} {'img':>8s} {'bev':>8s} {'bev x70':>8s} {'twin_vgd':>9s}")
    for style in args.styles.split(","):
        ds = DetectionDataset(NuScenesReader(args.root / style, "v1.0-mini", split=args.split), data_cfg,
                              twin=NuScenesReader(twin_root, "v1.0-mini", split=args.split))
        acc: dict[str, list[float]] = {}
        for j in range(args.batches):
            batch = collate([ds[(i, 7 + i)] for i in (j * 23 % len(ds), (j * 23 + 11) % len(ds))])
            with torch.no_grad():
                losses = training_step_losses(student, criterion, batch, True, None, twin)
            losses["detection"] = losses["loss"] - losses["twin_vgd"]
            for k, v in losses.items():
                acc.setdefault(k, []).append(float(v))
        m = {k: float(np.mean(v)) for k, v in acc.items()}
        result[style] = m
        print(f"{style:10s} {m['detection']:10.3f} {m['twin_vgd_img']:8.3f} {m['twin_vgd_bev']:8.4f} "
              f"{70 * m['twin_vgd_bev']:8.3f} {m['twin_vgd']:9.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": args.model, "image_aug": args.image_aug, "styles": result}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
