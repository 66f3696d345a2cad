"""``qdbev_core.runtime.processor.CameraSetProcessor``: the one per-set pipeline of node and replay.

Driven without ROS: image messages are plain objects with the ``sensor_msgs/Image`` fields (the
processor reads fields only), the engine is a stub. What the node and replay both rely on:
decoding + assembly errors skip the set (naming the camera), a jump back in time or a long forward
gap resets the engine's temporal state, a repeated set stamp is skipped, an engine exception
skips the set without propagating, the output limits keep the best detections in order, the
ego pose is looked up at the CAM_FRONT stamp and validated. The node's reporting of the same
problems is checked through the node in ``test_node_config.py`` / ``test/integration/test_node_faults.py``;
that live and replay give the same detections, in ``test/integration/test_live_vs_replay.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qdbev_core.data.rig import rig_arrays
from qdbev_core.geometry import make_transform
from qdbev_core.runtime.calibration import CameraCalibration, CameraRig
from qdbev_core.runtime.codecs import encode_raw_image
from qdbev_core.runtime.processor import (
    PIPELINE,
    CameraSetProcessor,
    EgoPoseLookup,
    OutputLimits,
    Problem,
    filter_detections,
)
from qdbev_core.types import CAMERA_NAMES, Detections

REPO = Path(__file__).resolve().parents[2]
H, W = 45, 80
LIMITS = OutputLimits(score_threshold=0.05, max_detections=300)


class _Engine:
    """Records frames; ``fail`` makes ``detect`` raise; three detections of scores 0.9, 0.2, 0.6."""

    def __init__(self) -> None:
        self.frames = []
        self.resets = 0
        self.fail = False
        self.temporal = SimpleNamespace(max_gap_s=1.5)
        self.last_timing = SimpleNamespace(preprocess_ms=1.0, inference_ms=2.0, postprocess_ms=3.0)

    def reset(self) -> None:
        self.resets += 1

    def detect(self, frame) -> Detections:
        if self.fail:
            raise RuntimeError("boom")
        self.frames.append(frame)
        boxes = np.zeros((3, 9))
        boxes[:, 0] = (1.0, 2.0, 3.0)
        return Detections(boxes=boxes, scores=np.array([0.9, 0.2, 0.6]), labels=np.array([0, 1, 2]))


class _Sink:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.problems: list[Problem] = []

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def problem(self, problem: Problem) -> None:
        self.problems.append(problem)

    def kinds(self) -> list[str]:
        return [p.kind for p in self.problems]


def _rig() -> CameraRig:
    ks, ts = rig_arrays(0.05)
    return CameraRig({n: CameraCalibration.create(n, ks[i], W, H, ts[i]) for i, n in enumerate(CAMERA_NAMES)})


def _msg(t: float, cam: int = 0, width: int = W) -> SimpleNamespace:
    ns = round(t * 1e9) + cam * 4_000_000
    img = np.full((H, width, 3), 40 * cam, np.uint8)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=ns // 10**9, nanosec=ns % 10**9)),
                           encoding="rgb8", width=width, height=H, step=3 * width, is_bigendian=0,
                           data=encode_raw_image(img, "rgb8"))


def _set(t: float) -> list[SimpleNamespace]:
    return [_msg(t, i) for i in range(len(CAMERA_NAMES))]


@pytest.fixture
def proc():
    engine, sink = _Engine(), _Sink()
    return CameraSetProcessor(engine, sink), engine, sink


def test_a_set_becomes_a_frame_and_filtered_detections(proc) -> None:
    p, engine, sink = proc
    out = p.process(_rig(), _set(10.0), OutputLimits(0.5, 300))
    assert out.skipped is None and out.stamp_ns == 10_000_000_000
    assert out.detections.scores.tolist() == [0.9, 0.6]  # 0.2 is below the threshold; order kept
    (frame,) = engine.frames
    assert frame.stamp == 10.0 and len(frame.images) == 6 and frame.images[3][0, 0, 0] == 120
    assert frame.ego2global is None
    assert set(out.stages_ms) == {"preprocess", "inference", "postprocess"} and out.stages_ms["inference"] == 2.0
    # the finer split the node reports per stage (issue 20): decode + assemble + engine's preprocess
    # make up "preprocess"; "postprocess" is what detect() took besides preprocess and inference
    assert list(out.detail_ms) == ["decode", "assemble", "engine_preprocess", "inference", "postprocess"]
    assert out.detail_ms["engine_preprocess"] == 1.0 and out.detail_ms["inference"] == 2.0
    assert out.stages_ms["preprocess"] == pytest.approx(
        out.detail_ms["decode"] + out.detail_ms["assemble"] + out.detail_ms["engine_preprocess"])
    assert sink.counts == {"sets_processed": 1} and sink.problems == []


def test_time_backwards_and_forward_gap_reset_the_engine_duplicates_are_skipped(proc) -> None:
    p, engine, sink = proc
    rig = _rig()
    assert p.process(rig, _set(10.0), LIMITS).detections is not None
    assert p.process(rig, _set(10.0), LIMITS).skipped == "duplicate_stamp"
    assert engine.resets == 0 and len(engine.frames) == 1
    assert p.process(rig, _set(9.0), LIMITS).detections is not None  # bag loop
    assert engine.resets == 1
    out = p.process(rig, _set(12.0), LIMITS, dropped_sets=4)  # 3 s > max_gap_s 1.5
    assert out.detections is not None and engine.resets == 2
    assert sink.counts["time_backwards"] == 1 and sink.counts["time_gap"] == 1 and sink.counts["temporal_resets"] == 2
    assert sink.counts["duplicate_stamp"] == 1
    gap = next(x for x in sink.problems if x.kind == "time_gap")
    assert gap.source == PIPELINE and gap.level == "warning" and gap.magnitude == pytest.approx(3.0)
    assert "4 camera sets were dropped meanwhile" in gap.message
    back = next(x for x in sink.problems if x.kind == "time_backwards")
    assert back.message.startswith("time jumped backwards by 1.000 s (10.000 -> 9.000")


def test_bad_input_and_engine_failures_skip_the_set(proc) -> None:
    p, engine, sink = proc
    rig = _rig()
    msgs = _set(10.0)
    msgs[2] = _msg(10.0, 2, width=W + 2)  # not the CameraInfo size
    out = p.process(rig, msgs, LIMITS)
    assert out.detections is None and out.skipped == "image_size" and not engine.frames
    assert sink.problems[-1].source == "CAM_FRONT_LEFT" and sink.problems[-1].message.endswith("frame skipped")
    msgs = _set(10.1)
    msgs[0].encoding = "mono16"
    assert p.process(rig, msgs, LIMITS).skipped == "encoding"
    assert p.process(rig, [None] + _set(10.2)[1:], LIMITS).skipped == "missing_camera"
    engine.fail = True
    out = p.process(rig, _set(10.3), LIMITS)
    assert out.skipped == "engine" and sink.problems[-1].log_key == "engine:RuntimeError"
    assert "RuntimeError: boom" in sink.problems[-1].message and "Traceback" in sink.problems[-1].detail
    assert sink.counts["bad_frames"] == 3 and p.last_stamp is None  # nothing was processed
    engine.fail = False
    assert p.process(rig, [None] + _set(10.4)[1:], LIMITS, degraded=True).detections is not None
    assert sink.counts["degraded_frames"] == 1
    assert engine.frames[-1].stamp == pytest.approx(10.404)  # CAM_FRONT missing: the first present camera's


def test_ego_pose_is_looked_up_at_the_front_stamp_and_validated(proc) -> None:
    p, engine, sink = proc
    rig = _rig()
    asked = []
    pose = make_transform((1.0, 0.0, 0.0, 0.0), (5.0, 0.0, 0.0))
    ego = EgoPoseLookup(lambda ns: asked.append(ns) or pose, "TF odom -> base_link within 0.1 s")
    p.process(rig, _set(10.0), LIMITS, ego_pose=ego)
    assert asked == [10_000_000_000] and np.array_equal(engine.frames[-1].ego2global, pose)
    p.process(rig, _set(10.1), LIMITS, ego_pose=EgoPoseLookup(lambda ns: None, "TF odom -> base_link within 0.1 s"))
    assert engine.frames[-1].ego2global is None and sink.counts["no_ego_pose"] == 1
    missing = sink.problems[-1]
    assert missing.kind == "no_ego_pose" and not missing.held and "TF odom -> base_link within 0.1 s" in missing.message
    bad = pose.copy()
    bad[0, 0] = 7.0
    p.process(rig, _set(10.2), LIMITS, ego_pose=EgoPoseLookup(lambda ns: bad, "x"))
    assert engine.frames[-1].ego2global is None and sink.problems[-1].kind == "ego_pose"


def test_filter_keeps_the_best_in_their_order() -> None:
    det = Detections(boxes=np.arange(36.0).reshape(4, 9), scores=np.array([0.1, 0.8, 0.5, 0.9]),
                     labels=np.array([0, 1, 2, 3]))
    assert filter_detections(det, OutputLimits(0.0, 10)) is det
    out = filter_detections(det, OutputLimits(0.3, 2))
    assert out.scores.tolist() == [0.8, 0.9] and out.boxes[:, 0].tolist() == [9.0, 27.0]


def test_node_and_replay_both_run_the_processor() -> None:
    """The per-set pipeline exists once: the node and bag replay call ``CameraSetProcessor.process``
    and neither calls ``engine.detect`` or ``CameraRig.assemble`` itself."""
    for path in ("qdbev_ros/node.py", "qdbev_core/bag/replay.py"):
        tree = ast.parse((REPO / path).read_text())
        called = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "CameraSetProcessor" in names and "process" in called, path
        assert "detect" not in called and "assemble" not in called, path
