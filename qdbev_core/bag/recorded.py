"""What a bag of the node's outputs holds: ``qdbev bag record`` of a live node, or ``qdbev replay --out``.

- ``read_detections_bag(bag)``: the ``Detection3DArray`` messages on ``/qdbev_node/detections``
  paired by exact header stamp with the ``qdbev_msgs/ObjectVelocityArray`` messages on
  ``/qdbev_node/detections/velocity`` (``messages.pair_by_stamp``): full ``Detections`` (boxes in
  ``base_link``, ``vx``, ``vy`` in m/s) keyed by the CAM_FRONT stamp, ready for
  ``replay.score_replay``.
- ``read_node_stats(bag)``: the node's ``~/debug/pipeline_latency_ms`` (set complete -> output
  published, ms) as percentiles and the pipeline counters of its last ``/diagnostics`` message.
- ``render_bev_frames(detections, source_bag, out_dir)``: a BEV PNG per key frame (and an MP4)
  of those detections against the input bag's ``/qdbev/ground_truth``.

ROS-free (``rosbags``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import messages as m
from ..types import Detections
from .layout import DETECTIONS_TOPIC, GROUND_TRUTH_TOPIC, VELOCITY_TOPIC, read_bag_source
from .typestore import get_typestore

__all__ = ["LATENCY_TOPIC", "DIAGNOSTICS_TOPIC", "NODE_COUNTERS", "read_detections_bag", "read_node_stats",
           "render_bev_frames"]

LATENCY_TOPIC = "/qdbev_node/debug/pipeline_latency_ms"
DIAGNOSTICS_TOPIC = "/diagnostics"
NODE_COUNTERS = ("sets_received", "sets_processed", "detections_published", "dropped_sets_newest_wins",
                 "unmatched_camera_messages", "bad_frames", "engine_errors", "temporal_resets")
"""Pipeline diagnostics values ``read_node_stats`` reports (integers)."""


def _check_bag(bag: str | os.PathLike) -> Path:
    bag = Path(bag)
    if not (bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{bag}: not a rosbag2 folder (no metadata.yaml)")
    return bag


def read_detections_bag(bag: str | os.PathLike, detections_topic: str = DETECTIONS_TOPIC,
                        velocity_topic: str = VELOCITY_TOPIC) -> m.PairedDetections:
    """Detections + velocities of ``bag``, paired by exact stamp (module docstring).

    Raises ``FileNotFoundError`` (not a bag) and ``ValueError`` (no ``detections_topic`` in it, or
    a velocity message that disagrees with its detections in frame or count). A bag without
    ``velocity_topic`` gives ``vx = vy = 0`` (``PairedDetections.without_velocity`` lists them).
    """
    from rosbags.rosbag2 import Reader

    bag = _check_bag(bag)
    store = get_typestore()
    dets, vels = [], []
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in (detections_topic, velocity_topic)]
        if not any(c.topic == detections_topic for c in conns):
            raise ValueError(f"{bag}: no {detections_topic} topic (topics: "
                             f"{', '.join(sorted({c.topic for c in reader.connections})) or 'none'})")
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            (dets if conn.topic == detections_topic else vels).append(msg)
    return m.pair_by_stamp(dets, vels)


def read_node_stats(bag: str | os.PathLike) -> dict:
    """``{"latency_ms": {n, p50, p90, p99, max} or None, "counters": {...} or None}`` of a recorded node.

    Latency: ``~/debug/pipeline_latency_ms`` (ms from the set's first image arriving to its
    detections being published). Counters: ``NODE_COUNTERS`` of the last ``/diagnostics``
    message's ``qdbev_node: pipeline`` status (the node publishes it every
    ``diagnostics_period_s``, so it can lag the last frame by that much).
    """
    from rosbags.rosbag2 import Reader

    bag = _check_bag(bag)
    store = get_typestore()
    latency: list[float] = []
    counters: dict[str, int] | None = None
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in (LATENCY_TOPIC, DIAGNOSTICS_TOPIC)]
        for conn, _, raw in reader.messages(connections=conns) if conns else ():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == LATENCY_TOPIC:
                latency.append(float(msg.data))
                continue
            for st in msg.status:
                if st.name.endswith(": pipeline"):
                    values = {kv.key: kv.value for kv in st.values}
                    counters = {k: int(values[k]) for k in NODE_COUNTERS if k in values}
    lat = None
    if latency:
        a = np.asarray(latency)
        lat = {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
               "p99": float(np.percentile(a, 99)), "max": float(a.max())}
    return {"latency_ms": lat, "counters": counters}


def render_bev_frames(detections: dict[int, Detections], source_bag: str | os.PathLike, out_dir: str | os.PathLike,
                      score_threshold: float = 0.3, title: str = "", fps: float = 2.0) -> list[Path]:
    """BEV PNGs ``<scene>_<k>_bev.png`` per key frame of ``source_bag`` (+ ``<scene>_bev.mp4``).

    ``detections``: ``{CAM_FRONT stamp ns: Detections}`` (``base_link``; drawn coloured with 1 s
    velocity arrows when scoring at least ``score_threshold``); the ground truth (black) is the
    source bag's ``/qdbev/ground_truth`` of the same key frame (``base_link`` at the sample time,
    a few tens of ms from the CAM_FRONT stamp). Returns the written files (PNGs, then the MP4).
    """
    import cv2
    from rosbags.rosbag2 import Reader

    from ..viz import render_bev

    source_bag = _check_bag(source_bag)
    src = read_bag_source(source_bag)
    if src is None:
        raise ValueError(f"{source_bag}: records no nuScenes source (not written by `qdbev bag from-nuscenes`)")
    store = get_typestore()
    gt: dict[int, Detections] = {}
    with Reader(source_bag) as reader:
        conns = [c for c in reader.connections if c.topic == GROUND_TRUTH_TOPIC]
        for conn, _, raw in reader.messages(connections=conns) if conns else ():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            gt[m.stamp_of(msg)] = m.msg_to_detections(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    panels = []
    for k, kf in enumerate(src.key_frames):
        det = detections.get(kf.stamp_ns)
        g = gt.get(kf.timestamp_ns)
        shown = "no output" if det is None else f"{int((det.scores >= score_threshold).sum())} detections"
        keep = None if det is None else det.scores >= score_threshold
        img = render_bev(None if g is None else g.boxes, None if det is None else det.boxes[keep],
                         None if det is None else det.labels[keep],
                         title=f"{title or 'detections'} {src.scene} #{k}: {shown} >= {score_threshold:g} "
                               "(coloured), GT black")
        path = out / f"{src.scene}_{k:03d}_bev.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        files.append(path)
        panels.append(img)
    if panels:
        h, w = panels[0].shape[:2]
        path = out / f"{src.scene}_bev.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        for p in panels:
            writer.write(cv2.cvtColor(p, cv2.COLOR_RGB2BGR))
        writer.release()
        files.append(path)
    return files
