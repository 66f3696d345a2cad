"""What every engine shares: the ``detect``/``reset`` contract, timing, temporal state."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..geometry import invert_transform
from ..types import Detections, Frame


@dataclass
class EngineTiming:
    """Wall-clock milliseconds of the last ``detect`` call, by stage."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


class TemporalState:
    """Previous BEV features and the pose they were computed at.

    ``motion(frame)`` returns the prev-ego -> current-ego transform (``ego_motion`` of the model)
    or ``None`` when the history must not be used: first frame, a different scene, no ego pose,
    or a stamp gap outside ``(0, max_gap_s]`` (a bag loop or a stall). ``None`` also clears it.
    """

    def __init__(self, max_gap_s: float = 1.5) -> None:
        self.max_gap_s = max_gap_s
        self.resets = 0
        self.clear()

    def clear(self) -> None:
        self.bev = None
        self.ego2global: NDArray[np.float64] | None = None
        self.stamp: float | None = None
        self.scene: str | None = None

    def motion(self, frame: Frame) -> NDArray[np.float64] | None:
        ok = (
            self.bev is not None
            and self.ego2global is not None
            and frame.ego2global is not None
            and frame.scene == self.scene
            and self.stamp is not None
            and 0.0 < frame.stamp - self.stamp <= self.max_gap_s
        )
        if not ok:
            if self.bev is not None:
                self.resets += 1
            self.clear()
            return None
        return invert_transform(frame.ego2global) @ self.ego2global

    def update(self, frame: Frame, bev) -> None:
        self.bev = bev
        self.ego2global = None if frame.ego2global is None else np.asarray(frame.ego2global, dtype=np.float64)
        self.stamp = frame.stamp
        self.scene = frame.scene


class Engine:
    """Base class: ``detect(frame) -> Detections`` and ``reset()``.

    ``detect`` is the same for every backend: ``prepare_frame`` (resize, normalize, rescale
    intrinsics), the temporal history (previous BEV + ego motion, or none), the backend's
    ``_feed`` (inputs onto its device / into its buffers) and ``_run`` (returns ``cls_logits``,
    ``boxes``, ``bev`` of the last decoder layer), then ``decode_detections``. Subclasses set
    ``cfg`` (the model's ``ModelConfig``), ``score_threshold``, ``topk`` and ``use_temporal``.
    """

    name = "engine"
    cfg = None
    score_threshold = 0.05
    topk = 300
    use_temporal = True

    def __init__(self) -> None:
        self.temporal = TemporalState()
        self.last_timing = EngineTiming()

    def reset(self) -> None:
        """Forget the previous BEV (next frame starts a new sequence)."""
        self.temporal.clear()

    def detect(self, frame: Frame) -> Detections:
        from ..model.postprocess import decode_detections
        from ..runtime.preprocess import prepare_frame

        t0 = time.perf_counter()
        net = prepare_frame(frame, tuple(self.cfg.image_size))
        motion = self.temporal.motion(frame) if self.use_temporal else None
        feeds = self._feed(net, None if motion is None else self.temporal.bev, motion)
        t1 = time.perf_counter()
        out = self._run(feeds)
        t2 = time.perf_counter()
        if self.use_temporal:
            self.temporal.update(frame, out["bev"])
        det = decode_detections(out, self.score_threshold, self.topk)[0]
        t3 = time.perf_counter()
        self.last_timing.preprocess_ms = (t1 - t0) * 1e3
        self.last_timing.inference_ms = (t2 - t1) * 1e3
        self.last_timing.postprocess_ms = (t3 - t2) * 1e3
        return det

    def _feed(self, net, prev_bev, motion: NDArray[np.float64] | None):  # pragma: no cover - interface
        """Backend inputs from a ``NetworkInput``; ``prev_bev``/``motion`` are None at a sequence start."""
        raise NotImplementedError

    def _run(self, feeds) -> dict:  # pragma: no cover - interface
        """One inference: ``{"cls_logits", "boxes", "bev"}`` (``bev`` is kept as the next ``prev_bev``)."""
        raise NotImplementedError
