"""rclpy bindings of ``qdbev_core.runtime.messages``: ``Detections`` <-> the node's output messages.

``ros_message`` is the ``MessageFactory`` that makes rclpy messages (``ros_message("vision_msgs/
msg/Detection3D", id="")``); the builders themselves (``Detection3DArray``, ``qdbev_msgs/
ObjectVelocityArray``, ``MarkerArray``) and their mapping are written once in
``qdbev_core.runtime.messages``, shared with the bag tools' ``rosbags`` messages. The functions
here bind the factory and take a ``std_msgs/Header`` (boxes are in its ``frame_id``,
``base_link``; stamp = CAM_FRONT's):

- ``detections_to_msg(det, header)``: one ``Detection3D`` per box (class name in ``class_id``,
  centre at mid-height, full size, yaw as quaternion ``(0, 0, sin(yaw/2), cos(yaw/2))``);
- ``velocities_to_msg(det, header)``: ``(vx, vy, 0)`` m/s per detection, same header and order
  (``vision_msgs/Detection3D`` has no velocity field); raises ``ImportError`` where
  ``qdbev_msgs`` is not built (``make setup``);
- ``detections_to_markers(det, header)``: RViz boxes, labels and velocity arrows;
- ``msg_to_detections(msg, velocities=v)`` rebuilds full ``Detections`` from such a pair
  (``vx = vy = 0`` without ``v``); ``pair_by_stamp`` pairs two recorded streams by exact stamp.

Stamps: ``seconds_to_stamp`` / ``stamp_to_seconds`` / ``make_header``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.runtime import messages as rt
from qdbev_core.runtime.messages import (
    PairedDetections,
    checked_arrays,
    pair_by_stamp,
    quaternion_to_yaw,
    with_velocities,
    yaw_to_quaternion,
)
from qdbev_core.runtime.processor import stamp_seconds
from qdbev_core.types import Detections

__all__ = [
    "PairedDetections",
    "checked_arrays",
    "copy_header",
    "detections_to_markers",
    "detections_to_msg",
    "make_header",
    "msg_to_detections",
    "pair_by_stamp",
    "quaternion_to_yaw",
    "ros_message",
    "seconds_to_stamp",
    "stamp_to_seconds",
    "velocities_to_msg",
    "yaw_to_quaternion",
]


@lru_cache(maxsize=None)
def _message_class(typename: str) -> type:
    package, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def ros_message(typename: str, **fields: Any) -> Any:
    """The rclpy message ``pkg/msg/Name`` with ``fields`` (a ``MessageFactory``; others at ROS defaults).

    Raises ``ImportError`` when the message package is not importable.
    """
    return _message_class(typename)(**fields)


def seconds_to_stamp(t: float) -> Time:
    """``builtin_interfaces/Time`` of a time in seconds (nanoseconds rounded, ``t >= 0``)."""
    total_ns = int(round(float(t) * 1e9))
    if total_ns < 0:
        raise ValueError(f"negative time stamp {t!r}")
    return Time(sec=total_ns // 1_000_000_000, nanosec=total_ns % 1_000_000_000)


def stamp_to_seconds(stamp: Time) -> float:
    """Time in seconds of a ``builtin_interfaces/Time`` (``qdbev_core.runtime.processor.stamp_seconds``)."""
    return stamp_seconds(stamp)


def make_header(stamp: float | Time, frame_id: str = "base_link") -> Header:
    """A ``std_msgs/Header`` from a stamp (seconds or ``Time``) and a frame id."""
    t = stamp if isinstance(stamp, Time) else seconds_to_stamp(stamp)
    return Header(stamp=Time(sec=t.sec, nanosec=t.nanosec), frame_id=frame_id)


def copy_header(header: Header) -> Header:
    """An independent copy of ``header`` (message fields are mutable and shared by reference)."""
    return rt.copy_header(ros_message, header)


def detections_to_msg(det: Detections, header: Header) -> Detection3DArray:
    """``Detection3DArray`` of ``det`` (boxes in ``header.frame_id``), one hypothesis each."""
    return rt.detections_to_msg(ros_message, det, header)


def velocities_to_msg(det: Detections, header: Header):
    """``qdbev_msgs/ObjectVelocityArray`` of ``det``: ``(vx, vy, 0)`` m/s per detection."""
    return rt.velocities_to_msg(ros_message, det, header)


def detections_to_markers(det: Detections, header: Header, **options: Any) -> MarkerArray:
    """``MarkerArray`` (``DELETEALL`` first) of ``det``; ``options`` as ``rt.detections_to_markers``."""
    return rt.detections_to_markers(ros_message, det, header, **options)


def msg_to_detections(msg: Detection3DArray, class_names: Sequence[str] = CLASS_NAMES,
                      velocities=None) -> Detections:
    """``Detections`` of a ``Detection3DArray`` (+ its ``ObjectVelocityArray``, if given).

    Each detection takes its highest-scoring hypothesis. A detection without hypotheses, or with
    a class name not in ``class_names``, raises ``ValueError``. ``velocities`` must carry the same
    stamp, frame and count (else ``ValueError``); without it ``vx = vy = 0``.
    """
    det = rt.msg_to_detections(msg, class_names)
    if velocities is not None:
        det = with_velocities(det, velocities, msg)
    return det
