"""Run a model over a dataset split and write a nuScenes results JSON (optionally score it).

Temporal state is carried across the samples of a scene and reset at scene boundaries.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name from models/manifest.yaml or a .safetensors path")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt", "auto"),
                   help="inference backend; auto = the fastest CPU path of this model whose accuracy was checked, "
                        "timed once per machine and cached (its choice is printed on stderr)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend)")
    p.add_argument("--dataroot", type=Path, required=True, help="nuScenes-format dataset root")
    p.add_argument("--version", default="v1.0-mini", help="dataset version folder")
    p.add_argument("--split", required=True, help="split to predict")
    p.add_argument("--out", type=Path, required=True, help="results JSON to write")
    p.add_argument("--score-threshold", type=float, default=0.05, help="drop detections below this score")
    p.add_argument("--eval-dir", type=Path, default=None, help="also score with the official evaluator into this folder")


def run(args: argparse.Namespace) -> int:
    from ..data.reader import NuScenesReader
    from ..engine import load_engine
    from ..predict import predict_split

    # backend auto logs its choice itself (stderr where logging is not configured: auto_select.announce)
    engine = load_engine(args.model, backend=args.backend, device=args.device, score_threshold=args.score_threshold)
    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    writer, timing = predict_split(engine, reader)
    path = writer.write(args.out)
    print(f"{path}: {len(writer)} samples, {writer.num_boxes} boxes; median ms {json.dumps(timing)}")
    if args.eval_dir:
        from ..eval.nuscenes_eval import evaluate, format_summary

        print(format_summary(evaluate(path, args.dataroot, args.version, args.split, args.eval_dir, nusc=reader.nusc)))
    return 0
