"""Images in, camera sets out (executor thread): stamp checks, the synchronizer, the mailbox.

``ImageIntake`` is a mixin of ``QdbevNode``. Each image is checked (a repeated stamp is ignored,
one going backwards reported), its receipt time kept (for the latency and the per-stage timing),
and fed to the approximate-time synchronizer (``qdbev_core.runtime.sync.ApproxTimeSync``); each
complete set goes to the worker's one-slot ``SetMailbox``, where it replaces a waiting set
(counted as dropped: newest wins). With ``allow_missing_cameras`` a set of the live cameras'
newest images is formed while some are stale.
"""

from __future__ import annotations

import time
from typing import Any

from .diagnostics import PIPELINE
from .set_mailbox import SetMailbox
from .stage_timing import SetTrace
from .sync import SyncInput, make_synchronizer, stamp_ns

__all__ = ["ImageIntake"]


class ImageIntake:
    """Image callbacks, synchronizer and newest-wins hand-over (mixin of ``QdbevNode``)."""

    def _init_image_intake(self) -> None:
        """Synchronizer, per-camera stamp bookkeeping and the worker's mailbox."""
        self._inputs = [SyncInput() for _ in self.camera_names]
        # always our synchronizer: message_filters' drops the newest message of a full queue after
        # a jump back in time and never flushes, so a bag loop stalls it (issue 18)
        self.sync = make_synchronizer(self._inputs, self.p["queue_size"], self.p["slop"], self._on_set,
                                      prefer_fallback=True)
        self._arrivals: dict[tuple[int, int], float] = {}
        self._last_cam_stamp: list[int | None] = [None] * len(self.camera_names)
        self._latest: list[Any] = [None] * len(self.camera_names)
        self._used = [0] * len(self.camera_names)
        self._last_degraded_ns = -1
        self._mailbox = SetMailbox()

    def _on_image(self, msg, index: int) -> None:
        cam = self.camera_names[index]
        now = time.monotonic()
        self.diag.record_image(cam, now)
        t = stamp_ns(msg.header.stamp)
        last = self._last_cam_stamp[index]
        if last is not None and t == last:
            self._report(cam, "duplicate_stamp", f"{cam}: two images with the same stamp {t * 1e-9:.6f} s; "
                         "the repeat is ignored", level="warning")
            self.diag.count("duplicate_stamp")
            return
        if last is not None and t < last:
            self._stamp_skew[index].clear()  # the camera's offset before the jump no longer applies
            self._report(cam, "out_of_order", f"{cam}: stamp went backwards by {(last - t) * 1e-9:.3f} s "
                         "(out-of-order delivery or a bag loop)", level="warning", magnitude=(last - t) * 1e-9)
        self._last_cam_stamp[index] = t
        self._stamp_skew[index].append(t * 1e-9 - now)
        self._latest[index] = msg
        with self._lock:
            self._arrivals[(index, t)] = now
            if len(self._arrivals) > 64 * len(self.camera_names):
                for key in sorted(self._arrivals, key=self._arrivals.get)[: 16 * len(self.camera_names)]:
                    del self._arrivals[key]
        self._inputs[index].signalMessage(msg)
        if self.p["allow_missing_cameras"]:
            self._try_degraded_set(now)

    def _on_set(self, *msgs) -> None:
        """Synchronizer output: hand the set to the worker (newest wins)."""
        self._push(list(msgs), degraded=False)

    def _push(self, msgs: list, degraded: bool) -> None:
        with self._lock:
            arrivals = [self._arrivals.pop((i, stamp_ns(m.header.stamp)), None)
                        for i, m in enumerate(msgs) if m is not None]
            for i, m in enumerate(msgs):
                if m is not None:
                    self._used[i] += 1
        known = [a for a in arrivals if a is not None]
        now = time.monotonic()
        first = min(known, default=now)
        self._last_set_mono = now
        self.diag.count("sets_received")
        trace = SetTrace(first_arrival=first, last_arrival=max(known, default=now), formed=now)
        self._mailbox.put((msgs, first, degraded, trace), on_replace=lambda: self.diag.count("dropped_sets"))

    def _try_degraded_set(self, now: float) -> None:
        """allow_missing_cameras: a set of the live cameras' newest images when some are stale."""
        stale = set(self.diag.stale_cameras())
        if not stale or len(stale) == len(self.camera_names):
            return
        live = [i for i, c in enumerate(self.camera_names) if c not in stale]
        if any(self._latest[i] is None for i in live):
            return
        ts = [stamp_ns(self._latest[i].header.stamp) for i in live]
        if max(ts) - min(ts) >= int(self.p["slop"] * 1e9) or min(ts) <= self._last_degraded_ns:
            return
        self._last_degraded_ns = max(ts)
        self._log_limited((PIPELINE, "degraded"), "warning",
                       f"running without camera(s) {', '.join(sorted(stale))} (allow_missing_cameras=true): "
                       "black images stand in for them; detections in their view are unreliable")
        self._push([self._latest[i] if i in live else None for i in range(len(self.camera_names))], degraded=True)
