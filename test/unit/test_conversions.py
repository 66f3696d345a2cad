"""qdbev_ros.conversions: Detections <-> vision_msgs/Detection3DArray (no middleware involved)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.types import Detections
from qdbev_ros.conversions import (
    detections_to_msg,
    make_header,
    msg_to_detections,
    quaternion_to_yaw,
    seconds_to_stamp,
    stamp_to_seconds,
    yaw_to_quaternion,
)


def _detections(n: int = 12, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    boxes = np.zeros((n, 9))
    boxes[:, 0:3] = rng.uniform(-50, 50, (n, 3))
    boxes[:, 3:6] = rng.uniform(0.3, 12.0, (n, 3))
    boxes[:, 6] = rng.uniform(-math.pi, math.pi, n)
    boxes[:, 7:9] = rng.normal(0, 5, (n, 2))
    boxes[0, 6] = 0.3
    boxes[1, 6] = math.pi  # the boundary of (-pi, pi]
    boxes[2, 0] = 1.0 / 3.0  # not representable in float32
    return Detections(
        boxes=boxes,
        scores=rng.uniform(0, 1, n),
        labels=np.arange(n, dtype=np.int64) % len(CLASS_NAMES),
    )


def test_round_trip_is_exact_in_float64() -> None:
    det = _detections()
    header = make_header(1_700_000_000.25, "base_link")
    msg = detections_to_msg(det, header)
    back = msg_to_detections(msg)

    assert len(msg.detections) == len(det)
    assert back.class_names == det.class_names
    np.testing.assert_array_equal(back.labels, det.labels)
    np.testing.assert_array_equal(back.scores, det.scores)  # bit-exact
    np.testing.assert_array_equal(back.boxes[:, 0:6], det.boxes[:, 0:6])  # bit-exact
    np.testing.assert_allclose(back.boxes[:, 6], det.boxes[:, 6], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(back.boxes[:, 7:9], 0.0)  # velocity is not in Detection3D
    assert back.boxes.dtype == np.float64 and back.scores.dtype == np.float64
    assert back.labels.dtype == np.int64


def test_message_fields() -> None:
    det = _detections(3)
    msg = detections_to_msg(det, make_header(12.5, "base_link"))
    assert msg.header.frame_id == "base_link"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    for i, d in enumerate(msg.detections):
        assert d.header.frame_id == "base_link" and d.header.stamp.sec == 12
        assert len(d.results) == 1
        hyp = d.results[0]
        assert hyp.hypothesis.class_id == CLASS_NAMES[det.labels[i]]
        assert hyp.hypothesis.score == det.scores[i]
        c = d.bbox.center.position
        assert (c.x, c.y, c.z) == tuple(det.boxes[i, 0:3])  # centre at mid-height
        assert (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) == tuple(det.boxes[i, 3:6])  # l, w, h
        assert hyp.pose.pose.position.x == c.x and hyp.pose.pose.orientation.w == d.bbox.center.orientation.w
    # headers are copies, not shared references
    msg.detections[0].header.frame_id = "changed"
    assert msg.header.frame_id == "base_link" and msg.detections[1].header.frame_id == "base_link"


def test_quaternion_order_is_xyzw() -> None:
    det = Detections(
        boxes=np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0]]),
        scores=np.array([0.5]),
        labels=np.array([0]),
    )
    q = detections_to_msg(det, make_header(0.0)).detections[0].bbox.center.orientation
    assert q.x == 0.0 and q.y == 0.0
    assert q.z == pytest.approx(math.sin(0.15), abs=1e-15)
    assert q.w == pytest.approx(math.cos(0.15), abs=1e-15)
    assert yaw_to_quaternion(0.3) == (0.0, 0.0, math.sin(0.15), math.cos(0.15))


@pytest.mark.parametrize("yaw", [0.0, 0.3, -0.3, 1.5, -2.9, math.pi, -math.pi + 1e-9])
def test_yaw_quaternion_inverse(yaw: float) -> None:
    assert quaternion_to_yaw(*yaw_to_quaternion(yaw)) == pytest.approx(yaw, abs=1e-14)


def test_yaw_of_general_quaternion_and_wrap() -> None:
    # q and -q are the same rotation
    x, y, z, w = yaw_to_quaternion(2.0)
    assert quaternion_to_yaw(-x, -y, -z, -w) == pytest.approx(2.0, abs=1e-14)
    # yaw of a rotation with some roll: 90 deg about z, then 10 deg about the new x
    qz = np.array([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    a = math.radians(10) / 2
    qx = np.array([math.sin(a), 0.0, 0.0, math.cos(a)])
    x1, y1, z1, w1 = qz
    x2, y2, z2, w2 = qx
    prod = (
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    )
    assert quaternion_to_yaw(*prod) == pytest.approx(math.pi / 2, abs=1e-12)


def test_empty_detections() -> None:
    msg = detections_to_msg(Detections(), make_header(1.0, "base_link"))
    assert len(msg.detections) == 0
    back = msg_to_detections(msg)
    assert back.boxes.shape == (0, 9) and back.scores.shape == (0,) and back.labels.shape == (0,)


def test_best_hypothesis_and_errors() -> None:
    det = _detections(3)
    msg = detections_to_msg(det, make_header(1.0))
    extra = type(msg.detections[0].results[0])()
    extra.hypothesis.class_id = "bus"
    extra.hypothesis.score = 2.0
    msg.detections[0].results.append(extra)
    back = msg_to_detections(msg)
    assert back.names()[0] == "bus" and back.scores[0] == 2.0

    msg.detections[1].results[0].hypothesis.class_id = "unicorn"
    with pytest.raises(ValueError, match="unicorn"):
        msg_to_detections(msg)
    msg.detections[1].results.clear()
    with pytest.raises(ValueError, match="no class hypothesis"):
        msg_to_detections(msg)


def test_custom_class_names() -> None:
    det = Detections(
        boxes=np.array([[1.0, 2.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]),
        scores=np.array([0.7]),
        labels=np.array([1]),
        class_names=("robot", "cone"),
    )
    msg = detections_to_msg(det, make_header(1.0))
    assert msg.detections[0].results[0].hypothesis.class_id == "cone"
    back = msg_to_detections(msg, class_names=("robot", "cone"))
    assert back.class_names == ("robot", "cone") and back.labels.tolist() == [1]


def test_stamps() -> None:
    t = seconds_to_stamp(1_700_000_000.5)
    assert (t.sec, t.nanosec) == (1_700_000_000, 500_000_000)
    assert stamp_to_seconds(t) == 1_700_000_000.5
    t = seconds_to_stamp(3.999_999_999_9)
    assert (t.sec, t.nanosec) == (4, 0)
    with pytest.raises(ValueError):
        seconds_to_stamp(-1.0)
