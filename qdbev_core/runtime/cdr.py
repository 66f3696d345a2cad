"""The node's two per-set output messages written straight to their ROS 2 wire form (CDR bytes).

Building a ``vision_msgs/Detection3DArray`` from rclpy message objects costs ~0.1 ms per box
(every constructor also builds all of its default sub-messages) and serialising it again ~0.03 ms
per box; at 300 boxes that is most of the node's publish time. ``rclpy`` publishes ``bytes`` as
an already serialised message (``Publisher.publish(bytes)``), so the node writes the same bytes
directly from the arrays here: one ``struct`` pack per box.

The layout is plain little-endian CDR as ``rclpy.serialization.serialize_message`` writes it
(encapsulation header ``00 01 00 00``; each primitive aligned to its size, counted from the end of
that header; strings as ``uint32`` length with the terminating NUL, then the bytes; sequences as
``uint32`` count, then the elements). The bytes equal ``serialize_message`` of the messages that
``qdbev_core.runtime.messages.detections_to_msg`` / ``velocities_to_msg`` build, which
``test/unit/test_cdr.py`` checks byte for byte; those builders stay the reference (and serve the
bag tools, whose ``rosbags`` messages are not rclpy's).

Units and frames are those of ``detections_to_msg``: boxes in the header's frame (m, rad), centre
at mid-height, yaw as the quaternion ``(0, 0, sin(yaw/2), cos(yaw/2))``, velocities in m/s.
ROS-free: nothing here imports rclpy.
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache

import numpy as np

from ..types import Detections
from .messages import checked_arrays

__all__ = ["detection3d_array_cdr", "object_velocity_array_cdr"]

_ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little endian, no options


def _pad(offset: int, align: int) -> int:
    """Bytes of padding before an item of alignment ``align`` at ``offset``."""
    return -offset % align


def _string(text: str) -> bytes:
    """A CDR string without its alignment: uint32 length (NUL included), the UTF-8 bytes, NUL."""
    raw = text.encode("utf-8") + b"\x00"
    return struct.pack("<I", len(raw)) + raw


def _header(offset: int, sec: int, nanosec: int, frame_id: str) -> bytes:
    """``std_msgs/Header`` at ``offset`` (its padding first)."""
    return b"\x00" * _pad(offset, 4) + struct.pack("<iI", sec, nanosec) + _string(frame_id)


@lru_cache(maxsize=256)
def _box_layout(offset_mod8: int, header_len: int, class_id: str) -> struct.Struct:
    """The ``Struct`` of one ``Detection3D`` starting at an offset ``= offset_mod8 (mod 8)``.

    Packed values, in order: the detection's header bytes (stamp and frame id), the hypothesis
    count (1), the class name as a CDR string, ``score``, the hypothesis pose (position ``x y z``,
    orientation ``x y z w``), the bbox centre (the same 7 values), the size ``x y z`` and the id's
    length (1: the empty string's NUL). Alignment and the zero covariance are pad (zero) bytes.
    ``header_len``: bytes of that header, without padding."""
    fmt = ["<", f"{_pad(offset_mod8, 4)}x", f"{header_len}s"]
    o = offset_mod8 + _pad(offset_mod8, 4) + header_len
    fmt.append(f"{_pad(o, 4)}x")  # results: a sequence of one hypothesis
    o += _pad(o, 4)
    cls = _string(class_id)
    fmt += ["I", f"{len(cls)}s"]
    o += 4 + len(cls)
    fmt.append(f"{_pad(o, 8)}x")  # score: float64
    o += _pad(o, 8)
    fmt += ["d", "7d", "288x", "7d", "3d"]  # score, pose, covariance (36 zeros), bbox centre, size
    o += 8 * (1 + 7 + 36 + 7 + 3)
    fmt.append("I1x")  # id: the empty string (length 1: the NUL)
    o += 5
    layout = struct.Struct("".join(fmt))
    assert layout.size == o - offset_mod8
    return layout


def detection3d_array_cdr(det: Detections, sec: int, nanosec: int, frame_id: str) -> bytes:
    """Serialised ``vision_msgs/Detection3DArray`` of ``det``: stamp ``sec`` s + ``nanosec`` ns,
    boxes in ``frame_id``, one hypothesis (class name, score) per detection, ``id`` empty.

    Raises ``ValueError`` (``checked_arrays``) when boxes, scores and labels do not fit together."""
    boxes, scores, labels = checked_arrays(det)
    names = det.class_names
    out = bytearray(_ENCAPSULATION)
    out += _header(0, sec, nanosec, frame_id)
    o = len(out) - 4
    out += b"\x00" * _pad(o, 4) + struct.pack("<I", len(boxes))
    o = len(out) - 4
    box_header = struct.pack("<iI", sec, nanosec) + _string(frame_id)
    for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        x, y, z, length, width, height, yaw = box[:7]
        half = 0.5 * yaw
        qz, qw = math.sin(half), math.cos(half)
        layout = _box_layout(o % 8, len(box_header), names[int(label)])
        pose = (x, y, z, 0.0, 0.0, qz, qw)
        out += layout.pack(box_header, 1, _string(names[int(label)]), score, *pose, *pose, length, width, height, 1)
        o += layout.size
    return bytes(out)


def object_velocity_array_cdr(det: Detections, sec: int, nanosec: int, frame_id: str) -> bytes:
    """Serialised ``qdbev_msgs/ObjectVelocityArray`` of ``det``: ``(vx, vy, 0)`` m/s per detection
    (zeros where the boxes have no velocity columns), same header and order as
    ``detection3d_array_cdr``."""
    boxes = np.asarray(det.boxes, dtype=np.float64)
    n = len(det)
    vel = np.zeros((n, 3), dtype="<f8")
    if boxes.ndim == 2 and boxes.shape[1] >= 9:
        vel[:, :2] = boxes[:, 7:9]
    out = bytearray(_ENCAPSULATION)
    out += _header(0, sec, nanosec, frame_id)
    o = len(out) - 4
    out += b"\x00" * _pad(o, 4) + struct.pack("<I", n)
    if n:
        o = len(out) - 4
        out += b"\x00" * _pad(o, 8) + vel.tobytes()
    return bytes(out)
