"""Where the node's transforms come from: camera extrinsics (TF or a calibration YAML) and the
ego pose (TF ``odom_frame -> frame_id``, ``nav_msgs/Odometry`` or none).

``TransformInputs`` is a mixin of ``QdbevNode``. With ``tf2_ros`` importable it uses a tf2
buffer; without it (PyPI wheels) its own ``/tf_static`` tree and ``/tf`` / odometry pose history
(``qdbev_core.runtime.transforms``). It uses the node's ``p``, ``camera_names`` and ``_calib``
(``CalibrationInputs``) and sets ``_tf2``, ``_tf_buffer``, ``_static_tree`` and ``_poses``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rclpy.time
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from qdbev_core.runtime.calibration import load_extrinsics_yaml
from qdbev_core.runtime.processor import EgoPoseLookup, ns_seconds
from qdbev_core.runtime.transforms import PoseHistory, StaticTransformTree

from .conversions import stamp_to_seconds
from .ros_io import pose_to_matrix, transform_to_matrix
from .startup_error import NodeStartupError

__all__ = ["TransformInputs", "resolve_config_path"]


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


class TransformInputs:
    """Extrinsics and ego poses from TF, odometry or a calibration file (mixin of ``QdbevNode``)."""

    def _init_transforms(self) -> None:
        """The transform sources ``calibration_source`` / ``ego_pose_source`` ask for."""
        self._tf2 = _tf2_ros()
        self._tf_buffer = None
        self._static_tree = StaticTransformTree()
        self._poses = PoseHistory()
        self._setup_transforms()

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

    # ---- ego pose of a camera set (worker thread) --------------------------------------------------

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
