"""One scene of a nuScenes-format dataroot -> a rosbag2 (MCAP) the node can be fed from.

``bag_from_nuscenes(dataroot, version, scene, out)`` writes, for every key frame of the scene
(topics and frames: ``qdbev_core.bag.layout``):

- six images: ``sensor_msgs/CompressedImage`` carrying the dataset's JPEG (or PNG) file bytes
  unchanged (no re-encoding; ``format = "bgr8; jpeg compressed bgr8"`` as image_transport writes
  it), or with ``raw=True`` ``sensor_msgs/Image`` ``rgb8`` decoded with the same OpenCV call as
  the dataset reader, so offline prediction and replay see identical pixels;
- six ``CameraInfo`` (K and size from ``calibrated_sensor`` / ``sample_data``; undistorted);
- ``/tf_static`` once at the start: ``base_link <- <CAM>`` from ``calibrated_sensor`` (one
  calibration per scene; a scene whose extrinsics change is refused);
- ``/tf`` ``odom <- base_link``: the ego pose of every key-frame ``sample_data`` (the six
  cameras and LIDAR_TOP), each stamped with its sensor time. ``odom`` is the dataset's global
  frame. The node looks up the pose nearest to the CAM_FRONT stamp (``ego_pose_tolerance_s``),
  which is CAM_FRONT's own pose, recorded before its image;
- ``/qdbev/ground_truth``: ``vision_msgs/Detection3DArray`` of the sample's annotations in
  ``base_link`` at the LIDAR_TOP pose (exactly ``NuScenesReader``'s boxes; class name in
  ``class_id``, score 1, ``id`` = annotation token), stamped with the sample (LIDAR_TOP) time.

Every message's header stamp is its sensor timestamp and its bag (log) time equals that stamp;
within one instant a pose comes before a CameraInfo, which comes before its image. Only key frames
are written (2 Hz), the samples the nuScenes evaluator scores.

The bag's ``metadata.yaml`` records the source (``layout.BagSource``: absolute dataroot, version,
scene, and per key frame the sample token, CAM_FRONT stamp and LIDAR_TOP ego pose) so that
``qdbev replay`` can score detections with the official devkit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..types import CAMERA_NAMES
from . import messages as m
from .layout import (
    GROUND_TRUTH_TOPIC,
    SOURCE_KEY,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    BagSource,
    KeyFrame,
    camera_info_topic,
    image_topic,
)
from .typestore import CAMERA_INFO, COMPRESSED_IMAGE, DETECTION3D_ARRAY, IMAGE, TF_MESSAGE, get_typestore

__all__ = ["BagSummary", "bag_from_nuscenes", "compressed_format"]

_TF, _INFO, _IMAGE, _GT = 0, 1, 2, 3  # order of messages sharing one log time


@dataclass
class BagSummary:
    """What ``bag_from_nuscenes`` wrote."""

    path: Path
    scene: str
    key_frames: int
    counts: dict[str, int] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    bytes: int = 0

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) * 1e-9


def compressed_format(data: bytes, path: str = "") -> str:
    """image_transport's ``format`` string for JPEG / PNG file bytes (by magic bytes)."""
    if data[:3] == b"\xff\xd8\xff":
        return "bgr8; jpeg compressed bgr8"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "bgr8; png compressed bgr8"
    raise ValueError(f"image file {path} is neither JPEG nor PNG; cannot store it as a CompressedImage")


def _qos(durability: str, depth: int):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, getattr(QosDurability, durability), zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


@dataclass(frozen=True)
class _Naming:
    """Topic prefix, frames and image transport of the bag being written."""

    camera_namespace: str
    frame_id: str
    odom_frame: str
    raw: bool

    @property
    def transport(self) -> str:
        return "raw" if self.raw else "compressed"


class _BagWriter:
    """An open rosbag2 writer, its connections by topic and what was written (counts, time span in ns)."""

    def __init__(self, writer, store) -> None:
        self.writer = writer
        self.store = store
        self.conns: dict[str, tuple[object, str]] = {}
        self.counts: dict[str, int] = {}
        self.start_ns: int | None = None
        self.end_ns: int | None = None

    def connect(self, topic: str, typename: str, qos) -> None:
        if topic not in self.conns:
            self.conns[topic] = (self.writer.add_connection(topic, typename, typestore=self.store,
                                                            offered_qos_profiles=qos), typename)

    def write(self, topic: str, log_ns: int, msg) -> None:
        c, typename = self.conns[topic]
        self.writer.write(c, int(log_ns), bytes(self.store.serialize_cdr(msg, typename)))
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.start_ns = log_ns if self.start_ns is None else min(self.start_ns, log_ns)
        self.end_ns = log_ns if self.end_ns is None else max(self.end_ns, log_ns)


def bag_from_nuscenes(
    dataroot: str | os.PathLike,
    version: str,
    scene: str,
    out: str | os.PathLike,
    raw: bool = False,
    camera_namespace: str = "/cameras",
    frame_id: str = "base_link",
    odom_frame: str = "odom",
    nusc=None,
    progress: Callable[[int, int], None] | None = None,
) -> BagSummary:
    """Write scene ``scene`` of ``dataroot``/``version`` as a rosbag2 MCAP folder ``out``.

    Args:
        raw: ``sensor_msgs/Image`` ``rgb8`` instead of ``CompressedImage`` with the file bytes.
        camera_namespace: topic prefix (the node's ``camera_namespace`` parameter).
        frame_id, odom_frame: the vehicle and odometry frames (node parameters of the same names).
        nusc: an already loaded ``NuScenes`` of the same dataroot/version to reuse.
        progress: called with ``(done, total)`` key frames.

    Raises ``FileExistsError`` if ``out`` exists, ``ValueError`` for an unknown scene (listing
    the available ones) and ``FileNotFoundError`` for missing dataset pieces.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..data.reader import NuScenesReader

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; choose a new --out folder (bags are never overwritten)")
    reader = NuScenesReader(dataroot, version, split=None, load_images=False, nusc=nusc)
    info = _find_scene(reader, scene, Path(dataroot) / version)
    names = _Naming(camera_namespace=camera_namespace, frame_id=frame_id, odom_frame=odom_frame, raw=raw)

    out.parent.mkdir(parents=True, exist_ok=True)
    bag = _BagWriter(Writer(out, version=9, storage_plugin=StoragePlugin.MCAP), get_typestore())
    source = BagSource(dataroot=str(Path(dataroot).resolve()), version=version, scene=scene,
                       scene_token=info.token, image_transport=names.transport, camera_namespace=camera_namespace,
                       frame_id=frame_id, odom_frame=odom_frame)
    bag.writer.open()
    try:
        _add_connections(bag, names)
        extrinsics = None
        tokens = reader.sample_tokens[info.first:info.first + info.num_samples]
        for n, token in enumerate(tokens):
            extrinsics = _write_key_frame(bag, reader, token, names, extrinsics, source)
            if progress is not None:
                progress(n + 1, len(tokens))
        bag.writer.set_custom_data(SOURCE_KEY, source.to_json())
    except BaseException:
        _discard(bag.writer, out)
        raise
    bag.writer.close()
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return BagSummary(out, scene, len(source.key_frames), bag.counts, bag.start_ns or 0, bag.end_ns or 0, size)


def _find_scene(reader, scene: str, table_dir: Path):
    """The reader's scene named ``scene``; ``ValueError`` listing the available ones otherwise."""
    scenes = {s.name: s for s in reader.scenes()}
    if scene not in scenes:
        names = sorted(scenes)
        raise ValueError(f"scene {scene!r} is not in {table_dir}; available: "
                         f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
    return scenes[scene]


def _add_connections(bag: _BagWriter, names: _Naming) -> None:
    """Every topic the bag will hold, ``/tf_static`` latched (transient local, depth 1)."""
    volatile, latched = [_qos("VOLATILE", 10)], [_qos("TRANSIENT_LOCAL", 1)]
    bag.connect(TF_STATIC_TOPIC, TF_MESSAGE, latched)
    bag.connect(TF_TOPIC, TF_MESSAGE, volatile)
    for cam in CAMERA_NAMES:
        bag.connect(camera_info_topic(cam, names.camera_namespace), CAMERA_INFO, volatile)
        bag.connect(image_topic(cam, names.camera_namespace, names.transport), IMAGE if names.raw else COMPRESSED_IMAGE,
                    volatile)
    bag.connect(GROUND_TRUTH_TOPIC, DETECTION3D_ARRAY, volatile)


def _discard(writer, out: Path) -> None:
    """Close a failed writer (its own error does not matter) and remove the partial bag."""
    import shutil

    try:
        writer.close()
    except Exception:  # noqa: BLE001 - the original error matters, the partial bag is removed
        pass
    shutil.rmtree(out, ignore_errors=True)


def _write_key_frame(bag: _BagWriter, reader, token: str, names: _Naming, extrinsics: np.ndarray | None,
                     source: BagSource) -> np.ndarray:
    """All messages of one key frame in log-time order, and its ``KeyFrame`` entry in ``source``;
    returns the scene's camera extrinsics (``/tf_static`` is written with the first key frame)."""
    sample = reader.get(token)
    rows = reader.camera_rows(token)
    cam2ego = sample.frame.cam2ego
    if extrinsics is None:
        extrinsics = cam2ego
        first_ns = min(int(sd["timestamp"]) for sd, _ in rows) * 1000
        bag.write(TF_STATIC_TOPIC, first_ns, m.tf_message([
            m.transform_stamped(cam2ego[i], names.frame_id, cam, first_ns) for i, cam in enumerate(CAMERA_NAMES)]))
    elif not np.allclose(cam2ego, extrinsics, atol=1e-9):
        raise ValueError(f"scene {source.scene}: camera extrinsics change at sample {token}; /tf_static holds one "
                         "calibration per bag (split the scene)")
    sample_ns = int(round(sample.timestamp * 1e6)) * 1000
    events = (_pose_events(reader.nusc, token, rows, names) + _camera_events(sample, rows, names)
              + [_ground_truth_event(sample, sample_ns, names.frame_id)])
    for ns, _, topic, msg in sorted(events, key=lambda e: (e[0], e[1])):
        bag.write(topic, ns, msg)
    source.key_frames.append(KeyFrame(token, int(rows[0][0]["timestamp"]) * 1000, sample_ns, sample.frame.ego2global))
    return extrinsics


_Event = tuple[int, int, str, object]
"""(log time ns, order within one instant, topic, message)."""


def _pose_events(nusc, token: str, rows: list, names: _Naming) -> list[_Event]:
    """``odom <- base_link`` at the ego pose of each camera key frame and of LIDAR_TOP."""
    from ..geometry import make_transform

    events: list[_Event] = []
    lidar = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
    for sd in [r[0] for r in rows] + [lidar]:
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        ns = int(pose["timestamp"]) * 1000
        t = make_transform(pose["rotation"], pose["translation"])
        events.append((ns, _TF, TF_TOPIC, m.tf_message([m.transform_stamped(t, names.odom_frame, names.frame_id, ns)])))
    return events


def _camera_events(sample, rows: list, names: _Naming) -> list[_Event]:
    """CameraInfo and image of each camera, stamped with the camera's own time."""
    from ..data.reader import load_rgb

    events: list[_Event] = []
    for i, (cam, (sd, _)) in enumerate(zip(CAMERA_NAMES, rows)):
        ns = int(sd["timestamp"]) * 1000
        w, h = (int(v) for v in sample.image_sizes[i])
        events.append((ns, _INFO, camera_info_topic(cam, names.camera_namespace),
                       m.camera_info(ns, cam, sample.frame.intrinsics[i], w, h)))
        path = sample.image_paths[i]
        if names.raw:
            msg = m.raw_image(ns, cam, load_rgb(path), "rgb8")
        else:
            data = Path(path).read_bytes()
            msg = m.compressed_image(ns, cam, data, compressed_format(data, path))
        events.append((ns, _IMAGE, image_topic(cam, names.camera_namespace, names.transport), msg))
    return events


def _ground_truth_event(sample, sample_ns: int, frame_id: str) -> _Event:
    """The sample's annotations in ``frame_id``, each detection's ``id`` its annotation token."""
    gt = m.detections_to_msg(_gt_detections(sample), sample_ns, frame_id)
    for d, ann in zip(gt.detections, sample.gt_tokens):
        d.id = ann
    return (sample_ns, _GT, GROUND_TRUTH_TOPIC, gt)


def _gt_detections(sample):
    """The sample's ground truth as ``Detections`` (score 1)."""
    from ..types import Detections

    n = sample.gt_boxes.shape[0]
    return Detections(boxes=sample.gt_boxes, scores=np.ones(n), labels=sample.gt_labels)
