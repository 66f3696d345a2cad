"""What the node publishes for one processed camera set, and its publishers.

``OutputPublishing`` is a mixin of ``QdbevNode``: ``~/detections/velocity`` (first, so it is
there when a consumer sees the detections), ``~/detections``, ``~/objects`` (Autoware, when
``publish_autoware_objects``), ``~/markers``, the ``~/debug`` timings, and the output / latency /
per-stage records on ``/diagnostics`` (``qdbev_ros.stage_timing``). ``~/objects`` and ``~/markers``
are built only while something subscribes to them (RViz, the Autoware stack, a recorder).
"""

from __future__ import annotations

import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64, Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from qdbev_core.runtime.cdr import detection3d_array_cdr, object_velocity_array_cdr
from qdbev_core.runtime.processor import SetResult

from .autoware import detections_to_objects
from .conversions import detections_to_markers, detections_to_msg, velocities_to_msg
from .stage_timing import SetTrace
from .startup_error import NodeStartupError

__all__ = ["OutputPublishing"]


def wire_form_matches(velocity_type=None) -> str | None:
    """None when ``qdbev_core.runtime.cdr`` writes exactly the messages of the installed
    ``vision_msgs`` (and ``qdbev_msgs``, given its ``ObjectVelocityArray``), else what differs.

    Checked once at start-up on a few probe boxes: a ROS install whose message definitions differ
    from the ones the byte writer was made for is then served by the (slower) message objects
    instead of receiving bytes its subscribers would misread."""
    import numpy as np
    from rclpy.serialization import deserialize_message

    from qdbev_core.types import Detections

    boxes = np.array([[1.5, -2.0, 0.8, 4.2, 1.9, 1.6, 0.3, 2.0, -0.5],
                      [-10.0, 7.5, 1.1, 0.6, 0.7, 1.8, -2.9, 0.0, 0.0]])
    det = Detections(boxes=boxes, scores=np.array([0.9, 0.25]), labels=np.array([0, 8]),
                     class_names=("car", "t", "u", "v", "w", "x", "y", "z", "pedestrian"))
    header = Header(frame_id="base_link", stamp=Time(sec=12, nanosec=345))
    pairs = [(detection3d_array_cdr, detections_to_msg, Detection3DArray)]
    if velocity_type is not None:
        pairs.append((object_velocity_array_cdr, velocities_to_msg, velocity_type))
    for write, build, msg_type in pairs:
        try:
            back = deserialize_message(write(det, 12, 345, "base_link"), msg_type)
        except Exception as exc:  # noqa: BLE001 - any failure means: do not publish bytes
            return f"{msg_type.__name__}: the bytes do not deserialize ({type(exc).__name__}: {exc})"
        if back != build(det, header):
            return f"{msg_type.__name__}: the bytes deserialize to a different message"
    return None


def _subscribed(publisher) -> bool:
    """``publisher`` exists and has at least one subscriber (matched through discovery)."""
    return publisher is not None and publisher.get_subscription_count() > 0


class OutputPublishing:
    """Publishers and publishing of one result (mixin of ``QdbevNode``)."""

    def _create_publishers(self) -> None:
        """Every output topic, ``/diagnostics`` and the ``~/debug`` timings."""
        self.pub_det = self.create_publisher(Detection3DArray, "~/detections", 10)
        self.pub_vel = self._velocity_publisher()
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 10) if self.p["publish_markers"] else None
        self.pub_objects = self._autoware_publisher()
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_time = {k: self.create_publisher(Float64, f"~/debug/processing_time/{k}_ms", 10)
                         for k in ("preprocess", "inference", "postprocess")}
        self.pub_latency = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", 10)
        problem = wire_form_matches(self.pub_vel.msg_type if self.pub_vel is not None else None)
        self._publish_bytes = problem is None
        if problem:
            self.get_logger().warning(
                f"detections are published as message objects, ~25 ms slower per 300 boxes: the installed message "
                f"definitions differ from the ones qdbev_core/runtime/cdr.py writes ({problem})")

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

    def _publish(self, result: SetResult, arrival: float, trace: SetTrace) -> None:
        """Velocities, detections, Autoware objects, markers, timings of one processed set.

        ``arrival``: receipt of the set's first image (``~/debug/pipeline_latency_ms`` starts
        there); ``trace``: its times, for the per-stage record from its last image on.
        """
        det = result.detections
        sec, nanosec = divmod(result.stamp_ns, 1_000_000_000)
        frame = self.p["frame_id"]
        # written straight to their wire form (qdbev_core.runtime.cdr): building rclpy message objects
        # for 300 boxes took ~25 ms, the bytes take ~1 ms; subscribers receive the same messages
        header = Header(frame_id=frame, stamp=Time(sec=sec, nanosec=nanosec))
        if self._publish_bytes:
            if self.pub_vel is not None:  # first, so it is there when a consumer sees the detections
                self.pub_vel.publish(object_velocity_array_cdr(det, sec, nanosec, frame))
            self.pub_det.publish(detection3d_array_cdr(det, sec, nanosec, frame))
        else:
            if self.pub_vel is not None:
                self.pub_vel.publish(velocities_to_msg(det, header))
            self.pub_det.publish(detections_to_msg(det, header))
        # the costliest messages to build (~0.1 ms a box in Python) are built only for a subscriber
        if _subscribed(self.pub_objects):
            self.pub_objects.publish(detections_to_objects(det, header, self.p["autoware_obstacle_label"]))
        if _subscribed(self.pub_markers):
            self.pub_markers.publish(detections_to_markers(det, header, min_score=self.p["marker_score_threshold"]))
        for k, v in result.stages_ms.items():
            self.pub_time[k].publish(Float64(data=v))
        latency = (time.monotonic() - arrival) * 1e3
        self.pub_latency.publish(Float64(data=latency))
        self.diag.record_output(latency, {f"{k}_ms": v for k, v in result.stages_ms.items()})
        self._last_output_mono = time.monotonic()
        self._skipped_since_output = 0
        self._stage_times.record(trace, result.detail_ms, self._last_output_mono)
