"""``qdbev bag record``: record live topics into a rosbag2 (MCAP) for machines without ``ros2 bag``.

Raw subscriptions (serialized bytes, no deserialization) written as they arrive, log time = the
receipt time (``time.time_ns()``). The message type of each topic comes from the ROS graph
(discovery), so the recorder first waits until every topic has a publisher; reliability follows
the publishers (reliable unless one of them is best effort). Types are written with qdbev's
``rosbags`` typestore (``qdbev_core.bag.typestore``), so every recorded type must be known there
(ROS 2 kilted messages, vision_msgs, tf2_msgs, qdbev_msgs).

Default topics: the node's outputs needed to score it and describe its run:
``/qdbev_node/detections``, ``/qdbev_node/detections/velocity``,
``/qdbev_node/debug/pipeline_latency_ms`` and ``/diagnostics``. ``qdbev bag score`` reads such a
bag (``qdbev_core.bag.recorded``).

Every process must run with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (or a deliberate wider
range) and its ``ROS_DOMAIN_ID``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DEFAULT_TOPICS", "BagRecorder", "run_recorder"]

DEFAULT_TOPICS = ("/qdbev_node/detections", "/qdbev_node/detections/velocity",
                  "/qdbev_node/debug/pipeline_latency_ms", "/diagnostics")


class BagRecorder:
    """Records ``topics`` seen by ``node`` into a new MCAP bag folder ``out``.

    Use: ``resolve_types`` (waits for publishers), ``start``, spin the node's executor, ``close``.
    ``counts`` holds messages written per topic.
    """

    def __init__(self, node, out: str | Path, topics: Sequence[str] = DEFAULT_TOPICS) -> None:
        if not topics:
            raise ValueError("no topics to record")
        self.node = node
        self.out = Path(out)
        if self.out.exists():
            raise FileExistsError(f"{self.out} exists already; choose a new bag folder")
        self.topics = [t if t.startswith("/") else "/" + t for t in topics]
        self.counts = {t: 0 for t in self.topics}
        self.types: dict[str, str] = {}
        self._subs: list = []
        self._writer = None
        self._conns: dict[str, object] = {}

    def resolve_types(self, timeout: float, spin: Callable[[float], None]) -> dict[str, str]:
        """Wait until every topic has a publisher; ``{topic: "pkg/msg/Name"}``. ``TimeoutError`` names the missing."""
        end = time.monotonic() + timeout
        while True:
            graph = dict(self.node.get_topic_names_and_types())
            for t in self.topics:
                if t not in self.types and graph.get(t) and self.node.count_publishers(t) > 0:
                    kinds = graph[t]
                    if len(kinds) != 1:
                        raise ValueError(f"{t} has several message types {kinds}; cannot record it")
                    self.types[t] = kinds[0]
            missing = [t for t in self.topics if t not in self.types]
            if not missing:
                return dict(self.types)
            if time.monotonic() >= end:
                raise TimeoutError(f"no publisher on {', '.join(missing)} after {timeout:g} s")
            spin(0.1)

    def start(self) -> None:
        """Open the bag and subscribe (raw) to every resolved topic."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import StoragePlugin, Writer

        from qdbev_core.bag.typestore import get_typestore

        from .play import message_class

        store = get_typestore()
        unknown = [f"{t} ({ty})" for t, ty in self.types.items() if ty not in store.fielddefs]
        if unknown:
            raise ValueError(f"cannot record {', '.join(unknown)}: type unknown to qdbev's rosbags typestore")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.out, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        for t in self.topics:
            ty = self.types[t]
            self._conns[t] = self._writer.add_connection(t, ty, typestore=store)
            infos = self.node.get_publishers_info_by_topic(t)
            best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, durability=DurabilityPolicy.VOLATILE,
                             reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
            self._subs.append(self.node.create_subscription(message_class(ty), t, lambda raw, t=t: self._write(t, raw),
                                                            qos, raw=True))

    def _write(self, topic: str, raw: bytes) -> None:
        if self._writer is None:
            return
        self._writer.write(self._conns[topic], time.time_ns(), bytes(raw))
        self.counts[topic] += 1

    def matched(self) -> bool:
        """Every subscription is matched with at least one publisher."""
        return bool(self._subs) and all(s.get_publisher_count() > 0 for s in self._subs)

    def close(self) -> None:
        for s in self._subs:
            self.node.destroy_subscription(s)
        self._subs.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def run_recorder(args) -> int:
    """Run ``qdbev bag record`` for parsed arguments (``qdbev_core.cli.bag``)."""
    import signal

    from .standalone import standalone_node

    stop = {"flag": False}
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: stop.update(flag=True))
    rec = None
    try:
        with standalone_node("qdbev_record") as (node, spin_for, executor):
            def spin(seconds: float) -> None:  # setup phase: Ctrl-C / SIGTERM aborts
                spin_for(seconds, abort=lambda: stop["flag"])

            rec = BagRecorder(node, args.out, args.topics or DEFAULT_TOPICS)
            try:
                types = rec.resolve_types(args.wait_for_publishers, spin)
                rec.start()
                end = time.monotonic() + args.wait_for_publishers
                while not rec.matched() and time.monotonic() < end:
                    spin(0.05)
                print("qdbev bag record: recording " + ", ".join(f"{t} ({ty})" for t, ty in types.items()),
                      file=sys.stderr, flush=True)
                if args.ready_file is not None:
                    Path(args.ready_file).write_text("recording\n")
                t_end = time.monotonic() + args.duration if args.duration else None
                while not stop["flag"] and (t_end is None or time.monotonic() < t_end):
                    executor.spin_once(timeout_sec=0.1)
                spin_for(0.3)  # messages already delivered to this process are taken before closing
            finally:
                rec.close()
    except KeyboardInterrupt:
        print("qdbev bag record: interrupted before recording started", file=sys.stderr)
        return 130
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"{args.out}: " + ", ".join(f"{t} {n}" for t, n in rec.counts.items()))
    return 0
