"""Offline replay: a bag's camera streams -> the node's frame assembly -> engine -> output bag + score.

``replay_bag(bag, engine, params)`` does, without ROS, what ``qdbev_node`` does live with the
same parameters (``NodeParams`` from the node's params file):

1. Calibration: the first valid ``CameraInfo`` of each camera (``camera_info_topics``) and the
   camera -> ``frame_id`` extrinsics from ``/tf_static`` (``StaticTransformTree``, looked up by
   each CameraInfo's ``header.frame_id``) or from ``calibration_file``; validated into the same
   ``CameraRig``. Calibration is read before the first image is used, as the node has it once
   ``qdbev play --wait-for-subscribers`` has pre-published it. A later CameraInfo that changes
   K or the size rebuilds the rig (as in the node).
2. Ego motion: ``odom_frame -> frame_id`` transforms on ``/tf`` (or ``nav_msgs/Odometry`` on
   ``odometry_topic``) into a ``PoseHistory``; the pose nearest to the CAM_FRONT stamp within
   ``ego_pose_tolerance_s`` (the node's lookup without ``tf2_ros``).
3. Synchronization: the six image streams (``image_topics``; ``image_transport`` or whichever the
   bag holds) go, in bag order, through ``qdbev_core.runtime.sync.ApproxTimeSync`` with the node's
   ``queue_size`` and ``slop``; a repeated stamp of one camera is ignored (node rule).
4. Each set goes through ``qdbev_core.runtime.processor.CameraSetProcessor``, the code the node
   runs: decoding, ``CameraRig.assemble``, the rules for time going backwards or jumping forward
   (engine reset) and a repeated set stamp (skipped), ``engine.detect`` and the output limits.
   Unlike the live node nothing is dropped for being slow: every set is processed (live, a set
   is dropped only when the next one completes before inference ends).
5. Output bag (optional, MCAP): ``/qdbev_node/detections`` (``Detection3DArray``, stamp = CAM_FRONT
   stamp, ``frame_id``), ``/qdbev_node/detections/velocity`` (``qdbev_msgs/ObjectVelocityArray``,
   same header, ``(vx, vy, 0)`` m/s per detection) and ``/qdbev_node/markers`` (``MarkerArray``,
   ``marker_score_threshold``) built like the node's messages, plus copies of ``/tf_static``,
   ``/tf`` and ``/qdbev/ground_truth`` so the output bag alone shows detections against ground
   truth. ``qdbev_core.bag.recorded.read_detections_bag`` reads detections + velocities back from
   such a bag (or from one ``qdbev bag record`` made of a live node) for ``score_replay``.

``score_replay(result, source, eval_dir)`` scores the detections of the bag's key frames with the
official nuScenes evaluator: detections are matched to key frames by CAM_FRONT stamp (the
``BagSource`` recorded by ``bag_from_nuscenes``), converted to global with the recorded LIDAR_TOP
ego pose (``ResultsWriter``), and evaluated on a split made of the bag's scene (through a
temporary overlay of the dataroot that adds the split to a copy of ``splits.json``; the dataroot
itself is never modified).

Known limit: on a ROS install with ``tf2_ros`` the node interpolates the ego pose with tf2
instead of taking the nearest one; detections can then differ slightly from replay's.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.calibration import CalibrationInputs, CameraRig, load_extrinsics_yaml
from ..runtime.errors import FrameAssemblyError
from ..runtime.processor import CameraSetProcessor, EgoPoseLookup, OutputLimits, Problem, SetResult, ns_seconds
from ..runtime.sync import ApproxTimeSync
from ..runtime.transforms import PoseHistory, StaticTransformTree
from ..types import CAMERA_NAMES, Detections
from . import messages as m
from .layout import (
    DETECTIONS_TOPIC,
    GROUND_TRUTH_TOPIC,
    MARKERS_TOPIC,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    VELOCITY_TOPIC,
    BagSource,
    NodeParams,
)
from .typestore import DETECTION3D_ARRAY, MARKER_ARRAY, OBJECT_VELOCITY_ARRAY, get_typestore

__all__ = ["ReplayResult", "replay_bag", "score_replay", "REPLAY_SPLIT"]

REPLAY_SPLIT = "qdbev_replay"
"""Name of the one-scene custom split replay scores on (in the temporary overlay only)."""


@dataclass
class ReplayResult:
    """What ``replay_bag`` did.

    Attributes:
        detections: ``{CAM_FRONT stamp ns: Detections}`` of every processed set, in order.
        sets: camera sets the synchronizer emitted.
        skipped: ``{reason kind: count}`` of sets not processed (bad input, duplicate stamp, engine).
        counters: other counts (``temporal_resets``, ``no_ego_pose``, ``duplicate_image``, ...).
        timing_ms: median ``preprocess`` (decode + engine preprocess) / ``inference`` /
            ``postprocess`` milliseconds.
        image_transport: ``raw`` or ``compressed`` (what was read).
        out_bag: the output bag folder, if one was written.
    """

    detections: dict[int, Detections] = field(default_factory=dict)
    sets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    timing_ms: dict[str, float] = field(default_factory=dict)
    image_transport: str = ""
    out_bag: Path | None = None
    wall_s: float = 0.0

    @property
    def frames(self) -> int:
        return len(self.detections)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def skip(self, kind: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1


class _Calibration:
    """CameraInfo + extrinsics bookkeeping (the node's startup logic, minus ROS): the shared
    ``CalibrationInputs`` plus where the extrinsics come from (``/tf_static`` or the calibration file)."""

    def __init__(self, params: NodeParams) -> None:
        self.p = params
        self.inputs = CalibrationInputs(CAMERA_NAMES, params.frame_id)
        self.tree = StaticTransformTree()
        self.file_extrinsics = (load_extrinsics_yaml(params.calibration_path(), CAMERA_NAMES)
                                if params.calibration_source == "file" else None)
        self.problems: dict[str, str] = {}

    @property
    def rig(self) -> CameraRig | None:
        return self.inputs.rig

    def on_camera_info(self, cam: str, msg: Any) -> bool:
        """Store a CameraInfo; True when it changed an already built rig's calibration."""
        try:
            return self.inputs.set_camera_info(cam, np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
                                               int(msg.width), int(msg.height), msg.header.frame_id)
        except FrameAssemblyError as exc:
            self.problems[f"{cam}:{exc.kind}"] = str(exc)
            return False

    def extrinsics(self, cam: str) -> np.ndarray | None:
        if self.file_extrinsics is not None:
            return self.file_extrinsics.get(cam)
        frame = self.inputs.intrinsics[cam][3] if cam in self.inputs.intrinsics else ""
        return self.tree.lookup(self.p.frame_id, frame) if frame else None

    def complete(self) -> bool:
        return all(c in self.inputs.intrinsics and self.extrinsics(c) is not None for c in CAMERA_NAMES)

    def build(self) -> CameraRig:
        for cam in CAMERA_NAMES:
            t = self.extrinsics(cam)
            if t is None:
                self.inputs.extrinsics.pop(cam, None)
            else:
                self.inputs.extrinsics[cam] = t
        return self.inputs.build()

    def missing(self) -> str:
        out = []
        for cam in CAMERA_NAMES:
            if cam not in self.inputs.intrinsics:
                out.append(f"{cam}: no valid CameraInfo")
            elif self.extrinsics(cam) is None:
                src = (str(self.p.calibration_path()) if self.file_extrinsics is not None
                       else f"TF {self.p.frame_id} <- {self.inputs.intrinsics[cam][3] or '(empty frame_id)'} "
                            "on /tf_static")
                out.append(f"{cam}: no extrinsics ({src})")
        return "; ".join(out + list(self.problems.values()))


def _choose_transport(topics: set[str], params: NodeParams, requested: str) -> str:
    if requested in ("raw", "compressed"):
        return requested
    order = [params.image_transport] + [t for t in ("raw", "compressed") if t != params.image_transport]
    for tr in order:
        if all(t in topics for t in params.image_topic_list(tr)):
            return tr
    raise ValueError(
        "the bag has neither set of image topics: raw " + ", ".join(params.image_topic_list("raw"))
        + " nor compressed " + ", ".join(params.image_topic_list("compressed"))
        + "; set camera_namespace / image_topics in the params file to the bag's topics"
    )


def replay_bag(
    bag: str | os.PathLike,
    engine,
    params: NodeParams,
    out_bag: str | os.PathLike | None = None,
    image_transport: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    max_frames: int | None = None,
) -> ReplayResult:
    """Run ``engine`` over the camera sets of ``bag`` exactly as the node would (module docstring).

    Args:
        bag: rosbag2 folder (MCAP or sqlite3).
        engine: a ``qdbev_core.engine.Engine`` (its temporal state is reset first).
        params: node parameters (``NodeParams.from_file``).
        out_bag: write detections/markers (+ TF and GT copies) to this new MCAP bag folder.
        image_transport: ``auto`` (params' transport if the bag has those topics, else the other),
            ``raw`` or ``compressed``.
        progress: called with ``(messages read, total messages)`` now and then.
        max_frames: stop after this many processed sets (quick looks; later key frames then
            count as missed when scoring).

    Raises ``FileNotFoundError`` (no bag), ``FileExistsError`` (``out_bag`` exists) and
    ``ValueError`` (no image topics; calibration never complete).
    """
    from rosbags.rosbag2 import Reader

    t_start = time.perf_counter()
    bag = Path(bag)
    if not (bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{bag}: not a rosbag2 folder (no metadata.yaml)")
    if out_bag is not None and Path(out_bag).exists():
        raise FileExistsError(f"{out_bag} exists already; choose a new output bag folder")
    run = _Replay(engine, params)
    with Reader(bag) as reader:
        run.select_topics({c.topic for c in reader.connections}, image_transport)
        run.read_calibration(reader, bag)  # 1. calibration first, as `qdbev play` hands it to the node
        output = _OutputBag(Path(out_bag), reader, run.copy_topics, params) if out_bag is not None else None
        wanted = [c for c in reader.connections if c.topic in run.topics()]
        total = sum(c.msgcount for c in wanted)
        try:  # 2. everything in bag order
            for n, (conn, log_ns, raw) in enumerate(reader.messages(connections=wanted)):
                if progress is not None and n % 50 == 0:
                    progress(n, total)
                if output is not None and conn.topic in run.copy_topics:
                    output.copy(conn.topic, log_ns, raw)
                if run.on_message(conn, log_ns, raw, output) and max_frames is not None \
                        and run.res.frames >= max_frames:
                    break
        finally:
            if output is not None:
                output.close()
    res = run.finish()
    res.out_bag = Path(out_bag) if out_bag is not None else None
    res.wall_s = time.perf_counter() - t_start
    if progress is not None:
        progress(total, total)
    return res


class _Replay:
    """The state of one replay: calibration, ego poses, synchronizer, processor, results."""

    def __init__(self, engine: Any, params: NodeParams) -> None:
        self.p = params
        self.store = get_typestore()
        self.res = ReplayResult()
        self.cal = _Calibration(params)
        self.poses = PoseHistory()
        self.processor = CameraSetProcessor(engine, _Counters(self.res), CAMERA_NAMES)
        self.limits = OutputLimits(params.score_threshold, params.max_detections)
        self.ego = None if params.ego_pose_source == "none" else EgoPoseLookup(
            lambda ns: self.poses.lookup(ns_seconds(ns), params.ego_pose_tolerance_s),
            f"{params.ego_pose_source} within {params.ego_pose_tolerance_s:g} s")
        self.times: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": []}
        self.sync = ApproxTimeSync(None, int(params.queue_size), float(params.slop), num_inputs=len(CAMERA_NAMES))
        self.last_cam_stamp: list[int | None] = [None] * len(CAMERA_NAMES)
        self.copy_topics = {TF_STATIC_TOPIC, TF_TOPIC, GROUND_TRUTH_TOPIC}
        self.image_index: dict[str, int] = {}
        self.info_index = {t: i for i, t in enumerate(params.camera_info_topic_list())}
        self.pose_topics = {"tf": {TF_TOPIC}, "odometry": {params.odometry_topic}}.get(params.ego_pose_source, set())

    def select_topics(self, topics: set[str], image_transport: str) -> None:
        """Pick the image transport the bag holds (``_choose_transport``)."""
        transport = _choose_transport(topics, self.p, image_transport)
        self.res.image_transport = transport
        self.image_index = {t: i for i, t in enumerate(self.p.image_topic_list(transport))}

    def topics(self) -> set[str]:
        """Every topic replay reads in bag order."""
        return set(self.image_index) | set(self.info_index) | self.pose_topics | {TF_STATIC_TOPIC} | self.copy_topics

    def _tf_static(self, msg: Any) -> None:
        for tf in msg.transforms:
            self.cal.tree.set(tf.header.frame_id, tf.child_frame_id, m.transform_to_matrix(tf))

    def read_calibration(self, reader: Any, bag: Path) -> None:
        """The first valid CameraInfo of each camera (+ ``/tf_static``) until the rig can be built."""
        use_tf = self.p.calibration_source == "tf"
        conns = [c for c in reader.connections if c.topic in self.info_index or (c.topic == TF_STATIC_TOPIC and use_tf)]
        for conn, _, raw in reader.messages(connections=conns):
            msg = self.store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == TF_STATIC_TOPIC:
                self._tf_static(msg)
            else:
                cam = CAMERA_NAMES[self.info_index[conn.topic]]
                if cam not in self.cal.inputs.intrinsics:
                    self.cal.on_camera_info(cam, msg)
            if self.cal.complete():
                break
        if not self.cal.complete():
            raise ValueError(f"{bag}: calibration never complete, no frame can be assembled: {self.cal.missing()}")
        self.cal.build()

    def on_message(self, conn: Any, log_ns: int, raw: bytes, output: "_OutputBag | None") -> bool:
        """Handle one message in bag order; True when it completed (and processed) a camera set."""
        topic = conn.topic
        if topic in self.image_index:
            return self._on_image(self.image_index[topic], self.store.deserialize_cdr(raw, conn.msgtype), log_ns,
                                  output)
        if topic in self.info_index:
            if self.cal.on_camera_info(CAMERA_NAMES[self.info_index[topic]],
                                       self.store.deserialize_cdr(raw, conn.msgtype)):
                try:
                    self.cal.build()
                    self.res.count("calibration_changes")
                except FrameAssemblyError as exc:
                    self.res.skip(exc.kind)
        elif topic == TF_STATIC_TOPIC and self.p.calibration_source == "tf":
            self._tf_static(self.store.deserialize_cdr(raw, conn.msgtype))
        elif topic in self.pose_topics:
            self._on_pose(topic, self.store.deserialize_cdr(raw, conn.msgtype))
        return False

    def _on_image(self, i: int, msg: Any, log_ns: int, output: "_OutputBag | None") -> bool:
        t = m.stamp_of(msg)
        if self.last_cam_stamp[i] is not None and t == self.last_cam_stamp[i]:
            self.res.count("duplicate_image")  # a repeated stamp of one camera is ignored (node rule)
            return False
        self.last_cam_stamp[i] = t
        emitted = self.sync.add(i, msg.header.stamp, (msg, log_ns))
        if emitted is None:
            return False
        self.res.sets += 1
        out = self.processor.process(self.cal.rig, [e[0] for e in emitted], self.limits, ego_pose=self.ego)
        _record(self.res, self.times, out, output, max(e[1] for e in emitted))
        return True

    def _on_pose(self, topic: str, msg: Any) -> None:
        if topic != TF_TOPIC:
            self.poses.add(ns_seconds(m.stamp_of(msg)), m.pose_to_matrix(msg.pose))
            return
        odom, base = self.p.odom_frame.lstrip("/"), self.p.frame_id.lstrip("/")
        for tf in msg.transforms:
            if tf.header.frame_id.lstrip("/") == odom and tf.child_frame_id.lstrip("/") == base:
                self.poses.add(ns_seconds(m.stamp_of(tf)), m.transform_to_matrix(tf))

    def finish(self) -> ReplayResult:
        self.res.counters["sync_dropped"] = int(sum(self.sync.dropped))
        self.res.timing_ms = {k: float(statistics.median(v)) if v else 0.0 for k, v in self.times.items()}
        return self.res


class _Counters:
    """The processor's ``ProblemSink`` offline: counts go to ``ReplayResult.counters``; problems
    are not logged (their sets show up in ``skipped`` and the counters)."""

    def __init__(self, res: ReplayResult) -> None:
        self.res = res

    def count(self, name: str) -> None:
        self.res.count(name)

    def problem(self, problem: Problem) -> None:
        pass


def _record(res: ReplayResult, times: dict[str, list[float]], out: SetResult, output: "_OutputBag | None",
            log_ns: int) -> None:
    """Keep one processed set's detections and timings (and write them); count a skipped one."""
    if out.detections is None:
        res.skip(out.skipped or "unknown")
        return
    for k, v in out.stages_ms.items():
        times[k].append(v)
    res.detections[out.stamp_ns] = out.detections
    if output is not None:
        output.write_set(out.detections, out.stamp_ns, log_ns)


class _OutputBag:
    """The replay's output MCAP bag: the node's output topics (built by ``qdbev_core.runtime.messages``
    with the rosbags factory) plus copies of ``copy_topics`` from the input bag."""

    def __init__(self, path: Path, reader: Any, copy_topics: set[str], params: NodeParams) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.store = get_typestore()
        self.params = params
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        add = self.writer.add_connection
        self.conns: dict[str, Any] = {
            DETECTIONS_TOPIC: add(DETECTIONS_TOPIC, DETECTION3D_ARRAY, typestore=self.store),
            VELOCITY_TOPIC: add(VELOCITY_TOPIC, OBJECT_VELOCITY_ARRAY, typestore=self.store),
        }
        if params.publish_markers:
            self.conns[MARKERS_TOPIC] = add(MARKERS_TOPIC, MARKER_ARRAY, typestore=self.store)
        for c in reader.connections:
            if c.topic in copy_topics and c.topic not in self.conns:
                self.conns[c.topic] = add(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                          offered_qos_profiles=c.ext.offered_qos_profiles)

    def copy(self, topic: str, log_ns: int, raw: bytes) -> None:
        self.writer.write(self.conns[topic], log_ns, raw)

    def _write(self, topic: str, typename: str, msg: Any, log_ns: int) -> None:
        self.writer.write(self.conns[topic], log_ns, bytes(self.store.serialize_cdr(msg, typename)))

    def write_set(self, det: Detections, stamp_ns: int, log_ns: int) -> None:
        """Velocities (first, as the node), detections and markers of one set stamped ``stamp_ns``."""
        frame = self.params.frame_id
        self._write(VELOCITY_TOPIC, OBJECT_VELOCITY_ARRAY, m.velocities_to_msg(det, stamp_ns, frame), log_ns)
        self._write(DETECTIONS_TOPIC, DETECTION3D_ARRAY, m.detections_to_msg(det, stamp_ns, frame), log_ns)
        if MARKERS_TOPIC in self.conns:
            markers = m.detections_to_markers(det, stamp_ns, frame, min_score=self.params.marker_score_threshold)
            self._write(MARKERS_TOPIC, MARKER_ARRAY, markers, log_ns)

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def _overlay_dataroot(dataroot: Path, version: str, scenes: list[str], tmp: Path) -> Path:
    """A symlinked view of ``dataroot`` whose ``splits.json`` adds ``REPLAY_SPLIT = scenes``."""
    from ..data.reader import custom_splits

    root = tmp / "dataroot"
    root.mkdir()
    for entry in dataroot.iterdir():
        if entry.name != version:
            (root / entry.name).symlink_to(entry.resolve())
    vdir = root / version
    vdir.mkdir()
    for f in (dataroot / version).iterdir():
        if f.name != "splits.json":
            (vdir / f.name).symlink_to(f.resolve())
    splits = custom_splits(dataroot, version)
    splits[REPLAY_SPLIT] = list(scenes)
    (vdir / "splits.json").write_text(json.dumps(splits, indent=1))
    return root


def score_replay(detections: dict[int, Detections], source: BagSource | None, eval_dir: str | os.PathLike,
                 dataroot: str | os.PathLike | None = None, verbose: bool = False) -> tuple[dict | None, str]:
    """Score replayed detections with the nuScenes devkit: ``(metrics summary or None, note)``.

    ``note`` says how many key frames had detections, or why nothing was scored (no recorded
    source, dataroot missing, no boxes, evaluator refusal). Writes ``results.json`` and the
    devkit's ``metrics_summary.json`` / ``metrics_details.json`` into ``eval_dir``.
    """
    from ..eval.nuscenes_eval import evaluate
    from ..eval.results import ResultsWriter

    if source is None or not source.key_frames:
        return None, ("not scored: the bag records no nuScenes source (metadata custom_data 'qdbev.source'); "
                      "only bags written by `qdbev bag from-nuscenes` can be scored")
    root = Path(dataroot) if dataroot is not None else Path(source.dataroot)
    if not (root / source.version).is_dir():
        return None, (f"not scored: dataroot {root} (version {source.version}) recorded in the bag is not here; "
                      "pass --dataroot with the dataset the bag was made from")
    writer = ResultsWriter([k.sample_token for k in source.key_frames])
    missing = 0
    for k in source.key_frames:
        det = detections.get(k.stamp_ns)
        if det is None:
            missing += 1
            det = Detections()
        writer.add(k.sample_token, det, k.ego2global)
    matched = len(source.key_frames) - missing
    note = f"{matched}/{len(source.key_frames)} key frames of {source.scene} had a processed camera set"
    if writer.num_boxes == 0:
        return None, f"not scored: no detections above the score threshold in any key frame ({note})"
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    results = writer.write(eval_dir / "results.json")
    with tempfile.TemporaryDirectory(prefix="qdbev_replay_") as tmp:
        overlay = _overlay_dataroot(root, source.version, [source.scene], Path(tmp))
        try:
            summary = evaluate(results, overlay, source.version, REPLAY_SPLIT, eval_dir, verbose=verbose)
        except (ValueError, FileNotFoundError) as exc:
            return None, f"not scored: {exc} ({note})"
        except Exception as exc:  # noqa: BLE001 - the devkit fails with bare assertions / numpy errors
            return None, f"not scored: the nuScenes evaluator failed: {type(exc).__name__}: {exc} ({note})"
    return summary, note
