"""Approximate-time synchronization: our fallback and, where importable, message_filters.

The shared cases run against three drivers:

- ``fallback``: ``ApproxTimeSync.add(index, stamp, msg)``, no ROS message involved;
- ``fallback-inputs``: ``make_synchronizer(..., prefer_fallback=True)`` over ``SyncInput``s with
  header-carrying messages (how the node uses it);
- ``message_filters``: ``message_filters.ApproximateTimeSynchronizer`` (skipped, with the reason,
  where the ROS 2 package is not installed, e.g. with the PyPI wheels).
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from qdbev_ros.sync import ApproxTimeSync, SyncInput, make_synchronizer, message_filters_available, stamp_ns

N = 6
NS = 1_000_000_000
MS = 1_000_000


def _time(ns: int):
    """A ``builtin_interfaces/Time``-like stamp (the real message where message_filters needs it)."""
    return SimpleNamespace(sec=ns // NS, nanosec=ns % NS)


class _Driver:
    """Push ``(input, stamp_ns)``; collect emitted sets as tuples of stamps (ns)."""

    def __init__(self, kind: str, queue_size: int, slop: float, n: int = N) -> None:
        self.kind = kind
        self.emitted: list[tuple[int, ...]] = []
        if kind == "fallback":
            self.sync = ApproxTimeSync(None, queue_size, slop, num_inputs=n)
            self.sync.registerCallback(self._cb)
        elif kind == "fallback-inputs":
            self.inputs = [SyncInput() for _ in range(n)]
            self.sync = make_synchronizer(self.inputs, queue_size, slop, self._cb, prefer_fallback=True)
            assert isinstance(self.sync, ApproxTimeSync)
        else:
            import message_filters
            from builtin_interfaces.msg import Time

            self._time_cls = Time
            self.inputs = [message_filters.SimpleFilter() for _ in range(n)]
            self.sync = make_synchronizer(self.inputs, queue_size, slop, self._cb)
            assert isinstance(self.sync, message_filters.ApproximateTimeSynchronizer)

    def _cb(self, *msgs) -> None:
        self.emitted.append(tuple(m.stamp_ns for m in msgs))

    def push(self, index: int, t_ns: int) -> None:
        if self.kind == "fallback":
            self.sync.add(index, _time(t_ns), SimpleNamespace(stamp_ns=t_ns))
            return
        stamp = _time(t_ns) if self.kind == "fallback-inputs" else self._time_cls(sec=t_ns // NS, nanosec=t_ns % NS)
        msg = SimpleNamespace(header=SimpleNamespace(stamp=stamp), stamp_ns=t_ns)
        self.inputs[index].signalMessage(msg)


KINDS = [
    "fallback",
    "fallback-inputs",
    pytest.param("message_filters", marks=pytest.mark.skipif(
        not message_filters_available(),
        reason="ROS 2 message_filters is not importable here (not on PyPI); the node uses the fallback")),
]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


def _frame_stamps(k: int, offsets_ms: list[float], base_ns: int = 1_700_000_000 * NS) -> list[int]:
    period = NS // 12  # 12 Hz
    return [base_ns + k * period + int(o * MS) for o in offsets_ms]


def test_jittered_stamps_within_slop_match(kind: str) -> None:
    """Ten 12 Hz frames, per-camera capture offsets spanning ~42 ms (nuScenes) plus jitter, shuffled arrival."""
    rng = random.Random(3)
    d = _Driver(kind, queue_size=10, slop=0.06)
    nuscenes_offsets = [-35.5, -27.6, -43.1, -10.4, -0.5, -20.1]
    expected = []
    for k in range(10):
        offsets = [o + rng.uniform(-4, 4) for o in nuscenes_offsets]
        stamps = _frame_stamps(k, offsets)
        expected.append(tuple(stamps))
        order = list(range(N))
        rng.shuffle(order)
        for i in order:
            d.push(i, stamps[i])
        assert d.emitted[-1] == tuple(stamps), f"frame {k} not emitted as a set"
    assert d.emitted == expected


def test_camera_outside_slop_is_not_emitted(kind: str) -> None:
    d = _Driver(kind, queue_size=10, slop=0.05)
    late = _frame_stamps(0, [0, 5, 10, 70, 15, 20])  # camera 3 is 70 ms after camera 0: span 70 ms >= slop
    for i in range(N):
        d.push(i, late[i])
    assert d.emitted == []
    ok = _frame_stamps(12, [0, 5, 10, 30, 15, 20])  # one second later, all within 30 ms
    for i in range(N):
        d.push(i, ok[i])
    assert d.emitted == [tuple(ok)]


def test_span_equal_to_slop_is_not_emitted(kind: str) -> None:
    d = _Driver(kind, queue_size=10, slop=0.05)
    stamps = _frame_stamps(0, [0, 0, 0, 50, 0, 0])  # exactly the slop: a set must span strictly less
    for i in range(N):
        d.push(i, stamps[i])
    assert d.emitted == []
    d.push(3, stamps[3] - 1)  # 1 ns inside
    assert d.emitted == [tuple(stamps[:3]) + (stamps[3] - 1,) + tuple(stamps[4:])]


def test_old_messages_dropped_from_full_queue(kind: str) -> None:
    d = _Driver(kind, queue_size=3, slop=0.05)
    t = [1_700_000_000 * NS + s * NS for s in range(6)]
    for s in range(1, 6):
        d.push(0, t[s])  # input 0 queues stamps 1..5; only the newest 3 stay
    for i in range(1, N):
        d.push(i, t[1])  # stamp 1 of input 0 was dropped: no set
    assert d.emitted == []
    for i in range(1, N):
        d.push(i, t[5])
    assert d.emitted == [(t[5],) * N]


def test_nearest_candidate_wins(kind: str) -> None:
    d = _Driver(kind, queue_size=10, slop=0.06)
    base = 1_700_000_000 * NS
    d.push(0, base)
    d.push(0, base + 40 * MS)
    for i in range(1, N):
        d.push(i, base + 35 * MS)
    assert d.emitted == [(base + 40 * MS,) + (base + 35 * MS,) * (N - 1)]


def test_emitted_messages_leave_the_queues(kind: str) -> None:
    d = _Driver(kind, queue_size=10, slop=0.06)
    stamps = _frame_stamps(0, [0, 1, 2, 3, 4, 5])
    for i in range(N):
        d.push(i, stamps[i])
    for i in range(1, N):  # the same stamps again on five inputs: input 0's message is gone
        d.push(i, stamps[i] + 1)
    assert d.emitted == [tuple(stamps)]
    assert all(len(q) == (0 if i == 0 else 1) for i, q in enumerate(d.sync.queues))


# ---- fallback only ----------------------------------------------------------------------------------


def test_fallback_drops_and_counts_older_messages_after_a_set() -> None:
    """Documented extra rule of the fallback: older messages than an emitted set are discarded."""
    sync = ApproxTimeSync(None, queue_size=10, slop=0.05, num_inputs=2)
    out = []
    sync.registerCallback(lambda a, b: out.append((a, b)))
    sync.add(0, 1.0, "a1")   # never completed
    sync.add(0, 2.0, "a2")
    sync.add(1, 2.01, "b2")  # emits (a2, b2) and drops a1 (older than a2)
    assert out == [("a2", "b2")] and sync.emitted == 1
    assert sync.queues == [{}, {}] and sync.dropped == [1, 0]
    sync.add(1, 1.0, "b1")  # a1 is gone: no set back in time
    assert out == [("a2", "b2")]
    for k in range(12):  # overflow counts as dropped too
        sync.add(0, 10.0 + k, f"x{k}")
    assert len(sync.queues[0]) == 10 and sync.dropped[0] == 1 + 2


def test_fallback_many_candidates_is_fast() -> None:
    """Dense queues (100 Hz inputs, large slop) must not explode combinatorially."""
    import time

    sync = ApproxTimeSync(None, queue_size=100, slop=0.5, num_inputs=N)
    out = []
    sync.registerCallback(lambda *m: out.append(m))
    t0 = time.perf_counter()
    for k in range(100):
        for i in range(N - 1):
            sync.add(i, 100.0 + 0.01 * k + 0.001 * i, k)
    sync.add(N - 1, 100.5, "last")
    assert time.perf_counter() - t0 < 2.0
    assert len(out) == 1 and out[0][-1] == "last"


def test_fallback_argument_checks_and_stamp_conversion() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        ApproxTimeSync(None, 0, 0.1, num_inputs=2)
    with pytest.raises(ValueError, match="slop"):
        ApproxTimeSync(None, 5, 0.0, num_inputs=2)
    with pytest.raises(ValueError, match="num_inputs"):
        ApproxTimeSync(None, 5, 0.1)
    assert stamp_ns(_time(3 * NS + 7)) == 3 * NS + 7
    assert stamp_ns(1.5) == 1_500_000_000
    assert stamp_ns(SimpleNamespace(nanoseconds=42)) == 42


def test_make_synchronizer_choice() -> None:
    inputs = [SyncInput() for _ in range(2)]
    sync = make_synchronizer(inputs, 5, 0.1, lambda *m: None)
    if message_filters_available():
        import message_filters

        assert isinstance(sync, message_filters.ApproximateTimeSynchronizer)
    else:
        assert isinstance(sync, ApproxTimeSync)
