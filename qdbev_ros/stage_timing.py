"""Where a camera set's time goes, from its last camera's arrival to the published detections.

Per processed set the node records (milliseconds, ``time.monotonic`` between threads, the
processor's ``perf_counter`` within it):

- ``sync``: last camera's image received -> the synchronizer emits the set;
- ``queue``: set emitted -> the worker takes it (waiting behind the set being processed);
- ``decode``, ``assemble``, ``engine_preprocess``, ``inference``, ``postprocess``: the
  processor's ``SetResult.detail_ms`` (decode of the six images, ego pose + ``Frame`` + time
  checks, the engine's resize / normalize, the network, decoding + output limits);
- ``publish``: building and publishing the messages;
- ``total``: last camera's arrival -> published (about the sum of the stages).

``StageTimes`` keeps the last ``window`` sets and reports their p50 / p90 per stage as the
``qdbev_node: timing`` status on ``/diagnostics`` and in a periodic log line. Recording is a few
float subtractions per set; the percentiles are computed once per diagnostics period.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

__all__ = ["STAGES", "SetTrace", "StageTimes"]

STAGES: tuple[str, ...] = ("sync", "queue", "decode", "assemble", "engine_preprocess", "inference", "postprocess",
                           "publish", "total")
"""The recorded stages, in pipeline order, then ``total``."""


@dataclass
class SetTrace:
    """``time.monotonic()`` marks (s) of one camera set on its way through the node.

    Attributes:
        first_arrival / last_arrival: receipt of its first / last camera image.
        formed: the synchronizer emitted it (or the degraded set was formed).
        picked: the worker took it from the mailbox.
        processed: the processor returned its result.
    """

    first_arrival: float
    last_arrival: float
    formed: float
    picked: float | None = None
    processed: float | None = None

    @classmethod
    def at(cls, t: float) -> "SetTrace":
        """A set that arrived, formed and was taken at ``t`` (``process_set`` called directly)."""
        return cls(first_arrival=t, last_arrival=t, formed=t, picked=t)


class StageTimes:
    """Per-stage milliseconds of the last ``window`` published sets (thread-safe)."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._sets: deque[dict[str, float]] = deque(maxlen=window)
        self.recorded = 0

    def record(self, trace: SetTrace, detail_ms: dict[str, float], published: float) -> dict[str, float]:
        """Record one published set: its ``trace``, the processor's ``detail_ms`` and the time
        ``published`` (monotonic s); returns the stages in milliseconds."""
        picked = trace.formed if trace.picked is None else trace.picked
        processed = published if trace.processed is None else trace.processed
        stages = {"sync": (trace.formed - trace.last_arrival) * 1e3, "queue": (picked - trace.formed) * 1e3}
        stages.update({k: float(v) for k, v in detail_ms.items()})
        stages["publish"] = (published - processed) * 1e3
        stages["total"] = (published - trace.last_arrival) * 1e3
        with self._lock:
            self._sets.append(stages)
            self.recorded += 1
        return stages

    def percentiles(self, q: float = 50.0) -> dict[str, float]:
        """``{stage: q-th percentile ms}`` over the window, in ``STAGES`` order (empty before any set)."""
        with self._lock:
            sets = list(self._sets)
        return {s: float(np.percentile([d[s] for d in sets if s in d], q)) for s in STAGES
                if any(s in d for d in sets)}

    def status(self) -> DiagnosticStatus:
        """``qdbev_node: timing``: p50 / p90 ms per stage over the window (always OK: information)."""
        p50, p90 = self.percentiles(50.0), self.percentiles(90.0)
        with self._lock:
            n = len(self._sets)
        values = [("sets_in_window", str(n))]
        for s in p50:
            values += [(f"{s}_ms_p50", f"{p50[s]:.1f}"), (f"{s}_ms_p90", f"{p90[s]:.1f}")]
        msg = (f"last camera -> published p50 {p50['total']:.1f} ms over the last {n} sets" if n
               else "no camera set published yet")
        return DiagnosticStatus(level=DiagnosticStatus.OK, name="qdbev_node: timing", hardware_id="qdbev",
                                message=msg, values=[KeyValue(key=k, value=v) for k, v in values])

    def log_line(self) -> str:
        """One line of p50s, e.g. ``timing p50 over 100 sets (ms): sync 0.4, queue 0.1, ...``."""
        p50 = self.percentiles(50.0)
        with self._lock:
            n = len(self._sets)
        parts = ", ".join(f"{s} {v:.1f}" for s, v in p50.items())
        return f"timing p50 over the last {n} sets, last camera arrival -> published (ms): {parts}"
