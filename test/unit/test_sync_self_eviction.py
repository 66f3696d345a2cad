"""A message older than everything in a full synchronizer queue (issue 23).

Before issue 18 ``ApproxTimeSync`` dropped the *smallest* stamp of a full queue, which is the
message that just arrived when it is older than everything queued; the search still used its
stamp, and ``pop`` raised ``KeyError`` (the node: an ``[internal]`` error per message). When the
arriving message was not on input 0, the messages already popped from the earlier inputs were
lost uncounted. Issue 18's first-arrived drop and jump-back flush removed that path for these
cases; a duplicate stamp after ``configure`` shrank the queues still evicted the arriving message
until issue 23 (a replacing message kept the replaced one's place in the arrival order).

Every case runs against ``ApproxTimeSync`` (fed with ``add`` and, as in the node, through
``SyncInput``s) and against ROS 2 ``message_filters.ApproximateTimeSynchronizer`` where that is
importable (it drops the arriving message quietly: no set, no exception). For the fallback each
message must end up emitted once, still queued, or counted in ``dropped``.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from qdbev_core.runtime.sync import ApproxTimeSync
from qdbev_ros.sync import SyncInput, make_synchronizer, message_filters_available

NS = 1_000_000_000

KINDS = [
    "fallback",
    "fallback-inputs",
    pytest.param("message_filters", marks=pytest.mark.skipif(
        not message_filters_available(),
        reason="ROS 2 message_filters is not importable here (not on PyPI); the node uses the fallback")),
]


def _ns(seconds: float) -> int:
    return int(round(seconds * NS))


class _Sync:
    """One synchronizer of ``kind``; ``push(input, seconds, name)``; emitted sets as tuples of names."""

    def __init__(self, kind: str, n: int, queue_size: int, slop: float) -> None:
        self.kind, self.n = kind, n
        self.added: list[list[str]] = [[] for _ in range(n)]
        self.emitted: list[tuple[str, ...]] = []
        self.spans: list[tuple[int, int]] = []
        self.slop_ns = _ns(slop)
        if kind == "fallback":
            self.sync = ApproxTimeSync(None, queue_size, slop, num_inputs=n)
            self.sync.registerCallback(self._cb)
        elif kind == "fallback-inputs":
            self.inputs = [SyncInput() for _ in range(n)]
            self.sync = make_synchronizer(self.inputs, queue_size, slop, self._cb, prefer_fallback=True)
            assert isinstance(self.sync, ApproxTimeSync)
        else:
            import message_filters

            self.inputs = [message_filters.SimpleFilter() for _ in range(n)]
            self.sync = make_synchronizer(self.inputs, queue_size, slop, self._cb)
            assert isinstance(self.sync, message_filters.ApproximateTimeSynchronizer)

    @property
    def fallback(self) -> bool:
        return self.kind != "message_filters"

    def _cb(self, *msgs) -> None:
        stamps = [m.stamp_ns for m in msgs]
        self.spans.append((max(stamps) - min(stamps), self.slop_ns))  # the slop in force
        self.emitted.append(tuple(m.name for m in msgs))

    def push(self, index: int, seconds: float, name: str) -> None:
        t = _ns(seconds)
        self.added[index].append(name)
        if self.kind == "fallback":
            self.sync.add(index, seconds, SimpleNamespace(name=name, stamp_ns=t))
            return
        if self.kind == "fallback-inputs":
            stamp = SimpleNamespace(sec=t // NS, nanosec=t % NS)
        else:
            from builtin_interfaces.msg import Time

            stamp = Time(sec=t // NS, nanosec=t % NS)
        self.inputs[index].signalMessage(SimpleNamespace(header=SimpleNamespace(stamp=stamp), name=name, stamp_ns=t))

    def configure(self, queue_size: int, slop: float) -> None:
        self.slop_ns = _ns(slop)
        if self.fallback:
            self.sync.configure(queue_size, slop)
        else:  # message_filters has no setter: its attributes are what its add() reads
            from rclpy.duration import Duration

            self.sync.queue_size = queue_size
            self.sync.slop = Duration(seconds=slop)

    def queued(self, index: int) -> list[str]:
        return [m.name for m in self.sync.queues[index].values()]

    def check_accounting(self) -> None:
        """Each message emitted at most once, every set within slop; fallback: nothing lost uncounted."""
        names = [name for s in self.emitted for name in s]
        assert len(names) == len(set(names)), f"a message was emitted twice: {self.emitted}"
        assert all(span < slop for span, slop in self.spans), self.spans
        for i in range(self.n):
            queued = self.queued(i)
            emitted_i = [s[i] for s in self.emitted]
            assert set(queued).isdisjoint(emitted_i), (i, queued, emitted_i)
            assert set(queued) | set(emitted_i) <= set(self.added[i])
            if self.fallback:
                assert len(self.added[i]) == len(emitted_i) + len(queued) + self.sync.dropped[i], (
                    f"input {i}: {len(self.added[i])} added, {len(emitted_i)} emitted, {len(queued)} queued, "
                    f"{self.sync.dropped[i]} counted as dropped: messages lost uncounted")


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


# (stamps already in the full queue, whether the arrival 5.0 s is a jump back for the fallback)
FULL_QUEUES = {
    "issue-case-10-11-12s": ([10.0, 11.0, 12.0], True),
    "within-jump_back_s": ([5.4, 5.6, 5.8], False),
}


@pytest.mark.parametrize("full_input", [0, 1], ids=["arrives-on-input-0", "arrives-on-input-1"])
@pytest.mark.parametrize("queue", list(FULL_QUEUES), ids=list(FULL_QUEUES))
def test_arrival_older_than_a_full_queue(kind: str, full_input: int, queue: str) -> None:
    """Queue 3; ``full_input`` holds three newer stamps; 5.0 s arrives on every other input and
    then on ``full_input`` (the issue's minimal case with ``full_input`` 0; with 1 the message of
    input 0 was popped before the ``KeyError`` and lost uncounted)."""
    stamps, jump = FULL_QUEUES[queue]
    s = _Sync(kind, n=3, queue_size=3, slop=0.05)
    for k, t in enumerate(stamps):
        s.push(full_input, t, f"old{k}")
    for i in range(3):
        if i != full_input:
            s.push(i, 5.0, f"in{i}@5")
    assert s.emitted == []
    s.push(full_input, 5.0, f"in{full_input}@5")  # raised KeyError before issue 18
    s.check_accounting()
    if s.fallback:
        # the message that arrived is kept (the first-arrived one is dropped, or a jump flushes
        # the old timeline): the set of the 5.0 s messages forms
        assert s.emitted == [tuple(f"in{i}@5" for i in range(3))]
        assert s.sync.jumps == (1 if jump else 0)
        want = [] if jump else ["old1", "old2"]  # old0 arrived first: dropped by the overflow
        assert s.queued(full_input) == want and s.sync.dropped[full_input] == 3 - len(want)
        assert all(not s.queued(i) for i in range(3) if i != full_input)
    else:
        # message_filters drops the smallest stamp: the message that just arrived, quietly
        assert s.emitted == []
        assert s.queued(full_input) == ["old0", "old1", "old2"]
        assert all(s.queued(i) == [f"in{i}@5"] for i in range(3) if i != full_input)


@pytest.mark.parametrize("dup_input", [0, 1])
def test_duplicate_stamp_after_the_queue_shrank_does_not_evict_itself(kind: str, dup_input: int) -> None:
    """The only self-eviction left after issue 18: ``dup_input`` holds 20.00 (arrived first) ..
    20.40 s, the other input 20.02 s (no set with slop 10 ms); the queues shrink to 3 and the slop
    grows to 50 ms at run time; then 20.00 s arrives again on ``dup_input``."""
    other = 1 - dup_input
    s = _Sync(kind, n=2, queue_size=10, slop=0.01)
    for k in range(5):
        s.push(dup_input, 20.0 + 0.1 * k, f"d{k}")
    s.push(other, 20.02, "o")
    assert s.emitted == []
    s.configure(3, 0.05)
    s.push(dup_input, 20.0, "d0-again")  # KeyError before issue 23
    s.check_accounting()
    if s.fallback:
        pair = ("d0-again", "o") if dup_input == 0 else ("o", "d0-again")
        assert s.emitted == [pair]
        # d0 replaced (dropped); d1, d2 arrived first of the rest: dropped by the overflow
        assert s.queued(dup_input) == ["d3", "d4"] and s.sync.dropped[dup_input] == 3
    else:
        assert s.emitted == []  # message_filters evicts the smallest stamps: the arrival itself, d1
        assert s.queued(dup_input) == ["d2", "d3", "d4"] and s.queued(other) == ["o"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_streams_lose_nothing_uncounted(kind: str, seed: int) -> None:
    """Four inputs, 1500 messages: jitter, out-of-order and duplicate stamps, jumps back and
    forward, and ``queue_size`` / ``slop`` changed every ~60 messages. No exception; every set
    within slop; each message emitted at most once; fallback: every message emitted, queued or
    counted as dropped."""
    rng = random.Random(seed)
    n = 4
    s = _Sync(kind, n=n, queue_size=4, slop=0.05)
    t = 100.0
    history: list[list[float]] = [[] for _ in range(n)]
    for k in range(1500):
        if k % 60 == 59:
            s.configure(rng.randint(1, 5), rng.choice([0.01, 0.03, 0.05, 0.1]))
        r = rng.random()
        if r < 0.01:
            t -= rng.choice([0.3, 5.0])  # step back / bag loop
        elif r < 0.02:
            t += 3.0  # gap
        t += 0.01
        i = rng.randrange(n)
        r = rng.random()
        if r < 0.15 and history[i]:
            stamp = rng.choice(history[i][-6:])  # a duplicate stamp of this input
        elif r < 0.25:
            stamp = t - rng.uniform(0.05, 0.5)  # late (out of order)
        else:
            stamp = t + rng.uniform(-0.01, 0.01)
        stamp = round(stamp, 3)
        history[i].append(stamp)
        s.push(i, stamp, f"{i}:{k}")
        assert len(s.sync.queues[i]) <= s.sync.queue_size
    s.check_accounting()
    assert len(s.emitted) > 20  # the stream does form sets
