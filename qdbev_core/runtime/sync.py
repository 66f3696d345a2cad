"""Approximate-time grouping of several stamped streams (ROS-free).

``ApproxTimeSync`` is the fallback synchronizer of the live node (``qdbev_ros.sync`` uses
``message_filters.ApproximateTimeSynchronizer`` when that is importable) and the synchronizer of
the offline bag replay (``qdbev_core.bag.replay``), so both group camera messages into sets by the
same rules. ``qdbev_ros.sync`` re-exports both names.

Semantics (those of ``message_filters.ApproximateTimeSynchronizer`` in ROS 2 Python):

- one queue per input, keyed by header stamp, at most ``queue_size`` messages; when a queue
  overflows the message that *arrived* first is dropped (a message with the same stamp as a
  queued one replaces it and counts as the newest arrival; the replaced one counts as dropped),
  so the message that just arrived is never the one dropped. ``message_filters`` drops the
  smallest stamp instead, which after a jump back in time is the message that just arrived: the
  queue then keeps only pre-jump messages and no set forms until the stamps catch up (issue 18).
  (Until issue 23 a duplicate stamp kept the replaced message's place in the arrival order, so
  after ``configure`` shrank the queues it could evict itself; the search then still used its
  stamp and raised ``KeyError``, losing the messages already taken from earlier inputs
  uncounted. ``test/unit/test_sync_self_eviction.py``);
- when a message arrives, the other queues' messages within ``slop`` seconds of its stamp are
  the candidates, tried nearest-first; the first combination (one message per input, the new
  one included) whose stamps span strictly less than ``slop`` is emitted by calling
  ``callback(*msgs)`` in input order, and those messages leave their queues;
- nothing is emitted while any input has no candidate.

It adds one documented rule of the C++ ApproximateTime policy: after a set is emitted, messages
*older* than the emitted message of their input are dropped too (they can only form a set that
goes back in time). And one rule of its own for bag loops and clock resets: when a message is
older than the newest one seen on its input by more than ``jump_back_s``, time went backwards,
and every queued message newer than it by more than ``jump_back_s`` is dropped (they belong to
the timeline before the jump and can never pair with the messages after it); ``jumps`` counts
these events. Dropped messages are counted in ``ApproxTimeSync.dropped``.

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
        jump_back_s: a stamp this much older than the newest one of its input is a jump back in
            time (bag loop, clock reset) that flushes the pre-jump messages; smaller steps back
            are out-of-order delivery and only queued.

    ``registerCallback(cb)`` adds an output callback; ``cb(*msgs)`` receives one message per input
    in input order. Thread-safe; callbacks run under the synchronizer's lock on the caller's
    thread, so they must be quick (the node only hands the set to its worker).
    """

    def __init__(self, inputs: Sequence[Any] | None, queue_size: int, slop: float,
                 num_inputs: int | None = None, jump_back_s: float = 1.0) -> None:
        if not jump_back_s > 0:
            raise ValueError(f"jump_back_s must be > 0 seconds, got {jump_back_s}")
        n = len(inputs) if inputs else num_inputs
        if not n:
            raise ValueError("need inputs or num_inputs")
        self._lock = threading.Lock()
        self.queue_size = 1
        self.slop_ns = 1
        self.configure(queue_size, slop)
        self.jump_back_ns = int(round(float(jump_back_s) * 1e9))
        self.queues: list[dict[int, Any]] = [{} for _ in range(n)]
        self.newest: list[int | None] = [None] * n
        """Newest stamp seen on each input (ns), ``None`` before the first message."""
        self.dropped = [0] * n
        """Messages that left a queue without being emitted (overflow, older than a set, time jump)."""
        self.jumps = 0
        """Jumps back in time by more than ``jump_back_s`` (each flushed the pre-jump messages)."""
        self.emitted = 0
        self._callbacks: list[tuple[Callable, tuple]] = []
        for i, f in enumerate(inputs or ()):
            f.registerCallback(self._on_message, i)

    def registerCallback(self, cb: Callable, *args) -> None:  # noqa: N802 (message_filters API)
        self._callbacks.append((cb, args))

    def configure(self, queue_size: int, slop: float) -> None:
        """Change ``queue_size`` / ``slop`` (at run time too: the next message uses them)."""
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not float(slop) > 0:
            raise ValueError(f"slop must be > 0 seconds, got {slop}")
        with self._lock:
            self.queue_size = int(queue_size)
            self.slop_ns = int(round(float(slop) * 1e9))

    def clear(self) -> None:
        """Drop every queued message (counted in ``dropped``) and forget the newest stamps."""
        with self._lock:
            for i, q in enumerate(self.queues):
                self.dropped[i] += len(q)
                q.clear()
            self.newest = [None] * len(self.queues)

    def _on_message(self, msg: Any, index: int) -> None:
        self.add(index, msg.header.stamp, msg)

    def add(self, index: int, stamp: Any, msg: Any) -> tuple | None:
        """Queue ``msg`` on input ``index``; ``stamp`` in seconds or a ``Time`` (see ``stamp_ns``).

        Returns the emitted set (also passed to the callbacks) or ``None``.
        """
        t = stamp_ns(stamp)
        with self._lock:
            self._check_jump_back(index, t)
            q = self.queues[index]
            if t in q:  # the same stamp again: the new message replaces the queued one ...
                del q[t]  # ... and is the newest arrival (it does not inherit the old one's place)
                self.dropped[index] += 1
            q[t] = msg
            while len(q) > self.queue_size:
                del q[next(iter(q))]  # first arrived (dicts keep insertion order), not smallest stamp
                self.dropped[index] += 1
            if t not in q:  # evicted by its own arrival: cannot happen with queue_size >= 1; never search
                return None
            chosen = self._search(index, t)
            if chosen is None:
                return None
            # look every message up before removing any: a set leaves its queues whole or not at all
            msgs = tuple(self.queues[i][s] for i, s in enumerate(chosen))
            for i, s in enumerate(chosen):
                del self.queues[i][s]
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

    def _check_jump_back(self, index: int, t: int) -> None:
        """Track the newest stamp of ``index``; on a jump back, drop the messages of the old timeline."""
        newest = self.newest[index]
        if newest is not None and newest - t > self.jump_back_ns:
            self.jumps += 1
            limit = t + self.jump_back_ns
            for i, q in enumerate(self.queues):
                stale = [k for k in q if k > limit]
                for k in stale:
                    del q[k]
                self.dropped[i] += len(stale)
            self.newest[index] = t
        elif newest is None or t > newest:
            self.newest[index] = t

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
