"""``ApproxTimeSync`` after a bag loop / clock reset with full queues (issue 18, defect 2).

Before the fix a full queue dropped its *smallest* stamp, which after a jump back is the message
that just arrived, and the queues were never flushed: with one camera silent while the others
filled their queues, a 20 s jump back produced no set until the stamps caught up (20 s).
"""

from __future__ import annotations

from qdbev_core.runtime.sync import ApproxTimeSync

N = 6
PERIOD = 1.0 / 12.0
BASE = 1_700_000_000.0


def _sync(queue_size: int = 10, slop: float = 0.06) -> tuple[ApproxTimeSync, list[tuple]]:
    out: list[tuple] = []
    sync = ApproxTimeSync(None, queue_size, slop, num_inputs=N)
    sync.registerCallback(lambda *msgs: out.append(msgs))
    return sync, out


def _frame(sync: ApproxTimeSync, t: float, skip: int | None = None) -> None:
    for i in range(N):
        if i != skip:
            sync.add(i, t + 0.005 * i, (i, round(t, 6)))


def test_jump_back_with_full_queues_recovers_within_two_frames() -> None:
    sync, out = _sync()
    t = BASE
    for _ in range(5):
        _frame(sync, t)
        t += PERIOD
    assert len(out) == 5
    for _ in range(24):  # camera 5 silent for 2 s: the other queues fill up (queue_size 10)
        _frame(sync, t, skip=5)
        t += PERIOD
    assert all(len(q) == 10 for q in sync.queues[:5]) and len(out) == 5
    t -= 20.0  # bag loop: every camera jumps 20 s back
    for _ in range(2):
        _frame(sync, t)
        t += PERIOD
    assert len(out) >= 6, "no set within two frames after the jump back"
    assert out[-1][0][1] < BASE, out[-1]  # a post-jump set
    assert sync.jumps >= 1
    # nothing from before the jump is left to pair with
    assert all(k < (BASE - 10.0) * 1e9 for q in sync.queues for k in q)


def test_overflow_drops_the_message_that_arrived_first() -> None:
    sync, _ = _sync(queue_size=3)
    for k, t in enumerate([10.0, 11.0, 12.0]):
        sync.add(0, t, f"m{k}")
    sync.add(0, 11.5, "late")  # out of order but within jump_back_s: queued, 10.0 (first in) dropped
    assert sorted(sync.queues[0]) == [11_000_000_000, 11_500_000_000, 12_000_000_000]
    assert sync.dropped[0] == 1 and sync.jumps == 0


def test_small_steps_back_are_not_a_jump() -> None:
    sync, out = _sync()
    _frame(sync, BASE)
    sync.add(0, BASE + 0.5, "ahead")
    sync.add(0, BASE + 0.2, "behind by 0.3 s")  # out-of-order delivery: no flush
    assert sync.jumps == 0 and len(sync.queues[0]) == 2 and len(out) == 1


def test_jump_flushes_only_the_old_timeline_and_configure_applies() -> None:
    sync, out = _sync()
    sync.add(0, BASE, "a-old")
    sync.add(1, BASE, "b-old")
    sync.add(0, BASE - 20.0, "a-new")  # input 0 jumps: b-old (old timeline) goes too
    assert sync.jumps == 1 and sync.queues[1] == {} and list(sync.queues[0].values()) == ["a-new"]
    sync.add(1, BASE - 20.0 + 0.01, "b-new")  # input 1 had nothing newer queued: pairs with a-new
    sync.configure(queue_size=2, slop=0.02)
    assert sync.queue_size == 2 and sync.slop_ns == 20_000_000
    sync.clear()
    assert all(not q for q in sync.queues) and sync.newest == [None] * N
