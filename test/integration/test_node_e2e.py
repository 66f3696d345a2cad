"""End to end over real rclpy between processes: six cameras in, Detection3DArray out.

The node runs as its own process (the venv's ``qdbev_node`` console script, else
``python -m qdbev_ros.node``) with ``config/qdbev.yaml`` and a random-weight ``nano`` model saved
to a temporary safetensors file. This test process publishes six raw cameras + CameraInfo +
``/tf_static`` (+ ``/tf`` odom -> base_link) and subscribes to the node's outputs (detections and
their velocities, markers, diagnostics, timings). Every process
uses ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a ``ROS_DOMAIN_ID`` of this test's own and
qdbev's Fast DDS profile.

``RigPublisher`` / ``NodeProcess`` / ``saved_random_model`` are shared with
``test_node_faults.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.data.rig import rig_arrays
from qdbev_core.types import CAMERA_NAMES
from ros_domain import test_domain_id  # noqa: E402  (re-exported to the other node tests)

REPO = Path(__file__).resolve().parents[2]
PARAMS_FILE = REPO / "config" / "qdbev.yaml"
IMAGE_SCALE = 0.25  # 400x225 images: cheap to publish, resized by the engine anyway
OFFSETS_S = {  # capture offsets of the nuScenes rig (span ~42 ms)
    "CAM_FRONT_LEFT": -0.0431, "CAM_FRONT": -0.0355, "CAM_FRONT_RIGHT": -0.0276,
    "CAM_BACK_RIGHT": -0.0201, "CAM_BACK": -0.0104, "CAM_BACK_LEFT": -0.0005,
}




SMALL_NANO = {"image_size": (96, 176), "bev_h": 24, "bev_w": 24, "num_queries": 60}
"""The node tests' random model: ``nano`` layers at a quarter of its input and BEV size (about a third
of its inference time), so that a node keeps up with the test rigs' 5 Hz sets on a loaded machine."""


def saved_random_model(folder: Path) -> Path:
    """A random-weight ``nano`` detector at ``SMALL_NANO`` sizes (seed 0) saved as safetensors +
    sidecar in ``folder``."""
    import torch

    from qdbev_core.checkpoint import save_weights
    from qdbev_core.model import BEVDetector

    path = folder / "nano_small_random.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        model = BEVDetector("nano", **SMALL_NANO)
        save_weights(model.state_dict(), path, {"config": model.cfg.to_dict()})
    return path


def ros_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_shm.xml")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "2"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    return env


RANDOM_MODEL_BACKEND = "onnxruntime"
"""Backend of the node tests on ``saved_random_model``: named, not config/qdbev.yaml's ``auto``, which
would time the model's execution paths at the session's first node start (minutes on a loaded
machine) inside these tests' timeouts. They test the node, not the path choice; onnxruntime is
what they ran before ``auto`` became the default (its export of the random model is cached)."""


class NodeProcess:
    """``qdbev_node`` as a subprocess; its merged stdout/stderr is collected line by line.

    ``backend`` is passed as ``-p backend:=...`` unless ``None`` (then the params file's, ``auto``).
    """

    def __init__(self, params: dict[str, str], domain_id: int, params_file: Path = PARAMS_FILE,
                 backend: str | None = RANDOM_MODEL_BACKEND) -> None:
        exe = Path(sys.executable).parent / "qdbev_node"
        cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "qdbev_ros.node"]
        cmd += ["--ros-args", "--params-file", str(params_file)]
        if backend is not None:
            params = {"backend": backend, **params}
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        self.cmd = cmd
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, env=ros_env(domain_id), cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def count(self, pattern: str, since: int = 0) -> int:
        """Log lines matching ``pattern`` (regex), from line ``since`` on."""
        return sum(1 for line in list(self.lines)[since:] if re.search(pattern, line))

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGINT (clean shutdown), then kill if it hangs (a starved CPU can take tens of seconds); exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode


class RigPublisher:
    """This process's rclpy side: six cameras + CameraInfo + TF out, the node's outputs in.

    ``publish_set(stamp)`` sends one image per camera at ``stamp + offset`` (nuScenes offsets) and
    the CameraInfos; ``override`` changes one camera's message (encoding, size, skip, stamp_offset
    in seconds). Received
    messages are appended to ``detections``, ``markers``, ``diagnostics`` and ``timings``.
    """

    def __init__(self, domain_id: int, node_name: str = "qdbev") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from qdbev_msgs.msg import ObjectVelocityArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Float64
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray
        from visualization_msgs.msg import MarkerArray

        from qdbev_ros.conversions import make_header
        from qdbev_ros.ros_io import make_camera_info, matrix_to_transform_stamped, rgb_to_image_msg

        self._make_header = make_header
        self._tf = matrix_to_transform_stamped
        self._Image, self._TFMessage, self._make_info = Image, TFMessage, make_camera_info
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("qdbev_test_rig", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.ks, self.ts = rig_arrays(IMAGE_SCALE)
        self.width, self.height = int(round(1600 * IMAGE_SCALE)), int(round(900 * IMAGE_SCALE))
        rng = np.random.default_rng(1)
        self.images = {
            n: rgb_to_image_msg(rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8),
                                make_header(0.0, n)) for n in CAMERA_NAMES
        }
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.img_pubs = {n: self.node.create_publisher(Image, f"/cameras/{n}/image_raw", reliable)
                         for n in CAMERA_NAMES}
        self.info_pubs = {n: self.node.create_publisher(CameraInfo, f"/cameras/{n}/camera_info", reliable)
                          for n in CAMERA_NAMES}
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static_pub = self.node.create_publisher(TFMessage, "/tf_static", latched)
        self.tf_pub = self.node.create_publisher(TFMessage, "/tf", 10)
        self.detections: list = []
        self.markers: list = []
        self.diagnostics: list = []
        self.timings: dict[str, list[float]] = {}
        ns = f"/{node_name}_node"
        self.node.create_subscription(Detection3DArray, f"{ns}/detections", self.detections.append, 10)
        self.velocities: list = []
        self.node.create_subscription(ObjectVelocityArray, f"{ns}/detections/velocity", self.velocities.append, 10)
        self.node.create_subscription(MarkerArray, f"{ns}/markers", self.markers.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        for k in ("processing_time/preprocess_ms", "processing_time/inference_ms",
                  "processing_time/postprocess_ms", "pipeline_latency_ms"):
            self.timings[k] = []
            self.node.create_subscription(Float64, f"{ns}/debug/{k}", lambda m, k=k: self.timings[k].append(m.data), 10)
        self.front_stamps: list[tuple[int, int]] = []

    # ---- publishing -------------------------------------------------------------------------------

    def publish_tf_static(self, cameras=CAMERA_NAMES) -> None:
        msg = self._TFMessage(transforms=[self._tf(self.ts[CAMERA_NAMES.index(n)], "base_link", n, 0.0)
                                          for n in cameras])
        self.tf_static_pub.publish(msg)

    def publish_infos(self, stamp: float, k_override: dict[str, np.ndarray] | None = None) -> None:
        for i, n in enumerate(CAMERA_NAMES):
            k = (k_override or {}).get(n, self.ks[i])
            self.info_pubs[n].publish(self._make_info(k, self.width, self.height, self._make_header(stamp, n)))

    def publish_set(self, stamp: float, override: dict[str, dict] | None = None, odom: bool = True,
                    k_override: dict[str, np.ndarray] | None = None) -> None:
        """One camera set at ``stamp`` (+ nuScenes offsets), its CameraInfos and an odom pose."""
        override = override or {}
        self.publish_infos(stamp, k_override)
        for n in CAMERA_NAMES:
            o = override.get(n, {})
            if o.get("skip"):
                continue
            t = stamp + OFFSETS_S[n] + o.get("stamp_offset", 0.0)
            header = self._make_header(t, n)
            if n == "CAM_FRONT":
                self.front_stamps.append((header.stamp.sec, header.stamp.nanosec))
            base = self.images[n]
            w, h = o.get("size", (base.width, base.height))
            enc = o.get("encoding", base.encoding)
            if (w, h) == (base.width, base.height) and enc == base.encoding:
                msg = self._Image(header=header, height=base.height, width=base.width, encoding=base.encoding,
                                  is_bigendian=0, step=base.step, data=base.data)
            else:
                bpp = 2 if enc.endswith("16") else 3
                msg = self._Image(header=header, height=h, width=w, encoding=enc, is_bigendian=0, step=bpp * w,
                                  data=bytes(bpp * w * h))
            self.img_pubs[n].publish(msg)
        if odom:
            pose = np.eye(4)
            pose[0, 3] = 10.0 * stamp % 1000.0  # 10 m/s along x
            self.tf_pub.publish(self._TFMessage(transforms=[self._tf(pose, "odom", "base_link", stamp)]))

    # ---- spinning ---------------------------------------------------------------------------------

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(end - time.monotonic(), 0.0)))

    def wait_for_node(self, node: NodeProcess, timeout: float) -> None:
        """Poll discovery until the node subscribes to the CameraInfo topic (no fixed sleeps)."""
        end = time.monotonic() + timeout
        while self.info_pubs["CAM_BACK_RIGHT"].get_subscription_count() < 1:
            assert node.proc.poll() is None, f"node exited ({node.proc.returncode}):\n{node.log}"
            assert time.monotonic() < end, f"node did not subscribe to camera_info in {timeout} s:\n{node.log}"
            self.spin_for(0.05)

    def wait_for_images_subscribed(self, node: NodeProcess, timeout: float) -> None:
        end = time.monotonic() + timeout
        while any(p.get_subscription_count() < 1 for p in self.img_pubs.values()):
            assert node.proc.poll() is None, f"node exited ({node.proc.returncode}):\n{node.log}"
            assert time.monotonic() < end, f"node did not subscribe to images in {timeout} s:\n{node.log}"
            self.publish_infos(0.0)
            self.spin_for(0.1)

    def stream_until(self, node: NodeProcess, cond: Callable[[], bool], timeout: float, start_stamp: float,
                     period: float = 0.2, **publish_kwargs) -> float:
        """Publish sets every ``period`` s (stamps advance by ``period``) until ``cond()``; next stamp."""
        stamp = start_stamp
        end = time.monotonic() + timeout
        while not cond():
            assert node.proc.poll() is None, f"node exited ({node.proc.returncode}):\n{node.log}"
            assert time.monotonic() < end, f"condition not met in {timeout} s; node log:\n{node.log}"
            self.publish_set(stamp, **publish_kwargs)
            stamp += period
            self.spin_for(period)
        return stamp

    def camera_status(self, camera: str):
        """The newest diagnostics status of a camera (or the pipeline), as (level, message, values)."""
        name = "qdbev_node: pipeline" if camera == "pipeline" else f"qdbev_node: camera {camera}"
        for arr in reversed(self.diagnostics):
            for st in arr.status:
                if st.name == name:
                    return st.level, st.message, {kv.key: kv.value for kv in st.values}
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_node_end_to_end(tmp_path: Path) -> None:
    t_start = time.monotonic()
    model = saved_random_model(tmp_path)
    domain = test_domain_id(0)
    rig = RigPublisher(domain)
    node = NodeProcess({"model": str(model), "score_threshold": "0.0", "max_detections": "50",
                        "marker_score_threshold": "0.0"}, domain)
    try:
        rig.wait_for_node(node, timeout=60)
        rig.publish_tf_static()
        rig.wait_for_images_subscribed(node, timeout=60)
        stamp = 1_700_000_000.0
        def done() -> bool:
            pipe = rig.camera_status("pipeline")
            # the latency of the first output reaches /diagnostics one record after its counter can
            return (len(rig.detections) >= 2 and pipe is not None and int(pipe[2]["detections_published"]) >= 1
                    and pipe[2]["latency_ms_p50"] != "n/a")

        rig.stream_until(node, done, 60, stamp)
        rig.spin_for(0.3)  # let the timing topics of the last frame arrive
    finally:
        code = node.stop()
        rig.close()
    elapsed = time.monotonic() - t_start
    log = node.log
    assert code == 0, f"node exit code {code}:\n{log}"
    assert "calibration complete" in log, log
    assert "ApproxTimeSync" in log or "ApproximateTimeSynchronizer" in log, log
    assert not re.search(r"\[(encoding|image_size|intrinsics|engine|internal)\]", log), log

    for msg in rig.detections:
        assert msg.header.frame_id == "base_link"
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in rig.front_stamps  # stamp = CAM_FRONT stamp
        assert 0 < len(msg.detections) <= 50
        for d in msg.detections:
            assert d.header.frame_id == "base_link" and d.header.stamp == msg.header.stamp
            assert d.results[0].hypothesis.class_id in CLASS_NAMES
            assert 0.0 <= d.results[0].hypothesis.score <= 1.0
            assert d.bbox.size.x > 0 and d.bbox.size.y > 0 and d.bbox.size.z > 0
            q = d.bbox.center.orientation
            assert q.x == 0.0 and q.y == 0.0 and abs(q.z * q.z + q.w * q.w - 1.0) < 1e-9
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in rig.detections]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # newest wins, never backwards
    # velocities: one ObjectVelocityArray per Detection3DArray, same header, one velocity per box
    from qdbev_ros.conversions import pair_by_stamp

    paired = pair_by_stamp(rig.detections, rig.velocities)
    assert not paired.without_velocity, (len(rig.detections), len(rig.velocities))
    assert all(v.header.frame_id == "base_link" for v in rig.velocities)

    assert rig.markers, "no markers"
    first = rig.markers[0].markers
    from visualization_msgs.msg import Marker

    assert first[0].action == Marker.DELETEALL
    assert {m.ns for m in first[1:]} >= {"boxes", "labels"}
    assert all(m.header.frame_id == "base_link" for m in first)
    for k, values in rig.timings.items():
        assert values and all(v >= 0.0 for v in values), k
    assert max(rig.timings["processing_time/inference_ms"]) > 0.0

    _, _, values = rig.camera_status("pipeline")  # /diagnostics: counters and latency
    assert values["state"] == "running" and int(values["sets_processed"]) >= 1
    assert float(values["latency_ms_p50"]) > 0.0 and values["engine_errors"] == "0"
    for cam in CAMERA_NAMES:
        _, _, values = rig.camera_status(cam)
        assert int(values["messages"]) >= 1 and float(values["rate_hz"]) >= 0.0
    assert elapsed < 60, f"end-to-end test took {elapsed:.1f} s"


def test_console_script_installed() -> None:
    """The venv exposes ``qdbev_node`` (setup.py console script) or ``python -m`` works."""
    exe = shutil.which("qdbev_node", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("qdbev_node console script not installed in this interpreter's bin/ (python -m is used)")
    assert Path(exe).read_text().count("qdbev_ros.node") == 1


def test_markers_message() -> None:
    """``detections_to_markers``: DELETEALL first, a cube + label per box, arrows only when moving."""
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from qdbev_core.types import Detections
    from qdbev_ros.conversions import detections_to_markers

    det = Detections(boxes=np.array([[10.0, -2.0, 0.8, 4.5, 1.9, 1.6, 0.5, 3.0, 4.0],
                                     [5.0, 3.0, 0.9, 0.7, 0.7, 1.8, 0.0, 0.0, 0.05]]),
                     scores=np.array([0.9, 0.4]), labels=np.array([0, 8]))
    arr = detections_to_markers(det, Header(frame_id="base_link"))
    ms = arr.markers
    assert ms[0].action == Marker.DELETEALL
    by_ns = {(m.ns, m.id): m for m in ms[1:]}
    assert set(by_ns) == {("boxes", 0), ("labels", 0), ("velocity", 0), ("boxes", 1), ("labels", 1)}
    cube = by_ns[("boxes", 0)]
    assert cube.type == Marker.CUBE and (cube.scale.x, cube.scale.y, cube.scale.z) == (4.5, 1.9, 1.6)
    assert (cube.pose.position.x, cube.pose.position.y, cube.pose.position.z) == (10.0, -2.0, 0.8)
    assert abs(cube.pose.orientation.z - np.sin(0.25)) < 1e-12 and 0 < cube.color.a < 1
    assert by_ns[("labels", 1)].text == "pedestrian 0.40"
    arrow = by_ns[("velocity", 0)]
    assert arrow.type == Marker.ARROW and (arrow.points[1].x, arrow.points[1].y) == (13.0, 2.0)
    assert all(m.header.frame_id == "base_link" for m in ms)
    assert len(detections_to_markers(Detections(), Header()).markers) == 1
