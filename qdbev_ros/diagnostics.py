"""The node's health bookkeeping and its ``/diagnostics`` message.

``DiagnosticsState`` is thread-safe: the executor thread records image arrivals and calibration
problems, the worker thread records processed frames and errors, and a 1 Hz timer builds the
``diagnostic_msgs/DiagnosticArray`` with ``build``. (What is logged is decided by the node with
``qdbev_ros.log_limit.LogLimiter``; ``record_error`` only counts.)

Statuses (``name`` / ``hardware_id``):

- ``qdbev_node: pipeline`` — state (waiting for calibration / running), sets received, processed,
  published, dropped (newest set wins), unmatched camera messages, engine errors, bad frames,
  time jumps backwards, forward time gaps, duplicate stamps, latency p50/max (ms) over the last
  ``window_s``, last stage timings. ERROR while waiting for calibration, while a required camera
  is stale, while the node's watchdog reports a stall (``set_stall``: images arrive but no camera
  set forms, or sets form but nothing is published, for longer than ``camera_timeout_s``), or
  after an engine error in the last ``error_hold_s``; WARN after other bad input in that window
  (and while a camera is not OK). A warning never masks an error of the same window.
- ``qdbev_node: camera <NAME>`` (hardware_id = camera name) — rate (Hz), messages, seconds since
  the last image, error counts per kind, the last error. ERROR when no image came for
  ``camera_timeout_s`` (``stale``), when calibration is missing, or after a bad image in the last
  ``error_hold_s`` (bad image or rejected CameraInfo), or while the stall names this camera (its
  stamps are off the others'); WARN after duplicate / out-of-order stamps.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from qdbev_core.runtime.processor import PIPELINE  # source of problems of no single camera

__all__ = ["DiagnosticsState", "PIPELINE", "level_name"]


OK, WARN, ERROR, STALE = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE
_LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}

WARN_KINDS = frozenset({"ego_pose", "duplicate_stamp", "out_of_order", "time_backwards", "time_gap"})
"""Error kinds that make a status WARN (the node works around them); all others make it ERROR."""


def level_name(level: bytes) -> str:
    return _LEVEL_NAMES.get(level, repr(level))


def _held(s: "_Source", now: float, hold: float) -> tuple[bytes, str] | None:
    """``(level, "kind: message")`` of the problems of ``s`` within the last ``hold`` seconds, or None.

    ERROR when any ERROR kind occurred in that window (a later warning does not mask it), else
    WARN; the message is the most recent problem of that level.
    """
    recent = [(t, kind, text) for kind, (text, t) in s.last_by_kind.items() if now - t <= hold]
    if not recent:
        return None
    errors = [r for r in recent if r[1] not in WARN_KINDS]
    _, kind, text = max(errors or recent, key=lambda r: r[0])
    return (ERROR if errors else WARN), f"{kind}: {text}"


@dataclass
class _Source:
    received: int = 0
    arrivals: deque = field(default_factory=lambda: deque(maxlen=512))
    last_receipt: float | None = None
    errors: Counter = field(default_factory=Counter)
    last_error: tuple[str, str, float] | None = None  # kind, message, time
    last_by_kind: dict = field(default_factory=dict)  # kind -> (message, time) of its latest occurrence
    calibration: str = "waiting for CameraInfo"  # "" when calibrated
    stale: bool = False


class DiagnosticsState:
    """Counters and levels of the node (see the module docstring).

    Args:
        camera_names: the six cameras, in model order.
        camera_timeout_s: a camera without images for this long is stale (ERROR).
        window_s: window of rates and latency percentiles.
        error_hold_s: an error keeps its status non-OK for this long.
        clock: monotonic time source in seconds (tests pass a fake one).
    """

    def __init__(self, camera_names: Sequence[str], camera_timeout_s: float, window_s: float = 5.0,
                 error_hold_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.camera_names = tuple(camera_names)
        self.camera_timeout_s = float(camera_timeout_s)
        self.window_s = float(window_s)
        self.error_hold_s = float(error_hold_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._cams = {n: _Source() for n in self.camera_names}
        self._pipe = _Source(calibration="")
        self._seen: set[tuple[str, str]] = set()
        self.running_since: float | None = None
        self.counters: Counter = Counter()
        self._latency: deque = deque(maxlen=1024)  # (t, ms)
        self._outputs: deque = deque(maxlen=512)
        self.last_timing: dict[str, float] = {}
        self.unmatched: dict[str, int] = {n: 0 for n in self.camera_names}
        self._stall = ""
        self._stall_camera: tuple[str, str] | None = None  # (camera, message)

    # ---- recording -----------------------------------------------------------------------------

    def _src(self, source: str) -> _Source:
        return self._cams.get(source) or self._pipe

    def record_image(self, camera: str, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        with self._lock:
            s = self._cams[camera]
            s.received += 1
            s.last_receipt = t
            s.arrivals.append(t)

    def set_calibration(self, camera: str, missing: str) -> None:
        """``missing`` = what the camera still waits for (``""`` once calibrated)."""
        with self._lock:
            self._cams[camera].calibration = missing

    def start_running(self) -> None:
        """Images are subscribed from now on: camera timeouts count from here."""
        with self._lock:
            self.running_since = self.clock()

    def record_error(self, source: str, kind: str, message: str) -> bool:
        """Count an error of ``kind`` for a camera (or ``PIPELINE``); True the first time only."""
        t = self.clock()
        with self._lock:
            s = self._src(source)
            s.errors[kind] += 1
            s.last_error = (kind, message, t)
            s.last_by_kind[kind] = (message, t)
            key = (source, kind)
            first = key not in self._seen
            self._seen.add(key)
            return first

    def set_stall(self, message: str, camera: str | None = None, camera_message: str = "") -> None:
        """The watchdog's verdict: ``message`` (``""`` = no stall) keeps the pipeline ERROR; a named
        ``camera`` is ERROR with ``camera_message`` for as long as the stall lasts."""
        with self._lock:
            self._stall = message
            self._stall_camera = (camera, camera_message) if message and camera else None

    @property
    def stall(self) -> str:
        with self._lock:
            return self._stall

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def set_unmatched(self, per_camera: dict[str, int]) -> None:
        with self._lock:
            self.unmatched.update(per_camera)

    def record_output(self, latency_ms: float, timing: dict[str, float]) -> None:
        t = self.clock()
        with self._lock:
            self.counters["published"] += 1
            self._latency.append((t, float(latency_ms)))
            self._outputs.append(t)
            self.last_timing = dict(timing)

    # ---- queries ---------------------------------------------------------------------------------

    def update_staleness(self) -> list[tuple[str, bool, float]]:
        """Re-evaluate camera timeouts; returns ``(camera, now_stale, age_s)`` for each change."""
        now = self.clock()
        changes = []
        with self._lock:
            if self.running_since is None:
                return changes
            for n, s in self._cams.items():
                age = now - (s.last_receipt if s.last_receipt is not None else self.running_since)
                stale = age > self.camera_timeout_s
                if stale != s.stale:
                    s.stale = stale
                    changes.append((n, stale, age))
        return changes

    def received(self, camera: str) -> int:
        with self._lock:
            return self._cams[camera].received

    def last_error_text(self) -> str:
        """``"<source> <kind>: <message>"`` of the most recent error anywhere, ``""`` if none."""
        with self._lock:
            srcs = [(PIPELINE, self._pipe), *self._cams.items()]
            errs = [(s.last_error[2], n, s.last_error) for n, s in srcs if s.last_error is not None]
        if not errs:
            return ""
        _, name, (kind, msg, _) = max(errs, key=lambda e: e[0])
        return f"{name} {kind}: {msg}"

    def stale_cameras(self) -> list[str]:
        with self._lock:
            return [n for n, s in self._cams.items() if s.stale]

    def first_error_seen(self, source: str, kind: str) -> bool:
        with self._lock:
            return (source, kind) in self._seen

    @staticmethod
    def _rate(times: deque, now: float, window: float) -> float:
        ts = [t for t in times if now - t <= window]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-9)

    def _camera_status(self, name: str, s: _Source, now: float, hold: float) -> DiagnosticStatus:
        age = None
        if s.last_receipt is not None:
            age = now - s.last_receipt
        elif self.running_since is not None:
            age = now - self.running_since
        recent = _held(s, now, hold)
        if s.calibration:
            level, msg = ERROR, f"waiting for calibration: {s.calibration}"
        elif self.running_since is None:
            level, msg = OK, "calibrated; waiting for the engine"
        elif s.stale:
            level, msg = ERROR, f"no image for {age:.1f} s (camera_timeout_s {self.camera_timeout_s:g})"
        elif self._stall_camera is not None and self._stall_camera[0] == name:
            level, msg = ERROR, self._stall_camera[1]
        elif recent is not None:
            level, msg = recent
        else:
            level, msg = OK, "receiving"
        values = [
            ("rate_hz", f"{self._rate(s.arrivals, now, self.window_s):.2f}"),
            ("messages", str(s.received)),
            ("seconds_since_last_image", "never" if s.last_receipt is None else f"{now - s.last_receipt:.2f}"),
            ("unmatched_messages", str(self.unmatched.get(name, 0))),
            ("stale", str(s.stale).lower()),
        ]
        values += [(f"errors.{k}", str(v)) for k, v in sorted(s.errors.items())]
        if s.last_error is not None:
            values.append(("last_error", f"{s.last_error[0]}: {s.last_error[1]}"))
        return DiagnosticStatus(level=level, name=f"qdbev_node: camera {name}", hardware_id=name, message=msg,
                                values=[KeyValue(key=k, value=v) for k, v in values])

    def _pipeline_status(self, now: float, hold: float, allow_missing: bool,
                         cam_levels: dict[str, bytes]) -> DiagnosticStatus:
        p = self._pipe
        lat = np.array([ms for t, ms in self._latency if now - t <= self.window_s])
        stale = [n for n, s in self._cams.items() if s.stale]
        waiting = [n for n, s in self._cams.items() if s.calibration]
        recent = _held(p, now, hold)
        if waiting:
            level, msg = ERROR, f"waiting for calibration of {', '.join(waiting)}"
        elif self.running_since is None:
            level, msg = OK, "loading"
        elif stale and (not allow_missing or len(stale) == len(self._cams)):
            level, msg = ERROR, f"no detections: camera(s) {', '.join(stale)} stopped"
        elif self._stall:
            level, msg = ERROR, self._stall
        elif recent is not None:
            level, msg = recent
        elif any(lv != OK for lv in cam_levels.values()):
            level = WARN
            msg = "running; camera problems: " + ", ".join(n for n, lv in cam_levels.items() if lv != OK)
        else:
            level, msg = OK, "running"
        c = self.counters
        values = [
            ("state", "waiting_for_calibration" if waiting
             else "running" if self.running_since is not None else "loading"),
            ("sets_received", str(c["sets_received"])),
            ("sets_processed", str(c["sets_processed"])),
            ("detections_published", str(c["published"])),
            ("output_rate_hz", f"{self._rate(self._outputs, now, self.window_s):.2f}"),
            ("dropped_sets_newest_wins", str(c["dropped_sets"])),
            ("unmatched_camera_messages", str(sum(self.unmatched.values()))),
            ("bad_frames", str(c["bad_frames"])),
            ("engine_errors", str(p.errors.get("engine", 0))),
            ("time_jumps_backwards", str(c["time_backwards"])),
            ("time_gaps_forward", str(c["time_gap"])),
            ("stalled", "true" if self._stall else "false"),
            ("duplicate_stamps", str(c["duplicate_stamp"])),
            ("temporal_resets", str(c["temporal_resets"])),
            ("frames_without_ego_pose", str(c["no_ego_pose"])),
            ("degraded_frames", str(c["degraded_frames"])),
            ("latency_ms_p50", f"{np.percentile(lat, 50):.1f}" if lat.size else "n/a"),
            ("latency_ms_max", f"{lat.max():.1f}" if lat.size else "n/a"),
        ]
        values += [(f"last_{k}", f"{v:.1f}") for k, v in sorted(self.last_timing.items())]
        values += [(f"errors.{k}", str(v)) for k, v in sorted(p.errors.items())]
        if p.last_error is not None:
            values.append(("last_error", f"{p.last_error[0]}: {p.last_error[1]}"))
        return DiagnosticStatus(level=level, name="qdbev_node: pipeline", hardware_id="qdbev", message=msg,
                                values=[KeyValue(key=k, value=v) for k, v in values])

    def build(self, header: Header, allow_missing_cameras: bool = False) -> DiagnosticArray:
        """The ``DiagnosticArray`` (pipeline first, then one status per camera)."""
        now = self.clock()
        with self._lock:
            cams = [self._camera_status(n, s, now, self.error_hold_s) for n, s in self._cams.items()]
            levels = {n: st.level for n, st in zip(self._cams, cams)}
            pipe = self._pipeline_status(now, self.error_hold_s, allow_missing_cameras, levels)
        return DiagnosticArray(header=header, status=[pipe, *cams])
