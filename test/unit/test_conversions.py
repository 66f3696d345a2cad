"""qdbev_ros.conversions: Detections <-> vision_msgs/Detection3DArray + qdbev_msgs/ObjectVelocityArray.

No middleware involved; the velocity pairing is stamp-exact.
"""

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
    pair_by_stamp,
    quaternion_to_yaw,
    seconds_to_stamp,
    stamp_to_seconds,
    velocities_to_msg,
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
    np.testing.assert_array_equal(back.boxes[:, 7:9], 0.0)  # velocity is not in Detection3D...
    full = msg_to_detections(msg, velocities=velocities_to_msg(det, header))  # ...but in its velocity message
    np.testing.assert_array_equal(full.boxes[:, [0, 1, 2, 3, 4, 5, 7, 8]], det.boxes[:, [0, 1, 2, 3, 4, 5, 7, 8]])
    np.testing.assert_array_equal(full.scores, det.scores)
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


# ---- velocities (qdbev_msgs/ObjectVelocityArray) ------------------------------------------------


def test_velocity_message_fields() -> None:
    det = _detections(4)
    header = make_header(1_700_000_000.25, "base_link")
    vel = velocities_to_msg(det, header)
    assert type(vel).__name__ == "ObjectVelocityArray"
    assert vel.header == header and vel.header is not header  # same header, a copy
    assert [(v.x, v.y, v.z) for v in vel.velocities] == [(b[7], b[8], 0.0) for b in det.boxes]  # m/s, same order
    seven = Detections(boxes=det.boxes[:, :7], scores=det.scores, labels=det.labels)  # no velocity columns
    assert all((v.x, v.y) == (0.0, 0.0) for v in velocities_to_msg(seven, header).velocities)
    assert len(velocities_to_msg(Detections(), header).velocities) == 0


def test_velocities_must_belong_to_the_detections() -> None:
    det = _detections(3)
    header = make_header(5.0, "base_link")
    msg = detections_to_msg(det, header)
    with pytest.raises(ValueError, match="do not belong"):
        msg_to_detections(msg, velocities=velocities_to_msg(det, make_header(5.000000001, "base_link")))  # 1 ns off
    with pytest.raises(ValueError, match="frame 'odom'"):
        msg_to_detections(msg, velocities=velocities_to_msg(det, make_header(5.0, "odom")))
    fewer = Detections(boxes=det.boxes[:2], scores=det.scores[:2], labels=det.labels[:2])
    with pytest.raises(ValueError, match="2 velocities for 3 detections"):
        msg_to_detections(msg, velocities=velocities_to_msg(fewer, header))


def test_pair_by_stamp_is_exact() -> None:
    """Pairs by integer-ns stamp regardless of order; misses and leftovers are listed, not guessed."""
    stamps = [10.0, 10.5, 11.0, 11.5]
    dets = [_detections(3, seed=i) for i in range(len(stamps))]
    det_msgs = [detections_to_msg(d, make_header(t)) for d, t in zip(dets, stamps)]
    vel_msgs = [velocities_to_msg(d, make_header(t)) for d, t in zip(dets, stamps)]
    # velocity of 11.0 lost, one stray velocity 1 ns after 11.5, arrival order shuffled
    stray = velocities_to_msg(dets[3], make_header(seconds_to_stamp(11.5)))
    stray.header.stamp.nanosec += 1
    paired = pair_by_stamp(det_msgs, [vel_msgs[3], vel_msgs[0], stray, vel_msgs[1]])
    assert [t for t, _ in paired.pairs] == [int(t * 1e9) for t in stamps]  # detections order kept
    for (t, got), want, s in zip(paired.pairs, dets, stamps):
        expected = 0.0 if s == 11.0 else want.boxes[:, 7:9]
        np.testing.assert_array_equal(got.boxes[:, 7:9], expected)
        np.testing.assert_array_equal(got.boxes[:, :6], want.boxes[:, :6])
    assert paired.without_velocity == [11_000_000_000]
    assert paired.unmatched_velocity == [11_500_000_001]
    assert set(paired.by_stamp()) == {int(t * 1e9) for t in stamps}


def test_pair_by_stamp_repeated_stamps_pair_in_order() -> None:
    """A bag played twice repeats stamps: the n-th detections of a stamp take its n-th velocities."""
    a, b = _detections(3, seed=1), _detections(3, seed=2)
    h = make_header(3.0)
    paired = pair_by_stamp([detections_to_msg(a, h), detections_to_msg(b, h)],
                           [velocities_to_msg(a, h), velocities_to_msg(b, h)])
    np.testing.assert_array_equal(paired.pairs[0][1].boxes[:, 7:9], a.boxes[:, 7:9])
    np.testing.assert_array_equal(paired.pairs[1][1].boxes[:, 7:9], b.boxes[:, 7:9])
    assert not paired.without_velocity and not paired.unmatched_velocity
