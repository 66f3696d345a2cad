"""The nuScenes camera rig (Renault Zoe, boston-seaport log), used as the default geometry.

Values are the ``calibrated_sensor`` rows of the real nuScenes rig: intrinsics of the 1600x900
images in pixels, and camera optical frame -> ego (``base_link``) extrinsics as a quaternion
``(w, x, y, z)`` and a translation in metres. ``scaled_intrinsics`` gives the matrix for a
resized image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..geometry import make_transform
from ..types import CAMERA_NAMES

FULL_WIDTH = 1600
FULL_HEIGHT = 900


@dataclass(frozen=True)
class CameraCalib:
    """One camera of the rig: pinhole intrinsics at 1600x900 and its pose on the vehicle."""

    name: str
    fx: float
    fy: float
    cx: float
    cy: float
    rotation: tuple[float, float, float, float]  # (w, x, y, z), optical frame -> ego
    translation: tuple[float, float, float]  # metres, in ego

    def intrinsics(self, scale: float = 1.0) -> NDArray[np.float64]:
        """3x3 intrinsic matrix for the image resized by ``scale`` (pixel-centre convention)."""
        return scaled_intrinsics(
            np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]]), scale
        )

    def cam2ego(self) -> NDArray[np.float64]:
        """4x4 optical frame -> ego transform."""
        return make_transform(self.rotation, self.translation)


def scaled_intrinsics(k: NDArray[np.float64], scale_x: float, scale_y: float | None = None) -> NDArray[np.float64]:
    """Intrinsics of an image resized by ``scale_x`` (and ``scale_y``, default the same).

    Uses the pixel-centre convention of OpenCV's ``resize``: ``c' = (c + 0.5) * s - 0.5``.
    """
    sy = scale_x if scale_y is None else scale_y
    out = np.array(k, dtype=np.float64, copy=True)
    out[0, 0] *= scale_x
    out[0, 1] *= scale_x
    out[0, 2] = (out[0, 2] + 0.5) * scale_x - 0.5
    out[1, 1] *= sy
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


NUSCENES_RIG: dict[str, CameraCalib] = {
    "CAM_FRONT": CameraCalib(
        "CAM_FRONT", 1266.417203046554, 1266.417203046554, 816.2670197447984, 491.50706579294757,
        (0.4998015430569128, -0.5030316162024876, 0.4997798114386805, -0.49737083824542755),
        (1.70079118954, 0.0159456324149, 1.51095763913),
    ),
    "CAM_FRONT_RIGHT": CameraCalib(
        "CAM_FRONT_RIGHT", 1260.8474446004698, 1260.8474446004698, 807.968244525554, 495.3344268742088,
        (0.2060347966337182, -0.2026940577919598, 0.6824507824531167, -0.6713610884174485),
        (1.5508477543, -0.493404796419, 1.49574800619),
    ),
    "CAM_FRONT_LEFT": CameraCalib(
        "CAM_FRONT_LEFT", 1272.5979470598488, 1272.5979470598488, 826.6154927353808, 479.75165386361925,
        (0.6757265034669446, -0.6736266522251881, 0.21214015046209478, -0.21122827103904068),
        (1.52387798135, 0.494631336551, 1.50932822144),
    ),
    "CAM_BACK": CameraCalib(
        "CAM_BACK", 809.2209905677063, 809.2209905677063, 829.2196003259838, 481.77842384512485,
        (0.5037872666382278, -0.49740249788611096, -0.4941850223835201, 0.5045496097725578),
        (0.0283260309358, 0.00345136761476, 1.57910346144),
    ),
    "CAM_BACK_LEFT": CameraCalib(
        "CAM_BACK_LEFT", 1256.7414812095406, 1256.7414812095406, 792.1125740759628, 492.7757465151356,
        (0.6924185592174665, -0.7031619420114925, -0.11648342771943819, 0.11203317912370753),
        (1.03569100218, 0.484795032713, 1.59097014818),
    ),
    "CAM_BACK_RIGHT": CameraCalib(
        "CAM_BACK_RIGHT", 1259.5137405846733, 1259.5137405846733, 807.2529053838625, 501.19579884916527,
        (0.12280980120078765, -0.132400842670559, -0.7004305821388234, 0.690496031265798),
        (1.0148780988, -0.480568219723, 1.56239545128),
    ),
}

LIDAR_TOP_ROTATION = (0.7077955119163518, -0.006492242056004365, 0.010646214713995808, -0.7063073142877817)
LIDAR_TOP_TRANSLATION = (0.943713, 0.0, 1.84023)
"""LIDAR_TOP calibrated_sensor of the same rig (SynthScenes writes it; the evaluator reads it)."""


def rig_arrays(scale: float = 1.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(intrinsics (6,3,3), cam2ego (6,4,4))`` of the rig in ``CAMERA_NAMES`` order."""
    ks = np.stack([NUSCENES_RIG[n].intrinsics(scale) for n in CAMERA_NAMES])
    ts = np.stack([NUSCENES_RIG[n].cam2ego() for n in CAMERA_NAMES])
    return ks, ts
