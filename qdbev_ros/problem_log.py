"""How the node reports problems: counted on ``/diagnostics`` and logged rate-limited.

``ProblemLogging`` is a mixin of ``QdbevNode``: it is the processor's ``ProblemSink``
(``count``, ``problem``), guards every subscription / timer callback (``_guarded``: an unexpected
exception is reported, never fatal) and logs through ``qdbev_ros.log_limit.LogLimiter`` (a new
episode is logged, a burst summarized: docs/NODE.md, Logging). It uses the node's ``diag``
(``DiagnosticsState``), ``_limiter``, ``_logged`` and ``_lock``.
"""

from __future__ import annotations

import traceback

from qdbev_core.runtime.processor import Problem

from .diagnostics import PIPELINE

__all__ = ["ProblemLogging"]


class ProblemLogging:
    """Count, hold and log problems (mixin of ``QdbevNode``)."""

    def _report(self, source: str, kind: str, message: str, level: str = "error", log_key: str | None = None,
                magnitude: float | None = None) -> None:
        """Count a problem in diagnostics; log it rate-limited per (source, kind) (``LogLimiter``).

        A new episode of the problem is logged, and so is one whose ``magnitude`` (a time jump's
        size) clearly exceeds the episode's so far; within a burst one line per ``repeat_s`` says
        how many occurrences were only counted.
        """
        self.diag.record_error(source, kind, message)
        self._log_limited((source, log_key or kind), level, f"[{kind}] {message}", magnitude)

    def _log_limited(self, key: tuple[str, str], level: str, text: str, magnitude: float | None = None) -> None:
        decision = self._limiter.check(key, magnitude)
        if not decision.log:
            return
        lim = self._limiter
        if decision.new_episode:
            note = f"repeats within {lim.quiet_s:g} s are counted on /diagnostics, one line per {lim.repeat_s:g} s"
        else:
            note = f"still happening: {decision.suppressed} more since the last line, counted on /diagnostics"
        self._emit(level, f"{text} ({note})")

    def _log_once(self, key: tuple[str, str], level: str, message: str) -> None:
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        if first:
            self._emit(level, message)

    def _emit(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warning":
            logger.warning(text)
        else:
            logger.info(text)

    def _guarded(self, fn, *args) -> None:
        """Run a subscription/timer callback; an unexpected exception is reported, never fatal."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the executor must keep running
            if not self.context.ok():
                return  # Ctrl-C shut the context down under this callback (publish fails): not a fault
            self._report(PIPELINE, "internal", f"unexpected {type(exc).__name__} in {fn.__name__}: {exc}\n"
                         f"{traceback.format_exc()}")

    # ---- ProblemSink of the processor ---------------------------------------------------------------

    def count(self, name: str) -> None:
        """Count ``name`` on /diagnostics (``ProblemSink``)."""
        self.diag.count(name)

    def problem(self, problem: Problem) -> None:
        """Report a processor ``Problem``: held on /diagnostics and logged, or only logged (rate-limited)."""
        if problem.held:
            self._report(problem.source, problem.kind, problem.message, level=problem.level,
                         log_key=problem.log_key, magnitude=problem.magnitude)
        else:
            self._log_limited((problem.source, problem.log_key or problem.kind), problem.level, problem.message,
                              problem.magnitude)
        if problem.detail:
            self.get_logger().debug(problem.detail)
