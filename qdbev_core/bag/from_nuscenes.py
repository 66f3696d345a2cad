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

    from ..data.reader import NuScenesReader, load_rgb
    from ..geometry import make_transform

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; choose a new --out folder (bags are never overwritten)")
    reader = NuScenesReader(dataroot, version, split=None, load_images=False, nusc=nusc)
    scenes = {s.name: s for s in reader.scenes()}
    if scene not in scenes:
        names = sorted(scenes)
        raise ValueError(f"scene {scene!r} is not in {Path(dataroot) / version}; available: "
                         f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
    info = scenes[scene]
    nusc = reader.nusc
    transport = "raw" if raw else "compressed"
    store = get_typestore()

    out.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    source = BagSource(dataroot=str(Path(dataroot).resolve()), version=version, scene=scene,
                       scene_token=info.token, image_transport=transport, camera_namespace=camera_namespace,
                       frame_id=frame_id, odom_frame=odom_frame)
    counts: dict[str, int] = {}
    start_ns = end_ns = None
    writer.open()
    try:
        volatile, latched = [_qos("VOLATILE", 10)], [_qos("TRANSIENT_LOCAL", 1)]
        conns = {}

        def conn(topic: str, typename: str, qos=volatile):
            if topic not in conns:
                conns[topic] = (writer.add_connection(topic, typename, typestore=store, offered_qos_profiles=qos),
                                typename)
            return conns[topic]

        conn(TF_STATIC_TOPIC, TF_MESSAGE, latched)
        conn(TF_TOPIC, TF_MESSAGE)
        for cam in CAMERA_NAMES:
            conn(camera_info_topic(cam, camera_namespace), CAMERA_INFO)
            conn(image_topic(cam, camera_namespace, transport), IMAGE if raw else COMPRESSED_IMAGE)
        conn(GROUND_TRUTH_TOPIC, DETECTION3D_ARRAY)

        def write(topic: str, log_ns: int, msg) -> None:
            nonlocal start_ns, end_ns
            c, typename = conns[topic]
            writer.write(c, int(log_ns), bytes(store.serialize_cdr(msg, typename)))
            counts[topic] = counts.get(topic, 0) + 1
            start_ns = log_ns if start_ns is None else min(start_ns, log_ns)
            end_ns = log_ns if end_ns is None else max(end_ns, log_ns)

        extrinsics = None
        tokens = reader.sample_tokens[info.first:info.first + info.num_samples]
        for n, token in enumerate(tokens):
            sample = reader.get(token)
            rows = reader.camera_rows(token)
            cam2ego = sample.frame.cam2ego
            if extrinsics is None:
                extrinsics = cam2ego
                first_ns = min(int(sd["timestamp"]) for sd, _ in rows) * 1000
                write(TF_STATIC_TOPIC, first_ns, m.tf_message([
                    m.transform_stamped(cam2ego[i], frame_id, cam, first_ns) for i, cam in enumerate(CAMERA_NAMES)]))
            elif not np.allclose(cam2ego, extrinsics, atol=1e-9):
                raise ValueError(f"scene {scene}: camera extrinsics change at sample {token}; /tf_static holds one "
                                 "calibration per bag (split the scene)")

            events: list[tuple[int, int, str, object]] = []
            lidar = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
            for sd in [r[0] for r in rows] + [lidar]:
                pose = nusc.get("ego_pose", sd["ego_pose_token"])
                ns = int(pose["timestamp"]) * 1000
                t = make_transform(pose["rotation"], pose["translation"])
                events.append((ns, _TF, TF_TOPIC, m.tf_message([m.transform_stamped(t, odom_frame, frame_id, ns)])))
            for i, (cam, (sd, _)) in enumerate(zip(CAMERA_NAMES, rows)):
                ns = int(sd["timestamp"]) * 1000
                w, h = (int(v) for v in sample.image_sizes[i])
                events.append((ns, _INFO, camera_info_topic(cam, camera_namespace),
                               m.camera_info(ns, cam, sample.frame.intrinsics[i], w, h)))
                path = sample.image_paths[i]
                if raw:
                    msg = m.raw_image(ns, cam, load_rgb(path), "rgb8")
                else:
                    data = Path(path).read_bytes()
                    msg = m.compressed_image(ns, cam, data, compressed_format(data, path))
                events.append((ns, _IMAGE, image_topic(cam, camera_namespace, transport), msg))
            sample_ns = int(round(sample.timestamp * 1e6)) * 1000
            gt = m.detections_to_msg(_gt_detections(sample), sample_ns, frame_id)
            for d, ann in zip(gt.detections, sample.gt_tokens):
                d.id = ann
            events.append((sample_ns, _GT, GROUND_TRUTH_TOPIC, gt))
            for ns, _, topic, msg in sorted(events, key=lambda e: (e[0], e[1])):
                write(topic, ns, msg)

            source.key_frames.append(KeyFrame(token, int(rows[0][0]["timestamp"]) * 1000, sample_ns,
                                              sample.frame.ego2global))
            if progress is not None:
                progress(n + 1, len(tokens))
        writer.set_custom_data(SOURCE_KEY, source.to_json())
    except BaseException:
        import shutil

        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the original error matters, the partial bag is removed
            pass
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return BagSummary(out, scene, len(source.key_frames), counts, start_ns or 0, end_ns or 0, size)


def _gt_detections(sample):
    """The sample's ground truth as ``Detections`` (score 1)."""
    from ..types import Detections

    n = sample.gt_boxes.shape[0]
    return Detections(boxes=sample.gt_boxes, scores=np.ones(n), labels=sample.gt_labels)
