"""``qdbev_core.runtime.messages``: the node's output messages, written once against a factory.

A recording factory (plain objects, no ROS) shows the mapping itself; the rosbags factory
(``qdbev_core.bag.messages.new``) must give the same messages, and both bindings validate the
same way (before the builders were shared, the bag side accepted inconsistent ``Detections``).
rclpy vs rosbags after serialization: ``test_bag.py::test_message_bytes_equal_the_nodes_messages``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from qdbev_core.runtime import messages as rt
from qdbev_core.types import Detections


def _make(typename: str, **fields) -> SimpleNamespace:
    return SimpleNamespace(_type=typename, **fields)


def _hdr(ns: int = 1_700_000_000_123_456_789, frame: str = "base_link") -> SimpleNamespace:
    return rt.header(_make, ns, frame)


def _det() -> Detections:
    boxes = np.array([[10.0, -2.0, 0.8, 4.5, 1.9, 1.6, 0.5, 3.0, 4.0],
                      [0.0, 5.0, 0.3, 0.5, 0.5, 1.0, -math.pi / 2, 0.05, 0.0]])
    return Detections(boxes=boxes, scores=np.array([0.9, 0.25]), labels=np.array([0, 9]))


def test_detections_mapping() -> None:
    msg = rt.detections_to_msg(_make, _det(), _hdr())
    assert msg._type == "vision_msgs/msg/Detection3DArray" and msg.header.frame_id == "base_link"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    d = msg.detections[0]
    assert d.header is not msg.header and d.header.stamp.nanosec == 123_456_789 and d.id == ""
    hyp = d.results[0]
    assert hyp.hypothesis.class_id == "car" and hyp.hypothesis.score == 0.9
    c = d.bbox.center
    assert (c.position.x, c.position.y, c.position.z) == (10.0, -2.0, 0.8)
    assert (c.orientation.x, c.orientation.y) == (0.0, 0.0)
    assert (c.orientation.z, c.orientation.w) == (math.sin(0.25), math.cos(0.25))
    assert (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) == (4.5, 1.9, 1.6)
    assert hyp.pose.pose.position.x == 10.0 and hyp.pose.pose is not c  # same pose, own objects
    assert msg.detections[1].results[0].hypothesis.class_id == "traffic_cone"
    yaw = rt.quaternion_to_yaw(*rt.yaw_to_quaternion(-math.pi / 2))
    assert yaw == pytest.approx(-math.pi / 2)


def test_velocities_and_markers() -> None:
    vel = rt.velocities_to_msg(_make, _det(), _hdr())
    assert vel._type == "qdbev_msgs/msg/ObjectVelocityArray"
    assert [(v.x, v.y, v.z) for v in vel.velocities] == [(3.0, 4.0, 0.0), (0.05, 0.0, 0.0)]
    markers = rt.detections_to_markers(_make, _det(), _hdr()).markers
    assert markers[0].action == 3  # DELETEALL first
    assert [(mk.ns, mk.id, mk.type) for mk in markers[1:]] == [
        ("boxes", 0, 1), ("labels", 0, 9), ("velocity", 0, 0), ("boxes", 1, 1), ("labels", 1, 9)]  # 2nd: too slow
    assert markers[2].text == "car 0.90" and markers[2].pose.position.z == pytest.approx(0.8 + 0.8 + 0.4)
    arrow = markers[3]
    assert (arrow.points[1].x, arrow.points[1].y) == (13.0, 2.0)  # 1 s of (3, 4) m/s
    shown = rt.detections_to_markers(_make, _det(), _hdr(), min_score=0.3).markers
    assert [getattr(mk, "ns", "") for mk in shown] == ["", "boxes", "labels", "velocity"]  # 0.25 < 0.3


def test_inconsistent_detections_are_refused_by_every_binding() -> None:
    from qdbev_core.bag import messages as bag

    bad = Detections(boxes=np.zeros((2, 9)), scores=np.zeros(3), labels=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="inconsistent Detections"):
        rt.detections_to_msg(_make, bad, _hdr())
    with pytest.raises(ValueError, match="inconsistent Detections"):
        bag.detections_to_msg(bad, 1, "base_link")
    with pytest.raises(ValueError, match="at least 7 columns"):
        bag.detections_to_msg(Detections(boxes=np.zeros((1, 5)), scores=np.zeros(1), labels=np.zeros(1, int)), 1, "b")


def test_rosbags_messages_read_back() -> None:
    """The rosbags binding builds what the readers (shared with rclpy) turn back into Detections."""
    from qdbev_core.bag import messages as bag

    det = _det()
    ns = 1_700_000_000_123_456_789
    back = rt.with_velocities(rt.msg_to_detections(bag.detections_to_msg(det, ns, "base_link")),
                              bag.velocities_to_msg(det, ns, "base_link"), bag.detections_to_msg(det, ns, "base_link"))
    np.testing.assert_allclose(back.boxes, det.boxes, atol=1e-12)
    assert back.labels.tolist() == [0, 9] and back.scores.tolist() == [0.9, 0.25]
    markers = bag.detections_to_markers(det, ns, "base_link", min_score=0.3)
    assert [mk.ns for mk in markers.markers] == ["", "boxes", "labels", "velocity"]
