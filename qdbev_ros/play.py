"""``qdbev play BAG``: publish a rosbag2's messages on live topics at the recorded rate (rclpy).

For machines without ``ros2 bag`` (the PyPI ROS 2 wheels have no rosbag2): the bag is read with
``rosbags`` and every message is published as the serialized bytes stored in the bag (rclpy's
raw publishing: no deserialization, no copy into a Python message), so any message type works
whose Python package is importable (the publisher needs the class for its type support).

Timing: message ``i`` is published at ``t0 + (log_time_i - log_time_0) / rate`` on the monotonic
clock (bag log time = the time the message was recorded; for bags from ``qdbev bag
from-nuscenes`` it equals the sensor stamp). A message that is already late is published at once
(no skipping); ``PlayStats`` reports how late publishing ran. ``--loop`` starts the bag again at
the end (stamps then jump back: the node resets its temporal state). Header stamps are never
rewritten.

QoS per topic: what the bag records as offered (``/tf_static``: reliable, transient local depth
1, so late subscribers still get it); otherwise reliable, volatile, depth 10 (like ``ros2 bag
play``) — compatible with the node's best-effort sensor subscriptions.

``--wait-for-subscribers SECONDS``: before playing, wait until every image topic of the bag has a
subscriber, publishing the bag's first ``/tf_static`` and first ``CameraInfo`` of each camera every
0.2 s meanwhile. ``qdbev_node`` subscribes to images only once it has every camera's CameraInfo
and extrinsics, so without this the first camera sets of a bag are lost while the node starts.
``qdbev replay`` assumes exactly this (calibration known before the first image).

``--pace-topic TOPIC`` (closed loop, e.g. ``/qdbev_node/detections``): camera set ``k + 1`` is
published only once a message on ``TOPIC`` whose header stamp lies within set ``k``'s image
stamps has arrived (the node stamps its output with CAM_FRONT's stamp), or after
``--pace-timeout`` seconds (a set the node skipped; counted). Recorded timing is kept between
waits (the schedule shifts by each wait), so the node sees every set exactly once whatever its
speed: no newest-wins drops, and live output equals ``qdbev replay``'s. The last set is waited
for too, so the player exits after the node's last output. A "set" is the k-th message of every
image topic; image messages must carry a ``std_msgs/Header`` first (Image, CompressedImage).

Every process must run with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (or a deliberate wider
range), its ``ROS_DOMAIN_ID`` and qdbev's Fast DDS profile (``config/fastdds_shm.xml``) for
camera-sized messages.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BagPlayer", "PlayStats", "main", "message_class"]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def message_class(msgtype: str):
    """The Python class of ``pkg/msg/Name`` (``ImportError``/``AttributeError`` if not installed)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


@dataclass
class PlayStats:
    """What ``BagPlayer.play`` published."""

    published: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    bag_s: float = 0.0
    loops: int = 0
    late_ms_max: float = 0.0
    late_ms_mean: float = 0.0
    skipped_topics: dict[str, str] = field(default_factory=dict)
    paced_sets: int = 0
    pace_timeouts: int = 0
    pace_wait_s: float = 0.0

    def summary(self) -> str:
        text = (f"published {self.published} messages on {len(self.per_topic)} topics in {self.wall_s:.2f} s "
                f"(bag time {self.bag_s:.2f} s, {self.loops} pass(es)); lateness mean {self.late_ms_mean:.1f} ms, "
                f"max {self.late_ms_max:.1f} ms")
        if self.paced_sets:
            text += (f"; paced {self.paced_sets} camera sets by the output topic ({self.pace_wait_s:.1f} s waiting, "
                     f"{self.pace_timeouts} timeouts)")
        return text


class BagPlayer:
    """Publishes a bag on an rclpy node (see the module docstring).

    Args:
        bag: rosbag2 folder (MCAP or sqlite3).
        node: the rclpy node to create publishers on.
        topics: only these topics (default: all).
        log: callable for progress / warning lines (default: stderr).
        spin: ``spin(seconds)`` runs the caller's executor of ``node`` for about that long (needed
            to receive the pace topic); default ``time.sleep``.
        pace_topic: closed-loop pacing by this output topic (module docstring); ``None``: open loop.
        pace_type: message type of ``pace_topic`` (its first field must be a ``std_msgs/Header``).
        pace_timeout: seconds to wait for one set's output before moving on.
    """

    def __init__(self, bag: str | Path, node, topics: Sequence[str] | None = None,
                 log: Callable[[str], None] | None = None, spin: Callable[[float], None] | None = None,
                 pace_topic: str | None = None, pace_type: str = "vision_msgs/msg/Detection3DArray",
                 pace_timeout: float = 30.0) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import Reader

        self.bag = Path(bag)
        if not (self.bag / "metadata.yaml").is_file():
            raise FileNotFoundError(f"{self.bag}: not a rosbag2 folder (no metadata.yaml)")
        self.node = node
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.stats = PlayStats()
        self._stop = False
        self.reader = Reader(self.bag)
        self.reader.open()
        wanted = set(topics) if topics else None
        self.connections = []
        self.publishers: dict[str, object] = {}
        self.types: dict[str, str] = {}
        for c in self.reader.connections:
            if wanted is not None and c.topic not in wanted:
                continue
            if c.topic in self.publishers:
                self.connections.append(c)
                continue
            try:
                cls = message_class(c.msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                if c.topic not in self.stats.skipped_topics:
                    self.stats.skipped_topics[c.topic] = f"{c.msgtype}: {exc}"
                    self.log(f"qdbev play: skipping {c.topic}: message type {c.msgtype} is not importable ({exc})")
                continue
            latched = any(q.durability.name == "TRANSIENT_LOCAL" for q in c.ext.offered_qos_profiles)
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if latched else 10,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self.publishers[c.topic] = node.create_publisher(cls, c.topic, qos)
            self.types[c.topic] = c.msgtype
            self.connections.append(c)
        if wanted is not None:
            missing = sorted(wanted - {c.topic for c in self.reader.connections})
            if missing:
                self.log(f"qdbev play: topics not in the bag: {', '.join(missing)}")
        self._spin = spin or time.sleep
        self.pace_timeout = float(pace_timeout)
        if not self.pace_timeout > 0:
            raise ValueError(f"pace timeout must be > 0 seconds, got {pace_timeout}")
        self._outputs: list[int] = []  # header stamps (ns) received on the pace topic, in order
        self.pace_topic = pace_topic
        if pace_topic:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            try:
                cls = message_class(pace_type)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(f"pace type {pace_type} is not importable: {exc}") from exc
            self._pace_sub = node.create_subscription(
                cls, pace_topic, self._on_output, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
                raw=True)

    def _on_output(self, raw: bytes) -> None:
        from qdbev_core.bag.messages import header_stamp_ns

        self._outputs.append(header_stamp_ns(raw))

    @property
    def image_topics(self) -> list[str]:
        return [t for t, ty in self.types.items() if ty in IMAGE_TYPES]

    def close(self, flush_timeout: float = 10.0) -> None:
        """Wait (up to ``flush_timeout`` s per topic) until every matched subscriber acknowledged
        what was published, then close the bag. The publishers are reliable: without this the
        last messages can die with the process before a slow subscriber has them."""
        from rclpy.duration import Duration

        for topic, pub in self.publishers.items():
            if not pub.wait_for_all_acked(Duration(seconds=flush_timeout)):
                self.log(f"qdbev play: {topic}: not every subscriber acknowledged within {flush_timeout:g} s")
        self.reader.close()

    def stop(self) -> None:
        """Ask ``play`` to return after the current message (thread-safe)."""
        self._stop = True

    # ---- startup handshake -----------------------------------------------------------------------

    def _calibration_messages(self) -> list[tuple[str, bytes]]:
        """First ``/tf_static`` and first ``CameraInfo`` of each topic, as raw bytes."""
        calib = [c for c in self.connections
                 if c.topic == "/tf_static" or c.msgtype == "sensor_msgs/msg/CameraInfo"]
        first: dict[str, bytes] = {}
        if not calib:  # (rosbags reads every connection when given none)
            return []
        for conn, _, raw in self.reader.messages(connections=calib):
            first.setdefault(conn.topic, bytes(raw))
            if len(first) == len({c.topic for c in calib}):
                break
        return list(first.items())

    def wait_for_subscribers(self, timeout: float, spin: Callable[[float], None] | None = None) -> bool:
        """Until every image topic has a subscriber: republish calibration every 0.2 s.

        Returns False on timeout (playing then starts anyway). ``spin(seconds)`` lets the caller's
        executor run meanwhile (default: sleep).
        """
        targets = [self.publishers[t] for t in self.image_topics]
        if not targets:
            return True
        calib = self._calibration_messages()
        end = time.monotonic() + timeout
        while any(p.get_subscription_count() < 1 for p in targets):
            if time.monotonic() >= end:
                waiting = [t for t in self.image_topics if self.publishers[t].get_subscription_count() < 1]
                self.log(f"qdbev play: no subscriber on {', '.join(waiting)} after {timeout:g} s; playing anyway")
                return False
            for topic, raw in calib:
                self.publishers[topic].publish(raw)
            (spin or self._spin)(0.2)
        self.log("qdbev play: every image topic has a subscriber")
        return True

    # ---- playing -----------------------------------------------------------------------------------

    def play(self, rate: float = 1.0, loop: bool = False, max_loops: int | None = None,
             on_message: Callable[[str, int], None] | None = None) -> PlayStats:
        """Publish the bag at ``rate`` x recorded speed (once, or until stopped with ``loop``)."""
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if not self.connections:
            raise ValueError(f"{self.bag}: nothing to play (no topic selected or no importable message type)")
        st = self.stats
        lateness: list[float] = []
        images = set(self.image_topics) if self.pace_topic else set()
        t_start = time.monotonic()
        offset = 0.0  # wall seconds at which the current pass started, relative to t_start (+ pacing waits)
        while not self._stop:
            first_ns = None
            last_ns = None
            sets = _SetTracker()
            for conn, log_ns, raw in self.reader.messages(connections=self.connections):
                if self._stop:
                    break
                if first_ns is None:
                    first_ns = log_ns
                if conn.topic in images:
                    k = sets.index(conn.topic)
                    if k > 0 and sets.acked < k:  # the first image of set k: set k - 1 must be done
                        offset += self._wait_for_output(sets, k - 1)
                        sets.acked = k
                target = t_start + offset + (log_ns - first_ns) * 1e-9 / rate
                now = time.monotonic()
                if target > now:
                    self._spin(target - now)
                else:
                    lateness.append((now - target) * 1e3)
                if conn.topic in images:
                    sets.add(conn.topic, raw, len(self._outputs))
                self.publishers[conn.topic].publish(bytes(raw))
                st.published += 1
                st.per_topic[conn.topic] = st.per_topic.get(conn.topic, 0) + 1
                last_ns = log_ns
                if on_message is not None:
                    on_message(conn.topic, log_ns)
            if sets.count and not self._stop:  # the last set's output too
                offset += self._wait_for_output(sets, sets.count - 1)
            st.loops += 1
            if first_ns is not None and last_ns is not None:
                st.bag_s += (last_ns - first_ns) * 1e-9
            if not loop or first_ns is None or (max_loops is not None and st.loops >= max_loops):
                break
            offset = time.monotonic() - t_start + 1.0 / 12.0 / rate  # next pass starts one camera period later
        st.wall_s = time.monotonic() - t_start
        if lateness:
            st.late_ms_max = max(lateness)
            st.late_ms_mean = sum(lateness) / len(lateness)
        return st

    def _wait_for_output(self, sets: "_SetTracker", k: int) -> float:
        """Spin until the pace topic delivered set ``k``'s output (or timeout); seconds waited."""
        lo, hi, since = sets.bounds[k][0], sets.bounds[k][1], sets.outputs_before[k]
        t0 = time.monotonic()
        while not any(lo <= s <= hi for s in self._outputs[since:]):
            if self._stop:
                break
            if time.monotonic() - t0 >= self.pace_timeout:
                self.stats.pace_timeouts += 1
                if self.stats.pace_timeouts <= 3:
                    self.log(f"qdbev play: no output on {self.pace_topic} for camera set {k} (stamps "
                             f"{lo * 1e-9:.3f}-{hi * 1e-9:.3f} s) within {self.pace_timeout:g} s; going on")
                break
            self._spin(0.01)
        waited = time.monotonic() - t0
        self.stats.paced_sets += 1
        self.stats.pace_wait_s += waited
        return waited


class _SetTracker:
    """Camera sets of one pass: set ``k`` = the ``k``-th message of every image topic."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.bounds: list[list[int]] = []  # [min, max] header stamp (ns) per set
        self.outputs_before: list[int] = []  # pace messages received before the set's first image
        self.acked = 0  # sets 0 .. acked - 1 were waited for

    @property
    def count(self) -> int:
        return len(self.bounds)

    def index(self, topic: str) -> int:
        return self.counts.get(topic, 0)

    def add(self, topic: str, raw, outputs_so_far: int) -> None:
        from qdbev_core.bag.messages import header_stamp_ns

        k = self.counts.get(topic, 0)
        self.counts[topic] = k + 1
        t = header_stamp_ns(raw)
        if k == len(self.bounds):
            self.bounds.append([t, t])
            self.outputs_before.append(outputs_so_far)
        else:
            b = self.bounds[k]
            b[0], b[1] = min(b[0], t), max(b[1], t)


def main(argv: list[str] | None = None) -> int:
    """``python -m qdbev_ros.play BAG [--rate R] [--loop] ...`` (same options as ``qdbev play``)."""
    import argparse

    from .verb_args import add_play_arguments

    parser = argparse.ArgumentParser(prog="python -m qdbev_ros.play", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_play_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_player(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"qdbev play: error: {exc}", file=sys.stderr)
        return 2


def run_player(args) -> int:
    """Run the player for parsed ``qdbev play`` arguments (used by the CLI verb and ``main``)."""
    import signal

    from .standalone import standalone_node

    with standalone_node("qdbev_play") as (node, spin, _):
        player = None
        previous = signal.getsignal(signal.SIGINT)
        try:
            player = BagPlayer(args.bag, node, topics=args.topics or None, spin=spin,
                               pace_topic=getattr(args, "pace_topic", None),
                               pace_timeout=getattr(args, "pace_timeout", 30.0))
            signal.signal(signal.SIGINT, lambda *_: player.stop())
            if args.wait_for_subscribers > 0:
                player.wait_for_subscribers(args.wait_for_subscribers)
            stats = player.play(rate=args.rate, loop=args.loop)
            print(stats.summary())
        finally:
            signal.signal(signal.SIGINT, previous)
            if player is not None:
                player.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
