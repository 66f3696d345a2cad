"""``SetMailbox``: the one-slot hand-over of camera sets from the executor thread to the worker.

A new set replaces the one still waiting (newest wins: no backlog builds up when the node is
slower than the cameras); the worker takes whatever waits, or blocks until a set comes or the
mailbox is stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SetMailbox"]


class SetMailbox:
    """One slot, newest wins; ``stop()`` ends every ``take``."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._item: Any = None
        self._stopped = False

    def put(self, item: Any, on_replace: Callable[[], None] | None = None) -> bool:
        """Leave ``item`` for the worker; True when it replaced a waiting one (``on_replace`` is
        called first, under the lock, so the worker never sees the new item before it ran)."""
        with self._cv:
            replaced = self._item is not None
            if replaced and on_replace is not None:
                on_replace()
            self._item = item
            self._cv.notify()
        return replaced

    def take(self, poll_s: float = 0.5) -> Any:
        """The waiting item (waits for one), or ``None`` once the mailbox is stopped."""
        with self._cv:
            while self._item is None and not self._stopped:
                self._cv.wait(poll_s)
            if self._stopped:
                return None
            item, self._item = self._item, None
            return item

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def empty(self) -> bool:
        """No set waits for the worker."""
        with self._cv:
            return self._item is None
