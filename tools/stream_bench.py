#!/usr/bin/env python3
"""Sustained-stream benchmark of qdbev_node: six cameras at 12 Hz into a node process for N seconds.

    python tools/stream_bench.py --duration 120                       # raw 1600x900, random nano model
    python tools/stream_bench.py --model nano-w4a6-qdbev --scale 0.22 --transport compressed --json out.json

This process publishes, every 1/rate seconds, six images (``rgb8`` Image or JPEG CompressedImage,
``--scale`` x 1600x900, stamped with the wall clock plus the nuScenes capture offsets, ~42 ms span)
with their CameraInfo, ``/tf_static`` (nuScenes rig) and ``/tf`` odom -> base_link; ``qdbev_node``
runs as its own process with ``config/qdbev.yaml`` and subscribes to them. After ``--warmup``
seconds it measures for ``--duration`` seconds:

- output rate (detections per second) vs the input set rate;
- end-to-end latency (detection arrival - CAM_FRONT capture stamp) p50 / p99, separately for the
  first and the second half of the window (a growing queue would show as rising latency), and
  the node's own ``~/debug/pipeline_latency_ms`` p50 / p99;
- drops: camera sets published that produced no detections (the node drops older sets by design:
  newest wins) and the node's diagnostics counters;
- the node's resident memory (``/proc/<pid>/status`` VmRSS) at the start and end of the window
  and its maximum (bounded memory = no growth after warm-up);
- over time: every ``--report-every`` seconds (warm-up included) one line on stderr and one
  ``timeline`` entry with that interval's sets published, detections received, output rate,
  latency p50 / p99, the node's RSS and its newest-wins drop counter (from ``/diagnostics``).

Progress goes to stderr, the result as JSON to stdout and to ``--json FILE`` (default
``out/stream_bench.json``). Every process runs
with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, ``ROS_DOMAIN_ID`` (``--domain-id``) and
``config/fastdds_shm.xml``; the node process is stopped (SIGINT, then kill) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OFFSETS_S = {  # capture offsets of the nuScenes rig relative to the set (span ~42 ms)
    "CAM_FRONT_LEFT": -0.0431, "CAM_FRONT": -0.0355, "CAM_FRONT_RIGHT": -0.0276,
    "CAM_BACK_RIGHT": -0.0201, "CAM_BACK": -0.0104, "CAM_BACK_LEFT": -0.0005,
}


def log(msg: str) -> None:
    print(f"[stream_bench] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None,
                   help="model name or .safetensors path (default: a random-weight nano model in a temp folder)")
    p.add_argument("--backend", default="torch", help="node 'backend' parameter")
    p.add_argument("--duration", type=float, default=120.0, help="measurement window, seconds")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of streaming before measuring")
    p.add_argument("--rate", type=float, default=12.0, help="camera sets per second")
    p.add_argument("--scale", type=float, default=1.0, help="image size relative to 1600x900")
    p.add_argument("--transport", choices=("raw", "compressed"), default="raw", help="image message type")
    p.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "61")), help="ROS_DOMAIN_ID")
    p.add_argument("--json", type=Path, default=REPO / "out" / "stream_bench.json", help="also write the result here")
    p.add_argument("--report-every", type=float, default=10.0, help="seconds between timeline entries / log lines")
    p.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the node to subscribe")
    args = p.parse_args(argv)
    for name in ("duration", "rate", "scale", "report_every", "startup_timeout"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def ros_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain),
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_shm.xml"), PYTHONUNBUFFERED="1",
               RCUTILS_COLORIZED_OUTPUT="0")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def random_model(folder: Path) -> Path:
    import torch

    from qdbev_core.checkpoint import save_weights
    from qdbev_core.model import BEVDetector

    path = folder / "nano_random.safetensors"
    torch.manual_seed(0)
    model = BEVDetector("nano")
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict()})
    return path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update({k: v for k, v in ros_env(args.domain_id).items() if k.startswith(("ROS_", "FASTDDS"))})

    import numpy as np
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Float64
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray

    from qdbev_core.data.rig import rig_arrays
    from qdbev_core.types import CAMERA_NAMES
    from qdbev_ros.conversions import make_header
    from qdbev_ros.ros_io import (make_camera_info, matrix_to_transform_stamped, rgb_to_compressed_msg,
                                  rgb_to_image_msg)

    tmp = tempfile.TemporaryDirectory(prefix="qdbev_stream_bench_")
    model = args.model or str(random_model(Path(tmp.name)))
    width, height = int(round(1600 * args.scale)), int(round(900 * args.scale))
    ks, ts = rig_arrays(args.scale)

    exe = Path(sys.executable).parent / "qdbev_node"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "qdbev_ros.node"]
    cmd += ["--ros-args", "--params-file", str(REPO / "config" / "qdbev.yaml"), "-p", f"model:={model}",
            "-p", f"backend:={args.backend}", "-p", f"image_transport:={args.transport}"]
    log(f"starting node: {' '.join(cmd)}")
    node_proc = subprocess.Popen(cmd, env=ros_env(args.domain_id), cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1)
    node_log: list[str] = []
    reader = threading.Thread(target=lambda: [node_log.append(line.rstrip()) for line in node_proc.stdout],
                              daemon=True)
    reader.start()

    context = Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    node = rclpy.create_node("qdbev_stream_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    result: dict = {}
    try:
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        img_type = Image if args.transport == "raw" else CompressedImage
        suffix = "image_raw" if args.transport == "raw" else "image_raw/compressed"
        img_pubs = {c: node.create_publisher(img_type, f"/cameras/{c}/{suffix}", reliable) for c in CAMERA_NAMES}
        info_pubs = {c: node.create_publisher(CameraInfo, f"/cameras/{c}/camera_info", reliable) for c in CAMERA_NAMES}
        tf_static = node.create_publisher(TFMessage, "/tf_static", latched)
        tf_pub = node.create_publisher(TFMessage, "/tf", 20)
        tf_static.publish(TFMessage(transforms=[matrix_to_transform_stamped(ts[i], "base_link", c, 0.0)
                                                for i, c in enumerate(CAMERA_NAMES)]))
        rng = np.random.default_rng(0)
        bodies = {}
        for c in CAMERA_NAMES:
            rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            rgb[::8] = 0  # some structure so JPEG sizes are realistic, not pure noise
            bodies[c] = (rgb_to_image_msg(rgb, make_header(0.0, c)) if args.transport == "raw"
                         else rgb_to_compressed_msg(rgb, make_header(0.0, c), "jpeg", 90))

        arrivals: list[tuple[float, float]] = []  # (receipt wall time, CAM_FRONT stamp)
        node_latency: list[tuple[float, float]] = []
        diag: dict[str, str] = {}

        def on_det(msg) -> None:
            arrivals.append((time.time(), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

        def on_diag(msg) -> None:
            for st in msg.status:
                if st.name == "qdbev_node: pipeline":
                    diag.clear()
                    diag.update({kv.key: kv.value for kv in st.values})

        node.create_subscription(Detection3DArray, "/qdbev_node/detections", on_det, 50)
        node.create_subscription(Float64, "/qdbev_node/debug/pipeline_latency_ms",
                                 lambda m: node_latency.append((time.time(), m.data)), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

        def publish_infos(stamp: float) -> None:
            for i, c in enumerate(CAMERA_NAMES):
                info_pubs[c].publish(make_camera_info(ks[i], width, height, make_header(stamp, c)))

        def spin_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))

        # startup: CameraInfo until the node subscribes to every image topic (polling, no fixed sleep)
        end = time.monotonic() + args.startup_timeout
        while any(p.get_subscription_count() < 1 for p in img_pubs.values()):
            if node_proc.poll() is not None:
                raise RuntimeError("node exited during startup:\n" + "\n".join(node_log[-30:]))
            if time.monotonic() > end:
                raise RuntimeError(f"node did not subscribe to the images in {args.startup_timeout:g} s:\n"
                                   + "\n".join(node_log[-30:]))
            publish_infos(time.time())
            spin_for(0.2)
        log(f"node subscribed; streaming {args.rate:g} Hz x 6 {args.transport} {width}x{height} for "
            f"{args.warmup:g} s warm-up + {args.duration:g} s")

        period = 1.0 / args.rate
        t0 = time.monotonic()
        t_measure, t_end = t0 + args.warmup, t0 + args.warmup + args.duration
        k = 0  # slot index: set k is due at t0 + k / rate
        published = skipped = skipped_in_window = 0
        sets_in_window = 0
        rss: list[tuple[float, float]] = []
        next_rss = t0
        window_start_wall = window_end_wall = None
        timeline: list[dict] = []
        next_report = t0 + args.report_every
        reported = {"arrivals": 0, "sets": 0}

        def report(interval_start: float) -> None:
            """One timeline entry + log line for the sets / detections since the last one."""
            new = arrivals[reported["arrivals"]:]
            lat_i = [(a - s) * 1e3 for a, s in new]
            span = max(time.monotonic() - interval_start, 1e-3)
            entry = {"t_s": round(time.monotonic() - t0, 1),
                     "phase": "warmup" if interval_start < t_measure - 1e-6 else "measure",
                     "sets_published": published - reported["sets"], "detections": len(new),
                     "output_rate_hz": round(len(new) / span, 2),
                     "latency_ms_p50": None if not lat_i else round(percentile(lat_i, 50), 1),
                     "latency_ms_p99": None if not lat_i else round(percentile(lat_i, 99), 1),
                     "node_rss_mb": None if not rss else round(rss[-1][1], 1),
                     "node_dropped_sets": diag.get("dropped_sets_newest_wins")}
            timeline.append(entry)
            log(f"t={entry['t_s']:6.1f} s ({entry['phase']}): {entry['sets_published']} sets in, "
                f"{entry['detections']} detections out ({entry['output_rate_hz']:.2f} Hz), latency p50 "
                f"{entry['latency_ms_p50']} / p99 {entry['latency_ms_p99']} ms, node RSS {entry['node_rss_mb']} MB, "
                f"newest-wins drops {entry['node_dropped_sets']}")
            reported.update(arrivals=len(arrivals), sets=published)

        while True:
            target = t0 + k * period
            now = time.monotonic()
            if target >= t_end or now >= t_end:
                break
            if target > now:
                spin_for(target - now)
            elif now - target >= period:  # this process fell behind: skip the missed slots, never burst
                missed = int((now - target) / period)
                skipped += missed
                skipped_in_window += sum(1 for j in range(k, k + missed) if t_measure <= t0 + j * period < t_end)
                k += missed
                target = t0 + k * period
                if target >= t_end:
                    break
            stamp = time.time()
            in_window = t_measure <= target < t_end
            if in_window and window_start_wall is None:
                window_start_wall = stamp
            publish_infos(stamp)
            pose = np.eye(4)
            pose[0, 3] = 10.0 * (k * period)
            tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(pose, "odom", "base_link",
                                                                             stamp + OFFSETS_S["CAM_FRONT"])]))
            for c in CAMERA_NAMES:
                body = bodies[c]
                body.header = make_header(stamp + OFFSETS_S[c], c)
                img_pubs[c].publish(body)
            sets_in_window += int(in_window)
            published += 1
            k += 1
            if time.monotonic() >= next_rss:
                r = rss_mb(node_proc.pid)
                if r is not None:
                    rss.append((time.monotonic(), r))
                next_rss += 1.0
            if time.monotonic() >= next_report:
                report(next_report - args.report_every)
                next_report += args.report_every
            if node_proc.poll() is not None:
                raise RuntimeError("node exited while streaming:\n" + "\n".join(node_log[-30:]))
        window_end_wall = time.time()
        if window_start_wall is None:
            raise RuntimeError("no camera set was published in the measurement window")
        if skipped:
            log(f"WARNING: this publisher fell behind and skipped {skipped} of {published + skipped} camera sets "
                f"({skipped_in_window} in the window): the machine is too busy for {args.rate:g} Hz of "
                f"{args.transport} {width}x{height}; input_rate achieved {sets_in_window / args.duration:.2f} Hz")
        spin_for(2.0)  # let the last outputs and a diagnostics message arrive
        if published > reported["sets"]:
            report(next_report - args.report_every)

        front0 = window_start_wall + OFFSETS_S["CAM_FRONT"]
        front1 = window_end_wall + OFFSETS_S["CAM_FRONT"]
        win = [(a, s) for a, s in arrivals if front0 <= s < front1]
        lat = [(a - s) * 1e3 for a, s in win]
        half = front0 + 0.5 * (front1 - front0)
        first = [(a - s) * 1e3 for a, s in win if s < half]
        second = [(a - s) * 1e3 for a, s in win if s >= half]
        nl = [v for t, v in node_latency if window_start_wall <= t <= window_end_wall + 2.0]
        rss_w = [r for t, r in rss if t >= t_measure]

        def r1(v):
            return None if v is None else round(v, 1)

        result = {
            "input": {"rate_hz": args.rate, "transport": args.transport, "width": width, "height": height,
                      "sets_published": sets_in_window, "achieved_rate_hz": round(sets_in_window / args.duration, 3),
                      "publisher_skipped_sets": skipped_in_window,
                      "duration_s": args.duration, "model": args.model or "random nano", "backend": args.backend},
            "output_rate_hz": round(len(win) / args.duration, 3),
            "detections_received": len(win),
            "sets_without_output": sets_in_window - len(win),
            "drop_fraction": round(1.0 - len(win) / sets_in_window, 4) if sets_in_window else None,
            "latency_ms": {"p50": r1(percentile(lat, 50)), "p99": r1(percentile(lat, 99)),
                           "first_half_p50": r1(percentile(first, 50)), "second_half_p50": r1(percentile(second, 50))},
            "node_pipeline_latency_ms": {"p50": r1(percentile(nl, 50)), "p99": r1(percentile(nl, 99))},
            "node_rss_mb": {"start": r1(rss_w[0] if rss_w else None), "end": r1(rss_w[-1] if rss_w else None),
                            "max": r1(max(rss_w) if rss_w else None),
                            "growth": r1(rss_w[-1] - rss_w[0] if rss_w else None)},
            "node_diagnostics": {k: diag.get(k) for k in ("sets_received", "sets_processed", "detections_published",
                                                          "dropped_sets_newest_wins", "unmatched_camera_messages",
                                                          "bad_frames", "engine_errors", "latency_ms_p50",
                                                          "latency_ms_max")},
            "timeline": timeline,
        }
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
            try:
                node_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node_proc.kill()
                node_proc.wait(timeout=10)
        reader.join(timeout=5)
        tmp.cleanup()
    from qdbev_core.hardware import machine_info

    result["machine"] = machine_info()  # CPU model and ISA: int8 speed depends on VNNI
    print(f"stream_bench: {result['machine']['cpu_summary']}", file=sys.stderr)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"stream_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
