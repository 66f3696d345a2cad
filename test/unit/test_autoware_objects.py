"""``qdbev_ros.autoware``: Detections -> autoware_perception_msgs/DetectedObjects (issue 18).

The documented class mapping (docs/NODE.md "Autoware output"), every field of one object, the
twist in the object's frame, and that the generated message package has upstream's field list
(autoware_perception_msgs 1.12.0), so a real Autoware subscriber reads what the node sends.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="message packages need the ROS 2 wheels (make setup)")
pytest.importorskip("autoware_perception_msgs.msg", reason="ros_interfaces/autoware_perception_msgs not built")

from autoware_perception_msgs.msg import (  # noqa: E402
    DetectedObject,
    DetectedObjectKinematics,
    DetectedObjects,
    ObjectClassification,
    Shape,
)

from qdbev_core.classes import CLASS_NAMES  # noqa: E402
from qdbev_core.types import Detections  # noqa: E402
from qdbev_ros.autoware import (  # noqa: E402
    AUTOWARE_LABELS,
    ORIENTATION_AVAILABILITY,
    autoware_label,
    detections_to_objects,
    twist_in_object_frame,
)
from qdbev_ros.conversions import make_header  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

EXPECTED_LABELS = {  # the documented mapping, written out
    "car": "CAR", "truck": "TRUCK", "construction_vehicle": "TRUCK", "bus": "BUS", "trailer": "TRAILER",
    "barrier": "UNKNOWN", "motorcycle": "MOTORCYCLE", "bicycle": "BICYCLE", "pedestrian": "PEDESTRIAN",
    "traffic_cone": "UNKNOWN",
}


def _det(rows: list[list[float]], labels: list[int], scores: list[float] | None = None) -> Detections:
    boxes = np.array(rows, dtype=np.float64)
    return Detections(boxes=boxes, scores=np.array(scores or [0.5] * len(rows)),
                      labels=np.array(labels, dtype=np.int64))


def test_class_mapping_is_the_documented_one() -> None:
    assert set(AUTOWARE_LABELS) == set(CLASS_NAMES)
    for name, label in EXPECTED_LABELS.items():
        assert autoware_label(name) == getattr(ObjectClassification, label), name
    assert autoware_label("barrier", "HAZARD") == ObjectClassification.HAZARD == 9
    assert autoware_label("traffic_cone", "HAZARD") == ObjectClassification.HAZARD
    assert autoware_label("car", "HAZARD") == ObjectClassification.CAR  # only the obstacles move
    with pytest.raises(ValueError, match="obstacle label"):
        autoware_label("barrier", "ANIMAL")
    with pytest.raises(ValueError, match="no Autoware label"):
        autoware_label("tram")
    # one object per class, in order, through the message
    det = _det([[float(i), 0, 0, 1, 1, 1, 0, 0, 0] for i in range(len(CLASS_NAMES))], list(range(len(CLASS_NAMES))))
    msg = detections_to_objects(det, make_header(1.0))
    assert [o.classification[0].label for o in msg.objects] == [
        getattr(ObjectClassification, EXPECTED_LABELS[n]) for n in CLASS_NAMES]


def test_docs_table_states_the_mapping() -> None:
    text = (REPO / "docs" / "NODE.md").read_text()
    section = text.split("## Autoware output", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \(", section, flags=re.M))
    assert rows == EXPECTED_LABELS


def test_one_object_every_field() -> None:
    yaw, vx, vy = 0.7, 3.0, -1.0
    det = _det([[10.0, -2.0, 0.8, 4.5, 1.9, 1.6, yaw, vx, vy]], [CLASS_NAMES.index("truck")], [0.83])
    from builtin_interfaces.msg import Time

    header = make_header(Time(sec=1_700_000_000, nanosec=250_000_000), "base_link")
    msg = detections_to_objects(det, header)
    assert isinstance(msg, DetectedObjects)
    assert msg.header.frame_id == "base_link" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        1_700_000_000, 250_000_000)
    assert msg.header is not header
    (obj,) = msg.objects
    assert isinstance(obj, DetectedObject)
    assert obj.existence_probability == pytest.approx(0.83, abs=1e-6)  # float32 field
    (cls,) = obj.classification
    assert cls.label == ObjectClassification.TRUCK and cls.probability == 1.0
    kin = obj.kinematics
    p = kin.pose_with_covariance.pose
    assert (p.position.x, p.position.y, p.position.z) == (10.0, -2.0, 0.8)
    assert (p.orientation.x, p.orientation.y) == (0.0, 0.0)
    assert p.orientation.z == pytest.approx(math.sin(yaw / 2)) and p.orientation.w == pytest.approx(math.cos(yaw / 2))
    assert not kin.has_position_covariance and not np.any(kin.pose_with_covariance.covariance)
    assert kin.orientation_availability == DetectedObjectKinematics.AVAILABLE
    t = kin.twist_with_covariance.twist
    assert t.linear.x == pytest.approx(math.cos(yaw) * vx + math.sin(yaw) * vy)
    assert t.linear.y == pytest.approx(-math.sin(yaw) * vx + math.cos(yaw) * vy)
    assert (t.linear.z, t.angular.x, t.angular.y, t.angular.z) == (0.0, 0.0, 0.0, 0.0)
    assert kin.has_twist and not kin.has_twist_covariance
    assert obj.shape.type == Shape.BOUNDING_BOX
    assert (obj.shape.dimensions.x, obj.shape.dimensions.y, obj.shape.dimensions.z) == (4.5, 1.9, 1.6)
    assert list(obj.shape.footprint.points) == []


def test_twist_is_in_the_object_frame() -> None:
    # an object heading 90 degrees left and driving forward at 5 m/s moves along base_link's +y
    fwd, left = twist_in_object_frame(0.0, 5.0, math.pi / 2)
    assert fwd == pytest.approx(5.0) and left == pytest.approx(0.0, abs=1e-12)
    # reversing (velocity against the heading) is a negative forward speed, speed is preserved
    fwd, left = twist_in_object_frame(-2.0, 0.0, 0.0)
    assert (fwd, left) == (-2.0, 0.0)
    rng = np.random.default_rng(0)
    for vx, vy, yaw in rng.uniform(-10, 10, (20, 3)):
        f, lft = twist_in_object_frame(vx, vy, yaw)
        assert math.hypot(f, lft) == pytest.approx(math.hypot(vx, vy))
        # rotating back gives the base_link velocity
        assert f * math.cos(yaw) - lft * math.sin(yaw) == pytest.approx(vx)
        assert f * math.sin(yaw) + lft * math.cos(yaw) == pytest.approx(vy)


def test_orientation_availability_per_class() -> None:
    names = ["car", "pedestrian", "barrier", "traffic_cone"]
    det = _det([[0, 0, 0, 1, 1, 1, 0.1, 0, 0]] * 4, [CLASS_NAMES.index(n) for n in names])
    got = [o.kinematics.orientation_availability for o in detections_to_objects(det, make_header(0.0)).objects]
    assert got == [DetectedObjectKinematics.AVAILABLE, DetectedObjectKinematics.AVAILABLE,
                   DetectedObjectKinematics.SIGN_UNKNOWN, DetectedObjectKinematics.UNAVAILABLE]
    assert set(ORIENTATION_AVAILABILITY) == set(CLASS_NAMES)


def test_hazard_label_boxes_without_velocity_and_empty() -> None:
    det = _det([[0, 0, 0, 0.4, 0.4, 1.0, 0.0]], [CLASS_NAMES.index("traffic_cone")])  # 7 columns: no velocity
    (obj,) = detections_to_objects(det, make_header(0.0), obstacle_label="HAZARD").objects
    assert obj.classification[0].label == ObjectClassification.HAZARD
    assert not obj.kinematics.has_twist and obj.kinematics.twist_with_covariance.twist.linear.x == 0.0
    empty = detections_to_objects(Detections(), make_header(2.0))
    assert list(empty.objects) == [] and empty.header.stamp.sec == 2
    with pytest.raises(ValueError, match="obstacle label"):
        detections_to_objects(det, make_header(0.0), obstacle_label="hazard")
    with pytest.raises(ValueError, match="inconsistent"):
        detections_to_objects(Detections(boxes=np.zeros((2, 9)), scores=np.zeros(1), labels=np.zeros(2, int)),
                              make_header(0.0))
    with pytest.raises(ValueError, match="columns"):
        detections_to_objects(Detections(boxes=np.zeros((1, 5)), scores=np.zeros(1), labels=np.zeros(1, int)),
                              make_header(0.0))


def test_message_definitions_are_upstreams() -> None:
    """Field names and types of autoware_perception_msgs 1.12.0 (github.com/autowarefoundation/
    autoware_msgs), and the constants' values: what a real Autoware subscriber expects."""
    assert DetectedObjects.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "objects": "sequence<autoware_perception_msgs/DetectedObject>"}
    assert DetectedObject.get_fields_and_field_types() == {
        "existence_probability": "float",
        "classification": "sequence<autoware_perception_msgs/ObjectClassification>",
        "kinematics": "autoware_perception_msgs/DetectedObjectKinematics",
        "shape": "autoware_perception_msgs/Shape"}
    assert DetectedObjectKinematics.get_fields_and_field_types() == {
        "pose_with_covariance": "geometry_msgs/PoseWithCovariance", "has_position_covariance": "boolean",
        "orientation_availability": "uint8", "twist_with_covariance": "geometry_msgs/TwistWithCovariance",
        "has_twist": "boolean", "has_twist_covariance": "boolean"}
    assert ObjectClassification.get_fields_and_field_types() == {"label": "uint8", "probability": "float"}
    assert Shape.get_fields_and_field_types() == {
        "type": "uint8", "footprint": "geometry_msgs/Polygon", "dimensions": "geometry_msgs/Vector3"}
    consts = {k: getattr(ObjectClassification, k) for k in (
        "UNKNOWN", "CAR", "TRUCK", "BUS", "TRAILER", "MOTORCYCLE", "BICYCLE", "PEDESTRIAN", "ANIMAL", "HAZARD",
        "OVER_DRIVABLE", "UNDER_DRIVABLE")}
    assert list(consts.values()) == list(range(12))
    assert (Shape.BOUNDING_BOX, Shape.CYLINDER, Shape.POLYGON) == (0, 1, 2)
    assert (DetectedObjectKinematics.UNAVAILABLE, DetectedObjectKinematics.SIGN_UNKNOWN,
            DetectedObjectKinematics.AVAILABLE) == (0, 1, 2)
