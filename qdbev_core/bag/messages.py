"""ROS messages as ``rosbags`` objects: building, serializing and reading them without ROS.

The bag tools write the same messages the live node exchanges, field for field:

- ``detections_to_msg`` / ``msg_to_detections``: the mapping of ``qdbev_ros.conversions``
  (class name in ``class_id``, centre at mid-height, full size, yaw as quaternion
  ``(0, 0, sin(yaw/2), cos(yaw/2))``, ``results[0].pose.pose`` = the box pose, ``id`` empty);
- ``detections_to_markers``: the MarkerArray of ``qdbev_ros.markers`` (``DELETEALL`` first,
  ``boxes`` cubes, ``labels`` texts, ``velocity`` arrows);
- ``camera_info``: the undistorted pinhole CameraInfo of ``qdbev_ros.ros_io.make_camera_info``;
- ``velocities_to_msg`` / ``with_velocities`` / ``pair_by_stamp``: the
  ``qdbev_msgs/ObjectVelocityArray`` published beside each ``Detection3DArray`` (same header,
  ``velocities[i]`` belongs to ``detections[i]``; ``vision_msgs/Detection3D`` has no velocity)
  and the stamp-exact pairing that rebuilds full ``Detections`` (``vx``, ``vy`` included).
  These work on rclpy messages too (same field names).

``test/unit/test_bag.py`` serializes both versions (rclpy and rosbags) and checks the CDR bytes
are identical. ``new(typename, **fields)`` builds any message with ROS default values for the
fields not given (rosbags' message classes have no defaults).

Stamps are integer nanoseconds throughout (``time_msg(ns)``, ``stamp_of(msg)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..classes import CLASS_NAMES
from ..frame_assembly import decode_compressed_image, decode_raw_image
from ..geometry import make_transform, matrix_to_quat
from ..types import Detections
from .typestore import COMPRESSED_IMAGE, OBJECT_VELOCITY_ARRAY, get_typestore

__all__ = [
    "camera_info",
    "compressed_image",
    "detections_to_markers",
    "detections_to_msg",
    "header",
    "header_stamp_ns",
    "image_to_rgb",
    "msg_to_detections",
    "new",
    "PairedDetections",
    "pair_by_stamp",
    "raw_image",
    "stamp_of",
    "tf_message",
    "time_msg",
    "transform_stamped",
    "transform_to_matrix",
    "velocities_to_msg",
    "with_velocities",
]

# --------------------------------------------------------------------------------------------
# generic construction
# --------------------------------------------------------------------------------------------

_NUMPY_OF = {"byte": np.uint8, "char": np.uint8, "octet": np.uint8, "bool": np.bool_}
_FIELD_DEFAULTS = {("geometry_msgs/msg/Quaternion", "w"): 1.0}  # non-zero defaults of ROS 2 .msg files


def _base_default(name: str) -> Any:
    if name == "string" or name == "wstring":
        return ""
    if name == "bool":
        return False
    if name.startswith("float"):
        return 0.0
    return 0


def _default(desc: tuple) -> Any:
    nodetype, spec = desc
    kind = int(nodetype)
    if kind == 1:  # BASE
        return _base_default(spec[0])
    if kind == 2:  # NAME
        return new(spec)
    (elem_kind, elem_spec), length = spec
    numeric = int(elem_kind) == 1 and elem_spec[0] not in ("string", "wstring")
    if kind == 3:  # ARRAY (fixed length)
        if numeric:
            return np.zeros(length, dtype=_NUMPY_OF.get(elem_spec[0], elem_spec[0]))
        return [_default((elem_kind, elem_spec)) for _ in range(length)]
    # SEQUENCE (unbounded / bounded)
    if numeric:
        return np.zeros(0, dtype=_NUMPY_OF.get(elem_spec[0], elem_spec[0]))
    return []


def new(typename: str, **fields: Any) -> Any:
    """A ``rosbags`` message of ``typename``: the given fields, ROS defaults for the others."""
    store = get_typestore()
    _, fielddefs = store.fielddefs[typename]
    values = {}
    for name, desc in fielddefs:
        if name in fields:
            values[name] = fields.pop(name)
        else:
            values[name] = _FIELD_DEFAULTS.get((typename, name), _default(desc))
    if fields:
        raise TypeError(f"{typename} has no field(s) {', '.join(fields)}")
    return store.types[typename](**values)


def time_msg(ns: int) -> Any:
    """``builtin_interfaces/Time`` of integer nanoseconds (>= 0)."""
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"negative time stamp {ns} ns")
    return new("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_of(msg: Any) -> int:
    """Integer nanoseconds of a message's ``header.stamp`` (or of a ``Time`` itself)."""
    t = msg.header.stamp if hasattr(msg, "header") else msg
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def header(ns: int, frame_id: str) -> Any:
    return new("std_msgs/msg/Header", stamp=time_msg(ns), frame_id=frame_id)


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """``header.stamp`` (integer ns) of a serialized (CDR) message whose first field is a Header.

    Reads the 4-byte encapsulation (byte 1: 0 = big, 1 = little endian) and the ``int32 sec``,
    ``uint32 nanosec`` after it, without deserializing the rest (e.g. image data).
    """
    import struct

    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise ValueError(f"not a plain CDR message with a header ({len(raw)} bytes, encapsulation {bytes(raw[:2])!r})")
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return int(sec) * 1_000_000_000 + int(nanosec)


def _copy_header(h: Any) -> Any:
    return new("std_msgs/msg/Header", stamp=new("builtin_interfaces/msg/Time", sec=h.stamp.sec,
                                                 nanosec=h.stamp.nanosec), frame_id=h.frame_id)


# --------------------------------------------------------------------------------------------
# sensor messages
# --------------------------------------------------------------------------------------------


def compressed_image(ns: int, frame_id: str, data: bytes, fmt: str) -> Any:
    """``sensor_msgs/CompressedImage`` carrying ``data`` unchanged (JPEG/PNG file bytes)."""
    return new(COMPRESSED_IMAGE, header=header(ns, frame_id), format=fmt,
               data=np.frombuffer(data, dtype=np.uint8))


def raw_image(ns: int, frame_id: str, rgb: NDArray[np.uint8], encoding: str = "rgb8") -> Any:
    """``sensor_msgs/Image`` (``rgb8`` or ``bgr8``, step = 3 x width) of an RGB array."""
    from ..frame_assembly import encode_raw_image

    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    return new("sensor_msgs/msg/Image", header=header(ns, frame_id), height=h, width=w, encoding=encoding,
               is_bigendian=0, step=3 * w, data=np.frombuffer(encode_raw_image(rgb, encoding), dtype=np.uint8))


def image_to_rgb(msg: Any, camera: str = "camera") -> NDArray[np.uint8]:
    """``(H, W, 3)`` uint8 RGB of a rosbags ``Image`` or ``CompressedImage`` (node's decoders)."""
    if hasattr(msg, "format"):
        return decode_compressed_image(msg.data, msg.format, camera=camera)
    return decode_raw_image(msg.data, msg.encoding, msg.width, msg.height, msg.step, camera=camera,
                            is_bigendian=bool(msg.is_bigendian))


def camera_info(ns: int, frame_id: str, k: NDArray[np.float64], width: int, height: int) -> Any:
    """Undistorted pinhole ``sensor_msgs/CameraInfo`` (``plumb_bob``, ``D = 0``, ``P = [K | 0]``)."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return new("sensor_msgs/msg/CameraInfo", header=header(ns, frame_id), height=int(height), width=int(width),
               distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1).copy(),
               r=np.eye(3).reshape(-1), p=p.reshape(-1))


def transform_stamped(t: NDArray[np.float64], parent: str, child: str, ns: int) -> Any:
    """``geometry_msgs/TransformStamped`` ``parent <- child`` of a 4x4 ``parent_T_child``."""
    t = np.asarray(t, dtype=np.float64)
    w, x, y, z = (float(v) for v in matrix_to_quat(t[:3, :3]))
    tx, ty, tz = (float(v) for v in t[:3, 3])
    tf = new("geometry_msgs/msg/Transform",
             translation=new("geometry_msgs/msg/Vector3", x=tx, y=ty, z=tz),
             rotation=new("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w))
    return new("geometry_msgs/msg/TransformStamped", header=header(ns, parent), child_frame_id=child, transform=tf)


def tf_message(transforms: Sequence[Any]) -> Any:
    return new("tf2_msgs/msg/TFMessage", transforms=list(transforms))


def transform_to_matrix(msg: Any) -> NDArray[np.float64]:
    """4x4 ``parent_T_child`` of a ``Transform`` / ``TransformStamped``."""
    tf = msg.transform if hasattr(msg, "transform") else msg
    q, p = tf.rotation, tf.translation
    return make_transform((q.w, q.x, q.y, q.z), (p.x, p.y, p.z))


def pose_to_matrix(msg: Any) -> NDArray[np.float64]:
    """4x4 of a ``Pose`` (or anything with nested ``.pose``: ``PoseWithCovariance``, ``Odometry``)."""
    pose = msg
    while hasattr(pose, "pose"):
        pose = pose.pose
    q, p = pose.orientation, pose.position
    return make_transform((q.w, q.x, q.y, q.z), (p.x, p.y, p.z))


# --------------------------------------------------------------------------------------------
# detections and markers (same mapping as qdbev_ros.conversions / qdbev_ros.markers)
# --------------------------------------------------------------------------------------------


def _yaw_quat(yaw: float) -> Any:
    """``(0, 0, sin(yaw/2), cos(yaw/2))`` computed as ``qdbev_ros.conversions.yaw_to_quaternion`` does."""
    half = 0.5 * float(yaw)
    return new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))


def _box_pose(box: NDArray[np.float64]) -> Any:
    return new("geometry_msgs/msg/Pose",
               position=new("geometry_msgs/msg/Point", x=float(box[0]), y=float(box[1]), z=float(box[2])),
               orientation=_yaw_quat(float(box[6])))


def detections_to_msg(det: Detections, ns: int, frame_id: str) -> Any:
    """``vision_msgs/Detection3DArray`` of ``det`` stamped ``ns`` in ``frame_id``."""
    boxes = np.asarray(det.boxes, dtype=np.float64)
    if boxes.ndim != 2 or (boxes.shape[0] and boxes.shape[1] < 7):
        raise ValueError(f"boxes must have at least 7 columns (x y z l w h yaw), got {boxes.shape}")
    hdr = header(ns, frame_id)
    out = []
    for box, score, label in zip(boxes, np.asarray(det.scores, dtype=np.float64).reshape(-1),
                                 np.asarray(det.labels).reshape(-1)):
        hyp = new("vision_msgs/msg/ObjectHypothesisWithPose",
                  hypothesis=new("vision_msgs/msg/ObjectHypothesis", class_id=det.class_names[int(label)],
                                 score=float(score)),
                  pose=new("geometry_msgs/msg/PoseWithCovariance", pose=_box_pose(box)))
        bbox = new("vision_msgs/msg/BoundingBox3D", center=_box_pose(box),
                   size=new("geometry_msgs/msg/Vector3", x=float(box[3]), y=float(box[4]), z=float(box[5])))
        out.append(new("vision_msgs/msg/Detection3D", header=_copy_header(hdr), results=[hyp], bbox=bbox, id=""))
    return new("vision_msgs/msg/Detection3DArray", header=hdr, detections=out)


def _quat_yaw(q: Any) -> float:
    if q.x == 0.0 and q.y == 0.0:
        yaw = 2.0 * math.atan2(q.z, q.w)
        if yaw > math.pi:
            yaw -= 2.0 * math.pi
        elif yaw <= -math.pi:
            yaw += 2.0 * math.pi
        return yaw
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def msg_to_detections(msg: Any, class_names: Sequence[str] = CLASS_NAMES) -> Detections:
    """``Detections`` of a rosbags ``Detection3DArray`` (best hypothesis each; ``vx = vy = 0``)."""
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
        boxes[i, :7] = (c.x, c.y, c.z, s.x, s.y, s.z, _quat_yaw(d.bbox.center.orientation))
        scores[i] = best.score
        labels[i] = index[best.class_id]
    return Detections(boxes=boxes, scores=scores, labels=labels, class_names=names)


def velocities_to_msg(det: Detections, ns: int, frame_id: str) -> Any:
    """``qdbev_msgs/ObjectVelocityArray`` of ``det``: ``(vx, vy, 0)`` m/s in ``frame_id`` axes.

    Same header and order as ``detections_to_msg(det, ns, frame_id)``; boxes with fewer than 9
    columns (no velocity) give zeros.
    """
    boxes = np.asarray(det.boxes, dtype=np.float64)
    n = len(det)
    vel = boxes[:, 7:9] if boxes.ndim == 2 and boxes.shape[1] >= 9 else np.zeros((n, 2))
    return new(OBJECT_VELOCITY_ARRAY, header=header(ns, frame_id),
               velocities=[new("geometry_msgs/msg/Vector3", x=float(vx), y=float(vy), z=0.0) for vx, vy in vel])


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


def _color(name: str, alpha: float) -> Any:
    from ..viz.colors import CLASS_COLORS_RGB

    r, g, b = CLASS_COLORS_RGB.get(name, (200, 200, 200))
    return new("std_msgs/msg/ColorRGBA", r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(alpha))


def detections_to_markers(det: Detections, ns: int, frame_id: str, box_alpha: float = 0.4,
                          min_speed: float = 0.2, arrow_horizon_s: float = 1.0, text_height: float = 0.8) -> Any:
    """``visualization_msgs/MarkerArray`` of ``det`` exactly as ``qdbev_ros.markers`` builds it."""
    marker = "visualization_msgs/msg/Marker"
    hdr = header(ns, frame_id)
    out = [new(marker, header=_copy_header(hdr), action=3)]  # DELETEALL
    boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, det.boxes.shape[-1] if det.boxes.size else 9)
    for i, (box, score, label) in enumerate(zip(boxes, det.scores, det.labels)):
        name = det.class_names[int(label)]
        x, y, z, l, w, h, yaw = (float(v) for v in box[:7])
        pose = new("geometry_msgs/msg/Pose", position=new("geometry_msgs/msg/Point", x=x, y=y, z=z),
                   orientation=_yaw_quat(yaw))
        out.append(new(marker, header=_copy_header(hdr), ns="boxes", id=i, type=1, action=0, pose=pose,
                       scale=new("geometry_msgs/msg/Vector3", x=max(l, 1e-3), y=max(w, 1e-3), z=max(h, 1e-3)),
                       color=_color(name, box_alpha)))
        text_pose = new("geometry_msgs/msg/Pose",
                        position=new("geometry_msgs/msg/Point", x=x, y=y, z=z + 0.5 * h + 0.5 * text_height))
        out.append(new(marker, header=_copy_header(hdr), ns="labels", id=i, type=9, action=0, pose=text_pose,
                       scale=new("geometry_msgs/msg/Vector3", z=float(text_height)), color=_color(name, 1.0),
                       text=f"{name} {float(score):.2f}"))
        if box.shape[0] >= 9:
            vx, vy = float(box[7]), float(box[8])
            if np.hypot(vx, vy) > min_speed:
                pts = [new("geometry_msgs/msg/Point", x=x, y=y, z=z),
                       new("geometry_msgs/msg/Point", x=x + vx * arrow_horizon_s, y=y + vy * arrow_horizon_s, z=z)]
                out.append(new(marker, header=_copy_header(hdr), ns="velocity", id=i, type=0, action=0,
                               points=pts, color=_color(name, 1.0),
                               scale=new("geometry_msgs/msg/Vector3", x=0.15, y=0.4, z=0.4)))
    return new("visualization_msgs/msg/MarkerArray", markers=out)
