"""The node's two drop policies, driven through its own callbacks (issue 23).

A ``QdbevNode`` in this process (an rclpy context of the test's own, ``LOCALHOST`` discovery from
conftest; nothing is spun) gets its camera images through ``_on_image``, the callback of its image
subscriptions: the synchronizer, the one-slot mailbox and the worker thread are the node's own,
only the engine is injected (it can hold a frame until the test releases it), so the tests are
exact where the two-process ones (``test/integration/test_node_sync_diagnostics.py``) can only be
statistical on a loaded machine.

- newest wins: sets that arrive while the worker is busy replace the waiting one (counted); the
  worker then takes the newest;
- first-arrived drop: with full synchronizer queues (``queue_size`` 3, set at run time) a late set,
  older than everything queued, still forms (dropping the smallest stamp would evict its messages
  on arrival, and before issue 18 raised ``KeyError`` in the image callback).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from ros_domain import test_domain_id

pytest.importorskip("rclpy", reason="the node needs rclpy")

from qdbev_core.types import CAMERA_NAMES, Detections  # noqa: E402

OFFSETS = [0.004 * i for i in range(len(CAMERA_NAMES))]  # stamp offsets per camera (span 20 ms < slop)


class _GatedEngine:
    """Records the stamp of each frame; ``detect`` waits for ``gate`` (open by default)."""

    name = "gated"
    score_threshold = 0.05
    topk = 300

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.stamps: list[float] = []

    def reset(self) -> None:
        pass

    def detect(self, frame) -> Detections:
        self.stamps.append(round(frame.stamp, 6))
        self.entered.set()
        assert self.gate.wait(30.0), "the test never released the engine"
        return Detections(boxes=np.array([[10.0, 0, 0, 4, 2, 1.5, 0.1, 1.0, 0.0]]), scores=np.array([0.9]),
                          labels=np.array([0]))


@pytest.fixture
def node_and_feed():
    """A calibrated node with a ``_GatedEngine`` and ``feed(stamp, skip=())``: one image per camera
    through the node's image callback."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from qdbev_core.data.rig import rig_arrays
    from qdbev_ros.conversions import make_header
    from qdbev_ros.node import QdbevNode
    from qdbev_ros.ros_io import make_camera_info, rgb_to_image_msg

    ctx = Context()
    rclpy.init(context=ctx, domain_id=test_domain_id(42))
    engine = _GatedEngine()
    node = QdbevNode(engine=engine, context=ctx, parameter_overrides=[
        Parameter("model", value="injected"), Parameter("calibration_source", value="file"),
        Parameter("ego_pose_source", value="none"), Parameter("camera_timeout_s", value=3600.0)])
    ks, _ = rig_arrays(0.05)
    for i, n in enumerate(CAMERA_NAMES):
        node._on_camera_info(make_camera_info(ks[i], 80, 45, make_header(0.0, n)), i)
    node._check_startup()
    assert node._rig is not None
    img = np.zeros((45, 80, 3), dtype=np.uint8)

    def feed(stamp: float, skip=()) -> None:
        for i, n in enumerate(CAMERA_NAMES):
            if n not in skip:
                node._on_image(rgb_to_image_msg(img, make_header(stamp + OFFSETS[i], n)), i)

    yield node, engine, feed
    engine.gate.set()
    node.destroy_node()
    ctx.try_shutdown()


def _wait(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.01)


def _idle(node) -> bool:
    return node._mailbox.empty()


def _counters(node) -> dict[str, str]:
    from std_msgs.msg import Header

    return {kv.key: kv.value for kv in node.diag.build(Header()).status[0].values}


def test_newest_set_wins_while_the_worker_is_busy(node_and_feed, capfd) -> None:
    node, engine, feed = node_and_feed
    engine.gate.clear()
    feed(1.0)
    assert engine.entered.wait(20.0), "the worker never took the first set"
    for stamp in (1.1, 1.2, 1.3):  # the worker is busy with 1.0: each set replaces the waiting one
        feed(stamp)
    c = _counters(node)
    assert (c["sets_received"], c["dropped_sets_newest_wins"]) == ("4", "2"), c
    engine.gate.set()
    _wait(lambda: len(engine.stamps) == 2 and _idle(node))
    _wait(lambda: _counters(node)["detections_published"] == "2")
    assert engine.stamps == [1.0, 1.3]  # the newest, not the first waiting (1.1)
    assert _counters(node)["sets_processed"] == "2"
    assert "[internal]" not in capfd.readouterr().err


def test_full_queues_keep_a_late_set(node_and_feed, capfd) -> None:
    from rclpy.parameter import Parameter

    node, engine, feed = node_and_feed
    (res,) = node.set_parameters([Parameter("queue_size", value=3)])
    assert res.successful, res.reason
    feed(1.0)
    _wait(lambda: engine.stamps == [1.0] and _idle(node))
    for k in range(5):  # CAM_FRONT silent: the other queues keep the last three (1.45, 1.6, 1.75)
        feed(1.15 + 0.15 * k, skip={"CAM_FRONT"})
    assert [len(q) for q in node.sync.queues] == [0, 3, 3, 3, 3, 3]
    # a late set: older than everything queued (0.65 s back on those cameras: not a jump),
    # newer than CAM_FRONT's last image; the first-arrived message of each full queue is dropped
    feed(1.1)
    assert _counters(node)["sets_received"] == "2"  # formed in the image callback
    _wait(lambda: len(engine.stamps) == 2 and _idle(node))
    assert engine.stamps == [1.0, 1.1]
    assert node.sync.dropped == [0, 3, 3, 3, 3, 3] and node.sync.jumps == 0
    assert [sorted(round(t * 1e-9 - o, 6) for t in q) for q, o in zip(node.sync.queues, OFFSETS)] == \
        [[]] + [[1.6, 1.75]] * 5
    err = capfd.readouterr().err
    assert "[internal]" not in err, err
    assert err.count("[out_of_order]") == 5, err  # the late image of each full queue is out of order


def test_stage_timing_from_last_arrival_to_publish_on_diagnostics(node_and_feed) -> None:
    """Issue 20: each published set's time is split by stage from its last camera's arrival; a set
    that waits behind a busy worker shows the wait as ``queue``, and ``/diagnostics`` carries the
    p50 / p90 of every stage in ``qdbev_node: timing``."""
    from qdbev_ros.stage_timing import STAGES

    node, engine, feed = node_and_feed
    engine.gate.clear()
    feed(1.0)
    assert engine.entered.wait(20.0)
    feed(1.1)  # waits in the mailbox while 1.0 is held in detect()
    time.sleep(0.3)
    engine.gate.set()
    _wait(lambda: node._stage_times.recorded == 2)
    sent = []
    node.pub_diag.publish = sent.append
    node._publish_diagnostics()
    (timing,) = [st for st in sent[0].status if st.name == "qdbev_node: timing"]
    values = {kv.key: float(kv.value) for kv in timing.values}
    assert values["sets_in_window"] == 2
    assert {f"{s}_ms_{q}" for s in STAGES for q in ("p50", "p90")} <= set(values), values
    queue = sorted(d["queue"] for d in node._stage_times._sets)
    assert queue[0] < 250.0 <= queue[1], queue  # set 1.1 waited for the worker
    for d in node._stage_times._sets:
        assert min(d.values()) >= 0.0 and d["total"] >= d["sync"] + d["queue"] + d["decode"], d
