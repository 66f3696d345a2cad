#!/usr/bin/env python3
"""What reduced JPEG decoding costs in accuracy and saves in time, on the same JPEG bytes.

    python tools/reduced_jpeg_check.py                       # default model, seed-9173 split, 1600x900
    python tools/reduced_jpeg_check.py --model nano-fp32-yaw --json out/reduced_jpeg.json

The node and ``qdbev replay`` decode a JPEG that is at least twice the network input in both
dimensions at 1/2, 1/4 or 1/8 of its size (``qdbev_core.runtime.codecs.jpeg_reduction``), with
the intrinsics scaled by the same factor. This command measures that choice: every camera image
of a SynthScenes split is brought to ``--size`` (default 1600x900, the nuScenes camera; bicubic
upscaling of the rendered image, so **synthetic data without extra detail**: it checks the
geometry and the filter difference, not the effect of real high-resolution detail) and JPEG-encoded
once; then each sample runs through the engine twice, decoded at full size and reduced, with the
matching intrinsics. Output: NDS / mAP of both (official devkit), and the median decode + resize
time per camera set of both, as a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="nano-w4a6-qdbev")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--dataroot", type=Path, default=REPO / "data" / "synth-val-s9173")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="synth_val")
    p.add_argument("--size", default="1600x900", help="WxH the camera images are brought to before JPEG encoding")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--out", type=Path, default=REPO / "out" / "reduced_jpeg_check")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from qdbev_core.data.reader import NuScenesReader
    from qdbev_core.data.rig import scaled_intrinsics
    from qdbev_core.engine import load_engine
    from qdbev_core.eval.nuscenes_eval import evaluate
    from qdbev_core.eval.results import ResultsWriter
    from qdbev_core.hardware import machine_info
    from qdbev_core.runtime.codecs import decode_compressed_image, encode_compressed_image, jpeg_reduction
    from qdbev_core.runtime.preprocess import prepare_frame
    from qdbev_core.types import Frame

    args = parse_args(argv)
    w_full, h_full = (int(v) for v in args.size.lower().split("x"))
    engines = {path: load_engine(args.model, backend=args.backend) for path in ("full", "reduced")}
    net_hw = tuple(engines["full"].cfg.image_size)
    f = jpeg_reduction((h_full, w_full), net_hw)
    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    starts = {sc.first for sc in reader.scenes()}
    writers = {path: ResultsWriter(reader.sample_tokens) for path in engines}
    decode_ms: dict[str, list[float]] = {path: [] for path in engines}
    for i in tqdm(range(len(reader)), desc=f"full vs 1/{f} decode", unit="sample", file=sys.stderr):
        s = reader[i]
        fr = s.frame
        jpegs, k_full = [], []
        for img, k in zip(fr.images, fr.intrinsics):
            ih, iw = img.shape[:2]
            big = cv2.resize(img, (w_full, h_full), interpolation=cv2.INTER_CUBIC)
            jpegs.append(encode_compressed_image(big, "jpeg", args.quality))
            k_full.append(scaled_intrinsics(k, w_full / iw, h_full / ih))
        for path, red in (("full", 1), ("reduced", f)):
            t = time.perf_counter()
            images = [decode_compressed_image(b, "jpeg", reduce=red) for b in jpegs]
            ks = np.stack([scaled_intrinsics(k, 1.0 / red) for k in k_full])
            frame = Frame(images=images, intrinsics=ks, cam2ego=fr.cam2ego, stamp=fr.stamp,
                          ego2global=fr.ego2global, scene=fr.scene)
            prepare_frame(frame, net_hw)  # what the engine does first: timed with the decode
            decode_ms[path].append((time.perf_counter() - t) * 1e3)
            e = engines[path]
            if i in starts:
                e.reset()
            writers[path].add(s.token, e.detect(frame), fr.ego2global)
    rows = {}
    for path, red in (("full", 1), ("reduced", f)):
        out = args.out / path
        out.mkdir(parents=True, exist_ok=True)
        summary = evaluate(writers[path].write(out / "results.json"), args.dataroot, args.version, args.split, out,
                           nusc=reader.nusc)
        rows[path] = {"reduction": red, "decoded_size": f"{-(-w_full // red)}x{-(-h_full // red)}",
                      "nds": float(summary["nd_score"]), "map": float(summary["mean_ap"]),
                      "decode_and_resize_ms_median": round(float(np.median(decode_ms[path])), 2)}
    result = {"tool": "tools/reduced_jpeg_check.py", "model": args.model, "backend": args.backend,
              "split": f"{args.dataroot}:{args.split}", "samples": len(reader), "size": args.size,
              "quality": args.quality, "network_input_hw": list(net_hw), "machine": machine_info(), "rows": rows,
              "note": "SynthScenes images upscaled (bicubic) to the size: synthetic data without real "
                      "high-resolution detail; decode + resize of six cameras in one thread"}
    print(f"reduced JPEG decode check, {args.model} ({args.backend}) on {len(reader)} samples of {args.split}, "
          f"images {args.size} JPEG q{args.quality}, network {net_hw[1]}x{net_hw[0]}; "
          f"{result['machine']['cpu_summary']}\n")
    print("| decode | decoded size | NDS | mAP | decode + resize, 6 cameras (ms, median) |")
    print("|---|---|---|---|---|")
    for path, r in rows.items():
        print(f"| {path} (1/{r['reduction']}) | {r['decoded_size']} | {r['nds']:.4f} | {r['map']:.4f} | "
              f"{r['decode_and_resize_ms_median']:.1f} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
