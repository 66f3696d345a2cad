"""ROS messages as ``rosbags`` objects: building, serializing and reading them without ROS.

``new(typename, **fields)`` builds any message with ROS default values for the fields not given
(rosbags' message classes have no defaults): it is the ``MessageFactory`` with which the bag
tools build, through ``qdbev_core.runtime.messages``, the very messages the live node publishes
(detections, velocities, markers; ``test/unit/test_bag.py`` compares them with the node's after
serialization). The wrappers here take a stamp in integer nanoseconds and a frame id:

- ``detections_to_msg`` / ``velocities_to_msg`` / ``detections_to_markers``: the node's
  ``~/detections``, ``~/detections/velocity`` and ``~/markers`` messages;
- ``msg_to_detections``, ``with_velocities``, ``pair_by_stamp``, ``stamp_of``: reading them
  back (these read fields only and work on rclpy messages too);
- ``camera_info``, ``compressed_image``, ``raw_image``, ``transform_stamped``, ``tf_message``:
  what ``qdbev bag from-nuscenes`` writes; ``image_to_rgb``, ``transform_to_matrix``,
  ``pose_to_matrix``: reading inputs back (``qdbev_core.runtime``'s readers).

Stamps are integer nanoseconds throughout (``time_msg(ns)``, ``stamp_of(msg)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..geometry import matrix_to_quat
from ..runtime import messages as rt
from ..runtime.codecs import decode_image_msg as image_to_rgb
from ..runtime.messages import PairedDetections, msg_to_detections, pair_by_stamp, stamp_of, with_velocities
from ..runtime.transforms import pose_to_matrix, transform_to_matrix
from ..types import Detections
from .typestore import COMPRESSED_IMAGE, get_typestore

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
    "pose_to_matrix",
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


def header(ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` stamped ``ns`` (integer nanoseconds) in ``frame_id``."""
    return rt.header(new, ns, frame_id)


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


# --------------------------------------------------------------------------------------------
# sensor messages
# --------------------------------------------------------------------------------------------


def compressed_image(ns: int, frame_id: str, data: bytes, fmt: str) -> Any:
    """``sensor_msgs/CompressedImage`` carrying ``data`` unchanged (JPEG/PNG file bytes)."""
    return new(COMPRESSED_IMAGE, header=header(ns, frame_id), format=fmt,
               data=np.frombuffer(data, dtype=np.uint8))


def raw_image(ns: int, frame_id: str, rgb: NDArray[np.uint8], encoding: str = "rgb8") -> Any:
    """``sensor_msgs/Image`` (``rgb8`` or ``bgr8``, step = 3 x width) of an RGB array."""
    from ..runtime.codecs import encode_raw_image

    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    return new("sensor_msgs/msg/Image", header=header(ns, frame_id), height=h, width=w, encoding=encoding,
               is_bigendian=0, step=3 * w, data=np.frombuffer(encode_raw_image(rgb, encoding), dtype=np.uint8))


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


# --------------------------------------------------------------------------------------------
# the node's output messages (qdbev_core.runtime.messages with the rosbags factory)
# --------------------------------------------------------------------------------------------


def detections_to_msg(det: Detections, ns: int, frame_id: str) -> Any:
    """``vision_msgs/Detection3DArray`` of ``det`` stamped ``ns`` in ``frame_id``."""
    return rt.detections_to_msg(new, det, header(ns, frame_id))


def velocities_to_msg(det: Detections, ns: int, frame_id: str) -> Any:
    """``qdbev_msgs/ObjectVelocityArray`` of ``det``: ``(vx, vy, 0)`` m/s in ``frame_id`` axes."""
    return rt.velocities_to_msg(new, det, header(ns, frame_id))


def detections_to_markers(det: Detections, ns: int, frame_id: str, **options: Any) -> Any:
    """``visualization_msgs/MarkerArray`` of ``det`` (``options``: ``rt.detections_to_markers``'s)."""
    return rt.detections_to_markers(new, det, header(ns, frame_id), **options)
