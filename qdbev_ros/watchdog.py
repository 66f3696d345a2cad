"""The node's watchdog (a 0.1 s timer): camera timeouts, unmatched messages and stalls.

``Watchdog`` is a mixin of ``QdbevNode``. A stall is "images arrive but no camera set forms"
(one camera's stamps off the others') or "sets form but nothing is published", each for longer
than ``camera_timeout_s``: the pipeline status turns ERROR naming the camera and its offset, with
one ``[stall]`` log line per episode (docs/NODE.md, Watchdog and /diagnostics). It reads the
stamp - receipt skews the image callbacks record (``_stamp_skew``) and the times of the last set
and output.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

import numpy as np

__all__ = ["Watchdog"]


class Watchdog:
    """Timeouts, unmatched counts and stall detection (mixin of ``QdbevNode``)."""

    def _init_watchdog(self) -> None:
        """Stamp - receipt per camera (seconds), last set / output, since when a camera is off."""
        self._stamp_skew = [deque(maxlen=8) for _ in self.camera_names]
        self._last_set_mono: float | None = None
        self._last_output_mono: float | None = None
        self._skipped_since_output = 0
        self._offset_since: float | None = None
        self._last_watchdog = time.monotonic()

    def _check_cameras(self) -> None:
        """Camera timeouts (log each transition) and unmatched-message counts.

        A tick that comes late (the executor thread was busy) does not judge timeouts: images may
        be waiting in the subscriptions' queues, and they are taken before the next tick.
        """
        now = time.monotonic()
        late = now - self._last_watchdog > 0.3
        self._last_watchdog = now
        for cam, stale, age in ([] if late else self.diag.update_staleness()):
            if stale:
                what = ("black images stand in for it (allow_missing_cameras=true)" if self.p["allow_missing_cameras"]
                        else "no detections are published until it is back")
                self.diag.record_error(cam, "timeout", f"no image for {age:.1f} s")
                topic = self.image_topics[self.camera_names.index(cam)]
                self.get_logger().error(f"[timeout] {cam}: no image for {age:.1f} s (camera_timeout_s "
                                        f"{self.p['camera_timeout_s']:g}) on {topic}; {what}")
            else:
                self.get_logger().info(f"{cam}: images are arriving again")
        if not late:
            self._check_stall(now)
        queues = getattr(self.sync, "queues", None)
        with self._lock:
            unmatched = {}
            for i, cam in enumerate(self.camera_names):
                queued = len(queues[i]) if queues is not None else 0
                received = self.diag.received(cam)
                unmatched[cam] = max(0, received - self._used[i] - queued)
        self.diag.set_unmatched(unmatched)

    def _stamp_offsets(self, cameras: Sequence[int]) -> dict[str, float]:
        """Each camera's stamp offset (s) from the median camera, from stamp - receipt time.

        Per camera the largest of its last 8 ``stamp - receipt`` values: a late receipt (a busy
        executor) only lowers the value, so the largest is the nearest to the true offset.
        """
        skews = {self.camera_names[i]: max(self._stamp_skew[i]) for i in cameras if self._stamp_skew[i]}
        if not skews:
            return {}
        median = float(np.median(list(skews.values())))
        return {cam: v - median for cam, v in skews.items()}

    def _stall_verdict(self, now: float) -> tuple[str, str | None, str] | None:
        """``(pipeline message, camera, camera message)`` of a stall, ``("", None, "")`` for none, or
        ``None`` while it cannot be judged (not running; a stopped camera, reported as such).

        A stall: all required cameras deliver images, yet one camera's stamps are more than
        ``camera_timeout_s`` off the others' (it is as stale as a stopped camera, whether or not its
        queued images still pair with the others'), or no camera set formed for longer than
        ``camera_timeout_s``, or sets form but none was published for that long.
        """
        timeout = self.p["camera_timeout_s"]
        stale = set(self.diag.stale_cameras())
        live = [i for i, c in enumerate(self.camera_names) if c not in stale]
        running = self.diag.running_since
        if self._rig is None or running is None or not live or (stale and not self.p["allow_missing_cameras"]):
            return None  # not running yet, or a stopped camera (reported as such) explains it
        offsets = self._stamp_offsets(live)
        cam, off = max(offsets.items(), key=lambda kv: abs(kv[1]), default=(None, 0.0))
        where = "ahead of" if off > 0 else "behind"
        if cam is None or abs(off) <= timeout:
            self._offset_since = None
        elif self._offset_since is None:
            self._offset_since = now  # must last camera_timeout_s: cameras of a bag loop jump one by one
        if self._offset_since is not None and now - self._offset_since > timeout:
            cam_msg = (f"stamps {abs(off):.3f} s {where} the other cameras' (more than camera_timeout_s "
                       f"{timeout:g}): check this camera's clock / driver")
            return (f"{cam}'s stamps are {off:+.3f} s off the other cameras' (more than camera_timeout_s "
                    f"{timeout:g}): its images cannot be paired with theirs in time", cam, cam_msg)
        # measured from the last set, not from when a stopped camera came back: a camera that
        # returns with bad stamps must not reset the clock (diagnostics would flap to OK)
        no_set = now - max(self._last_set_mono or 0.0, running)
        if no_set > timeout:
            head = (f"no camera set for {no_set:.1f} s although the cameras deliver images "
                    f"(camera_timeout_s {timeout:g})")
            if cam is not None and abs(off) >= self.p["slop"]:
                cam_msg = (f"stamps {abs(off):.3f} s {where} the other cameras' (slop {self.p['slop']:g} s): "
                           "no set can form; check this camera's clock / driver")
                return f"{head}: {cam}'s stamps are {off:+.3f} s off the others'", cam, cam_msg
            spread = max((abs(v) for v in offsets.values()), default=0.0)
            return (f"{head}; their stamps agree within {spread:.3f} s: check slop "
                    f"({self.p['slop']:g} s) and queue_size", None, "")
        no_output = now - max(self._last_output_mono or 0.0, running)
        if self._skipped_since_output > 0 and no_output > timeout:
            last = self.diag.last_error_text()
            return (f"camera sets arrive but nothing was published for {no_output:.1f} s "
                    f"({self._skipped_since_output} sets skipped; last problem: {last or 'none recorded'})",
                    None, "")
        return "", None, ""

    def _check_stall(self, now: float) -> None:
        """Watchdog: report a stall (ERROR on /diagnostics, one log line per episode) and its end."""
        verdict = self._stall_verdict(now)
        if verdict is None:
            return  # keep the current state: a camera flapping stale under load ends no stall
        msg, cam, cam_msg = verdict
        was = self.diag.stall
        self.diag.set_stall(msg, cam, cam_msg)
        if msg and not was:
            self.diag.count("stalls")
            self._emit("error", f"[stall] {msg}")
        elif was and not msg:
            self.get_logger().info("camera sets form and are published again (stall over)")
