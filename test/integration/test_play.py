"""``qdbev play``: a bag published on live topics over real rclpy, into a subscriber in this process.

The player runs as its own process (``python -m qdbev_core play``) with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a ROS domain of this test's own and qdbev's Fast DDS
profile. It waits for subscribers on every image topic (republishing calibration meanwhile), then
publishes at the recorded rate (x2 here): messages arrive complete, in order and at that rate.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qdbev_core.bag.from_nuscenes import bag_from_nuscenes
from qdbev_core.bag.layout import GROUND_TRUTH_TOPIC, TF_STATIC_TOPIC, camera_info_topic, image_topic, read_bag_source
from qdbev_core.types import CAMERA_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_node_e2e import REPO, ros_env, test_domain_id  # noqa: E402

pytest.importorskip("rclpy")
VERSION = "v1.0-mini"


@pytest.fixture(scope="module")
def small_bag(synth_dataroot: Path, tmp_path_factory) -> Path:
    from qdbev_core.data.reader import NuScenesReader

    reader = NuScenesReader(synth_dataroot, VERSION, split="synth_val", load_images=False)
    out = tmp_path_factory.mktemp("play") / "bag"
    bag_from_nuscenes(synth_dataroot, VERSION, reader.scenes()[0].name, out, nusc=reader.nusc)
    return out


class Listener:
    """Subscriptions to the bag's topics in this process (own rclpy context on ``domain``)."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("qdbev_play_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.images: dict[str, list[tuple[float, int]]] = {c: [] for c in CAMERA_NAMES}
        self.infos = 0
        self.tf_static = 0
        self.gt: list[int] = []
        for cam in CAMERA_NAMES:
            self.node.create_subscription(CompressedImage, image_topic(cam),
                                          lambda msg, c=cam: self.images[c].append((time.monotonic(), _ns(msg))),
                                          reliable)
            self.node.create_subscription(CameraInfo, camera_info_topic(cam), self._on_info, reliable)
        self.node.create_subscription(TFMessage, TF_STATIC_TOPIC, self._on_static, latched)
        self.node.create_subscription(Detection3DArray, GROUND_TRUTH_TOPIC, lambda msg: self.gt.append(_ns(msg)),
                                      reliable)

    def _on_info(self, _msg) -> None:
        self.infos += 1

    def _on_static(self, _msg) -> None:
        self.tf_static += 1

    def spin_while(self, cond, timeout: float) -> None:
        end = time.monotonic() + timeout
        while cond() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _player(bag: Path, domain: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "qdbev_ros", "play", str(bag), "--wait-for-subscribers", "60", *extra]
    return subprocess.Popen(cmd, env=ros_env(domain), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return proc.returncode, out


@pytest.mark.realtime  # real-time ROS timing: run alone, not beside other tests
@pytest.mark.timeout(120)
def test_play_publishes_at_recorded_rate(small_bag: Path) -> None:
    src = read_bag_source(small_bag)
    n = len(src.key_frames)
    rate = 2.0
    domain = test_domain_id(21)
    listener = Listener(domain)
    proc = _player(small_bag, domain, "--rate", str(rate))
    try:
        listener.spin_while(lambda: proc.poll() is None, timeout=90)
        listener.spin_while(lambda: len(listener.gt) < n, timeout=2.0)  # the last messages in flight
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code, out = _finish(proc)
        listener.close()
    assert code == 0, out
    assert "every image topic has a subscriber" in out and f"published {20 * n + 1} messages" in out, out
    stamps = [k.stamp_ns for k in src.key_frames]
    front = listener.images["CAM_FRONT"]
    assert [s for _, s in front] == stamps, out  # all of them, in order, stamps untouched
    for cam in CAMERA_NAMES:
        assert len(listener.images[cam]) == n, (cam, out)
    assert listener.gt == [k.timestamp_ns for k in src.key_frames]
    assert listener.tf_static >= 1 and listener.infos >= 6 * n
    # arrivals follow the recorded timing at 2x: CAM_FRONT every 0.5 s / 2
    span = front[-1][0] - front[0][0]
    expected = (stamps[-1] - stamps[0]) * 1e-9 / rate
    assert 0.8 * expected <= span <= expected + 0.6, (span, expected)
    gaps = [b[0] - a[0] for a, b in zip(front, front[1:])]
    # the first arrival can lag its publication by a reliable-DDS retransmit (~0.1 s, the reader
    # side matching after the player saw its subscriber), which shortens only the first gap
    assert min(gaps[1:]) >= 0.5 * (0.5 / rate), gaps
    assert gaps[0] > 0, gaps


@pytest.mark.timeout(120)
def test_play_loop_until_interrupted(small_bag: Path) -> None:
    src = read_bag_source(small_bag)
    n = len(src.key_frames)
    domain = test_domain_id(22)
    listener = Listener(domain)
    proc = _player(small_bag, domain, "--rate", "4", "--loop", "--topics", *[image_topic(c) for c in CAMERA_NAMES])
    try:
        listener.spin_while(lambda: len(listener.images["CAM_FRONT"]) < 2 * n + 1 and proc.poll() is None, timeout=90)
        proc.send_signal(signal.SIGINT)
        code, out = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert code == 0, out
    stamps = [s for _, s in listener.images["CAM_FRONT"]]
    first = [k.stamp_ns for k in src.key_frames]
    assert stamps[:2 * n] == first + first, out  # the bag again, stamps jump back at the loop
    assert listener.gt == [] and listener.tf_static == 0  # --topics filter


@pytest.mark.timeout(300)
def test_bag_record_cli_records_what_is_played(small_bag: Path, tmp_path: Path) -> None:
    """``qdbev bag record`` (own process) records a played bag's topics; SIGTERM closes the bag cleanly.

    Only image topics are played: the player waits for a subscriber on each of them, so nothing
    is published before the recorder is matched (other topics are volatile: early messages would
    be lost by design).
    """
    from rosbags.rosbag2 import Reader

    from qdbev_core.bag import messages as m
    from qdbev_core.bag.typestore import get_typestore

    src = read_bag_source(small_bag)
    domain = test_domain_id(23)
    topics = [image_topic("CAM_FRONT"), image_topic("CAM_BACK")]
    out = tmp_path / "recorded"
    ready = tmp_path / "ready"
    rec = subprocess.Popen([sys.executable, "-m", "qdbev_ros", "bag", "record", "--out", str(out), "--topics", *topics,
                            "--wait-for-publishers", "120", "--ready-file", str(ready)],
                           env=ros_env(domain), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = _player(small_bag, domain, "--rate", "4", "--topics", *topics)
    try:
        code, play_out = _finish(proc, timeout=180)
        assert code == 0, play_out
        end = time.monotonic() + 60
        while not ready.exists():  # written once its subscriptions are matched
            assert time.monotonic() < end and rec.poll() is None, "recorder never ready"
            time.sleep(0.1)
        rec.send_signal(signal.SIGTERM)
        rec_code, rec_out = _finish(rec, timeout=120)  # a starved machine takes seconds to exit
    finally:
        for p in (proc, rec):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert rec_code == 0, rec_out
    n = len(src.key_frames)
    assert f"{topics[0]} {n}, {topics[1]} {n}" in rec_out, rec_out
    store = get_typestore()
    with Reader(out) as r:
        got: dict[str, list[int]] = {}
        for conn, _, raw in r.messages():
            got.setdefault(conn.topic, []).append(m.stamp_of(store.deserialize_cdr(raw, conn.msgtype)))
    for topic in topics:
        assert got[topic] == sorted(got[topic]) and len(got[topic]) == n, topic  # all of them, in order
    assert got[topics[0]] == [k.stamp_ns for k in src.key_frames]  # stamps untouched
