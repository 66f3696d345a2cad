"""Approximate-time grouping of several stamped streams (ROS-free).

``ApproxTimeSync`` is the fallback synchronizer of the live node (``qdbev_ros.sync`` uses
``message_filters.ApproximateTimeSynchronizer`` when that is importable) and the synchronizer of
the offline bag replay (``qdbev_core.bag.replay``), so both group camera messages into sets by the
same rules. ``qdbev_ros.sync`` re-exports both names.

Semantics (those of ``message_filters.ApproximateTimeSynchronizer`` in ROS 2 Python):

- one queue per input, keyed by header stamp, at most ``queue_size`` messages; when a queue
  overflows its *oldest* message is dropped (a message with the same stamp as a queued one
  replaces it);
- when a message arrives, the other queues' messages within ``slop`` seconds of its stamp are
  the candidates, tried nearest-first; the first combination (one message per input, the new
  one included) whose stamps span strictly less than ``slop`` is emitted by calling
  ``callback(*msgs)`` in input order, and those messages leave their queues;
- nothing is emitted while any input has no candidate.

It adds one documented rule of the C++ ApproximateTime policy: after a set is emitted, messages
*older* than the emitted message of their input are dropped too (they can only form a set that
goes back in time). Dropped messages are counted in ``ApproxTimeSync.dropped``.

Inputs are anything with ``registerCallback(cb, *args)`` whose messages have ``header.stamp``;
or the synchronizer is fed directly with ``add(index, stamp, msg)``, which needs no ROS message
at all (``stamp``: seconds, anything with ``sec``/``nanosec`` such as a ``builtin_interfaces/Time``
or its ``rosbags`` counterpart, or an rclpy ``Time``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ApproxTimeSync", "stamp_ns"]


def stamp_ns(stamp: Any) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time``, an ``rclpy`` Time or seconds."""
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return int(round(float(stamp) * 1e9))


class ApproxTimeSync:
    """Fallback approximate-time synchronizer (used only when ``message_filters`` is missing).

    Args:
        inputs: message-filter inputs (``registerCallback``); may be empty/``None`` when the
            synchronizer is fed with ``add`` directly, then ``num_inputs`` is required.
        queue_size: messages kept per input (>= 1).
        slop: the largest stamp span of a set, seconds (a set must span strictly less).
        num_inputs: number of inputs when ``inputs`` is not given.

    ``registerCallback(cb)`` adds an output callback; ``cb(*msgs)`` receives one message per input
    in input order. Thread-safe; callbacks run under the synchronizer's lock on the caller's
    thread, so they must be quick (the node only hands the set to its worker).
    """

    def __init__(self, inputs: Sequence[Any] | None, queue_size: int, slop: float,
                 num_inputs: int | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop > 0:
            raise ValueError(f"slop must be > 0 seconds, got {slop}")
        n = len(inputs) if inputs else num_inputs
        if not n:
            raise ValueError("need inputs or num_inputs")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(float(slop) * 1e9))
        self.queues: list[dict[int, Any]] = [{} for _ in range(n)]
        self.dropped = [0] * n
        """Messages that left a queue without being emitted (overflow or older than a set)."""
        self.emitted = 0
        self._callbacks: list[tuple[Callable, tuple]] = []
        self._lock = threading.Lock()
        for i, f in enumerate(inputs or ()):
            f.registerCallback(self._on_message, i)

    def registerCallback(self, cb: Callable, *args) -> None:  # noqa: N802 (message_filters API)
        self._callbacks.append((cb, args))

    def _on_message(self, msg: Any, index: int) -> None:
        self.add(index, msg.header.stamp, msg)

    def add(self, index: int, stamp: Any, msg: Any) -> tuple | None:
        """Queue ``msg`` on input ``index``; ``stamp`` in seconds or a ``Time`` (see ``stamp_ns``).

        Returns the emitted set (also passed to the callbacks) or ``None``.
        """
        t = stamp_ns(stamp)
        with self._lock:
            q = self.queues[index]
            q[t] = msg
            while len(q) > self.queue_size:
                del q[min(q)]
                self.dropped[index] += 1
            chosen = self._search(index, t)
            if chosen is None:
                return None
            msgs = tuple(self.queues[i].pop(s) for i, s in enumerate(chosen))
            for i, s in enumerate(chosen):  # older than the emitted one: can never be used
                q = self.queues[i]
                old = [k for k in q if k < s]
                for k in old:
                    del q[k]
                self.dropped[i] += len(old)
            self.emitted += 1
            for cb, args in self._callbacks:
                cb(*(msgs + args))
            return msgs

    def _search(self, index: int, t: int) -> list[int] | None:
        """Stamps of the first set (nearest-first order over inputs) spanning < slop, or None."""
        cands: list[list[int]] = []
        for i, q in enumerate(self.queues):
            if i == index:
                cands.append([t])
                continue
            near = sorted((s for s in q if abs(s - t) <= self.slop_ns), key=lambda s: abs(s - t))
            if not near:
                return None
            cands.append(near)
        # depth-first in the same order as itertools.product over the nearest-first lists,
        # pruning partial sets whose span already reaches the slop
        chosen: list[int] = []

        def dfs(i: int, lo: int, hi: int) -> bool:
            if i == len(cands):
                return True
            for s in cands[i]:
                nlo, nhi = min(lo, s), max(hi, s)
                if nhi - nlo >= self.slop_ns:
                    continue
                chosen.append(s)
                if dfs(i + 1, nlo, nhi):
                    return True
                chosen.pop()
            return False

        return chosen if dfs(0, t, t) else None
