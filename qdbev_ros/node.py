"""``qdbev_node``: six synchronized cameras in, ``vision_msgs/Detection3DArray`` out.

Inner workings (the Autoware camera-BEV node pattern, docs/DESIGN.md §5):

1. Parameters are declared from ``qdbev_core.runtime.node_parameters`` (one list: type,
   default, range or choices, description, whether it can change at run time; values in
   ``config/qdbev.yaml``); bad values stop the node with one clear FATAL line (an integer literal for a float parameter is taken as the
   float). ``LIVE_PARAMETERS`` can change at run time (``ros2 param set``) and take effect with
   the next message; every other parameter is declared read-only, so ``SetParameters`` refuses
   it with a reason instead of accepting a value that would be ignored (docs/NODE.md).
2. The engine is loaded first (a missing or corrupt model file is fatal within seconds, naming
   the file). CameraInfo of all six cameras and their camera -> ``frame_id`` extrinsics (TF via
   ``tf2_ros`` when importable, else our own ``/tf_static`` subscription; or a calibration YAML)
   are collected and validated by ``qdbev_core.runtime.calibration``; the node reports what it is
   still waiting for in the log (once) and on ``/diagnostics``.
3. Only then are the images subscribed (sensor-data QoS). An approximate-time synchronizer
   (``qdbev_core.runtime.sync.ApproxTimeSync``, also where ``message_filters`` is importable: its queue
   overflow drops the newest message after a bag loop) groups the six streams; each
   complete set replaces the pending one in a one-slot mailbox (the replaced set is counted as
   dropped: newest wins, no backlog).
4. A worker thread (off the executor thread that receives images) hands the set to
   ``qdbev_core.runtime.processor.CameraSetProcessor`` (decode, assemble the ``Frame``, time
   checks, engine: the code offline replay runs) and publishes the velocities
   (``~/detections/velocity``, ``qdbev_msgs/ObjectVelocityArray``: ``vision_msgs/Detection3D``
   has no velocity field) and then the detections (``~/detections``, ``Detection3DArray``) with
   one header (stamp = CAM_FRONT's header stamp, ``frame_id`` parameter), markers and timings.
   Consumers pair the two by exact stamp (``qdbev_ros.conversions.msg_to_detections``).
   With ``publish_autoware_objects`` the same detections also go out as Autoware's
   ``autoware_perception_msgs/DetectedObjects`` on ``~/objects`` (``qdbev_ros.autoware``).

Bad input never stops the node: each problem is logged (rate-limited per (camera, kind) by
``qdbev_ros.log_limit.LogLimiter``: a new episode is logged, a burst is summarized), counted, and
reported on ``/diagnostics``; frames with bad images are skipped (no output rather than wrong
output). Time going backwards (a bag loop) or a forward gap longer than the temporal fusion's
``max_gap_s`` resets the engine's temporal state (logged and counted); an exception in the engine
skips that frame. A watchdog turns "images arrive but no camera set forms" (one camera's stamps
off the others') and "sets form but nothing is published" into ERROR after ``camera_timeout_s``,
naming the camera and its offset.

Run: ``ros2 run qdbev qdbev_node --ros-args --params-file config/qdbev.yaml`` or, from the venv,
``qdbev_node --ros-args --params-file config/qdbev.yaml`` / ``python -m qdbev_ros.node ...``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any


_STOP = threading.Event()
"""Set by SIGINT in the ``qdbev_node`` process: main() stops cleanly at the next safe point."""


def _request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """SIGINT handler of the console script: remember the request, raise nothing.

    A ``KeyboardInterrupt`` raised at a random point can land inside a pybind11 call of rclpy /
    onnxruntime and abort the process ("terminate called after throwing ... KeyboardInterrupt",
    exit -6). rclpy's own handler (chained before this one) shuts the context down, which ends
    the spin; before that, main() checks ``_STOP`` after each startup step.
    """
    _STOP.set()


if __name__ == "__main__" or Path(sys.argv[0]).name == "qdbev_node":
    # from the first line on: Ctrl-C while importing rclpy / numpy / torch (seconds on a loaded
    # machine; a launch system may stop it then) must not be a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, _request_stop)

from collections import deque

import numpy as np
import rclpy
import rclpy.time
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64, Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from qdbev_core.runtime.calibration import CalibrationInputs, CameraRig, load_extrinsics_yaml
from qdbev_core.runtime.errors import FrameAssemblyError
from qdbev_core.runtime.node_parameters import LIVE_PARAMETERS, NODE_PARAMETERS, PARAMETER_NAMES, NodeParameter
from qdbev_core.runtime.processor import (
    CameraSetProcessor,
    EgoPoseLookup,
    OutputLimits,
    Problem,
    SetResult,
    ns_seconds,
)
from qdbev_core.runtime.transforms import PoseHistory, StaticTransformTree
from qdbev_core.types import CAMERA_NAMES, Detections

from .autoware import detections_to_objects
from .conversions import detections_to_markers, detections_to_msg, stamp_to_seconds, velocities_to_msg
from .diagnostics import PIPELINE, DiagnosticsState
from .log_limit import LogLimiter
from .ros_io import camera_info_to_intrinsics, pose_to_matrix, transform_to_matrix
from .sync import SyncInput, make_synchronizer, stamp_ns

NODE_NAME = "qdbev_node"

__all__ = ["LIVE_PARAMETERS", "NODE_NAME", "NodeStartupError", "QdbevNode", "main", "spin_until_shutdown"]

RCLError = _rclpy_impl.RCLError


class NodeStartupError(RuntimeError):
    """A fatal configuration problem (bad parameter, model or calibration file)."""


def _tf2_ros():
    """The ``tf2_ros`` module, or ``None`` where it is not installed (PyPI wheels)."""
    try:
        import tf2_ros
    except ImportError:
        return None
    return tf2_ros


def resolve_config_path(value: str) -> Path:
    """A config file path: as given, else relative to the installed / source ``config/`` folder."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.is_file():
        return p
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("qdbev")) / "config" / p.name)
    except Exception:  # noqa: BLE001 - not installed / no ament index
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "config" / p.name)
    return next((c for c in candidates if c.is_file()), p)


def _descriptor(spec: NodeParameter, text: str) -> ParameterDescriptor:
    """The rclpy descriptor of a ``NodeParameter``: description, read-only flag and range."""
    extra: dict[str, Any] = {}
    if spec.low is not None and spec.type_name == "double":
        extra["floating_point_range"] = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                            step=0.0)]
    elif spec.low is not None and spec.type_name == "integer":
        extra["integer_range"] = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    return ParameterDescriptor(description=text, read_only=not spec.live, **extra)


class QdbevNode(Node):
    """The detector node (see the module docstring).

    Args:
        engine: an already built engine (tests); ``None`` loads ``model`` with ``load_engine``.
        node_name: ROS node name.
        **kwargs: passed to ``rclpy.node.Node`` (e.g. ``parameter_overrides``, ``context``).

    Raises ``NodeStartupError`` on a bad parameter, model or calibration file.
    """

    def __init__(self, engine=None, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.p = self._declare_parameters()
        self.camera_names: tuple[str, ...] = CAMERA_NAMES
        self.diag = DiagnosticsState(self.camera_names, self.p["camera_timeout_s"],
                                     error_hold_s=self.p["error_hold_s"])
        self._logged: set[tuple[str, str]] = set()
        self._limiter = LogLimiter()
        self._lock = threading.Lock()
        self._started = time.monotonic()

        # outputs
        self.pub_det = self.create_publisher(Detection3DArray, "~/detections", 10)
        self.pub_vel = self._velocity_publisher()
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 10) if self.p["publish_markers"] else None
        self.pub_objects = self._autoware_publisher()
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_time = {k: self.create_publisher(Float64, f"~/debug/processing_time/{k}_ms", 10)
                         for k in ("preprocess", "inference", "postprocess")}
        self.pub_latency = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", 10)
        self._diag_timer = self.create_timer(self.p["diagnostics_period_s"],
                                             lambda: self._guarded(self._publish_diagnostics))

        # engine first: a bad model fails in seconds, before any waiting for cameras
        self.engine = engine if engine is not None else self._load_engine()
        self.processor = CameraSetProcessor(self.engine, self, self.camera_names)

        # calibration inputs
        self._calib = CalibrationInputs(self.camera_names, self.p["frame_id"])
        self._info_problem: dict[str, str] = {}
        self._rig: CameraRig | None = None
        self._tf2 = _tf2_ros()
        self._tf_buffer = None
        self._static_tree = StaticTransformTree()
        self._poses = PoseHistory()
        self._setup_transforms()
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                              durability=DurabilityPolicy.VOLATILE)
        self._info_subs = [
            self.create_subscription(CameraInfo, topic, lambda m, i=i: self._guarded(self._on_camera_info, m, i),
                                     info_qos)
            for i, topic in enumerate(self.camera_info_topics)
        ]

        # images (subscribed once calibration is complete)
        self._image_subs: list = []
        self._inputs = [SyncInput() for _ in self.camera_names]
        # always our synchronizer: message_filters' drops the newest message of a full queue after
        # a jump back in time and never flushes, so a bag loop stalls it (issue 18)
        self.sync = make_synchronizer(self._inputs, self.p["queue_size"], self.p["slop"], self._on_set,
                                      prefer_fallback=True)
        self._arrivals: dict[tuple[int, int], float] = {}
        self._last_cam_stamp: list[int | None] = [None] * len(self.camera_names)
        self._latest: list[Any] = [None] * len(self.camera_names)
        self._used = [0] * len(self.camera_names)
        self._last_degraded_ns = -1
        # watchdog: stamp - receipt per camera (seconds), last set / output, live-since
        self._stamp_skew = [deque(maxlen=8) for _ in self.camera_names]
        self._last_set_mono: float | None = None
        self._last_output_mono: float | None = None
        self._skipped_since_output = 0
        self._offset_since: float | None = None

        # worker: one-slot mailbox, newest set wins
        self._cv = threading.Condition()
        self._pending: tuple | None = None
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="qdbev_worker", daemon=True)
        self._worker.start()

        self._startup_timer = self.create_timer(0.2, lambda: self._guarded(self._check_startup))
        self._last_watchdog = time.monotonic()
        self._watchdog = self.create_timer(0.1, lambda: self._guarded(self._check_cameras))
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        extr = (f"TF {self.p['frame_id']} <- camera" if self.p["calibration_source"] == "tf"
                else self.p["calibration_file"])
        self.get_logger().info(
            f"qdbev_node: engine {getattr(self.engine, 'name', type(self.engine).__name__)} "
            f"ready; waiting for CameraInfo on {', '.join(self.camera_info_topics)} and extrinsics ({extr}); "
            f"synchronizer: {type(self.sync).__module__}.{type(self.sync).__name__}"
        )

    # ---- parameters ------------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare ``NODE_PARAMETERS`` (descriptions, ranges, read-only unless live) and check them."""
        p: dict[str, Any] = {}
        for spec in NODE_PARAMETERS:
            text = spec.description + (" Changeable at run time." if spec.live else
                                       " Read-only at run time: set it at startup (params file / -p) and restart "
                                       "to change it.")
            self._coerce_override(spec.name, spec.default)
            try:
                p[spec.name] = self.declare_parameter(spec.name, spec.default, _descriptor(spec, text)).value
            except Exception as exc:  # noqa: BLE001 - rclpy raises several parameter exception types
                raise NodeStartupError(f"parameter {spec.name!r}: {exc}") from exc
        for spec in NODE_PARAMETERS:
            problem = spec.problem(p[spec.name])
            if problem:
                raise NodeStartupError(problem)
        if not p["model"]:
            raise NodeStartupError("parameter 'model' is empty: set it to a name in models/manifest.yaml or a "
                                   ".safetensors path (e.g. --ros-args -p model:=models/nano-fp32-yaw.safetensors)")
        for name in ("image_topics", "camera_info_topics"):
            if len(p[name]) != len(CAMERA_NAMES):
                raise NodeStartupError(f"parameter {name!r} has {len(p[name])} entries; give six (order "
                                       f"{', '.join(CAMERA_NAMES)}), empty strings for the defaults")
        ns = p["camera_namespace"].rstrip("/")
        suffix = "image_raw" if p["image_transport"] == "raw" else "image_raw/compressed"
        self.image_topics = [t or f"{ns}/{c}/{suffix}" for t, c in zip(p["image_topics"], CAMERA_NAMES)]
        self.camera_info_topics = [t or f"{ns}/{c}/camera_info" for t, c in zip(p["camera_info_topics"], CAMERA_NAMES)]
        self._validate_topics(p)
        return p

    def _validate_topics(self, p: dict[str, Any]) -> None:
        """Every topic the node will subscribe to is a valid ROS name and no camera shares one;
        otherwise a ``NodeStartupError`` naming the parameter (not a traceback after calibration)."""
        from rclpy.exceptions import InvalidTopicNameException
        from rclpy.validate_topic_name import validate_topic_name

        lists = {"image_topics": self.image_topics, "camera_info_topics": self.camera_info_topics}
        if p["ego_pose_source"] == "odometry":
            lists["odometry_topic"] = [p["odometry_topic"]]
        for name, topics in lists.items():
            for topic in topics:
                try:
                    validate_topic_name(topic)
                except InvalidTopicNameException as exc:
                    raise NodeStartupError(f"parameter {name!r}: {topic!r} is not a valid topic name: "
                                           f"{str(exc).splitlines()[0]}") from None
            dup = sorted({t for t in topics if topics.count(t) > 1})
            if dup:
                raise NodeStartupError(f"parameter {name!r}: {dup[0]!r} is given for more than one camera")

    def _coerce_override(self, name: str, default: Any) -> None:
        """An integer override of a float parameter (``-p score_threshold:=1``) becomes that float.

        rclpy would refuse it as a type mismatch, which stops the node; ``1`` for a threshold is
        clearly ``1.0``. (The overrides dict is rclpy's own; there is no public setter.)
        """
        overrides = getattr(self, "_parameter_overrides", None)
        given = None if overrides is None else overrides.get(name)
        if isinstance(default, float) and given is not None and given.type_ == Parameter.Type.INTEGER:
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(given.value))

    def _coerce_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Pre-set callback: integers for float parameters become floats (as at startup)."""
        out = []
        for prm in params:
            if prm.type_ == Parameter.Type.INTEGER and self._declared_type(prm.name) == Parameter.Type.DOUBLE:
                prm = Parameter(prm.name, Parameter.Type.DOUBLE, float(prm.value))
            out.append(prm)
        return out

    def _declared_type(self, name: str) -> Parameter.Type | None:
        try:
            return Parameter.Type(self.describe_parameter(name).type)
        except Exception:  # noqa: BLE001 - not declared
            return None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Apply run-time changes of ``LIVE_PARAMETERS``; refuse anything else with the reason.

        (rclpy refuses read-only parameters before this callback; the check here covers
        parameters declared without the flag by a subclass.)
        """
        for prm in params:
            if prm.name not in LIVE_PARAMETERS and prm.name in PARAMETER_NAMES:
                return SetParametersResult(successful=False, reason=(
                    f"{prm.name} cannot change while the node runs (it is used once at startup); "
                    f"restart the node with -p {prm.name}:=<value> or the params file"))
        new = dict(self.p)
        new.update({prm.name: prm.value for prm in params if prm.name in PARAMETER_NAMES})
        try:
            self._apply_live(new)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        changed = ", ".join(f"{prm.name}={prm.value!r}" for prm in params)
        self.get_logger().info(f"parameters changed at run time: {changed}")
        return SetParametersResult(successful=True)

    def _apply_live(self, new: dict[str, Any]) -> None:
        """Make the live parameters of ``new`` effective (ValueError, nothing changed, if not possible)."""
        sync = getattr(self, "sync", None)
        if (new["slop"], new["queue_size"]) != (self.p["slop"], self.p["queue_size"]):
            if not hasattr(sync, "configure"):
                raise ValueError(f"slop / queue_size cannot change on {type(sync).__name__}; restart the node")
            sync.configure(new["queue_size"], new["slop"])
        engine = getattr(self, "engine", None)
        if engine is not None and hasattr(engine, "score_threshold"):
            engine.score_threshold = float(new["score_threshold"])  # lower thresholds need the engine's
        if engine is not None and hasattr(engine, "topk"):
            engine.topk = int(new["max_detections"])
        self.diag.camera_timeout_s = float(new["camera_timeout_s"])
        self.diag.error_hold_s = float(new["error_hold_s"])
        self.p = new

    def _velocity_publisher(self):
        """``~/detections/velocity`` publisher, or ``None`` (one warning) where qdbev_msgs is missing."""
        try:
            from qdbev_msgs.msg import ObjectVelocityArray
        except ImportError as exc:
            self.get_logger().warning(
                f"qdbev_msgs is not importable ({exc}): ~/detections/velocity is not published, so consumers "
                "get no object velocities. Build ros_interfaces/qdbev_msgs (`make setup`, or add it to the colcon "
                "workspace)")
            return None
        return self.create_publisher(ObjectVelocityArray, "~/detections/velocity", 10)

    def _autoware_publisher(self):
        """``~/objects`` publisher where ``publish_autoware_objects`` is on, else ``None``.

        Asked for but ``autoware_perception_msgs`` not importable: a FATAL startup error (the
        user wants the output; silently leaving it out would starve the Autoware stack).
        """
        if not self.p["publish_autoware_objects"]:
            return None
        try:
            from autoware_perception_msgs.msg import DetectedObjects
        except ImportError as exc:
            raise NodeStartupError(
                f"publish_autoware_objects is true but autoware_perception_msgs is not importable ({exc}): "
                "install Autoware's package (ros-<distro>-autoware-perception-msgs) or build "
                "ros_interfaces/autoware_perception_msgs (`make setup`, or add it to the colcon workspace)") from exc
        return self.create_publisher(DetectedObjects, "~/objects", 10)

    def _load_engine(self):
        from qdbev_core.engine import load_engine

        model = self.p["model"]
        try:
            return load_engine(model, backend=self.p["backend"], device=self.p["device"],
                               score_threshold=self.p["score_threshold"], topk=self.p["max_detections"])
        except Exception as exc:  # noqa: BLE001 - every load failure is fatal with the file named
            raise NodeStartupError(f"cannot load model {model!r} (backend {self.p['backend']}, device "
                                   f"{self.p['device']}): {exc}") from exc

    # ---- logging / counting helpers -------------------------------------------------------------

    def _report(self, source: str, kind: str, message: str, level: str = "error", log_key: str | None = None,
                magnitude: float | None = None) -> None:
        """Count a problem in diagnostics; log it rate-limited per (source, kind) (``LogLimiter``).

        A new episode of the problem is logged, and so is one whose ``magnitude`` (a time jump's
        size) clearly exceeds the episode's so far; within a burst one line per ``repeat_s`` says
        how many occurrences were only counted.
        """
        self.diag.record_error(source, kind, message)
        self._log_limited((source, log_key or kind), level, f"[{kind}] {message}", magnitude)

    def _log_limited(self, key: tuple[str, str], level: str, text: str, magnitude: float | None = None) -> None:
        decision = self._limiter.check(key, magnitude)
        if not decision.log:
            return
        lim = self._limiter
        if decision.new_episode:
            note = f"repeats within {lim.quiet_s:g} s are counted on /diagnostics, one line per {lim.repeat_s:g} s"
        else:
            note = f"still happening: {decision.suppressed} more since the last line, counted on /diagnostics"
        self._emit(level, f"{text} ({note})")

    def _log_once(self, key: tuple[str, str], level: str, message: str) -> None:
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        if first:
            self._emit(level, message)

    def _emit(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warning":
            logger.warning(text)
        else:
            logger.info(text)

    # ---- calibration ------------------------------------------------------------------------------

    def _setup_transforms(self) -> None:
        src, ego = self.p["calibration_source"], self.p["ego_pose_source"]
        if src == "file":
            path = resolve_config_path(self.p["calibration_file"])
            try:
                self._calib.extrinsics.update(
                    load_extrinsics_yaml(path, self.camera_names, target_frame=self.p["frame_id"]))
            except (OSError, ValueError) as exc:
                raise NodeStartupError(f"calibration file {path}: {exc}") from exc
        need_tf = src == "tf" or ego == "tf"
        if need_tf and self._tf2 is not None:
            self._tf_buffer = self._tf2.Buffer()
            self._tf_listener = self._tf2.TransformListener(self._tf_buffer, self)
        elif need_tf:
            # fallback without tf2_ros: our own /tf_static (+ /tf) subscriptions
            from tf2_msgs.msg import TFMessage

            static_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
            if src == "tf":
                self._tf_static_sub = self.create_subscription(
                    TFMessage, "/tf_static", lambda m: self._guarded(self._on_tf_static, m), static_qos)
            if ego == "tf":
                self._tf_sub = self.create_subscription(TFMessage, "/tf", lambda m: self._guarded(self._on_tf, m), 100)
        if ego == "odometry":
            from nav_msgs.msg import Odometry

            self._odom_sub = self.create_subscription(Odometry, self.p["odometry_topic"],
                                                     lambda m: self._guarded(self._on_odometry, m), 50)

    def _on_tf_static(self, msg) -> None:
        for tf in msg.transforms:
            self._static_tree.set(tf.header.frame_id, tf.child_frame_id, transform_to_matrix(tf))

    def _on_tf(self, msg) -> None:
        odom, base = self.p["odom_frame"].lstrip("/"), self.p["frame_id"].lstrip("/")
        for tf in msg.transforms:
            if tf.header.frame_id.lstrip("/") == odom and tf.child_frame_id.lstrip("/") == base:
                self._poses.add(stamp_to_seconds(tf.header.stamp), transform_to_matrix(tf))

    def _on_odometry(self, msg) -> None:
        self._poses.add(stamp_to_seconds(msg.header.stamp), pose_to_matrix(msg.pose))

    def _on_camera_info(self, msg: CameraInfo, index: int) -> None:
        cam = self.camera_names[index]
        k, w, h, frame = camera_info_to_intrinsics(msg)
        try:
            changed = self._calib.set_camera_info(cam, k, w, h, frame)
        except FrameAssemblyError as exc:
            have = cam in self._calib.intrinsics
            then = ("ignoring this CameraInfo, the last valid calibration stays in use" if have
                    else "the camera stays uncalibrated")
            self._report(cam, exc.kind, f"{exc}; {then}")
            if not have:
                self._info_problem[cam] = exc.reason
            return
        self._info_problem.pop(cam, None)
        if changed:
            self._build_rig()  # calibration changed while running (e.g. new resolution)
            self.get_logger().info(f"{cam}: new CameraInfo {w}x{h} applied")

    def _lookup_extrinsics(self, cam: str) -> tuple[np.ndarray | None, str]:
        """``(cam2ego or None, what is missing)`` for one camera."""
        if self.p["calibration_source"] == "file":
            return self._calib.extrinsics.get(cam), f"{cam} in {self.p['calibration_file']}"
        if cam not in self._calib.intrinsics:
            return None, "CameraInfo (its frame_id names the TF frame)"
        frame = self._calib.intrinsics[cam][3]
        target = self.p["frame_id"]
        if not frame:
            return None, "a non-empty CameraInfo header.frame_id (needed for the TF lookup)"
        what = f"TF {target} <- {frame}"
        if self._tf_buffer is not None:
            try:
                tf = self._tf_buffer.lookup_transform(target, frame, rclpy.time.Time())
            except Exception:  # noqa: BLE001 - tf2 lookup/connectivity/extrapolation errors
                return None, what
            return transform_to_matrix(tf), what
        return self._static_tree.lookup(target, frame), what + " on /tf_static"

    def _check_startup(self) -> None:
        """Until every camera is calibrated: collect, validate, report; then subscribe images."""
        if self._rig is not None:
            return
        waited = time.monotonic() - self._started
        all_ok = True
        for cam in self.camera_names:
            missing = ""
            if cam not in self._calib.intrinsics:
                missing = f"valid CameraInfo on {self.camera_info_topics[self.camera_names.index(cam)]}"
                if cam in self._info_problem:
                    missing += f" (last one rejected: {self._info_problem[cam]})"
            else:
                t, what = self._lookup_extrinsics(cam)
                if t is None:
                    missing = f"extrinsics: {what}"
                else:
                    self._calib.extrinsics[cam] = t
            if missing:
                all_ok = False
                self.diag.set_calibration(cam, missing)
                if waited > 2.0:
                    kind = "extrinsics_missing" if missing.startswith("extrinsics") else "camera_info_missing"
                    self._log_once((cam, "waiting_" + kind), "warning",
                                   f"{cam}: still waiting for {missing} (node starts once all six cameras are "
                                   "calibrated)")
        if all_ok and self._build_rig():
            self._subscribe_images()

    def _build_rig(self) -> bool:
        """Build the rig from the calibration received so far; report the first bad camera."""
        try:
            rig = self._calib.build()
        except FrameAssemblyError as exc:
            ok = self.camera_names[:self.camera_names.index(exc.camera)] if exc.camera in self.camera_names else ()
            for cam in ok:  # the cameras before the bad one are fine
                self.diag.set_calibration(cam, "")
            self._report(exc.camera, exc.kind, str(exc))
            self.diag.set_calibration(exc.camera, exc.reason)
            return False
        for cam in self.camera_names:
            self.diag.set_calibration(cam, "")
        self._rig = rig
        return True

    def _subscribe_images(self) -> None:
        msg_type = Image if self.p["image_transport"] == "raw" else CompressedImage
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.p["image_qos_depth"],
                         reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
        self._image_subs = [
            self.create_subscription(msg_type, topic, lambda m, i=i: self._guarded(self._on_image, m, i), qos)
            for i, topic in enumerate(self.image_topics)
        ]
        self._startup_timer.cancel()
        self.diag.start_running()
        sizes = ", ".join(f"{c} {c_.width}x{c_.height}" for c, c_ in self._rig.calibrations.items())
        self.get_logger().info(f"calibration complete ({sizes}); subscribed to {msg_type.__name__} on "
                               f"{', '.join(self.image_topics)}")

    # ---- images and synchronization (executor thread) -------------------------------------------

    def _guarded(self, fn, *args) -> None:
        """Run a subscription/timer callback; an unexpected exception is reported, never fatal."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the executor must keep running
            if not self.context.ok():
                return  # Ctrl-C shut the context down under this callback (publish fails): not a fault
            self._report(PIPELINE, "internal", f"unexpected {type(exc).__name__} in {fn.__name__}: {exc}\n"
                         f"{traceback.format_exc()}")

    def _on_image(self, msg, index: int) -> None:
        cam = self.camera_names[index]
        now = time.monotonic()
        self.diag.record_image(cam, now)
        t = stamp_ns(msg.header.stamp)
        last = self._last_cam_stamp[index]
        if last is not None and t == last:
            self._report(cam, "duplicate_stamp", f"{cam}: two images with the same stamp {t * 1e-9:.6f} s; "
                         "the repeat is ignored", level="warning")
            self.diag.count("duplicate_stamp")
            return
        if last is not None and t < last:
            self._stamp_skew[index].clear()  # the camera's offset before the jump no longer applies
            self._report(cam, "out_of_order", f"{cam}: stamp went backwards by {(last - t) * 1e-9:.3f} s "
                         "(out-of-order delivery or a bag loop)", level="warning", magnitude=(last - t) * 1e-9)
        self._last_cam_stamp[index] = t
        self._stamp_skew[index].append(t * 1e-9 - now)
        self._latest[index] = msg
        with self._lock:
            self._arrivals[(index, t)] = now
            if len(self._arrivals) > 64 * len(self.camera_names):
                for key in sorted(self._arrivals, key=self._arrivals.get)[: 16 * len(self.camera_names)]:
                    del self._arrivals[key]
        self._inputs[index].signalMessage(msg)
        if self.p["allow_missing_cameras"]:
            self._try_degraded_set(now)

    def _on_set(self, *msgs) -> None:
        """Synchronizer output: hand the set to the worker (newest wins)."""
        self._push(list(msgs), degraded=False)

    def _push(self, msgs: list, degraded: bool) -> None:
        with self._lock:
            arrivals = [self._arrivals.pop((i, stamp_ns(m.header.stamp)), None)
                        for i, m in enumerate(msgs) if m is not None]
            for i, m in enumerate(msgs):
                if m is not None:
                    self._used[i] += 1
        first = min((a for a in arrivals if a is not None), default=time.monotonic())
        self._last_set_mono = time.monotonic()
        self.diag.count("sets_received")
        with self._cv:
            if self._pending is not None:
                self.diag.count("dropped_sets")
            self._pending = (msgs, first, degraded)
            self._cv.notify()

    def _try_degraded_set(self, now: float) -> None:
        """allow_missing_cameras: a set of the live cameras' newest images when some are stale."""
        stale = set(self.diag.stale_cameras())
        if not stale or len(stale) == len(self.camera_names):
            return
        live = [i for i, c in enumerate(self.camera_names) if c not in stale]
        if any(self._latest[i] is None for i in live):
            return
        ts = [stamp_ns(self._latest[i].header.stamp) for i in live]
        if max(ts) - min(ts) >= int(self.p["slop"] * 1e9) or min(ts) <= self._last_degraded_ns:
            return
        self._last_degraded_ns = max(ts)
        self._log_limited((PIPELINE, "degraded"), "warning",
                       f"running without camera(s) {', '.join(sorted(stale))} (allow_missing_cameras=true): "
                       "black images stand in for them; detections in their view are unreliable")
        self._push([self._latest[i] if i in live else None for i in range(len(self.camera_names))], degraded=True)

    def _check_cameras(self) -> None:
        """Camera timeouts (log each transition) and unmatched-message counts.

        A tick that comes late (the executor thread was busy) does not judge timeouts: images may
        be waiting in the subscriptions' queues, and they are taken before the next tick.
        """
        now = time.monotonic()
        late = now - self._last_watchdog > 0.3
        self._last_watchdog = now
        for cam, stale, age in ([] if late else self.diag.update_staleness()):
            if stale:
                what = ("black images stand in for it (allow_missing_cameras=true)" if self.p["allow_missing_cameras"]
                        else "no detections are published until it is back")
                self.diag.record_error(cam, "timeout", f"no image for {age:.1f} s")
                topic = self.image_topics[self.camera_names.index(cam)]
                self.get_logger().error(f"[timeout] {cam}: no image for {age:.1f} s (camera_timeout_s "
                                        f"{self.p['camera_timeout_s']:g}) on {topic}; {what}")
            else:
                self.get_logger().info(f"{cam}: images are arriving again")
        if not late:
            self._check_stall(now)
        queues = getattr(self.sync, "queues", None)
        with self._lock:
            unmatched = {}
            for i, cam in enumerate(self.camera_names):
                queued = len(queues[i]) if queues is not None else 0
                received = self.diag.received(cam)
                unmatched[cam] = max(0, received - self._used[i] - queued)
        self.diag.set_unmatched(unmatched)

    def _stamp_offsets(self, cameras: Sequence[int]) -> dict[str, float]:
        """Each camera's stamp offset (s) from the median camera, from stamp - receipt time.

        Per camera the largest of its last 8 ``stamp - receipt`` values: a late receipt (a busy
        executor) only lowers the value, so the largest is the nearest to the true offset.
        """
        skews = {self.camera_names[i]: max(self._stamp_skew[i]) for i in cameras if self._stamp_skew[i]}
        if not skews:
            return {}
        median = float(np.median(list(skews.values())))
        return {cam: v - median for cam, v in skews.items()}

    def _stall_verdict(self, now: float) -> tuple[str, str | None, str] | None:
        """``(pipeline message, camera, camera message)`` of a stall, ``("", None, "")`` for none, or
        ``None`` while it cannot be judged (not running; a stopped camera, reported as such).

        A stall: all required cameras deliver images, yet one camera's stamps are more than
        ``camera_timeout_s`` off the others' (it is as stale as a stopped camera, whether or not its
        queued images still pair with the others'), or no camera set formed for longer than
        ``camera_timeout_s``, or sets form but none was published for that long.
        """
        timeout = self.p["camera_timeout_s"]
        stale = set(self.diag.stale_cameras())
        live = [i for i, c in enumerate(self.camera_names) if c not in stale]
        running = self.diag.running_since
        if self._rig is None or running is None or not live or (stale and not self.p["allow_missing_cameras"]):
            return None  # not running yet, or a stopped camera (reported as such) explains it
        offsets = self._stamp_offsets(live)
        cam, off = max(offsets.items(), key=lambda kv: abs(kv[1]), default=(None, 0.0))
        where = "ahead of" if off > 0 else "behind"
        if cam is None or abs(off) <= timeout:
            self._offset_since = None
        elif self._offset_since is None:
            self._offset_since = now  # must last camera_timeout_s: cameras of a bag loop jump one by one
        if self._offset_since is not None and now - self._offset_since > timeout:
            cam_msg = (f"stamps {abs(off):.3f} s {where} the other cameras' (more than camera_timeout_s "
                       f"{timeout:g}): check this camera's clock / driver")
            return (f"{cam}'s stamps are {off:+.3f} s off the other cameras' (more than camera_timeout_s "
                    f"{timeout:g}): its images cannot be paired with theirs in time", cam, cam_msg)
        # measured from the last set, not from when a stopped camera came back: a camera that
        # returns with bad stamps must not reset the clock (diagnostics would flap to OK)
        no_set = now - max(self._last_set_mono or 0.0, running)
        if no_set > timeout:
            head = (f"no camera set for {no_set:.1f} s although the cameras deliver images "
                    f"(camera_timeout_s {timeout:g})")
            if cam is not None and abs(off) >= self.p["slop"]:
                cam_msg = (f"stamps {abs(off):.3f} s {where} the other cameras' (slop {self.p['slop']:g} s): "
                           "no set can form; check this camera's clock / driver")
                return f"{head}: {cam}'s stamps are {off:+.3f} s off the others'", cam, cam_msg
            spread = max((abs(v) for v in offsets.values()), default=0.0)
            return (f"{head}; their stamps agree within {spread:.3f} s: check slop "
                    f"({self.p['slop']:g} s) and queue_size", None, "")
        no_output = now - max(self._last_output_mono or 0.0, running)
        if self._skipped_since_output > 0 and no_output > timeout:
            last = self.diag.last_error_text()
            return (f"camera sets arrive but nothing was published for {no_output:.1f} s "
                    f"({self._skipped_since_output} sets skipped; last problem: {last or 'none recorded'})",
                    None, "")
        return "", None, ""

    def _check_stall(self, now: float) -> None:
        """Watchdog: report a stall (ERROR on /diagnostics, one log line per episode) and its end."""
        verdict = self._stall_verdict(now)
        if verdict is None:
            return  # keep the current state: a camera flapping stale under load ends no stall
        msg, cam, cam_msg = verdict
        was = self.diag.stall
        self.diag.set_stall(msg, cam, cam_msg)
        if msg and not was:
            self.diag.count("stalls")
            self._emit("error", f"[stall] {msg}")
        elif was and not msg:
            self.get_logger().info("camera sets form and are published again (stall over)")

    # ---- worker thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._stop:
                    self._cv.wait(0.5)
                if self._stop:
                    return
                item, self._pending = self._pending, None
            try:
                if self.process_set(*item) is None:
                    self._skipped_since_output += 1
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if self._stop or not self.context.ok():
                    # Ctrl-C shuts the context down before destroy_node() stops this thread: the
                    # set in flight cannot be published any more. That is shutdown, not a fault.
                    return
                self._report(PIPELINE, "internal", f"unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    def _ego_pose_lookup(self) -> EgoPoseLookup | None:
        """The ego pose source of the next set (``ego_pose_source``; tf2 where installed, else our history)."""
        src, tol = self.p["ego_pose_source"], self.p["ego_pose_tolerance_s"]
        if src == "none":
            return None
        lookup = self._ego_pose_tf2 if src == "tf" and self._tf_buffer is not None else self._ego_pose_history
        what = (f"TF {self.p['odom_frame']} -> {self.p['frame_id']}" if src == "tf"
                else f"nav_msgs/Odometry on {self.p['odometry_topic']}")
        return EgoPoseLookup(lookup, f"{what} within {tol:g} s")

    def _ego_pose_tf2(self, ns: int) -> np.ndarray | None:
        """``odom_frame <- frame_id`` from tf2 at stamp ``ns`` (interpolated), or ``None``."""
        try:
            tf = self._tf_buffer.lookup_transform(self.p["odom_frame"], self.p["frame_id"],
                                                  rclpy.time.Time(nanoseconds=ns))
        except Exception:  # noqa: BLE001 - no pose yet / extrapolation
            return None
        return transform_to_matrix(tf)

    def _ego_pose_history(self, ns: int) -> np.ndarray | None:
        """The pose from /tf or odometry nearest to stamp ``ns`` within ``ego_pose_tolerance_s``, or ``None``."""
        return self._poses.lookup(ns_seconds(ns), self.p["ego_pose_tolerance_s"])

    def process_set(self, msgs: Sequence[Any], arrival: float | None = None,
                    degraded: bool = False) -> Detections | None:
        """Process one camera set (``CameraSetProcessor``) and publish the result (worker thread;
        callable in tests).

        Returns the detections, or ``None`` when the set was skipped (reason logged and counted).
        """
        arrival = time.monotonic() if arrival is None else arrival
        rig = self._rig
        if rig is None:
            return None
        limits = OutputLimits(self.p["score_threshold"], self.p["max_detections"])
        result = self.processor.process(rig, msgs, limits, ego_pose=self._ego_pose_lookup(), degraded=degraded,
                                        dropped_sets=self.diag.counters["dropped_sets"])
        if result.detections is None:
            return None
        self._publish(result, arrival)
        return result.detections

    def _publish(self, result: SetResult, arrival: float) -> None:
        """Velocities, detections, Autoware objects, markers, timings of one processed set."""
        det = result.detections
        header = Header(frame_id=self.p["frame_id"], stamp=Time(sec=result.stamp_ns // 1_000_000_000,
                                                                 nanosec=result.stamp_ns % 1_000_000_000))
        if self.pub_vel is not None:  # first, so it is there when a consumer sees the detections
            self.pub_vel.publish(velocities_to_msg(det, header))
        self.pub_det.publish(detections_to_msg(det, header))
        if self.pub_objects is not None:
            self.pub_objects.publish(detections_to_objects(det, header, self.p["autoware_obstacle_label"]))
        if self.pub_markers is not None:
            self.pub_markers.publish(detections_to_markers(det, header, min_score=self.p["marker_score_threshold"]))
        for k, v in result.stages_ms.items():
            self.pub_time[k].publish(Float64(data=v))
        latency = (time.monotonic() - arrival) * 1e3
        self.pub_latency.publish(Float64(data=latency))
        self.diag.record_output(latency, {f"{k}_ms": v for k, v in result.stages_ms.items()})
        self._last_output_mono = time.monotonic()
        self._skipped_since_output = 0

    # ---- ProblemSink of the processor ---------------------------------------------------------------

    def count(self, name: str) -> None:
        """Count ``name`` on /diagnostics (``ProblemSink``)."""
        self.diag.count(name)

    def problem(self, problem: Problem) -> None:
        """Report a processor ``Problem``: held on /diagnostics and logged, or only logged (rate-limited)."""
        if problem.held:
            self._report(problem.source, problem.kind, problem.message, level=problem.level,
                         log_key=problem.log_key, magnitude=problem.magnitude)
        else:
            self._log_limited((problem.source, problem.log_key or problem.kind), problem.level, problem.message,
                              problem.magnitude)
        if problem.detail:
            self.get_logger().debug(problem.detail)

    # ---- diagnostics / shutdown --------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self.pub_diag.publish(self.diag.build(header, self.p["allow_missing_cameras"]))

    def destroy_node(self) -> None:
        cv, worker = getattr(self, "_cv", None), getattr(self, "_worker", None)  # absent if __init__ failed
        if cv is not None:
            with cv:
                self._stop = True
                cv.notify_all()
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=10.0)
        super().destroy_node()


def spin_until_shutdown(executor, context) -> None:
    """Spin ``executor`` until Ctrl-C or shutdown of ``context``; shutdown is never an error.

    rclpy's SIGINT handler shuts the context down asynchronously: when that lands between the
    executor's ``context.ok()`` check and its wait-set creation, rclpy raises ``RCLError`` ("failed
    to initialize wait set: the given context is not valid") instead of returning. That is the
    shutdown the user asked for, so it ends the spin like ``KeyboardInterrupt`` does; an
    ``RCLError`` while the context is still valid is a real error and propagates.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if context.ok():
            raise


def main(args: list[str] | None = None) -> int:
    """Console script ``qdbev_node``: run the node until Ctrl-C / shutdown; 1 on a fatal error.

    Ctrl-C at any moment (while the engine loads, while spinning, during cleanup) exits 0.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _request_stop)
    try:
        return _run(args)
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0


def _run(args: list[str] | None) -> int:
    if _STOP.is_set():
        return 0
    rclpy.init(args=args)
    try:
        node = QdbevNode()
    except Exception as exc:  # noqa: BLE001 - sorted below
        if _STOP.is_set() or not rclpy.ok():  # Ctrl-C while starting: it failed because of the shutdown
            rclpy.try_shutdown()
            return 0
        if not isinstance(exc, NodeStartupError):
            raise
        rclpy.logging.get_logger(NODE_NAME).fatal(f"{exc}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    try:
        executor.add_node(node)
        if not _STOP.is_set():  # a Ctrl-C while the engine loaded: stop now
            spin_until_shutdown(executor, node.context)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
