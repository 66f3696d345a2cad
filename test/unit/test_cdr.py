"""qdbev_core.runtime.cdr: the node's output messages written straight to CDR bytes must be the
messages the reference builders (``detections_to_msg`` / ``velocities_to_msg``) make, as rclpy
reads them back, for every alignment a class name or frame id can cause."""

from __future__ import annotations

import numpy as np
import pytest

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.runtime.cdr import detection3d_array_cdr, object_velocity_array_cdr
from qdbev_core.types import Detections

rclpy_serialization = pytest.importorskip("rclpy.serialization", reason="rclpy is not installed (make setup)")
conversions = pytest.importorskip("qdbev_ros.conversions", reason="qdbev_ros needs rclpy and vision_msgs")
from vision_msgs.msg import Detection3DArray  # noqa: E402


def _det(n: int, seed: int, names=CLASS_NAMES, columns: int = 9) -> Detections:
    rng = np.random.default_rng(seed)
    boxes = rng.normal(scale=20.0, size=(n, columns))
    boxes[:, 3:6] = np.abs(boxes[:, 3:6]) + 0.1
    boxes[:, 6] = rng.uniform(-4.0, 4.0, n)
    return Detections(boxes=boxes, scores=rng.random(n), labels=rng.integers(0, len(names), n), class_names=names)


# frame ids of every length mod 8 move the boxes' alignment; a user's own classes may be non-ASCII
CASES = [(n, frame, names) for n in (0, 1, 2, 7, 300)
         for frame in ("base_link", "ab", "abc", "abcd", "x" * 13, "map")
         for names in (CLASS_NAMES, ("Fahrrad", "Fußgänger", "c"))]


@pytest.mark.parametrize("n,frame,names", CASES)
def test_detection_bytes_are_the_reference_message(n: int, frame: str, names) -> None:
    det = _det(n, seed=n + len(frame), names=names)
    header = conversions.make_header(1_700_000_000.123456789 + n, frame)
    ref = conversions.detections_to_msg(det, header)
    raw = detection3d_array_cdr(det, header.stamp.sec, header.stamp.nanosec, frame)
    back = rclpy_serialization.deserialize_message(raw, Detection3DArray)
    assert back == ref
    # same size as rclpy's own serialisation (its padding bytes are not initialised, so not compared)
    assert len(raw) == len(rclpy_serialization.serialize_message(ref))
    assert raw == detection3d_array_cdr(det, header.stamp.sec, header.stamp.nanosec, frame)  # padding is zeros


@pytest.mark.parametrize("n,frame", [(n, f) for n in (0, 1, 2, 300) for f in ("base_link", "ab", "abc", "abcd")])
def test_velocity_bytes_are_the_reference_message(n: int, frame: str) -> None:
    msgs = pytest.importorskip("qdbev_msgs.msg", reason="qdbev_msgs is not built (make setup)")
    header = conversions.make_header(12.5, frame)
    for det in (_det(n, seed=n), _det(n, seed=n, columns=7)):  # 7 columns: no velocity -> zeros
        ref = conversions.velocities_to_msg(det, header)
        raw = object_velocity_array_cdr(det, header.stamp.sec, header.stamp.nanosec, frame)
        assert rclpy_serialization.deserialize_message(raw, msgs.ObjectVelocityArray) == ref
        assert len(raw) == len(rclpy_serialization.serialize_message(ref))


def test_half_a_detection_is_refused() -> None:
    det = _det(3, seed=1)
    bad = Detections(boxes=det.boxes, scores=det.scores[:2], labels=det.labels, class_names=det.class_names)
    with pytest.raises(ValueError, match="inconsistent"):
        detection3d_array_cdr(bad, 0, 0, "base_link")


def test_the_node_checks_the_wire_form_against_the_installed_definitions() -> None:
    """``wire_form_matches`` passes on this install and names the type whose definition differs,
    so a node on another ROS install falls back to message objects instead of sending bytes its
    subscribers would misread."""
    outputs = pytest.importorskip("qdbev_ros.outputs", reason="qdbev_ros needs rclpy")
    msgs = pytest.importorskip("qdbev_msgs.msg", reason="qdbev_msgs is not built (make setup)")
    from geometry_msgs.msg import PoseArray

    assert outputs.wire_form_matches() is None
    assert outputs.wire_form_matches(msgs.ObjectVelocityArray) is None
    problem = outputs.wire_form_matches(PoseArray)  # another layout under the velocity topic's bytes
    assert problem is not None and problem.startswith("PoseArray")
