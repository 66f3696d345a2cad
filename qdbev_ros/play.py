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

    def summary(self) -> str:
        return (f"published {self.published} messages on {len(self.per_topic)} topics in {self.wall_s:.2f} s "
                f"(bag time {self.bag_s:.2f} s, {self.loops} pass(es)); lateness mean {self.late_ms_mean:.1f} ms, "
                f"max {self.late_ms_max:.1f} ms")


class BagPlayer:
    """Publishes a bag on an rclpy node (see the module docstring).

    Args:
        bag: rosbag2 folder (MCAP or sqlite3).
        node: the rclpy node to create publishers on.
        topics: only these topics (default: all).
        log: callable for progress / warning lines (default: stderr).
    """

    def __init__(self, bag: str | Path, node, topics: Sequence[str] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
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

    @property
    def image_topics(self) -> list[str]:
        return [t for t, ty in self.types.items() if ty in IMAGE_TYPES]

    def close(self) -> None:
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
            (spin or time.sleep)(0.2)
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
        t_start = time.monotonic()
        offset = 0.0  # wall seconds at which the current pass started, relative to t_start
        while not self._stop:
            first_ns = None
            last_ns = None
            for conn, log_ns, raw in self.reader.messages(connections=self.connections):
                if self._stop:
                    break
                if first_ns is None:
                    first_ns = log_ns
                target = t_start + offset + (log_ns - first_ns) * 1e-9 / rate
                now = time.monotonic()
                if target > now:
                    time.sleep(target - now)
                else:
                    lateness.append((now - target) * 1e3)
                self.publishers[conn.topic].publish(bytes(raw))
                st.published += 1
                st.per_topic[conn.topic] = st.per_topic.get(conn.topic, 0) + 1
                last_ns = log_ns
                if on_message is not None:
                    on_message(conn.topic, log_ns)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m qdbev_ros.play BAG [--rate R] [--loop] ...`` (same options as ``qdbev play``)."""
    import argparse

    from qdbev_core.cli.play import add_arguments

    parser = argparse.ArgumentParser(prog="python -m qdbev_ros.play", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_player(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"qdbev play: error: {exc}", file=sys.stderr)
        return 2


def run_player(args) -> int:
    """Run the player for parsed ``qdbev play`` arguments (used by the CLI verb and ``main``)."""
    import signal

    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("qdbev_play", context=context)
    player = None
    previous = signal.getsignal(signal.SIGINT)
    try:
        player = BagPlayer(args.bag, node, topics=args.topics or None)
        signal.signal(signal.SIGINT, lambda *_: player.stop())
        if args.wait_for_subscribers > 0:
            player.wait_for_subscribers(args.wait_for_subscribers)
        stats = player.play(rate=args.rate, loop=args.loop)
        print(stats.summary())
    finally:
        signal.signal(signal.SIGINT, previous)
        if player is not None:
            player.close()
        node.destroy_node()
        context.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
