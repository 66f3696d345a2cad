"""A private rclpy context + node + single-threaded executor for the command-line tools.

``qdbev play`` and ``qdbev bag record`` run as their own processes (or inside a test process
that already has a context): each gets its own ``Context``, so ``init``/``shutdown`` never touch
the global one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def standalone_node(name: str) -> Iterator[tuple[object, Callable[..., None], object]]:
    """``with standalone_node("qdbev_play") as (node, spin, executor):`` ...

    ``spin(seconds, abort=None)`` runs the executor for ``seconds`` of wall time (callbacks
    within ~50 ms); when ``abort()`` becomes true it raises ``KeyboardInterrupt``. Everything is
    shut down on exit, also after an exception.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin(seconds: float, abort: Callable[[], bool] | None = None) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if abort is not None and abort():
                raise KeyboardInterrupt
            executor.spin_once(timeout_sec=min(left, 0.05))

    try:
        yield node, spin, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
