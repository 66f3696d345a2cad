"""Rosbag2 tools (no ROS install needed; ``rosbags`` library).

``qdbev bag from-nuscenes``: one scene of a nuScenes-format dataroot (real or SynthScenes) -> a
rosbag2 MCAP folder with the node's input topics: six ``/cameras/<CAM>/image_raw/compressed``
(the dataset's JPEG bytes, not re-encoded; ``--raw``: ``sensor_msgs/Image`` rgb8 on
``/cameras/<CAM>/image_raw``), six ``/cameras/<CAM>/camera_info``, ``/tf_static`` (base_link <-
cameras), ``/tf`` (odom <- base_link ego poses) and ``/qdbev/ground_truth``
(``vision_msgs/Detection3DArray`` in base_link). Key frames only (2 Hz); message stamps are the
sensor timestamps. The source (dataroot, version, scene, sample token per key frame) is recorded
in the bag's metadata.yaml so `qdbev replay` can score against the devkit.

``qdbev bag info``: topics, types, counts, duration and the recorded source of a bag.

``qdbev bag record --out BAG`` (in ``qdbev_ros.cli``, needs rclpy): record live topics (default: the node's detections, velocities,
pipeline latency and /diagnostics) into an MCAP bag until Ctrl-C / SIGTERM or --duration (needs
rclpy; for machines without ``ros2 bag``).

``qdbev bag score BAG --source INPUT_BAG``: score the detections (+ velocities, paired by stamp)
of a recorded live node or of a ``qdbev replay --out`` bag with the official nuScenes evaluator
against the input bag's recorded source; prints NDS, key frames without output and, for a
recorded node, its latency percentiles and counters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    sub = parser.add_subparsers(dest="bag_command", metavar="<command>", required=True)
    p = sub.add_parser("from-nuscenes", help="write one scene of a nuScenes-format dataroot as a rosbag2 (MCAP)",
                       description=(__doc__ or "").split("\n\n")[1],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataroot", type=Path, required=True, help="dataset folder holding <version>/, samples/, maps/")
    p.add_argument("--version", default="v1.0-mini", help="nuScenes version folder")
    p.add_argument("--scene", required=True, help="scene name, e.g. scene-0103 (see `qdbev data check`)")
    p.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    p.add_argument("--raw", action="store_true",
                   help="raw sensor_msgs/Image rgb8 on .../image_raw instead of the JPEG bytes as CompressedImage")
    p.add_argument("--camera-namespace", default="/cameras",
                   help="topic prefix: <ns>/<CAM>/image_raw[/compressed], <ns>/<CAM>/camera_info")
    p.set_defaults(_bag_run=_from_nuscenes)
    q = sub.add_parser("info", help="topics, counts and recorded source of a bag",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("bag", type=Path, help="rosbag2 folder")
    q.set_defaults(_bag_run=_info)
    c = sub.add_parser("score", help="score a recorded node's / replay's detections with the nuScenes devkit",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("bag", type=Path, help="bag with /qdbev_node/detections (+ /detections/velocity)")
    c.add_argument("--source", type=Path, required=True,
                   help="the input bag the detections were made from (`qdbev bag from-nuscenes` output)")
    c.add_argument("--dataroot", type=Path, default=None,
                   help="dataset the input bag was made from, if not at the path recorded in it")
    c.add_argument("--eval-dir", type=Path, default=None, help="folder for results.json + devkit metrics")
    c.add_argument("--json", type=Path, default=None, help="also write a JSON summary here")
    c.add_argument("--viz-dir", type=Path, default=None,
                   help="also render a BEV PNG per key frame (+ MP4) of the detections vs ground truth here")
    c.add_argument("--viz-score-threshold", type=float, default=0.3, help="draw detections scoring at least this")
    c.set_defaults(_bag_run=_score)
    return sub  # qdbev_ros.cli adds `record` here


def run(args: argparse.Namespace) -> int:
    return args._bag_run(args)


def _from_nuscenes(args: argparse.Namespace) -> int:
    import time

    from ..bag.from_nuscenes import bag_from_nuscenes

    def progress(done: int, total: int) -> None:
        print(f"\r[bag] key frame {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        s = bag_from_nuscenes(args.dataroot, args.version, args.scene, args.out, raw=args.raw,
                              camera_namespace=args.camera_namespace, progress=progress)
    except FileExistsError as exc:
        raise ValueError(str(exc)) from exc
    msgs = sum(s.counts.values())
    print(f"{s.path}: scene {s.scene}, {s.key_frames} key frames, {msgs} messages on {len(s.counts)} topics, "
          f"{s.duration_s:.2f} s of bag time, {s.bytes / 1e6:.1f} MB, written in {time.perf_counter() - t0:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    from rosbags.rosbag2 import Reader

    from ..bag.layout import read_bag_source

    with Reader(args.bag) as reader:
        print(f"{args.bag}: {reader.message_count} messages, {reader.duration * 1e-9:.2f} s, "
              f"start {reader.start_time * 1e-9:.6f}")
        width = max((len(c.topic) for c in reader.connections), default=10)
        for c in sorted(reader.connections, key=lambda c: c.topic):
            print(f"  {c.topic:<{width}}  {c.msgtype:<36} {c.msgcount:6d}")
    src = read_bag_source(args.bag)
    if src is None:
        print("source: (none recorded: not written by `qdbev bag from-nuscenes`)")
    else:
        print(f"source: {src.dataroot} {src.version} scene {src.scene}, {len(src.key_frames)} key frames "
              f"({src.image_transport} images)")
    return 0


def _score(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from ..bag.layout import read_bag_source
    from ..bag.recorded import read_detections_bag, read_node_stats, render_bev_frames
    from ..bag.replay import score_replay
    from ..eval.nuscenes_eval import format_summary

    source = read_bag_source(args.source)
    if source is None:
        raise ValueError(f"{args.source}: records no nuScenes source (not written by `qdbev bag from-nuscenes`)")
    paired = read_detections_bag(args.bag)
    stats = read_node_stats(args.bag)
    dets = paired.by_stamp()
    keys = [k.stamp_ns for k in source.key_frames]
    missing = sum(1 for t in keys if t not in dets)
    summary: dict = {"bag": str(args.bag), "source": str(args.source), "detection_messages": len(paired.pairs),
                     "key_frames": len(keys), "key_frames_without_output": missing,
                     "without_velocity": len(paired.without_velocity),
                     "unmatched_velocity": len(paired.unmatched_velocity), **stats}
    print(f"{args.bag}: {len(paired.pairs)} detection messages, {len(paired.pairs) - len(paired.without_velocity)} "
          f"with velocities (paired by stamp); key frames without output (dropped): {missing}/{len(keys)}")
    lat = stats["latency_ms"]
    if lat is not None:
        print(f"node pipeline latency over {lat['n']} frames: p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, "
              f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    if stats["counters"] is not None:
        print("node counters (last /diagnostics): " + ", ".join(f"{k} {v}" for k, v in stats["counters"].items()))
    with tempfile.TemporaryDirectory(prefix="qdbev_bag_score_") as tmp:
        metrics, note = score_replay(dets, source, args.eval_dir or Path(tmp), dataroot=args.dataroot)
    print(note)
    summary["eval_note"] = note
    if metrics is not None:
        print(format_summary(metrics))
        summary["nd_score"], summary["mean_ap"] = metrics["nd_score"], metrics["mean_ap"]
        summary["mave"] = metrics.get("tp_errors", {}).get("vel_err")
    if args.viz_dir is not None:
        files = render_bev_frames(dets, args.source, args.viz_dir, score_threshold=args.viz_score_threshold,
                                  title=args.bag.name)
        print(f"BEV pictures: {len(files)} files in {args.viz_dir}" + (f" ({files[-1].name})" if files else ""))
        summary["viz"] = [str(f) for f in files]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    return 0
