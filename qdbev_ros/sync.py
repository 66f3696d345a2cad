"""Approximate-time synchronization of the six camera streams.

``make_synchronizer(inputs, queue_size, slop, callback)`` returns
``message_filters.ApproximateTimeSynchronizer`` when the ROS 2 ``message_filters`` package is
importable (every real ROS install), and otherwise ``ApproxTimeSync``: our small fallback for
environments without it (the PyPI ROS 2 wheels have no ``message_filters``).

``ApproxTimeSync`` and ``stamp_ns`` live in ``qdbev_core.runtime.sync`` (ROS-free, so the offline bag
replay groups camera sets with exactly the same code) and are re-exported here; the semantics
(those of ``message_filters.ApproximateTimeSynchronizer`` in ROS 2 Python, plus one documented
rule of the C++ policy) are described there.

Inputs are anything with ``registerCallback(cb, *args)`` — ``message_filters.Subscriber``,
``message_filters.SimpleFilter`` or our ``SyncInput`` — whose messages have ``header.stamp``.
The fallback can also be fed directly with ``add(index, stamp_seconds, msg)``, which needs no
ROS message at all (that is how ``test/unit/test_sync.py`` drives it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qdbev_core.runtime.sync import ApproxTimeSync, stamp_ns

__all__ = [
    "ApproxTimeSync",
    "SyncInput",
    "make_synchronizer",
    "message_filters_available",
    "stamp_ns",
]


def message_filters_available() -> bool:
    """True when the ROS 2 ``message_filters`` package can be imported."""
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


class SyncInput:
    """A minimal message-filter input: ``registerCallback`` + ``signalMessage``.

    The node subscribes with plain rclpy subscriptions (to count arrivals per camera) and passes
    each message on with ``signalMessage(msg)``; both synchronizers accept it as an input.
    """

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable, tuple]] = {}

    def registerCallback(self, cb: Callable, *args) -> int:  # noqa: N802 (message_filters API)
        conn = len(self.callbacks)
        self.callbacks[conn] = (cb, args)
        return conn

    def signalMessage(self, *msg) -> None:  # noqa: N802 (message_filters API)
        for cb, args in list(self.callbacks.values()):
            cb(*(msg + args))


def make_synchronizer(inputs: Sequence[Any], queue_size: int, slop: float,
                      callback: Callable[..., None], prefer_fallback: bool = False):
    """An approximate-time synchronizer over ``inputs`` calling ``callback(*msgs)`` per set.

    Uses ``message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop)`` when it is
    importable (and ``prefer_fallback`` is false), else ``ApproxTimeSync``. The returned object
    has ``queues`` (one ``{stamp_ns: msg}`` per input) in both cases.
    """
    if not prefer_fallback:
        try:
            from message_filters import ApproximateTimeSynchronizer
        except ImportError:
            pass
        else:
            sync = ApproximateTimeSynchronizer(list(inputs), int(queue_size), float(slop))
            sync.registerCallback(callback)
            return sync
    sync = ApproxTimeSync(list(inputs), int(queue_size), float(slop))
    sync.registerCallback(callback)
    return sync
