"""The two types every part of qdbev exchanges: a multi-camera ``Frame`` and ``Detections``.

A ``Frame`` is what the vehicle sees at one instant (built by the same code from a live ROS
node, a rosbag or a nuScenes-format dataset); ``Detections`` is what an engine returns for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .classes import CLASS_NAMES

CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
"""The fixed camera order of every ``Frame`` and every model input (BEVFormer's order)."""


@dataclass
class Frame:
    """Six synchronized camera images with their calibration, in ``CAMERA_NAMES`` order.

    Attributes:
        images: six ``(H_i, W_i, 3)`` uint8 RGB arrays (sizes may differ per camera).
        intrinsics: ``(6, 3, 3)`` pinhole matrices in pixels of the corresponding image.
        cam2ego: ``(6, 4, 4)`` camera optical frame -> ``base_link`` transforms (metres).
        stamp: time of the frame in seconds (front camera stamp).
        ego2global: ``(4, 4)`` ``base_link`` -> world/odom pose, or ``None`` when unknown
            (then temporal models treat the frame as the start of a new sequence).
        scene: optional sequence identifier; a change resets temporal state.
    """

    images: list[NDArray[np.uint8]]
    intrinsics: NDArray[np.float64]
    cam2ego: NDArray[np.float64]
    stamp: float
    ego2global: NDArray[np.float64] | None = None
    scene: str | None = None


@dataclass
class Detections:
    """3D detections in the ``base_link`` (ego) frame of the frame they came from.

    Attributes:
        boxes: ``(N, 9)`` float64 ``[x, y, z, l, w, h, yaw, vx, vy]`` — centre at mid-height (m),
            full extents (m), yaw (rad about +z), velocity (m/s).
        scores: ``(N,)`` confidence in ``[0, 1]``.
        labels: ``(N,)`` int64 indices into ``class_names``.
        class_names: the class list ``labels`` index into.
    """

    boxes: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 9)))
    scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0,)))
    labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def names(self) -> list[str]:
        """Class name of each detection."""
        return [self.class_names[i] for i in self.labels]
