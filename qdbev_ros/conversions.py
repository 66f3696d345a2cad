"""Conversion between ``qdbev_core.types.Detections`` and ``vision_msgs/Detection3DArray``.

Pure functions over message objects: no node, no rclpy context needed.

Mapping of one detection (docs/DESIGN.md §3; boxes are in the header's frame, ``base_link``):

- ``results[0].hypothesis.class_id`` = class name (e.g. ``"car"``), ``.score`` = confidence;
- ``bbox.center.position`` = box centre at mid-height (m);
- ``bbox.center.orientation`` = yaw about +z as a quaternion. ``geometry_msgs/Quaternion`` is
  ``(x, y, z, w)`` = ``(0, 0, sin(yaw/2), cos(yaw/2))`` (``qdbev_core.geometry`` uses
  ``(w, x, y, z)``; do not mix them up);
- ``bbox.size`` = full extents ``(l, w, h)`` along the box's own x, y, z axes (m);
- ``results[0].pose.pose`` = the same pose as ``bbox.center`` (covariance left zero: unknown);
- ``header`` of every ``Detection3D`` = the array's header; ``id`` = ``""`` (no tracking).

Velocity ``(vx, vy)`` has no field in ``vision_msgs/Detection3D``; it travels in qdbev's own
``qdbev_msgs/ObjectVelocityArray`` (``velocities_to_msg``), published beside the array with the
same header (the node's ``~/detections/velocity``): ``velocities[i] = (vx, vy, 0)`` m/s of
``detections[i]`` in the header frame's axes. ``msg_to_detections(msg, velocities=v)`` rebuilds
full ``Detections`` from such a pair; ``pair_by_stamp`` pairs two recorded streams by exact
stamp. Without the velocity message ``msg_to_detections`` returns ``vx = vy = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox3D,
    Detection3D,
    Detection3DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)

from qdbev_core.bag import messages as bag_messages
from qdbev_core.bag.messages import PairedDetections, pair_by_stamp
from qdbev_core.classes import CLASS_NAMES
from qdbev_core.types import Detections

__all__ = [
    "copy_header",
    "detections_to_msg",
    "make_header",
    "msg_to_detections",
    "PairedDetections",
    "pair_by_stamp",
    "quaternion_to_yaw",
    "seconds_to_stamp",
    "stamp_to_seconds",
    "velocities_to_msg",
    "yaw_to_quaternion",
]


def seconds_to_stamp(t: float) -> Time:
    """``builtin_interfaces/Time`` of a time in seconds (nanoseconds rounded, ``t >= 0``)."""
    total_ns = int(round(float(t) * 1e9))
    if total_ns < 0:
        raise ValueError(f"negative time stamp {t!r}")
    return Time(sec=total_ns // 1_000_000_000, nanosec=total_ns % 1_000_000_000)


def stamp_to_seconds(stamp: Time) -> float:
    """Time in seconds of a ``builtin_interfaces/Time``."""
    return stamp.sec + stamp.nanosec * 1e-9


def make_header(stamp: float | Time, frame_id: str = "base_link") -> Header:
    """A ``std_msgs/Header`` from a stamp (seconds or ``Time``) and a frame id."""
    t = stamp if isinstance(stamp, Time) else seconds_to_stamp(stamp)
    return Header(stamp=Time(sec=t.sec, nanosec=t.nanosec), frame_id=frame_id)


def copy_header(header: Header) -> Header:
    """An independent copy of ``header`` (message fields are mutable and shared by reference)."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """``(x, y, z, w)`` of a rotation by ``yaw`` radians about +z (geometry_msgs order)."""
    half = 0.5 * float(yaw)
    return 0.0, 0.0, math.sin(half), math.cos(half)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (radians about +z, in ``(-pi, pi]``) of a quaternion given as ``(x, y, z, w)``.

    For a pure rotation about z (``x == y == 0``) this inverts ``yaw_to_quaternion`` to within
    one rounding of the half angle; otherwise it is the z-y-x Euler yaw (roll/pitch dropped).
    """
    if x == 0.0 and y == 0.0:
        yaw = 2.0 * math.atan2(z, w)
        if yaw > math.pi:
            yaw -= 2.0 * math.pi
        elif yaw <= -math.pi:
            yaw += 2.0 * math.pi
        return yaw
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _box_pose(box: np.ndarray) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = float(box[0]), float(box[1]), float(box[2])
    qx, qy, qz, qw = yaw_to_quaternion(box[6])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    return pose


def checked_arrays(det: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (N, >=7) float64, scores (N,), labels (N,))`` of ``det``; ValueError when the shapes
    do not fit together (a message must never carry half a detection)."""
    boxes = np.asarray(det.boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f"boxes must have at least 7 columns (x y z l w h yaw [vx vy]), got {boxes.shape}")
    scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(det.labels).reshape(-1)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"inconsistent Detections: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
    return boxes, scores, labels


def detections_to_msg(det: Detections, header: Header) -> Detection3DArray:
    """``Detection3DArray`` of ``det`` (boxes in ``header.frame_id``), one hypothesis each."""
    boxes, scores, labels = checked_arrays(det)

    out = Detection3DArray(header=copy_header(header))
    for box, score, label in zip(boxes, scores, labels):
        d = Detection3D(header=copy_header(header), id="")
        d.bbox = BoundingBox3D(center=_box_pose(box))
        d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = float(box[3]), float(box[4]), float(box[5])
        hyp = ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=det.class_names[int(label)], score=float(score))
        )
        hyp.pose.pose = _box_pose(box)
        d.results.append(hyp)
        out.detections.append(d)
    return out


def velocities_to_msg(det: Detections, header: Header):
    """``qdbev_msgs/ObjectVelocityArray`` of ``det``: ``(vx, vy, 0)`` m/s per detection.

    Same header and order as ``detections_to_msg(det, header)``; boxes without velocity columns
    give zeros. Raises ``ImportError`` where ``qdbev_msgs`` is not built (``make setup``).
    """
    from geometry_msgs.msg import Vector3
    from qdbev_msgs.msg import ObjectVelocityArray

    boxes = np.asarray(det.boxes, dtype=np.float64)
    vel = boxes[:, 7:9] if boxes.ndim == 2 and boxes.shape[1] >= 9 else np.zeros((len(det), 2))
    return ObjectVelocityArray(header=copy_header(header),
                               velocities=[Vector3(x=float(vx), y=float(vy), z=0.0) for vx, vy in vel])


def msg_to_detections(msg: Detection3DArray, class_names: Sequence[str] = CLASS_NAMES,
                      velocities=None) -> Detections:
    """``Detections`` of a ``Detection3DArray`` (+ its ``ObjectVelocityArray``, if given).

    Each detection takes its highest-scoring hypothesis. A detection without hypotheses, or with
    a class name not in ``class_names``, raises ``ValueError``. ``velocities`` must carry the same
    stamp, frame and count (else ``ValueError``); without it ``vx = vy = 0``. The rclpy and the
    rosbags message classes have the same fields, so this is ``qdbev_core.bag.messages``' code.
    """
    det = bag_messages.msg_to_detections(msg, class_names)
    if velocities is not None:
        det = bag_messages.with_velocities(det, velocities, msg)
    return det
