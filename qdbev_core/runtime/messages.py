"""``Detections`` <-> the messages the node publishes, written once for every message library.

The builders take a ``MessageFactory``: ``make("vision_msgs/msg/Detection3D", **fields)`` returns
a message of that ROS type with the given fields and ROS default values for the others.
``qdbev_ros.conversions.ros_message`` makes rclpy messages (the live node);
``qdbev_core.bag.messages.new`` makes ``rosbags`` messages (bags written without ROS). So the
node's topics and the bags replay writes carry the same messages field for field
(``test/unit/test_bag.py`` compares them after serialization). The readers
(``msg_to_detections``, ``with_velocities``, ``pair_by_stamp``) read fields only and take either.

Mapping of one detection (boxes in the header's frame, ``base_link``; REP 103):

- ``vision_msgs/Detection3DArray``: per detection ``results[0].hypothesis.class_id`` = class name,
  ``.score`` = confidence, ``results[0].pose.pose`` = ``bbox.center`` = box centre at mid-height
  (m) with yaw about +z as the quaternion ``(x, y, z, w) = (0, 0, sin(yaw/2), cos(yaw/2))``,
  ``bbox.size`` = full extents ``(l, w, h)`` (m), ``header`` = the array's, ``id`` = ``""``;
- ``qdbev_msgs/ObjectVelocityArray`` (``vision_msgs/Detection3D`` has no velocity field): the
  same header, ``velocities[i] = (vx, vy, 0)`` m/s of ``detections[i]`` in the header frame's axes;
- ``visualization_msgs/MarkerArray``: one ``DELETEALL`` marker, then per detection ``i`` a
  ``CUBE`` (ns ``boxes``, class colour, alpha 0.4), a ``TEXT_VIEW_FACING`` ``"<class> <score>"``
  above it (ns ``labels``) and, above ``min_speed``, an ``ARROW`` along ``(vx, vy)`` covering
  ``arrow_horizon_s`` seconds (ns ``velocity``); marker ids are ``i`` in each namespace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..classes import CLASS_NAMES
from ..types import Detections

__all__ = [
    "MessageFactory",
    "PairedDetections",
    "box_pose",
    "checked_arrays",
    "copy_header",
    "detections_to_markers",
    "detections_to_msg",
    "header",
    "msg_to_detections",
    "pair_by_stamp",
    "quaternion_to_yaw",
    "stamp_of",
    "velocities_to_msg",
    "with_velocities",
    "yaw_to_quaternion",
]

DETECTION3D_ARRAY = "vision_msgs/msg/Detection3DArray"
OBJECT_VELOCITY_ARRAY = "qdbev_msgs/msg/ObjectVelocityArray"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"

# visualization_msgs/Marker constants
_ARROW, _CUBE, _TEXT_VIEW_FACING = 0, 1, 9
_ADD, _DELETEALL = 0, 3
_DEFAULT_COLOR = (200, 200, 200)


class MessageFactory(Protocol):
    """Builds a ROS message: ``make("pkg/msg/Name", **fields)``, unset fields at their ROS defaults."""

    def __call__(self, typename: str, **fields: Any) -> Any: ...


# --------------------------------------------------------------------------------------------
# stamps and headers
# --------------------------------------------------------------------------------------------


def stamp_of(msg: Any) -> int:
    """Integer nanoseconds of a message's ``header.stamp`` (or of a ``Time`` itself)."""
    t = msg.header.stamp if hasattr(msg, "header") else msg
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def header(make: MessageFactory, ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` stamped ``ns`` (integer nanoseconds, >= 0) in ``frame_id``."""
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"negative time stamp {ns} ns")
    return make("std_msgs/msg/Header", frame_id=frame_id,
                stamp=make("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000))


def copy_header(make: MessageFactory, h: Any) -> Any:
    """An independent copy of header ``h`` (message fields are mutable and shared by reference)."""
    return make("std_msgs/msg/Header", frame_id=h.frame_id,
                stamp=make("builtin_interfaces/msg/Time", sec=h.stamp.sec, nanosec=h.stamp.nanosec))


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


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


def _xyzw(q: Any) -> tuple[float, float, float, float]:
    return q.x, q.y, q.z, q.w


def _point(make: MessageFactory, x: float, y: float, z: float) -> Any:
    return make("geometry_msgs/msg/Point", x=float(x), y=float(y), z=float(z))


def _vector(make: MessageFactory, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
    return make("geometry_msgs/msg/Vector3", x=float(x), y=float(y), z=float(z))


def box_pose(make: MessageFactory, box: NDArray[np.float64]) -> Any:
    """``geometry_msgs/Pose`` of a box ``[x, y, z, l, w, h, yaw, ...]``: centre (m) and yaw quaternion."""
    qx, qy, qz, qw = yaw_to_quaternion(float(box[6]))
    return make("geometry_msgs/msg/Pose", position=_point(make, box[0], box[1], box[2]),
                orientation=make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))


# --------------------------------------------------------------------------------------------
# Detections -> messages
# --------------------------------------------------------------------------------------------


def checked_arrays(det: Detections) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray]:
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


def detections_to_msg(make: MessageFactory, det: Detections, hdr: Any) -> Any:
    """``vision_msgs/Detection3DArray`` of ``det`` (boxes in ``hdr.frame_id``), one hypothesis each."""
    boxes, scores, labels = checked_arrays(det)
    out = []
    for box, score, label in zip(boxes, scores, labels):
        hyp = make("vision_msgs/msg/ObjectHypothesisWithPose",
                   hypothesis=make("vision_msgs/msg/ObjectHypothesis", class_id=det.class_names[int(label)],
                                   score=float(score)),
                   pose=make("geometry_msgs/msg/PoseWithCovariance", pose=box_pose(make, box)))
        bbox = make("vision_msgs/msg/BoundingBox3D", center=box_pose(make, box),
                    size=_vector(make, box[3], box[4], box[5]))
        out.append(make("vision_msgs/msg/Detection3D", header=copy_header(make, hdr), results=[hyp], bbox=bbox,
                        id=""))
    return make(DETECTION3D_ARRAY, header=copy_header(make, hdr), detections=out)


def velocities_to_msg(make: MessageFactory, det: Detections, hdr: Any) -> Any:
    """``qdbev_msgs/ObjectVelocityArray`` of ``det``: ``(vx, vy, 0)`` m/s per detection.

    Same header and order as ``detections_to_msg(make, det, hdr)``; boxes without velocity
    columns give zeros.
    """
    boxes = np.asarray(det.boxes, dtype=np.float64)
    vel = boxes[:, 7:9] if boxes.ndim == 2 and boxes.shape[1] >= 9 else np.zeros((len(det), 2))
    return make(OBJECT_VELOCITY_ARRAY, header=copy_header(make, hdr),
                velocities=[_vector(make, vx, vy, 0.0) for vx, vy in vel])


def _color(make: MessageFactory, name: str, alpha: float) -> Any:
    from ..viz.colors import CLASS_COLORS_RGB

    r, g, b = CLASS_COLORS_RGB.get(name, _DEFAULT_COLOR)
    return make("std_msgs/msg/ColorRGBA", r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(alpha))


def detections_to_markers(make: MessageFactory, det: Detections, hdr: Any, box_alpha: float = 0.4,
                          min_speed: float = 0.2, arrow_horizon_s: float = 1.0, text_height: float = 0.8,
                          min_score: float | None = None) -> Any:
    """``visualization_msgs/MarkerArray`` (``DELETEALL`` first) of ``det`` (module docstring).

    Args:
        make: the message factory.
        det: detections, boxes in ``hdr.frame_id``.
        hdr: ``std_msgs/Header`` every marker carries (copied).
        box_alpha: opacity of the cubes.
        min_speed: m/s; slower detections get no velocity arrow.
        arrow_horizon_s: an arrow covers the distance travelled in this many seconds.
        text_height: metres.
        min_score: only detections scoring at least this get markers (``None``: all).
    """
    if min_score is not None:
        keep = np.asarray(det.scores) >= min_score
        det = Detections(boxes=det.boxes[keep], scores=det.scores[keep], labels=det.labels[keep],
                         class_names=det.class_names)
    marker = "visualization_msgs/msg/Marker"
    out = [make(marker, header=copy_header(make, hdr), action=_DELETEALL)]
    boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, det.boxes.shape[-1] if det.boxes.size else 9)
    for i, (box, score, label) in enumerate(zip(boxes, det.scores, det.labels)):
        name = det.class_names[int(label)]
        x, y, z, l, w, h = (float(v) for v in box[:6])
        out.append(make(marker, header=copy_header(make, hdr), ns="boxes", id=i, type=_CUBE, action=_ADD,
                        pose=box_pose(make, box), color=_color(make, name, box_alpha),
                        scale=_vector(make, max(l, 1e-3), max(w, 1e-3), max(h, 1e-3))))
        text_pose = make("geometry_msgs/msg/Pose", position=_point(make, x, y, z + 0.5 * h + 0.5 * text_height))
        out.append(make(marker, header=copy_header(make, hdr), ns="labels", id=i, type=_TEXT_VIEW_FACING,
                        action=_ADD, pose=text_pose, scale=_vector(make, z=text_height),
                        color=_color(make, name, 1.0), text=f"{name} {float(score):.2f}"))
        if box.shape[0] >= 9:
            vx, vy = float(box[7]), float(box[8])
            if np.hypot(vx, vy) > min_speed:
                pts = [_point(make, x, y, z), _point(make, x + vx * arrow_horizon_s, y + vy * arrow_horizon_s, z)]
                # scale: shaft diameter, head diameter, head length (m)
                out.append(make(marker, header=copy_header(make, hdr), ns="velocity", id=i, type=_ARROW,
                                action=_ADD, points=pts, color=_color(make, name, 1.0),
                                scale=_vector(make, 0.15, 0.4, 0.4)))
    return make(MARKER_ARRAY, markers=out)


# --------------------------------------------------------------------------------------------
# messages -> Detections (field reads only: rclpy and rosbags messages alike)
# --------------------------------------------------------------------------------------------


def msg_to_detections(msg: Any, class_names: Sequence[str] = CLASS_NAMES) -> Detections:
    """``Detections`` of a ``Detection3DArray`` (rclpy or rosbags) (best hypothesis each; ``vx = vy = 0``)."""
    names = tuple(class_names)
    index = {n: i for i, n in enumerate(names)}
    n = len(msg.detections)
    boxes = np.zeros((n, 9))
    scores = np.zeros(n)
    labels = np.zeros(n, dtype=np.int64)
    for i, d in enumerate(msg.detections):
        if not d.results:
            raise ValueError(f"detection {i} has no class hypothesis")
        best = max(d.results, key=lambda r: r.hypothesis.score).hypothesis
        if best.class_id not in index:
            raise ValueError(f"detection {i}: unknown class {best.class_id!r} (known: {', '.join(names)})")
        c, s = d.bbox.center.position, d.bbox.size
        boxes[i, :7] = (c.x, c.y, c.z, s.x, s.y, s.z, quaternion_to_yaw(*_xyzw(d.bbox.center.orientation)))
        scores[i] = best.score
        labels[i] = index[best.class_id]
    return Detections(boxes=boxes, scores=scores, labels=labels, class_names=names)


def with_velocities(det: Detections, velocity_msg: Any, detections_msg: Any | None = None) -> Detections:
    """``det`` (from ``msg_to_detections``) with ``vx, vy`` taken from an ``ObjectVelocityArray``.

    Works on rosbags and rclpy messages. ``detections_msg``, when given, must have the same stamp
    and frame as ``velocity_msg``; the number of velocities must equal the number of detections.
    Raises ``ValueError`` otherwise (the two do not belong together).
    """
    if detections_msg is not None:
        a, b = stamp_of(detections_msg), stamp_of(velocity_msg)
        if a != b:
            raise ValueError(f"velocities stamped {b} ns do not belong to detections stamped {a} ns")
        fa, fb = detections_msg.header.frame_id, velocity_msg.header.frame_id
        if fa != fb:
            raise ValueError(f"velocities in frame {fb!r} but detections in frame {fa!r} (stamp {a} ns)")
    n = len(det)
    if len(velocity_msg.velocities) != n:
        raise ValueError(f"{len(velocity_msg.velocities)} velocities for {n} detections "
                         f"(stamp {stamp_of(velocity_msg)} ns): not the same detections")
    boxes = np.zeros((n, 9))
    if n:
        src = np.asarray(det.boxes, dtype=np.float64)[:, :7]
        boxes[:, : src.shape[1]] = src
    for i, v in enumerate(velocity_msg.velocities):
        boxes[i, 7], boxes[i, 8] = float(v.x), float(v.y)
    return Detections(boxes=boxes, scores=np.asarray(det.scores, dtype=np.float64).copy(),
                      labels=np.asarray(det.labels).copy(), class_names=det.class_names)


@dataclass
class PairedDetections:
    """What ``pair_by_stamp`` made of two recorded streams.

    Attributes:
        pairs: ``(stamp ns, Detections)`` per detections message, in its order; ``vx, vy`` from
            the velocity message of the same stamp, zeros where there was none.
        without_velocity: stamps (ns) of detections messages that had no velocity message.
        unmatched_velocity: stamps (ns) of velocity messages that had no detections message.
    """

    pairs: list[tuple[int, Detections]] = field(default_factory=list)
    without_velocity: list[int] = field(default_factory=list)
    unmatched_velocity: list[int] = field(default_factory=list)

    def by_stamp(self) -> dict[int, Detections]:
        """``{stamp ns: Detections}`` (a repeated stamp, e.g. a bag loop: the last one)."""
        return dict(self.pairs)


def pair_by_stamp(detection_msgs: Sequence[Any], velocity_msgs: Sequence[Any],
                  class_names: Sequence[str] = CLASS_NAMES) -> PairedDetections:
    """Pair ``Detection3DArray`` and ``ObjectVelocityArray`` messages by exact header stamp.

    Stamps are compared as integer nanoseconds (no tolerance: the node gives both messages the
    same header). A stamp that occurs several times (a bag played in a loop) pairs first with
    first. Raises ``ValueError`` when a pair disagrees in frame or length (``with_velocities``).
    """
    pending: dict[int, list[Any]] = {}
    for v in velocity_msgs:
        pending.setdefault(stamp_of(v), []).append(v)
    out = PairedDetections()
    for d in detection_msgs:
        t = stamp_of(d)
        det = msg_to_detections(d, class_names)
        queue = pending.get(t)
        if queue:
            det = with_velocities(det, queue.pop(0), d)
        else:
            out.without_velocity.append(t)
        out.pairs.append((t, det))
    out.unmatched_velocity = sorted(t for t, q in pending.items() for _ in q)
    return out
