"""Detection3DArray between two separate processes over real rclpy / Fast DDS.

A subscriber process and a publisher process (the venv's interpreter, the test's environment:
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, the test's ``ROS_DOMAIN_ID``, qdbev's Fast DDS
profile). The publisher builds the message with ``qdbev_ros.conversions`` from a ``Detections``
read from a JSON file, waits for the subscriber by polling ``get_subscription_count()``, publishes
and waits until the sample is acknowledged. The subscriber converts the message back and prints
JSON, which must equal the input field by field.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.classes import CLASS_NAMES

REPO = Path(__file__).resolve().parents[2]
TOPIC = "/qdbev_test/detections"
STAMP = (1_700_000_123, 456_789_012)
FRAME_ID = "base_link"
TIMEOUT_S = 60.0

_COMMON = textwrap.dedent(
    """
    import json, sys, time
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection3DArray

    QOS = QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1,
        reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    TOPIC, TIMEOUT_S = sys.argv[1], float(sys.argv[2])
    """
)

PUBLISHER = _COMMON + textwrap.dedent(
    """
    import numpy as np
    from builtin_interfaces.msg import Time
    from rclpy.duration import Duration
    from std_msgs.msg import Header
    from qdbev_core.types import Detections
    from qdbev_ros.conversions import detections_to_msg

    spec = json.load(open(sys.argv[3]))
    det = Detections(
        boxes=np.array(spec["boxes"], dtype=np.float64),
        scores=np.array(spec["scores"], dtype=np.float64),
        labels=np.array(spec["labels"], dtype=np.int64),
    )
    header = Header(stamp=Time(sec=spec["stamp"][0], nanosec=spec["stamp"][1]), frame_id=spec["frame_id"])
    msg = detections_to_msg(det, header)

    rclpy.init()
    node = rclpy.create_node("qdbev_test_publisher")
    pub = node.create_publisher(Detection3DArray, TOPIC, QOS)
    deadline = time.monotonic() + TIMEOUT_S
    while pub.get_subscription_count() < 1:  # discovery, no fixed sleep
        if time.monotonic() > deadline:
            print("publisher: no subscriber matched", file=sys.stderr)
            sys.exit(3)
        rclpy.spin_once(node, timeout_sec=0.05)
    pub.publish(msg)
    acked = pub.wait_for_all_acked(Duration(seconds=TIMEOUT_S))
    print(json.dumps({"published": len(msg.detections), "acked": bool(acked)}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    sys.exit(0 if acked else 4)
    """
)

SUBSCRIBER = _COMMON + textwrap.dedent(
    """
    from qdbev_ros.conversions import msg_to_detections

    rclpy.init()
    node = rclpy.create_node("qdbev_test_subscriber")
    received = []
    sub = node.create_subscription(Detection3DArray, TOPIC, received.append, QOS)
    print("ready", flush=True)
    deadline = time.monotonic() + TIMEOUT_S
    while not received:
        if time.monotonic() > deadline:
            print("subscriber: nothing received", file=sys.stderr)
            sys.exit(3)
        rclpy.spin_once(node, timeout_sec=0.1)
    msg = received[0]
    det = msg_to_detections(msg)
    print(json.dumps({
        "frame_id": msg.header.frame_id,
        "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
        "det_headers": [[d.header.frame_id, d.header.stamp.sec, d.header.stamp.nanosec] for d in msg.detections],
        "quaternions": [[d.bbox.center.orientation.x, d.bbox.center.orientation.y,
                         d.bbox.center.orientation.z, d.bbox.center.orientation.w] for d in msg.detections],
        "names": det.names(),
        "labels": det.labels.tolist(),
        "scores": det.scores.tolist(),
        "boxes": det.boxes.tolist(),
    }), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def _spec() -> dict:
    rng = np.random.default_rng(42)
    n = 7
    boxes = np.zeros((n, 9))
    boxes[:, 0:2] = rng.uniform(-45, 45, (n, 2))
    boxes[:, 2] = rng.uniform(-1, 2, n)
    boxes[:, 3:6] = rng.uniform(0.4, 11, (n, 3))
    boxes[:, 6] = rng.uniform(-math.pi, math.pi, n)
    boxes[0, 6] = 0.3
    boxes[1, 0] = 1.0 / 3.0
    return {
        "boxes": boxes.tolist(),
        "scores": rng.uniform(0.05, 1.0, n).tolist(),
        "labels": [0, 8, 3, 9, 5, 1, 7],
        "stamp": list(STAMP),
        "frame_id": FRAME_ID,
    }


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.timeout(180)
def test_detections_cross_process(tmp_path: Path) -> None:
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST"  # set by conftest
    spec = _spec()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    (tmp_path / "pub.py").write_text(PUBLISHER)
    (tmp_path / "sub.py").write_text(SUBSCRIBER)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_shm.xml")
    env["PYTHONUNBUFFERED"] = "1"
    args = [TOPIC, str(TIMEOUT_S)]

    sub = pub = None
    try:
        sub = subprocess.Popen(
            [sys.executable, str(tmp_path / "sub.py"), *args],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert sub.stdout is not None
        ready = sub.stdout.readline().strip()  # subscription exists before the publisher starts
        assert ready == "ready", f"subscriber did not start: {ready!r} {sub.stderr.read() if sub.poll() is not None else ''}"
        t0 = time.monotonic()
        pub = subprocess.Popen(
            [sys.executable, str(tmp_path / "pub.py"), *args, str(spec_file)],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        sub_out, sub_err = sub.communicate(timeout=TIMEOUT_S + 30)
        pub_out, pub_err = pub.communicate(timeout=TIMEOUT_S + 30)
        elapsed = time.monotonic() - t0
    finally:
        _kill(pub)
        _kill(sub)

    assert sub.returncode == 0, f"subscriber failed ({sub.returncode}):\n{sub_err}"
    assert pub.returncode == 0, f"publisher failed ({pub.returncode}):\n{pub_out}\n{pub_err}"
    for err in (sub_err, pub_err):  # the Fast DDS profile must load cleanly
        assert "XMLPARSER" not in err and " Error]" not in err, err
    assert json.loads(pub_out.strip().splitlines()[-1]) == {"published": 7, "acked": True}
    got = json.loads(sub_out.strip().splitlines()[-1])

    assert got["frame_id"] == FRAME_ID
    assert got["stamp"] == list(STAMP)
    assert got["det_headers"] == [[FRAME_ID, *STAMP]] * 7
    assert got["labels"] == spec["labels"]
    assert got["names"] == [CLASS_NAMES[i] for i in spec["labels"]]
    assert got["scores"] == spec["scores"]  # exact float64 through CDR and JSON
    boxes, expected = np.array(got["boxes"]), np.array(spec["boxes"])
    np.testing.assert_array_equal(boxes[:, 0:6], expected[:, 0:6])  # centres and sizes, exact
    np.testing.assert_allclose(boxes[:, 6], expected[:, 6], rtol=0, atol=1e-14)  # yaw
    np.testing.assert_array_equal(boxes[:, 7:9], 0.0)  # no velocity field in Detection3D
    q0 = got["quaternions"][0]  # yaw 0.3 -> geometry_msgs (x, y, z, w)
    assert q0[0] == 0.0 and q0[1] == 0.0
    assert q0[2] == pytest.approx(math.sin(0.15), abs=1e-15) and q0[3] == pytest.approx(math.cos(0.15), abs=1e-15)
    assert elapsed < TIMEOUT_S
