"""Train a full-precision BEV detector on a nuScenes-format dataset.

Writes metrics.csv, curves.png, checkpoints/last.pt and model.safetensors (+ .json sidecar) to
--out; rerunning the same command resumes from the last checkpoint. Multi-GPU / multi-process:
`torchrun --nproc_per_node N -m qdbev_core train ...` (DDP; gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser, twin: bool = True) -> None:
    """The training options; ``twin=False`` leaves out twin-render distillation (``qdbev qat``)."""
    from ..train.config import TrainConfig

    d = TrainConfig()
    p.add_argument("--config", dest="model", default=d.model, help="model config name (see `qdbev models --configs`)")
    p.add_argument("--dataroot", type=Path, required=True, help="nuScenes-format dataset root")
    p.add_argument("--version", default=d.version, help="dataset version folder")
    p.add_argument("--split", default=d.split, help="training split")
    p.add_argument("--val-split", dest="eval_split", default=d.eval_split, help="split scored with the official evaluator ('' = none)")
    p.add_argument("--val-dataroot", dest="eval_dataroot", type=Path, default=None, help="dataroot of the val split (default: --dataroot)")
    p.add_argument("--out", type=Path, required=True, help="run directory (resumed if it has a checkpoint)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per step per process")
    p.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up steps")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient L2 norm")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (weights, data order, augmentation)")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=d.log_every, help="metrics.csv row every N steps")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="score the val split every N steps (0 = at the end only)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="disable BEV rotation/flip augmentation")
    p.add_argument("--image-aug", default=d.image_aug, metavar="NAMES",
                   help="per-camera image augmentation, comma-separated: photometric (BEVFormer's brightness/"
                   "contrast/saturation/hue/channel swap), photometric-mild (half the ranges, no swap), gridmask, "
                   "resize-crop-flip (intrinsics and camera->ego updated), or 'all'; default none (training only)")
    p.add_argument("--no-temporal", dest="temporal", action="store_false", help="train without the previous BEV")
    p.add_argument("--workers", dest="num_workers", type=int, default=d.num_workers, help="data loader processes")
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0 = default)")
    p.add_argument("--init-from", default=None, metavar="MODEL",
                   help="warm start a new run from a full-precision manifest name or .safetensors file "
                   "(BEV-grid parameters are resampled if --model-set changes bev_h/bev_w)")
    p.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the named model config, e.g. --model-set bev_h=48 "
                   "(VALUE parsed as JSON, else a string); repeatable")
    if twin:
        add_twin_arguments(p)
    p.add_argument("--stop-at", type=int, default=None, help="end this invocation after this step (resumable; schedule still spans --steps)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def add_twin_arguments(p: argparse.ArgumentParser) -> None:
    """``--twin-*``: twin-render distillation (``train.twin_distill``)."""
    p.add_argument("--twin-teacher", default=None, metavar="MODEL",
                   help="twin-render distillation: frozen full-precision teacher (manifest name or .safetensors) "
                   "that sees --twin-dataroot's images of each training sample; its image-view and BEV features "
                   "are distilled into the student (docs/AUGMENTATION.md)")
    p.add_argument("--twin-dataroot", type=Path, default=None,
                   help="the training samples rendered in the teacher's look (qdbev synth with the same arguments "
                   "and another --style)")
    p.add_argument("--twin-terms", default="img,bev", help="twin distillation terms: img, bev or img,bev")
    p.add_argument("--twin-weight", type=float, default=1.0, help="multiplier of the twin distillation loss")


def run(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig
    from ..train.trainer import train

    kw = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    kw["eval_split"] = kw.get("eval_split") or None
    kw["model_overrides"] = parse_model_sets(args.model_set)
    check_image_aug(kw.get("image_aug", ""))
    kw["twin_distill"] = twin_distill_config(args)
    cfg = TrainConfig(**kw, command="qdbev " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    metrics = train(cfg, progress=args.progress, stop_at=args.stop_at)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return 0


def parse_model_sets(items: list[str]) -> dict:
    """``["bev_h=48", "image_size=[192,352]"]`` -> ``{"bev_h": 48, "image_size": (192, 352)}``.

    Values are JSON (lists become tuples, as the config stores them); anything that is not
    JSON is taken as a string. Unknown field names are rejected with the list of known ones.
    """
    import dataclasses
    import json

    from ..model.config import ModelConfig

    known = {f.name for f in dataclasses.fields(ModelConfig)}
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"--model-set {item!r}: expected KEY=VALUE")
        if key not in known:
            raise SystemExit(f"--model-set {item!r}: {key!r} is not a model config field; known: {', '.join(sorted(known))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def twin_distill_config(args: argparse.Namespace):
    """``TwinDistillConfig`` from the ``--twin-*`` options (``None`` without ``--twin-teacher``);
    exits with a clear message when half of it is given or the twin dataset is missing."""
    from ..train.twin_distill import TwinDistillConfig

    if args.twin_teacher is None and args.twin_dataroot is None:
        return None
    if args.twin_teacher is None or args.twin_dataroot is None:
        raise SystemExit("twin distillation needs both --twin-teacher and --twin-dataroot")
    if not (args.twin_dataroot / args.version).is_dir():
        raise SystemExit(f"--twin-dataroot {args.twin_dataroot}: no {args.version}/ table folder there; render the "
                         "training samples in the teacher's look first (qdbev synth, same arguments, other --style)")
    try:
        return TwinDistillConfig(teacher=args.twin_teacher, twin_dataroot=args.twin_dataroot,
                                 terms=args.twin_terms, weight=args.twin_weight)
    except ValueError as exc:
        raise SystemExit(f"--twin-*: {exc}") from exc


def check_image_aug(names: str) -> None:
    """Reject unknown ``--image-aug`` names before anything is loaded."""
    from ..train.augment import ImageAugConfig

    try:
        ImageAugConfig.from_names(names)
    except ValueError as exc:
        raise SystemExit(f"--image-aug: {exc}") from exc
