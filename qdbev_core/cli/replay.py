"""Replay a rosbag2 through the node's frame assembly and an engine, offline (no ROS needed).

Reads the six camera streams, CameraInfo, /tf_static and /tf of BAG and does what qdbev_node
does with the same parameters (read from --params-file, default config/qdbev.yaml): calibration
from CameraInfo + TF (or the calibration file), approximate-time sync (queue_size, slop), ego
pose nearest to the CAM_FRONT stamp, CameraRig.assemble, engine. Every synchronized set is
processed. Detections (/qdbev_node/detections, Detection3DArray, stamp = CAM_FRONT stamp) and
markers (/qdbev_node/markers) go to the --out bag (MCAP), with copies of /tf_static, /tf and
/qdbev/ground_truth. If the bag came from `qdbev bag from-nuscenes`, the key frames' detections
are scored with the official nuScenes evaluator (NDS, mAP, TP errors on stdout; files in
--eval-dir). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input rosbag2 folder (MCAP or sqlite3)")
    parser.add_argument("--model", default=None,
                        help="model name from models/manifest.yaml or a .safetensors path (default: the params file's)")
    parser.add_argument("--backend", default=None,
                        help="inference backend, as the node's 'backend' parameter (default: the params file's)")
    parser.add_argument("--device", default=None, help="cpu or cuda, torch backend (default: the params file's)")
    parser.add_argument("--out", type=Path, default=None, help="output bag folder to create (omit: no output bag)")
    parser.add_argument("--params-file", type=Path, default=None,
                        help="node params YAML whose values replay uses (default: config/qdbev.yaml)")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="override the params file's score_threshold [0, 1]")
    parser.add_argument("--image-transport", choices=("auto", "raw", "compressed"), default="auto",
                        help="image topics to read; auto = the params' transport if the bag has it, else the other")
    parser.add_argument("--eval-dir", type=Path, default=None,
                        help="folder for results.json + the devkit's metrics (default: a temporary folder)")
    parser.add_argument("--no-eval", action="store_true", help="do not score against the ground truth")
    parser.add_argument("--dataroot", type=Path, default=None,
                        help="dataset the bag was made from, if not at the path recorded in the bag")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many camera sets")
    parser.add_argument("--json", type=Path, default=None, help="also write a JSON summary here")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from ..bag.layout import NodeParams, read_bag_source
    from ..bag.replay import replay_bag, score_replay
    from ..engine import load_engine

    params = NodeParams.from_file(args.params_file, model=args.model, backend=args.backend, device=args.device,
                                  score_threshold=args.score_threshold)
    if not params.model:
        raise ValueError(f"no model: pass --model, or set 'model' in the params file "
                         f"({args.params_file or 'config/qdbev.yaml'})")
    if not (args.bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{args.bag}: not a rosbag2 folder (no metadata.yaml)")
    if args.out is not None and args.out.exists():
        raise ValueError(f"{args.out} exists already; choose a new --out folder")
    engine = load_engine(params.model, backend=params.backend, device=params.device,
                         score_threshold=params.score_threshold, topk=params.max_detections)

    def progress(done: int, total: int) -> None:
        print(f"\r[replay] message {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    res = replay_bag(args.bag, engine, params, out_bag=args.out, image_transport=args.image_transport,
                     progress=progress, max_frames=args.max_frames)
    skipped = ", ".join(f"{k} {v}" for k, v in res.skipped.items()) or "none"
    print(f"{args.bag}: {res.sets} camera sets ({res.image_transport}), {res.frames} processed, skipped: {skipped}; "
          f"median ms preprocess {res.timing_ms.get('preprocess', 0):.1f} inference "
          f"{res.timing_ms.get('inference', 0):.1f} postprocess {res.timing_ms.get('postprocess', 0):.1f}; "
          f"{res.wall_s:.1f} s")
    if res.out_bag is not None:
        print(f"wrote {res.out_bag}")
    summary: dict = {"bag": str(args.bag), "sets": res.sets, "frames": res.frames, "skipped": res.skipped,
                     "counters": res.counters, "timing_ms": res.timing_ms,
                     "out_bag": str(res.out_bag) if res.out_bag else None}
    if not args.no_eval:
        from ..eval.nuscenes_eval import format_summary

        source = read_bag_source(args.bag)
        with tempfile.TemporaryDirectory(prefix="qdbev_replay_eval_") as tmp:
            metrics, note = score_replay(res.detections, source, args.eval_dir or Path(tmp), dataroot=args.dataroot)
        print(note)
        summary["eval_note"] = note
        if metrics is not None:
            print(format_summary(metrics))
            summary["nd_score"], summary["mean_ap"] = metrics["nd_score"], metrics["mean_ap"]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    return 0
