"""Render what the detector sees: a BEV plot (GT vs predictions, velocity arrows) and the six
camera images with projected boxes, as PNG per sample (and an MP4 for a whole scene).

Without --model only the ground truth is drawn (useful to inspect a dataset). Images go to
--out-dir as <scene>_<index>_{bev,cams}.png; with --scene an MP4 of the side-by-side panels is
written too.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataroot", required=True, type=Path, help="nuScenes-format dataset root")
    p.add_argument("--version", default="v1.0-mini", help="dataset version folder")
    p.add_argument("--split", default=None, help="split to draw samples from (default: all scenes)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sample", help="sample token to render")
    which.add_argument("--scene", help="scene name to render (every key frame; also writes an MP4)")
    p.add_argument("--model", default=None, help="model name from models/manifest.yaml or a .safetensors path; omit to draw GT only")
    p.add_argument("--backend", default="torch", help="inference backend when --model is given")
    p.add_argument("--score-threshold", type=float, default=0.3, help="minimum score of drawn predictions")
    p.add_argument("--out-dir", type=Path, default=Path("out/viz"), help="where PNG/MP4 files go")
    p.add_argument("--fps", type=float, default=2.0, help="MP4 frame rate (key frames are 2 Hz)")


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from ..data.reader import NuScenesReader
    from ..viz import render_bev, render_camera_mosaic

    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    if args.sample:
        if args.sample not in reader.sample_tokens:
            raise ValueError(f"sample token {args.sample!r} not in {args.dataroot}/{args.version} (split {args.split})")
        indices = [reader.index_of(args.sample)]
    else:
        scenes = {sc.name: sc for sc in reader.scenes()}
        if args.scene not in scenes:
            raise ValueError(f"scene {args.scene!r} not found; available: {', '.join(list(scenes)[:20])}")
        sc = scenes[args.scene]
        indices = list(range(sc.first, sc.first + sc.num_samples))
    engine = None
    if args.model:
        from ..engine import load_engine

        engine = load_engine(args.model, backend=args.backend, score_threshold=args.score_threshold)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    panels = []
    for n, i in enumerate(tqdm(indices, desc="viz", unit="sample")):
        s = reader[i]
        det = engine.detect(s.frame) if engine is not None else None
        tag = "predictions (coloured) vs GT (white)" if det is not None else "ground truth"
        cams = render_camera_mosaic(
            s.frame,
            boxes=None if det is None else det.boxes,
            labels=None if det is None else det.labels,
            gt_boxes=s.gt_boxes,
            title=f"{s.scene_name} #{n} {s.token[:8]}: {tag}",
        )
        bev = render_bev(
            s.gt_boxes, None if det is None else det.boxes, None if det is None else det.labels,
            title=f"{s.scene_name} #{n}: GT black" + ("" if det is None else ", predictions coloured"),
            size_px=cams.shape[0],
        )
        stem = args.out_dir / f"{s.scene_name}_{n:03d}"
        cv2.imwrite(f"{stem}_cams.png", cv2.cvtColor(cams, cv2.COLOR_RGB2BGR))
        cv2.imwrite(f"{stem}_bev.png", cv2.cvtColor(bev, cv2.COLOR_RGB2BGR))
        panels.append(np.concatenate([bev, cams], axis=1))
    if args.scene and panels:
        h, w = panels[0].shape[:2]
        path = args.out_dir / f"{args.scene}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (w, h))
        for p in panels:
            writer.write(cv2.cvtColor(cv2.resize(p, (w, h)), cv2.COLOR_RGB2BGR))
        writer.release()
        print(path)
    print(args.out_dir)
    return 0
