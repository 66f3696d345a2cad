"""Rate-limited logging of repeated problems that still reports each new occurrence (ROS-free).

The node sees the same problem many times a second (a camera with a wrong encoding fails on every
image). Logging each would flood the log; logging each ``(source, kind)`` only once (what the node
did before issue 18) hides a *new* fault of the same kind, e.g. a -3 s time jump after a 0.1 s
one. ``LogLimiter`` decides per key:

- the first occurrence is logged;
- an occurrence after ``quiet_s`` without one is a new episode: logged;
- an occurrence with a ``magnitude`` (a time jump's size) more than ``growth`` times the largest
  one of its episode so far is a new instance: logged (a 30 s gap among 2 s ones under load);
- within an ongoing episode one line per ``repeat_s`` is logged, with the number of occurrences
  not logged since the previous line; all others only count (on ``/diagnostics``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["LogDecision", "LogLimiter"]


@dataclass(frozen=True)
class LogDecision:
    """Whether to log this occurrence, and how many occurrences of the key went unlogged before it."""

    log: bool
    suppressed: int = 0
    new_episode: bool = True


@dataclass
class _KeyState:
    last_seen: float
    last_logged: float
    suppressed: int = 0
    magnitude: float = 0.0


class LogLimiter:
    """Per-key log decisions (see the module docstring). Thread-safe.

    Args:
        quiet_s: an occurrence this long after the previous one of its key starts a new episode.
        repeat_s: within an episode, at most one line per this many seconds.
        growth: a magnitude more than this many times the episode's largest is a new instance.
        clock: monotonic time in seconds (tests pass a fake one).
    """

    def __init__(self, quiet_s: float = 2.0, repeat_s: float = 30.0, growth: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < quiet_s <= repeat_s:
            raise ValueError(f"need 0 < quiet_s <= repeat_s, got quiet_s={quiet_s}, repeat_s={repeat_s}")
        self.quiet_s = float(quiet_s)
        self.repeat_s = float(repeat_s)
        self.growth = float(growth)
        self.clock = clock
        self._keys: dict[Hashable, _KeyState] = {}
        self._lock = threading.Lock()

    def check(self, key: Hashable, magnitude: float | None = None) -> LogDecision:
        """Record one occurrence of ``key`` (of size ``magnitude``, if it has one); log it or not."""
        now = self.clock()
        size = abs(float(magnitude)) if magnitude is not None else 0.0
        with self._lock:
            st = self._keys.get(key)
            if st is None or now - st.last_seen > self.quiet_s:
                suppressed = 0 if st is None else st.suppressed
                self._keys[key] = _KeyState(last_seen=now, last_logged=now, magnitude=size)
                return LogDecision(True, suppressed, new_episode=True)
            st.last_seen = now
            if size > self.growth * st.magnitude:
                suppressed, st.suppressed, st.last_logged, st.magnitude = st.suppressed, 0, now, size
                return LogDecision(True, suppressed, new_episode=True)
            st.magnitude = max(st.magnitude, size)
            if now - st.last_logged >= self.repeat_s:
                suppressed, st.suppressed, st.last_logged = st.suppressed, 0, now
                return LogDecision(True, suppressed, new_episode=False)
            st.suppressed += 1
            return LogDecision(False, st.suppressed, new_episode=False)

    def forget(self, key: Hashable) -> None:
        """The problem is over (e.g. a camera is back): its next occurrence is logged."""
        with self._lock:
            self._keys.pop(key, None)
