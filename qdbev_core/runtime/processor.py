"""One camera set -> ``Detections``: the per-frame pipeline of the live node and of offline replay.

``CameraSetProcessor.process(rig, msgs, ...)`` does, for the six image messages of one
synchronized set (rclpy or ``rosbags`` messages: only fields are read):

1. decode every image (``codecs.decode_image_msg``; the six in parallel on a small thread pool
   owned by the processor: OpenCV and NumPy release the GIL; same arrays, same first error in
   camera order as one after the other; a JPEG at least twice the network input in both
   dimensions is decoded at 1/2, 1/4 or 1/8 of its size, ``codecs.jpeg_reduction``, with its
   intrinsics scaled to match), look up the ego pose at the reference
   camera's stamp (CAM_FRONT, else the first camera present) and assemble the ``Frame``
   (``CameraRig.assemble``); bad input skips the set (``bad_frames``);
2. time checks against the last processed frame: a stamp going backwards (bag loop, clock reset)
   or a forward gap longer than the engine's temporal fusion bridges (``max_gap_s``) resets the
   engine's temporal state; a repeated set stamp is skipped (``duplicate_stamp``);
3. ``engine.detect(frame)``; an exception skips the set (``engine``), it never propagates;
4. keeps detections at or above ``score_threshold``, at most ``max_detections`` (best first,
   original order kept).

Problems and counts go to a ``ProblemSink``: the node turns them into ``/diagnostics`` entries and
rate-limited log lines, replay into ``ReplayResult`` counters. The caller publishes or writes
the result (``SetResult``, with the milliseconds of every stage). Not thread-safe: one caller
thread (the node's worker); ``close()`` ends the decode threads.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..types import CAMERA_NAMES, Detections
from .calibration import CameraRig
from .codecs import decode_image_msg, jpeg_reduction
from .errors import FrameAssemblyError
from .sync import stamp_ns
from .transforms import validate_pose

__all__ = [
    "PIPELINE",
    "CameraSetProcessor",
    "EgoPoseLookup",
    "OutputLimits",
    "Problem",
    "ProblemSink",
    "SetResult",
    "default_decode_workers",
    "filter_detections",
    "ns_seconds",
    "stamp_seconds",
]

PIPELINE = "pipeline"
"""Source name of problems that belong to no single camera (engine, time, ego pose)."""


@dataclass(frozen=True)
class Problem:
    """A problem with one camera set, for the caller to log and count.

    Attributes:
        source: camera name, or ``PIPELINE``.
        kind: short stable key (``"decode"``, ``"time_backwards"``, ``"engine"``, ...).
        message: what happened and what was done about it.
        level: ``"error"`` or ``"warning"``.
        magnitude: size of a time jump / gap (s), so a much larger one is logged again.
        log_key: key the log rate limit uses instead of ``kind``.
        held: True: a diagnostics problem (held for ``error_hold_s``); False: only logged.
        detail: a traceback, for a debug log line.
    """

    source: str
    kind: str
    message: str
    level: str = "error"
    magnitude: float | None = None
    log_key: str | None = None
    held: bool = True
    detail: str = ""


class ProblemSink(Protocol):
    """Where the processor reports: ``count`` a named counter, ``problem`` a ``Problem``."""

    def count(self, name: str) -> None: ...

    def problem(self, problem: Problem) -> None: ...


@dataclass(frozen=True)
class EgoPoseLookup:
    """The ego pose source of one set.

    Attributes:
        lookup: stamp (integer ns) -> ``base_link -> odom`` 4x4 pose, or ``None`` when there is none.
        source: what it asks, for the log line (``"TF odom -> base_link within 0.1 s"``).
    """

    lookup: Callable[[int], NDArray[np.float64] | None]
    source: str


@dataclass(frozen=True)
class OutputLimits:
    """What is kept of the engine's detections: ``score >= score_threshold``, at most ``max_detections``."""

    score_threshold: float
    max_detections: int


@dataclass
class SetResult:
    """What ``process`` made of one set.

    Attributes:
        detections: the kept detections, or ``None`` when the set was skipped.
        skipped: the reason kind when skipped (``FrameAssemblyError.kind``, ``duplicate_stamp``, ``engine``).
        stamp_ns: header stamp (ns) of the reference camera (CAM_FRONT, else the first present):
            the stamp of the published detections.
        stages_ms: ``preprocess`` (decode + assembly + engine preprocess), ``inference``,
            ``postprocess`` milliseconds (processed sets only; the node's ``~/debug`` topics).
        detail_ms: the same time finer, in order (processed sets only): ``decode`` (the images),
            ``assemble`` (ego pose, ``Frame``, time checks), ``engine_preprocess`` (resize,
            normalize), ``inference``, ``postprocess`` (engine decoding + output limits).
    """

    detections: Detections | None = None
    skipped: str | None = None
    stamp_ns: int = 0
    stages_ms: dict[str, float] = field(default_factory=dict)
    detail_ms: dict[str, float] = field(default_factory=dict)


def stamp_seconds(stamp: Any) -> float:
    """Seconds of a ``builtin_interfaces/Time``, computed as ``sec + nanosec * 1e-9``."""
    return stamp.sec + stamp.nanosec * 1e-9


def ns_seconds(ns: int) -> float:
    """Seconds of integer nanoseconds, computed as ``stamp_seconds`` does (same float)."""
    return (ns // 1_000_000_000) + (ns % 1_000_000_000) * 1e-9


def filter_detections(det: Detections, limits: OutputLimits) -> Detections:
    """Detections scoring at least ``limits.score_threshold``, at most ``limits.max_detections``
    (the best ones), in their original order; ``det`` itself when nothing is removed."""
    scores = np.asarray(det.scores)
    keep = np.flatnonzero(scores >= limits.score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")][: limits.max_detections]
    if len(keep) == len(scores):
        return det
    keep.sort()
    return Detections(boxes=det.boxes[keep], scores=det.scores[keep], labels=det.labels[keep],
                      class_names=det.class_names)


def default_decode_workers(cameras: int = len(CAMERA_NAMES)) -> int:
    """Decode threads by default: one per camera, at most one per CPU core."""
    return max(1, min(cameras, os.cpu_count() or 1))


class CameraSetProcessor:
    """Camera sets -> ``Detections`` with one engine (module docstring).

    Args:
        engine: a ``qdbev_core.engine.Engine`` (``detect``, ``reset``, ``last_timing``, ``temporal``).
        sink: receives counts and problems.
        camera_names: camera order of the sets (model order).
        decode_workers: threads decoding the images of a set; 1 decodes them one after the other in
            the caller's thread; ``None``: ``default_decode_workers``.
        reduced_jpeg: decode JPEGs much larger than the network input (``engine.cfg.image_size``)
            at a reduced size (module doc); False: always at full size.
    """

    def __init__(self, engine: Any, sink: ProblemSink, camera_names: Sequence[str] = CAMERA_NAMES,
                 decode_workers: int | None = None, reduced_jpeg: bool = True) -> None:
        self.engine = engine
        self.sink = sink
        self.camera_names = tuple(camera_names)
        self.last_stamp: float | None = None
        self._dropped_at_last_frame = 0
        self.decode_workers = default_decode_workers(len(self.camera_names)) if decode_workers is None \
            else max(1, int(decode_workers))
        self._pool: ThreadPoolExecutor | None = None
        input_hw = getattr(getattr(engine, "cfg", None), "image_size", None)
        self.input_hw: tuple[int, int] | None = tuple(input_hw) if reduced_jpeg and input_hw else None

    def close(self) -> None:
        """End the decode threads (idempotent; a later ``process`` starts them again)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def decode(self, msgs: Sequence[Any], reductions: dict[str, int] | None = None) -> dict[str, Any]:
        """``{camera: RGB array}`` of the messages present (``None`` = missing camera), decoded in
        parallel when ``decode_workers > 1``; ``reductions``: camera -> JPEG decode reduction.

        Every image is the array ``decode_image_msg`` makes one after the other (an unpadded
        ``rgb8`` image is a read-only view of its message, which the caller keeps unchanged while
        the set is processed). A bad image raises the ``FrameAssemblyError`` of the first bad
        camera in camera order, as a sequential loop would.
        """
        work = [(cam, msg, (reductions or {}).get(cam, 1)) for cam, msg in zip(self.camera_names, msgs)
                if msg is not None]
        if self.decode_workers == 1 or len(work) < 2:
            return {cam: decode_image_msg(msg, cam, False, f) for cam, msg, f in work}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="qdbev_decode")
        futures = [self._pool.submit(decode_image_msg, msg, cam, False, f) for cam, msg, f in work]
        return {cam: fut.result() for (cam, _, _), fut in zip(work, futures)}  # first error in camera order

    def jpeg_reductions(self, rig: CameraRig, msgs: Sequence[Any]) -> dict[str, int]:
        """camera -> JPEG decode reduction for the compressed images of a set (none without an
        engine input size, or with ``reduced_jpeg`` off)."""
        if self.input_hw is None:
            return {}
        out = {}
        for cam, msg in zip(self.camera_names, msgs):
            if msg is not None and hasattr(msg, "format") and cam in rig.calibrations:
                cal = rig.calibrations[cam]
                f = jpeg_reduction((cal.height, cal.width), self.input_hw)
                if f > 1:
                    out[cam] = f
        return out

    def _settle_reductions(self, rig: CameraRig, msgs: Sequence[Any], images: dict[str, Any],
                           reductions: dict[str, int]) -> dict[str, int]:
        """The reduction each image really has: kept where the decoded size is the reduced
        CameraInfo size, 1 for an image at full size (a PNG), and for any other size the image is
        decoded again at full size, so the size check reports the size actually sent."""
        settled = {}
        for cam, f in reductions.items():
            img = images.get(cam)
            if img is None:
                continue
            h, w = img.shape[:2]
            if (w, h) == rig.reduced_size(cam, f):
                settled[cam] = f
            elif (w, h) != rig.reduced_size(cam, 1):
                images[cam] = decode_image_msg(msgs[self.camera_names.index(cam)], cam, False)
        return settled

    def max_gap_s(self) -> float:
        """Largest forward stamp gap (s) the engine's temporal fusion bridges (else it resets)."""
        temporal = getattr(self.engine, "temporal", None)
        return float(getattr(temporal, "max_gap_s", 1.5))

    def process(self, rig: CameraRig, msgs: Sequence[Any], limits: OutputLimits,
                ego_pose: EgoPoseLookup | None = None, degraded: bool = False, dropped_sets: int = 0) -> SetResult:
        """Decode, assemble, check time, detect and filter one set.

        Args:
            rig: the calibrated cameras.
            msgs: one image message per camera in ``camera_names`` order; ``None`` for a camera
                missing from a degraded set.
            limits: output score threshold and count.
            ego_pose: the ego pose source, ``None`` for none (every frame starts a new sequence).
            degraded: black images may stand in for missing cameras (``allow_missing_cameras``).
            dropped_sets: sets the caller dropped so far (for the forward-gap message).
        """
        t0 = time.perf_counter()
        self.sink.count("sets_processed")
        present = [m for m in msgs if m is not None]
        front = msgs[0] if msgs and msgs[0] is not None else (present[0] if present else None)
        result = SetResult(stamp_ns=stamp_ns(front.header.stamp) if front is not None else 0)
        try:
            reductions = self.jpeg_reductions(rig, msgs)
            images = self.decode(msgs, reductions)
            reductions = self._settle_reductions(rig, msgs, images, reductions)
            t_decoded = time.perf_counter()
            stamps = {cam: stamp_seconds(msg.header.stamp) for cam, msg in zip(self.camera_names, msgs)
                      if msg is not None}
            ego = self._ego_pose(ego_pose, result.stamp_ns) if front is not None else None
            frame = rig.assemble(images, stamps, ego2global=ego, allow_missing=degraded,
                                 stamp_camera=self.camera_names[0], reductions=reductions)
        except FrameAssemblyError as exc:
            self.sink.count("bad_frames")
            source = exc.camera if exc.camera in self.camera_names else PIPELINE
            self.sink.problem(Problem(source, exc.kind, f"{exc}; frame skipped"))
            result.skipped = exc.kind
            return result
        if degraded:
            self.sink.count("degraded_frames")
        if not self._check_time(frame.stamp, dropped_sets):
            result.skipped = "duplicate_stamp"
            return result
        t_assembled = time.perf_counter()
        try:
            det = filter_detections(self.engine.detect(frame), limits)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
            self.sink.problem(Problem(
                PIPELINE, "engine", f"engine failed on the frame at {frame.stamp:.3f} s: {type(exc).__name__}: "
                f"{exc}; frame skipped", log_key=f"engine:{type(exc).__name__}", detail=traceback.format_exc()))
            result.skipped = "engine"
            return result
        t_done = time.perf_counter()
        self.last_stamp = frame.stamp
        self._dropped_at_last_frame = dropped_sets
        result.detections = det
        self._record_timing(result, t0, t_decoded, t_assembled, t_done)
        return result

    def _record_timing(self, result: SetResult, t0: float, t_decoded: float, t_assembled: float,
                       t_done: float) -> None:
        """``stages_ms`` and ``detail_ms`` of a processed set from its ``perf_counter`` marks and
        the engine's ``last_timing`` (what of ``detect`` is not preprocess / inference counts as
        postprocess)."""
        timing = getattr(self.engine, "last_timing", None)
        pre = float(getattr(timing, "preprocess_ms", 0.0))
        inference = float(getattr(timing, "inference_ms", 0.0))
        decode_ms = (t_decoded - t0) * 1e3
        assemble_ms = (t_assembled - t_decoded) * 1e3
        result.stages_ms = {
            "preprocess": decode_ms + assemble_ms + pre,
            "inference": inference,
            "postprocess": float(getattr(timing, "postprocess_ms", 0.0)),
        }
        result.detail_ms = {
            "decode": decode_ms,
            "assemble": assemble_ms,
            "engine_preprocess": pre,
            "inference": inference,
            "postprocess": max(0.0, (t_done - t_assembled) * 1e3 - pre - inference),
        }

    def _ego_pose(self, source: EgoPoseLookup | None, ns: int) -> NDArray[np.float64] | None:
        """The validated ego pose at ``ns``, or ``None`` (none configured, none found, or invalid)."""
        if source is None:
            return None
        pose = source.lookup(ns)
        if pose is None:
            self.sink.count("no_ego_pose")
            self.sink.problem(Problem(
                PIPELINE, "no_ego_pose", f"no ego pose from {source.source} of a frame: temporal fusion is off "
                "for such frames (set ego_pose_source:=none to silence)", level="warning", held=False))
            return None
        try:
            return validate_pose(pose)
        except FrameAssemblyError as exc:
            self.sink.problem(Problem(PIPELINE, exc.kind, str(exc), level="warning"))
            return None

    def _check_time(self, stamp: float, dropped_sets: int) -> bool:
        """Reset the temporal state on a jump back or a long gap; False for a repeated set stamp."""
        last = self.last_stamp
        if last is None:
            return True
        if stamp < last:
            self.engine.reset()
            self.sink.count("time_backwards")
            self.sink.count("temporal_resets")
            self.sink.problem(Problem(
                PIPELINE, "time_backwards", f"time jumped backwards by {last - stamp:.3f} s ({last:.3f} -> "
                f"{stamp:.3f}; bag loop or clock reset?): temporal state reset", level="warning",
                magnitude=last - stamp))
        elif stamp - last > self.max_gap_s():
            self._forward_gap(last, stamp, dropped_sets)
        elif stamp == last:
            self.sink.count("duplicate_stamp")
            self.sink.problem(Problem(PIPELINE, "duplicate_stamp", f"a second camera set with stamp {stamp:.6f} s "
                                      "was skipped", level="warning"))
            return False
        return True

    def _forward_gap(self, last: float, stamp: float, dropped_sets: int) -> None:
        """A forward gap the temporal fusion does not bridge: reset it, count, say why it happened."""
        self.engine.reset()
        self.sink.count("time_gap")
        self.sink.count("temporal_resets")
        skipped = dropped_sets - self._dropped_at_last_frame
        why = (f"{skipped} camera sets were dropped meanwhile because the node is slower than the cameras "
               "(newest set wins)" if skipped > 0 else "no camera sets in between: a stall, lost images or a "
               "paused bag")
        self.sink.problem(Problem(
            PIPELINE, "time_gap", f"time jumped forward by {stamp - last:.3f} s ({last:.3f} -> {stamp:.3f}), more "
            f"than the temporal fusion's {self.max_gap_s():g} s: temporal state reset; {why}", level="warning",
            magnitude=stamp - last))
