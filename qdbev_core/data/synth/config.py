"""SynthScenes configuration and the fixed constants of the generator (sizes, timing, tokens)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...types import CAMERA_NAMES
from .style import resolve_style

GENERATOR_VERSION = "synthscenes-1.0"
"""Bumped whenever the same config would produce different bytes."""

KEYFRAME_PERIOD_S = 0.5
"""2 Hz key frames, as nuScenes."""

CAMERA_OFFSETS_US: dict[str, int] = {
    # Capture time of each camera relative to the LIDAR_TOP (= sample) stamp, in microseconds.
    # The real rig triggers each camera as the spinning lidar sweeps across its field of view,
    # so one key frame's six images span ~42 ms and all precede the lidar stamp.
    "CAM_FRONT_LEFT": -43100,
    "CAM_FRONT": -35500,
    "CAM_FRONT_RIGHT": -27600,
    "CAM_BACK_RIGHT": -20100,
    "CAM_BACK": -10400,
    "CAM_BACK_LEFT": -500,
}
assert set(CAMERA_OFFSETS_US) == set(CAMERA_NAMES)

# Mean (length, width, height) in metres of each detection class, nuScenes-like.
CLASS_SIZES: dict[str, tuple[float, float, float]] = {
    "car": (4.6, 1.95, 1.73),
    "truck": (6.9, 2.5, 2.8),
    "construction_vehicle": (6.4, 2.8, 3.2),
    "bus": (11.0, 2.9, 3.5),
    "trailer": (12.0, 2.9, 3.9),
    "barrier": (0.5, 2.5, 0.98),
    "motorcycle": (2.1, 0.77, 1.47),
    "bicycle": (1.7, 0.6, 1.28),
    "pedestrian": (0.73, 0.67, 1.77),
    "traffic_cone": (0.41, 0.41, 1.07),
}

# Relative standard deviation of each size dimension (clipped at 2 sigma).
CLASS_SIZE_STD: dict[str, float] = {
    "car": 0.07, "truck": 0.08, "construction_vehicle": 0.08, "bus": 0.05, "trailer": 0.06,
    "barrier": 0.05, "motorcycle": 0.06, "bicycle": 0.05, "pedestrian": 0.05, "traffic_cone": 0.06,
}

# Relative frequency of each class (or group of barriers / cones) in the random placement phase.
CLASS_WEIGHTS: dict[str, float] = {
    "car": 0.30, "pedestrian": 0.20, "barrier": 0.07, "traffic_cone": 0.07, "truck": 0.08,
    "bus": 0.045, "trailer": 0.04, "construction_vehicle": 0.04, "motorcycle": 0.065, "bicycle": 0.065,
}

EGO_FOOTPRINT = (4.3, 1.95, 1.35)
"""Ego vehicle footprint for collision checks: length, width, centre ahead of the rear axle (m)."""


@dataclass
class SynthConfig:
    """Everything that determines a SynthScenes dataset (same config -> same bytes).

    Attributes:
        out: dataroot to write (``<out>/<version>/`` tables, ``samples/``, ``maps/``).
        scenes: number of scenes (one log each).
        samples: key frames per scene (2 Hz; 40 = the 20 s of a real nuScenes scene).
        image_scale: image size relative to the real 1600x900 cameras.
        seed: master seed; scene names and tokens depend on it.
        version: name of the table folder (``v1.0-mini``, ``v1.0-trainval``...).
        val_fraction: the last ``max(1, round(scenes * val_fraction))`` scenes form ``synth_val``.
        progress: show a tqdm progress bar.
        workers: processes generating scenes in parallel (1 = in this process).
        min_objects / max_objects: each scene draws a target number of annotated objects per
            key frame in this range and places objects until every key frame reaches it.
        max_range_m: objects are annotated (and rendered) within this distance of the ego.
        min_instances_per_class: instances of every class forced near the route in each scene.
        jpeg_quality: JPEG quality of the written images.
        lidar_azimuth_steps: horizontal resolution of the simulated 32-beam lidar.
        lidar_max_range_m: lidar returns beyond this range are dropped.
        objects_at_sample_time: render moving objects where they are at the key-frame (lidar)
            stamp instead of at each camera's capture stamp (the ego is always rendered at the
            camera stamp, whose ``ego_pose`` row is written).
        style: appearance style (``style.SynthStyle``, a name of ``style.STYLES``, a dict of its
            fields or a ``.json`` file); ``None`` / ``"default"`` = the original look, rendered
            by the original code path (same bytes as before styles existed). A style changes
            only the images: tables, lidar and visibility are those of the default look.
    """

    out: Path
    scenes: int = 10
    samples: int = 40
    image_scale: float = 0.25
    seed: int = 0
    version: str = "v1.0-mini"
    val_fraction: float = 0.25
    progress: bool = True
    workers: int = 1
    min_objects: int = 20
    max_objects: int = 40
    max_range_m: float = 55.0
    min_instances_per_class: int = 1
    jpeg_quality: int = 90
    lidar_azimuth_steps: int = 1084
    lidar_max_range_m: float = 70.0
    objects_at_sample_time: bool = False
    style: Any = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.style = resolve_style(self.style)
        if self.scenes < 1:
            raise ValueError(f"scenes must be >= 1, got {self.scenes}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not 0.01 <= self.image_scale <= 2.0:
            raise ValueError(f"image_scale must be in [0.01, 2], got {self.image_scale}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0 < self.min_objects <= self.max_objects:
            raise ValueError("need 0 < min_objects <= max_objects")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [1, 100]")

    @property
    def n_val(self) -> int:
        """Number of validation scenes (the last ones)."""
        return max(1, int(round(self.scenes * self.val_fraction)))

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the written images."""
        return max(8, int(round(1600 * self.image_scale))), max(8, int(round(900 * self.image_scale)))

    def content_dict(self) -> dict:
        """The fields that determine the content (for ``synth_meta.json``)."""
        d = asdict(self)
        for k in ("out", "progress", "workers"):
            d.pop(k)
        if d["style"] is None:  # the default look's metadata stays byte-identical
            d.pop("style")
        return d


def make_token(seed: int, *parts: object) -> str:
    """Deterministic 32-hex-digit token (md5) of the seed and an identifying path."""
    key = "qdbev-synth/" + str(int(seed)) + "/" + "/".join(str(p) for p in parts)
    return hashlib.md5(key.encode("utf-8")).hexdigest()


def scene_name(seed: int, index: int) -> str:
    """Scene name, unique per seed and index (``scene-s<seed>-<index>``)."""
    return f"scene-s{int(seed)}-{int(index):04d}"


@dataclass
class Timing:
    """Microsecond stamps of one scene."""

    base_us: int
    samples: int
    offsets_us: dict[str, int] = field(default_factory=lambda: dict(CAMERA_OFFSETS_US))

    def sample_us(self, k: int) -> int:
        return self.base_us + int(round(k * KEYFRAME_PERIOD_S * 1e6))

    def camera_us(self, k: int, cam: str) -> int:
        return self.sample_us(k) + self.offsets_us[cam]

    def rel_s(self, stamp_us: int) -> float:
        """Seconds since the first key frame."""
        return (stamp_us - self.base_us) * 1e-6
