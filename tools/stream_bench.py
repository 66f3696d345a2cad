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
- where the node's time goes: the per-stage p50 / p90 (ms) of its ``qdbev_node: timing``
  diagnostics status, from the last camera's arrival to the published detections (``sync``,
  ``queue``, ``decode``, ``assemble``, ``engine_preprocess``, ``inference``, ``postprocess``,
  ``publish``, ``total``; ``qdbev_ros/stage_timing.py``), as the node saw it at the end;
- the node's resident memory (``/proc/<pid>/status`` VmRSS) at the start and end of the window
  and its maximum (bounded memory = no growth after warm-up);
- over time: every ``--report-every`` seconds (warm-up included) one line on stderr and one
  ``timeline`` entry with that interval's sets published, detections received, output rate,
  latency p50 / p99, the node's RSS and its newest-wins drop counter (from ``/diagnostics``).

Then, with ``--latency-rate`` (default ``auto``: half the rate the engine sustains, from the
first window's engine time), a second window of ``--latency-duration`` seconds with cameras
*slower* than the engine, measured the same way (``latency_phase`` in the JSON). With cameras
faster than the engine and newest-wins dropping, a set waits on average half a camera period for
the busy worker before it starts, so pipeline latency against the engine's own time is only
meaningful when no set has to queue; the output rate is only meaningful when sets do.

``checks`` (also printed as a table) compares the numbers with issue 20's targets: node pipeline
latency p50 <= engine total (pre + inference + post, p50 from the node's own timing, same window)
+ 25 ms, in the slower window when there is one; output rate >= 0.9 x 1000 / engine total when
cameras arrive faster than that; RSS growth over the first window <= 2 % of its start.

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
from dataclasses import dataclass, field
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
    p.add_argument("--latency-rate", default="auto",
                   help="camera sets per second of a second window for the latency check: a number, 'auto' (half "
                        "the rate the engine sustains in the first window) or 'off'")
    p.add_argument("--latency-duration", type=float, default=60.0, help="seconds of that second window")
    p.add_argument("--scale", type=float, default=1.0, help="image size relative to 1600x900")
    p.add_argument("--transport", choices=("raw", "compressed"), default="raw", help="image message type")
    p.add_argument("--rviz", action="store_true",
                   help="also subscribe to ~/markers as RViz would (the node builds markers only for a subscriber)")
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
    if args.latency_rate not in ("auto", "off"):
        try:
            if not float(args.latency_rate) > 0:
                raise ValueError
        except ValueError:
            p.error(f"--latency-rate must be a rate > 0, 'auto' or 'off', got {args.latency_rate!r}")
    if not args.latency_duration > 0:
        p.error(f"--latency-duration must be > 0, got {args.latency_duration}")
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


@dataclass
class NodeProcess:
    """``qdbev_node`` in its own process, its output collected by a reader thread."""

    proc: subprocess.Popen
    log: list[str]
    reader: threading.Thread

    @classmethod
    def start(cls, args: argparse.Namespace, model: str) -> "NodeProcess":
        exe = Path(sys.executable).parent / "qdbev_node"
        cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "qdbev_ros.node"]
        cmd += ["--ros-args", "--params-file", str(REPO / "config" / "qdbev.yaml"), "-p", f"model:={model}",
                "-p", f"backend:={args.backend}", "-p", f"image_transport:={args.transport}"]
        log(f"starting node: {' '.join(cmd)}")
        proc = subprocess.Popen(cmd, env=ros_env(args.domain_id), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: [lines.append(line.rstrip()) for line in proc.stdout], daemon=True)
        reader.start()
        return cls(proc, lines, reader)

    def tail(self) -> str:
        return "\n".join(self.log[-30:])

    def check_alive(self, while_doing: str) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"node exited {while_doing}:\n" + self.tail())

    def stop(self) -> None:
        """SIGINT, then kill after 20 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.reader.join(timeout=5)


class RosSession:
    """This process's own rclpy context, node and executor."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("qdbev_stream_bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class CameraStream:
    """Publishers of the six cameras, their CameraInfo and the TF, and one fixed random image per
    camera (re-stamped for every set). ``scale`` x 1600x900 pixels."""

    def __init__(self, node, transport: str, scale: float) -> None:
        import numpy as np
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        from qdbev_core.data.rig import rig_arrays
        from qdbev_core.types import CAMERA_NAMES
        from qdbev_ros.conversions import make_header
        from qdbev_ros.ros_io import (make_camera_info, matrix_to_transform_stamped, rgb_to_compressed_msg,
                                      rgb_to_image_msg)

        # message builders, kept for the per-set calls (imported here: after ros_env is in os.environ)
        self.cameras = CAMERA_NAMES
        self._header, self._camera_info, self._tf_msg = make_header, make_camera_info, TFMessage
        self._transform = matrix_to_transform_stamped
        self.width, self.height = int(round(1600 * scale)), int(round(900 * scale))
        self.ks, ts = rig_arrays(scale)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        img_type = Image if transport == "raw" else CompressedImage
        suffix = "image_raw" if transport == "raw" else "image_raw/compressed"
        self.img_pubs = {c: node.create_publisher(img_type, f"/cameras/{c}/{suffix}", reliable) for c in CAMERA_NAMES}
        self.info_pubs = {c: node.create_publisher(CameraInfo, f"/cameras/{c}/camera_info", reliable)
                          for c in CAMERA_NAMES}
        tf_static = node.create_publisher(TFMessage, "/tf_static", latched)
        self.tf_pub = node.create_publisher(TFMessage, "/tf", 20)
        tf_static.publish(TFMessage(transforms=[matrix_to_transform_stamped(ts[i], "base_link", c, 0.0)
                                                for i, c in enumerate(CAMERA_NAMES)]))
        rng = np.random.default_rng(0)
        self.bodies = {}
        for c in CAMERA_NAMES:
            rgb = rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8)
            rgb[::8] = 0  # some structure so JPEG sizes are realistic, not pure noise
            self.bodies[c] = (rgb_to_image_msg(rgb, make_header(0.0, c)) if transport == "raw"
                              else rgb_to_compressed_msg(rgb, make_header(0.0, c), "jpeg", 90))

    def node_subscribed(self) -> bool:
        return all(p.get_subscription_count() >= 1 for p in self.img_pubs.values())

    def publish_infos(self, stamp: float) -> None:
        for i, c in enumerate(self.cameras):
            self.info_pubs[c].publish(self._camera_info(self.ks[i], self.width, self.height, self._header(stamp, c)))

    def publish_set(self, stamp: float, x_m: float) -> None:
        """CameraInfo, odom -> base_link at ``x_m`` metres and the six images of the set ``stamp`` (s)."""
        import numpy as np

        self.publish_infos(stamp)
        pose = np.eye(4)
        pose[0, 3] = x_m
        self.tf_pub.publish(self._tf_msg(transforms=[self._transform(pose, "odom", "base_link",
                                                                     stamp + OFFSETS_S["CAM_FRONT"])]))
        for c in self.cameras:
            body = self.bodies[c]
            body.header = self._header(stamp + OFFSETS_S[c], c)
            self.img_pubs[c].publish(body)


@dataclass
class NodeOutputs:
    """What the node publishes, as it arrives (wall-clock receipt times in seconds)."""

    arrivals: list[tuple[float, float]] = field(default_factory=list)
    """(receipt wall time, CAM_FRONT stamp) of every detection message."""
    node_latency: list[tuple[float, float]] = field(default_factory=list)
    """(receipt wall time, ``~/debug/pipeline_latency_ms`` value)."""
    diag: dict[str, str] = field(default_factory=dict)
    """The newest ``qdbev_node: pipeline`` diagnostics key/values."""
    timing: dict[str, str] = field(default_factory=dict)
    """The newest ``qdbev_node: timing`` diagnostics key/values (per-stage p50 / p90 ms)."""

    markers_received: int = 0
    """``~/markers`` messages received (only with ``--rviz``)."""

    def subscribe(self, node, rviz: bool = False) -> None:
        """The node's detections, latency and diagnostics; with ``rviz`` also ``~/markers``, as RViz
        would (the node builds markers only while something subscribes)."""
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Float64
        from vision_msgs.msg import Detection3DArray

        node.create_subscription(Detection3DArray, "/qdbev_node/detections", self._on_det, 50)
        node.create_subscription(Float64, "/qdbev_node/debug/pipeline_latency_ms",
                                 lambda m: self.node_latency.append((time.time(), m.data)), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        if rviz:
            from visualization_msgs.msg import MarkerArray

            def on_markers(_msg) -> None:
                self.markers_received += 1

            node.create_subscription(MarkerArray, "/qdbev_node/markers", on_markers, 10)

    def _on_det(self, msg) -> None:
        self.arrivals.append((time.time(), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            target = {"qdbev_node: pipeline": self.diag, "qdbev_node: timing": self.timing}.get(st.name)
            if target is not None:
                target.clear()
                target.update({kv.key: kv.value for kv in st.values})

    def stage_ms(self, pct: str = "p50") -> dict[str, float]:
        """``{stage: ms}`` of the node's newest timing status at percentile ``pct`` (``p50`` / ``p90``)."""
        tail = f"_ms_{pct}"
        return {k[: -len(tail)]: float(v) for k, v in self.timing.items() if k.endswith(tail)}


def wait_for_node(args: argparse.Namespace, cams: CameraStream, ros: RosSession, node_proc: NodeProcess) -> None:
    """Publish CameraInfo until the node subscribes to every image topic (polling, no fixed sleep)."""
    end = time.monotonic() + args.startup_timeout
    while not cams.node_subscribed():
        node_proc.check_alive("during startup")
        if time.monotonic() > end:
            raise RuntimeError(f"node did not subscribe to the images in {args.startup_timeout:g} s:\n"
                               + node_proc.tail())
        cams.publish_infos(time.time())
        ros.spin_for(0.2)


@dataclass
class StreamRun:
    """Counters of one stream: monotonic times ``t0`` (start), ``t_measure`` / ``t_end`` (window)."""

    t0: float
    t_measure: float
    t_end: float
    published: int = 0
    skipped: int = 0
    skipped_in_window: int = 0
    sets_in_window: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)
    """(monotonic time, node RSS in MB), about once a second."""
    window_start_wall: float | None = None
    window_end_wall: float | None = None
    timeline: list[dict] = field(default_factory=list)
    reported_arrivals: int = 0
    reported_sets: int = 0
    x_end: float = 0.0
    """Ego x (m) of the last published set (the next window continues the drive from there)."""

    def report(self, outputs: NodeOutputs, interval_start: float) -> None:
        """One timeline entry + log line for the sets / detections since the last one."""
        new = outputs.arrivals[self.reported_arrivals:]
        lat_i = [(a - s) * 1e3 for a, s in new]
        span = max(time.monotonic() - interval_start, 1e-3)
        entry = {"t_s": round(time.monotonic() - self.t0, 1),
                 "phase": "warmup" if interval_start < self.t_measure - 1e-6 else "measure",
                 "sets_published": self.published - self.reported_sets, "detections": len(new),
                 "output_rate_hz": round(len(new) / span, 2),
                 "latency_ms_p50": None if not lat_i else round(percentile(lat_i, 50), 1),
                 "latency_ms_p99": None if not lat_i else round(percentile(lat_i, 99), 1),
                 "node_rss_mb": None if not self.rss else round(self.rss[-1][1], 1),
                 "node_dropped_sets": outputs.diag.get("dropped_sets_newest_wins")}
        self.timeline.append(entry)
        log(f"t={entry['t_s']:6.1f} s ({entry['phase']}): {entry['sets_published']} sets in, "
            f"{entry['detections']} detections out ({entry['output_rate_hz']:.2f} Hz), latency p50 "
            f"{entry['latency_ms_p50']} / p99 {entry['latency_ms_p99']} ms, node RSS {entry['node_rss_mb']} MB, "
            f"newest-wins drops {entry['node_dropped_sets']}")
        self.reported_arrivals, self.reported_sets = len(outputs.arrivals), self.published


def stream(args: argparse.Namespace, cams: CameraStream, ros: RosSession, node_proc: NodeProcess,
           outputs: NodeOutputs, x_start: float = 0.0) -> StreamRun:
    """Publish one camera set every 1/rate s through warm-up and the window, wall-bounded: slots
    this process misses are skipped, never sent in a burst. The ego drives +x at 10 m/s from
    ``x_start`` m."""
    period = 1.0 / args.rate
    t0 = time.monotonic()
    run = StreamRun(t0=t0, t_measure=t0 + args.warmup, t_end=t0 + args.warmup + args.duration,
                    reported_arrivals=len(outputs.arrivals))
    k = 0  # slot index: set k is due at t0 + k / rate
    next_rss = t0
    next_report = t0 + args.report_every
    while True:
        target = t0 + k * period
        now = time.monotonic()
        if target >= run.t_end or now >= run.t_end:
            break
        if target > now:
            ros.spin_for(target - now)
        elif now - target >= period:  # this process fell behind: skip the missed slots, never burst
            missed = int((now - target) / period)
            run.skipped += missed
            run.skipped_in_window += sum(1 for j in range(k, k + missed)
                                         if run.t_measure <= t0 + j * period < run.t_end)
            k += missed
            target = t0 + k * period
            if target >= run.t_end:
                break
        stamp = time.time()
        in_window = run.t_measure <= target < run.t_end
        if in_window and run.window_start_wall is None:
            run.window_start_wall = stamp
        run.x_end = x_start + 10.0 * (k * period)
        cams.publish_set(stamp, run.x_end)
        run.sets_in_window += int(in_window)
        run.published += 1
        k += 1
        if time.monotonic() >= next_rss:
            r = rss_mb(node_proc.proc.pid)
            if r is not None:
                run.rss.append((time.monotonic(), r))
            next_rss += 1.0
        if time.monotonic() >= next_report:
            run.report(outputs, next_report - args.report_every)
            next_report += args.report_every
        node_proc.check_alive("while streaming")
    run.window_end_wall = time.time()
    if run.window_start_wall is None:
        raise RuntimeError("no camera set was published in the measurement window")
    if run.skipped:
        log(f"WARNING: this publisher fell behind and skipped {run.skipped} of {run.published + run.skipped} camera "
            f"sets ({run.skipped_in_window} in the window): the machine is too busy for {args.rate:g} Hz of "
            f"{args.transport} {cams.width}x{cams.height}; input_rate achieved "
            f"{run.sets_in_window / args.duration:.2f} Hz")
    ros.spin_for(2.0)  # let the last outputs and a diagnostics message arrive
    if run.published > run.reported_sets:
        run.report(outputs, next_report - args.report_every)
    return run


def _r1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def summarize(args: argparse.Namespace, cams: CameraStream, run: StreamRun, outputs: NodeOutputs) -> dict:
    """The result JSON: rates, latencies (ms) over the window and its halves, RSS (MB), diagnostics."""
    front0 = run.window_start_wall + OFFSETS_S["CAM_FRONT"]
    front1 = run.window_end_wall + OFFSETS_S["CAM_FRONT"]
    win = [(a, s) for a, s in outputs.arrivals if front0 <= s < front1]
    lat = [(a - s) * 1e3 for a, s in win]
    half = front0 + 0.5 * (front1 - front0)
    first = [(a - s) * 1e3 for a, s in win if s < half]
    second = [(a - s) * 1e3 for a, s in win if s >= half]
    nl = [v for t, v in outputs.node_latency if run.window_start_wall <= t <= run.window_end_wall + 2.0]
    rss_w = [r for t, r in run.rss if t >= run.t_measure]
    n_in = run.sets_in_window
    return {
        "input": {"rate_hz": args.rate, "transport": args.transport, "width": cams.width, "height": cams.height,
                  "sets_published": n_in, "achieved_rate_hz": round(n_in / args.duration, 3),
                  "publisher_skipped_sets": run.skipped_in_window,
                  "duration_s": args.duration, "model": args.model or "random nano", "backend": args.backend,
                  "rviz_subscriber": args.rviz, "markers_received": outputs.markers_received},
        "output_rate_hz": round(len(win) / args.duration, 3),
        "detections_received": len(win),
        "sets_without_output": n_in - len(win),
        "drop_fraction": round(1.0 - len(win) / n_in, 4) if n_in else None,
        "latency_ms": {"p50": _r1(percentile(lat, 50)), "p99": _r1(percentile(lat, 99)),
                       "first_half_p50": _r1(percentile(first, 50)), "second_half_p50": _r1(percentile(second, 50))},
        "node_pipeline_latency_ms": {"p50": _r1(percentile(nl, 50)), "p99": _r1(percentile(nl, 99))},
        "node_stage_ms": {"p50": outputs.stage_ms("p50"), "p90": outputs.stage_ms("p90"),
                          "sets": outputs.timing.get("sets_in_window")},
        "node_rss_mb": {"start": _r1(rss_w[0] if rss_w else None), "end": _r1(rss_w[-1] if rss_w else None),
                        "max": _r1(max(rss_w) if rss_w else None),
                        "growth": _r1(rss_w[-1] - rss_w[0] if rss_w else None)},
        "node_diagnostics": {k: outputs.diag.get(k) for k in ("sets_received", "sets_processed", "detections_published",
                                                              "dropped_sets_newest_wins", "unmatched_camera_messages",
                                                              "bad_frames", "engine_errors", "latency_ms_p50",
                                                              "latency_ms_max")},
        "timeline": run.timeline,
    }


def engine_total_ms(window: dict) -> float | None:
    """The engine's own time per set in a window: p50 of engine_preprocess + inference + postprocess (ms)."""
    p50 = window.get("node_stage_ms", {}).get("p50", {})
    parts = [p50.get(k) for k in ("engine_preprocess", "inference", "postprocess")]
    return None if any(v is None for v in parts) else float(sum(parts))


def latency_rate(args: argparse.Namespace, first: dict) -> float | None:
    """Camera rate (Hz) of the latency window, or None for no such window."""
    if args.latency_rate == "off":
        return None
    if args.latency_rate != "auto":
        return float(args.latency_rate)
    engine = engine_total_ms(first)
    if engine is None:
        log("no engine timing from the node in the first window: no latency window")
        return None
    return 0.5 * 1000.0 / engine


def acceptance_checks(result: dict, latency_slack_ms: float = 25.0, rate_fraction: float = 0.9,
                      rss_growth_fraction: float = 0.02) -> list[dict]:
    """Issue 20's stream targets on a result of ``summarize`` (+ its ``latency_phase``), each as
    ``{check, window, value, limit, ok}``; ``ok`` is None where the window cannot decide it
    (cameras slower than the engine give no rate check; missing timing gives none)."""
    checks = []
    lat_window, lat_name = ((result["latency_phase"], "latency window") if result.get("latency_phase")
                            else (result, "main window"))
    engine = engine_total_ms(lat_window)
    lat = lat_window["node_pipeline_latency_ms"]["p50"]
    limit = None if engine is None else engine + latency_slack_ms
    checks.append({"check": f"node pipeline latency p50 <= engine total + {latency_slack_ms:g} ms",
                   "window": f"{lat_name} ({lat_window['input']['achieved_rate_hz']:g} Hz in)",
                   "value": lat, "limit": None if limit is None else round(limit, 1),
                   "ok": None if lat is None or limit is None else bool(lat <= limit)})
    engine = engine_total_ms(result)
    sustained = None if engine is None else 1000.0 / engine
    faster = sustained is not None and result["input"]["achieved_rate_hz"] > sustained
    want = None if sustained is None else rate_fraction * sustained
    checks.append({"check": f"output rate >= {rate_fraction:g} x 1000 / engine total ms (cameras faster than that)",
                   "window": f"main window ({result['input']['achieved_rate_hz']:g} Hz in)",
                   "value": result["output_rate_hz"], "limit": None if want is None else round(want, 3),
                   "ok": bool(result["output_rate_hz"] >= want) if faster else None})
    rss = result["node_rss_mb"]
    growth_limit = None if rss["start"] is None else rss_growth_fraction * rss["start"]
    checks.append({"check": f"node RSS growth <= {rss_growth_fraction:.0%} of its start over the window",
                   "window": f"main window ({result['input']['duration_s']:g} s)",
                   "value": rss["growth"], "limit": None if growth_limit is None else round(growth_limit, 1),
                   "ok": None if rss["growth"] is None else bool(rss["growth"] <= growth_limit)})
    return checks


def checks_table(checks: list[dict]) -> str:
    """Markdown table of ``acceptance_checks``."""
    lines = ["| check | window | value | limit | met |", "|---|---|---|---|---|"]
    for c in checks:
        met = {True: "yes", False: "**no**", None: "n/a"}[c["ok"]]
        lines.append(f"| {c['check']} | {c['window']} | {c['value']} | {c['limit']} | {met} |")
    return "\n".join(lines)


def write_result(args: argparse.Namespace, result: dict) -> None:
    """Add the machine (CPU model and ISA: int8 speed depends on VNNI); JSON to stdout and ``--json``."""
    from qdbev_core.hardware import machine_info

    result["machine"] = machine_info()
    print(f"stream_bench: {result['machine']['cpu_summary']}", file=sys.stderr)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the ROS variables must be in place before rclpy is imported (RosSession, CameraStream)
    os.environ.update({k: v for k, v in ros_env(args.domain_id).items() if k.startswith(("ROS_", "FASTDDS"))})
    tmp = tempfile.TemporaryDirectory(prefix="qdbev_stream_bench_")
    model = args.model or str(random_model(Path(tmp.name)))
    node_proc = NodeProcess.start(args, model)
    ros = RosSession(args.domain_id)
    try:
        cams = CameraStream(ros.node, args.transport, args.scale)
        outputs = NodeOutputs()
        outputs.subscribe(ros.node, rviz=args.rviz)
        wait_for_node(args, cams, ros, node_proc)
        log(f"node subscribed; streaming {args.rate:g} Hz x 6 {args.transport} {cams.width}x{cams.height} for "
            f"{args.warmup:g} s warm-up + {args.duration:g} s")
        run = stream(args, cams, ros, node_proc, outputs)
        result = summarize(args, cams, run, outputs)
        log_stages(result)
        rate2 = latency_rate(args, result)
        if rate2 is not None:
            slow = argparse.Namespace(**{**vars(args), "rate": rate2, "duration": args.latency_duration,
                                         "warmup": min(args.warmup, 5.0)})
            log(f"latency window: {rate2:.2f} Hz x 6 (slower than the engine) for {slow.warmup:g} s warm-up + "
                f"{slow.duration:g} s")
            run2 = stream(slow, cams, ros, node_proc, outputs, x_start=run.x_end + 10.0 / args.rate)
            result["latency_phase"] = summarize(slow, cams, run2, outputs)
            log_stages(result["latency_phase"])
        result["checks"] = acceptance_checks(result)
    finally:
        ros.close()
        node_proc.stop()
        tmp.cleanup()
    write_result(args, result)
    print(checks_table(result["checks"]), file=sys.stderr)
    return 0


def log_stages(window: dict) -> None:
    p50 = window["node_stage_ms"]["p50"]
    log("node stages p50 (ms), last camera -> published: "
        + (", ".join(f"{k} {v:.1f}" for k, v in p50.items()) or "none reported"))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"stream_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
