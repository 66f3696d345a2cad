"""Autoware output over real rclpy between two processes (issue 18).

``qdbev_node`` runs as its own process (``NodeProcess``: random-weight ``nano`` model,
``publish_autoware_objects:=true``); this process (``RigPublisher``: six cameras, CameraInfo,
``/tf_static``; ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a ``ROS_DOMAIN_ID`` of this test's
own) also subscribes to ``/qdbev_node/objects`` (``autoware_perception_msgs/DetectedObjects``).
Each received ``DetectedObjects`` must equal, field by field, what the documented mapping
(``qdbev_ros.autoware``, docs/NODE.md) makes of the ``Detection3DArray`` + ``ObjectVelocityArray``
with the same stamp: the message arrives intact and carries the documented class mapping.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from test_node_e2e import NodeProcess, RigPublisher, saved_random_model, test_domain_id  # noqa: E402

pytest.importorskip("autoware_perception_msgs.msg", reason="ros_interfaces/autoware_perception_msgs not built")

EXPECTED_LABELS = {  # docs/NODE.md "Autoware output", written out
    "car": 1, "truck": 2, "construction_vehicle": 2, "bus": 3, "trailer": 4, "barrier": 0,
    "motorcycle": 5, "bicycle": 6, "pedestrian": 7, "traffic_cone": 0,
}


def _stamp(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


@pytest.mark.timeout(240)
def test_detected_objects_arrive_intact_with_the_documented_mapping(tmp_path: Path) -> None:
    from autoware_perception_msgs.msg import DetectedObjectKinematics, DetectedObjects, Shape

    model = saved_random_model(tmp_path)
    domain = test_domain_id(11)
    rig = RigPublisher(domain)
    objects: list = []
    rig.node.create_subscription(DetectedObjects, "/qdbev_node/objects", objects.append, 10)
    node = NodeProcess({"model": str(model), "score_threshold": "0.0", "max_detections": "40",
                        "publish_markers": "false", "ego_pose_source": "none",
                        "publish_autoware_objects": "true"}, domain)
    try:
        rig.wait_for_node(node, timeout=120)
        rig.publish_tf_static()
        rig.wait_for_images_subscribed(node, timeout=120)

        def paired() -> list[tuple]:
            det = {_stamp(m): m for m in rig.detections}
            vel = {_stamp(m): m for m in rig.velocities}
            return [(o, det[_stamp(o)], vel[_stamp(o)]) for o in objects
                    if _stamp(o) in det and _stamp(o) in vel]

        rig.stream_until(node, lambda: len(paired()) >= 2, 150, 1_700_000_000.0, odom=False)
    finally:
        code = node.stop()
        rig.close()
    assert code == 0, node.log
    assert "[internal]" not in node.log, node.log

    triples = paired()
    assert len(triples) >= 2
    labels_seen: set[str] = set()
    for obj_msg, det_msg, vel_msg in triples:
        assert obj_msg.header.frame_id == "base_link"
        assert _stamp(obj_msg) in rig.front_stamps  # stamp = CAM_FRONT's
        assert 0 < len(obj_msg.objects) == len(det_msg.detections) == len(vel_msg.velocities) <= 40
        for obj, d, v in zip(obj_msg.objects, det_msg.detections, vel_msg.velocities):
            hyp = d.results[0].hypothesis
            labels_seen.add(hyp.class_id)
            assert obj.existence_probability == pytest.approx(hyp.score, abs=1e-6)  # float32 on the wire
            (cls,) = obj.classification
            assert cls.label == EXPECTED_LABELS[hyp.class_id] and cls.probability == 1.0
            kin = obj.kinematics
            pose, center = kin.pose_with_covariance.pose, d.bbox.center
            for a in ("x", "y", "z"):
                assert getattr(pose.position, a) == getattr(center.position, a)
            for a in ("x", "y", "z", "w"):
                assert getattr(pose.orientation, a) == getattr(center.orientation, a)
            yaw = 2.0 * math.atan2(center.orientation.z, center.orientation.w)
            twist = kin.twist_with_covariance.twist
            assert twist.linear.x == pytest.approx(math.cos(yaw) * v.x + math.sin(yaw) * v.y, abs=1e-9)
            assert twist.linear.y == pytest.approx(-math.sin(yaw) * v.x + math.cos(yaw) * v.y, abs=1e-9)
            assert math.hypot(twist.linear.x, twist.linear.y) == pytest.approx(math.hypot(v.x, v.y), abs=1e-9)
            assert kin.has_twist and not kin.has_twist_covariance and not kin.has_position_covariance
            assert not np.any(kin.pose_with_covariance.covariance)
            want = {"barrier": DetectedObjectKinematics.SIGN_UNKNOWN,
                    "traffic_cone": DetectedObjectKinematics.UNAVAILABLE}.get(hyp.class_id,
                                                                             DetectedObjectKinematics.AVAILABLE)
            assert kin.orientation_availability == want
            assert obj.shape.type == Shape.BOUNDING_BOX and list(obj.shape.footprint.points) == []
            assert (obj.shape.dimensions.x, obj.shape.dimensions.y, obj.shape.dimensions.z) == (
                d.bbox.size.x, d.bbox.size.y, d.bbox.size.z)
    assert labels_seen  # a random model scores every class; the mapping was exercised
