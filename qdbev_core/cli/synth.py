"""Generate a SynthScenes dataset: procedural road scenes seen by the six nuScenes cameras.

Writes the exact nuScenes on-disk layout under --out (the 13 tables in <out>/<version>/,
samples/CAM_*/*.jpg, key-frame samples/LIDAR_TOP/*.pcd.bin, maps/), loadable unchanged by
nuscenes.NuScenes(version, dataroot), plus <out>/<version>/splits.json with the custom splits
synth_train / synth_val (the last scenes) and synth_meta.json (config and per-class counts).
Same arguments give the same bytes. --style repaints the same scenes (colours, textures, light,
camera response); the default style is the original look, byte for byte.
All ten detection classes appear with lidar points within
their evaluation range in both splits (an error says so if a tiny config cannot achieve it).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataroot to write")
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes (>= 2)")
    parser.add_argument("--samples", type=int, default=40, help="key frames (2 Hz) per scene")
    parser.add_argument("--image-scale", type=float, default=0.25, help="image size relative to 1600x900")
    parser.add_argument("--seed", type=int, default=0, help="master seed (scene names and tokens depend on it)")
    parser.add_argument("--version", default="v1.0-mini", help="name of the table folder")
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="fraction of scenes (the last ones, at least one) in synth_val")
    parser.add_argument("--workers", type=int, default=1, help="processes generating scenes in parallel")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the images")
    parser.add_argument("--objects-at-sample-time", action="store_true",
                        help="render moving objects at the key-frame stamp instead of each camera's stamp")
    parser.add_argument("--style", default="default", metavar="NAME|FILE.json",
                        help="appearance style: default (the original look, same bytes as before), overcast, dusk, "
                        "harsh, swapped (each class painted with another class's colours), random (domain "
                        "randomisation: colours, textures, palette, light, exposure, blur, noise), random-mix (random in "
                        "60 %% of the scenes, the default look in the others), or a .json file "
                        "of SynthStyle fields; only the images change, the scenes and tables stay the same")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import time

    from ..data.synth import SynthConfig, generate_dataset

    cfg = SynthConfig(
        out=args.out, scenes=args.scenes, samples=args.samples, image_scale=args.image_scale, seed=args.seed,
        version=args.version, val_fraction=args.val_fraction, workers=args.workers,
        jpeg_quality=args.jpeg_quality, objects_at_sample_time=args.objects_at_sample_time,
        progress=not args.no_progress, style=args.style,
    )
    start = time.perf_counter()
    root = generate_dataset(cfg)
    took = time.perf_counter() - start
    n = cfg.scenes * cfg.samples
    w, h = cfg.image_size()
    print(f"wrote {cfg.scenes} scenes x {cfg.samples} samples ({w}x{h} images) to {root} "
          f"(style {cfg.style.name if cfg.style is not None else 'default'}, version {cfg.version}, "
          f"splits synth_train/synth_val: {cfg.scenes - cfg.n_val}/{cfg.n_val} scenes) "
          f"in {took:.1f} s ({took / n:.2f} s/sample)")
    return 0
