"""What a qdbev bag holds: topic names, frames, the recorded source, the node parameters.

Topics of a bag written by ``qdbev bag from-nuscenes`` (the node's default topics,
``config/qdbev.yaml``):

================================================  =====================================  ==========
topic                                             type                                   frame
================================================  =====================================  ==========
``/cameras/<CAM>/image_raw/compressed`` (default)  ``sensor_msgs/CompressedImage`` (JPEG)  ``<CAM>``
``/cameras/<CAM>/image_raw`` (``--raw``)           ``sensor_msgs/Image`` (``rgb8``)        ``<CAM>``
``/cameras/<CAM>/camera_info``                     ``sensor_msgs/CameraInfo``              ``<CAM>``
``/tf_static``                                     ``tf2_msgs/TFMessage``                  ``base_link`` <- ``<CAM>``
``/tf``                                            ``tf2_msgs/TFMessage``                  ``odom`` <- ``base_link``
``/qdbev/ground_truth``                            ``vision_msgs/Detection3DArray``        ``base_link``
================================================  =====================================  ==========

Output topics of ``qdbev replay`` (the node's ``~/`` topics under its default name):
``/qdbev_node/detections`` (``Detection3DArray``), ``/qdbev_node/detections/velocity``
(``qdbev_msgs/ObjectVelocityArray``, same header, one velocity per detection) and
``/qdbev_node/markers`` (``MarkerArray``). ``qdbev bag record`` records the same topics from a
live node.

The bag's ``metadata.yaml`` carries ``custom_data["qdbev.source"]``: a JSON ``BagSource`` naming
the dataroot, version, scene and, per key frame, the sample token, the CAM_FRONT stamp (the stamp
the detections of that set carry) and the LIDAR_TOP ego pose the nuScenes evaluator uses. Replay
scores with it.

``NodeParams``: the node parameters that decide how messages become a ``Frame`` and detections
(sync, frames, ego pose, thresholds), read from the node's params file so offline replay uses the
node's configuration. Its defaults equal ``qdbev_ros.node``'s declared defaults (a unit test checks).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..types import CAMERA_NAMES

__all__ = [
    "BagSource",
    "DETECTIONS_TOPIC",
    "GROUND_TRUTH_TOPIC",
    "KeyFrame",
    "MARKERS_TOPIC",
    "NodeParams",
    "SOURCE_KEY",
    "TF_STATIC_TOPIC",
    "TF_TOPIC",
    "VELOCITY_TOPIC",
    "camera_info_topic",
    "image_topic",
    "read_bag_source",
    "read_metadata",
]

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
GROUND_TRUTH_TOPIC = "/qdbev/ground_truth"
DETECTIONS_TOPIC = "/qdbev_node/detections"
VELOCITY_TOPIC = "/qdbev_node/detections/velocity"
MARKERS_TOPIC = "/qdbev_node/markers"
SOURCE_KEY = "qdbev.source"
"""``metadata.yaml`` ``custom_data`` key of the JSON ``BagSource``."""

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
DEFAULT_PARAMS_FILE = REPO_CONFIG / "qdbev.yaml"


def image_topic(camera: str, namespace: str = "/cameras", transport: str = "compressed") -> str:
    """``<ns>/<CAM>/image_raw`` (raw) or ``<ns>/<CAM>/image_raw/compressed`` (compressed)."""
    suffix = "image_raw" if transport == "raw" else "image_raw/compressed"
    return f"{namespace.rstrip('/')}/{camera}/{suffix}"


def camera_info_topic(camera: str, namespace: str = "/cameras") -> str:
    return f"{namespace.rstrip('/')}/{camera}/camera_info"


# --------------------------------------------------------------------------------------------
# recorded source
# --------------------------------------------------------------------------------------------


@dataclass
class KeyFrame:
    """One annotated key frame of the bag.

    Attributes:
        sample_token: nuScenes ``sample`` token.
        stamp_ns: CAM_FRONT header stamp (ns): the stamp of that set's detections.
        timestamp_ns: the sample's (LIDAR_TOP) timestamp (ns): the ground truth's stamp.
        ego2global: 4x4 LIDAR_TOP key-frame ego pose (row-major 16 floats in JSON), the pose the
            nuScenes evaluator measures from; detections are converted to global with it.
    """

    sample_token: str
    stamp_ns: int
    timestamp_ns: int
    ego2global: np.ndarray

    def to_dict(self) -> dict:
        return {"sample_token": self.sample_token, "stamp_ns": int(self.stamp_ns),
                "timestamp_ns": int(self.timestamp_ns),
                "ego2global": [float(v) for v in np.asarray(self.ego2global, dtype=np.float64).reshape(-1)]}

    @classmethod
    def from_dict(cls, d: dict) -> "KeyFrame":
        return cls(str(d["sample_token"]), int(d["stamp_ns"]), int(d["timestamp_ns"]),
                   np.asarray(d["ego2global"], dtype=np.float64).reshape(4, 4))


@dataclass
class BagSource:
    """Where a bag came from (``custom_data["qdbev.source"]`` of its ``metadata.yaml``)."""

    dataroot: str
    version: str
    scene: str
    scene_token: str = ""
    image_transport: str = "compressed"
    camera_namespace: str = "/cameras"
    frame_id: str = "base_link"
    odom_frame: str = "odom"
    key_frames: list[KeyFrame] = field(default_factory=list)
    format: int = 1

    def to_json(self) -> str:
        d = asdict(self)
        d["key_frames"] = [k.to_dict() for k in self.key_frames]
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "BagSource":
        d = json.loads(text)
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["key_frames"] = [KeyFrame.from_dict(k) for k in d.get("key_frames", [])]
        return cls(**d)

    def by_stamp(self) -> dict[int, KeyFrame]:
        """``{CAM_FRONT stamp_ns: KeyFrame}``."""
        return {k.stamp_ns: k for k in self.key_frames}


def read_metadata(bag: str | os.PathLike) -> dict:
    """The parsed ``metadata.yaml`` of a rosbag2 folder (``rosbag2_bagfile_information``)."""
    import yaml

    path = Path(bag) / "metadata.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{bag}: not a rosbag2 folder (no metadata.yaml)")
    data = yaml.safe_load(path.read_text()) or {}
    return data.get("rosbag2_bagfile_information", {})


def read_bag_source(bag: str | os.PathLike) -> BagSource | None:
    """The ``BagSource`` recorded in a bag's metadata, or ``None`` (bag not made by qdbev)."""
    text = (read_metadata(bag).get("custom_data") or {}).get(SOURCE_KEY)
    return BagSource.from_json(text) if text else None


# --------------------------------------------------------------------------------------------
# node parameters (offline copy)
# --------------------------------------------------------------------------------------------


@dataclass
class NodeParams:
    """The ``qdbev_node`` parameters offline replay honours (same names and defaults).

    Load with ``NodeParams.from_file(config/qdbev.yaml)``; the node's other parameters (QoS
    depth, timeouts, diagnostics) have no offline meaning and are ignored.
    """

    model: str = ""
    backend: str = "auto"
    device: str = "cpu"
    score_threshold: float = 0.05
    max_detections: int = 300
    camera_namespace: str = "/cameras"
    image_topics: list[str] = field(default_factory=lambda: [""] * 6)
    camera_info_topics: list[str] = field(default_factory=lambda: [""] * 6)
    image_transport: str = "raw"
    slop: float = 0.06
    queue_size: int = 10
    frame_id: str = "base_link"
    calibration_source: str = "tf"
    calibration_file: str = "calibration_nuscenes.yaml"
    ego_pose_source: str = "tf"
    odom_frame: str = "odom"
    odometry_topic: str = "/odom"
    ego_pose_tolerance_s: float = 0.1
    publish_markers: bool = True
    marker_score_threshold: float = 0.3

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None, node_name: str = "qdbev_node",
                  **overrides: Any) -> "NodeParams":
        """Parameters from a ROS 2 params YAML (``/**:`` and/or ``<node_name>:`` sections).

        ``path=None`` reads the repository's ``config/qdbev.yaml``. ``overrides`` win (``None``
        values are ignored). Raises ``FileNotFoundError`` / ``ValueError`` naming the file.
        """
        import yaml

        p = Path(path) if path is not None else DEFAULT_PARAMS_FILE
        if not p.is_file():
            raise FileNotFoundError(f"params file {p} not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML ({exc})") from exc
        values: dict[str, Any] = {}
        for key in ("/**", node_name, f"/{node_name}"):
            section = data.get(key) if isinstance(data, dict) else None
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                values.update(section["ros__parameters"])
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        params = cls(**kwargs)
        params.validate(str(p))
        return params

    def validate(self, where: str = "parameters") -> None:
        for name, options in (("image_transport", ("raw", "compressed")), ("calibration_source", ("tf", "file")),
                              ("ego_pose_source", ("tf", "odometry", "none"))):
            if getattr(self, name) not in options:
                raise ValueError(f"{where}: {name} is {getattr(self, name)!r}; use one of {', '.join(options)}")
        for name in ("image_topics", "camera_info_topics"):
            if len(getattr(self, name)) != len(CAMERA_NAMES):
                raise ValueError(f"{where}: {name} needs six entries (empty strings for the defaults)")
        if not self.slop > 0 or int(self.queue_size) < 1:
            raise ValueError(f"{where}: slop must be > 0 and queue_size >= 1")

    def image_topic_list(self, transport: str | None = None) -> list[str]:
        """The six image topics for ``transport`` (default: ``image_transport``), node rules."""
        tr = transport or self.image_transport
        return [t or image_topic(c, self.camera_namespace, tr) for t, c in zip(self.image_topics, CAMERA_NAMES)]

    def camera_info_topic_list(self) -> list[str]:
        return [t or camera_info_topic(c, self.camera_namespace) for t, c in zip(self.camera_info_topics, CAMERA_NAMES)]

    def calibration_path(self) -> Path:
        """``calibration_file`` resolved like the node does (as given, else the repo's ``config/``)."""
        p = Path(self.calibration_file).expanduser()
        if p.is_absolute() or p.is_file():
            return p
        alt = REPO_CONFIG / p.name
        return alt if alt.is_file() else p
