"""BEV-space data augmentation: rotate / flip the ego frame, images untouched.

Rotating the whole scene about the ego z axis (and optionally mirroring y) changes where the
cameras sit relative to the BEV grid and where the boxes are, but not a single pixel: the
camera->ego extrinsics and GT boxes are transformed together, so geometry stays exact. This is
the cheap augmentation camera-BEV detectors (BEVDet's "BDA") rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..geometry import wrap_angle


@dataclass
class BevAugmentConfig:
    """Ranges of the random BEV transform (``rotation_deg`` is the half-range, uniform)."""

    rotation_deg: float = 22.5
    flip_y_prob: float = 0.5


def bev_transform(rotation_rad: float, flip_y: bool) -> NDArray[np.float64]:
    """4x4 transform old ego -> augmented ego: optional mirror y -> -y, then yaw rotation."""
    c, s = np.cos(rotation_rad), np.sin(rotation_rad)
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    flip = np.diag([1.0, -1.0 if flip_y else 1.0, 1.0, 1.0])
    return rot @ flip


def apply_bev_transform(
    aug: NDArray[np.float64], boxes: NDArray[np.float64], cam2ego: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Transform ``(N, 9)`` ego boxes and ``(6, 4, 4)`` extrinsics with ``aug`` (rotation ± mirror).

    A mirror negates yaw and the mirrored velocity component; box sizes are unchanged.
    """
    b = np.array(boxes, dtype=np.float64, copy=True)
    mirrored = np.linalg.det(aug[:3, :3]) < 0
    if len(b):
        b[:, 0:3] = b[:, 0:3] @ aug[:3, :3].T + aug[:3, 3]
        yaw = -b[:, 6] if mirrored else b[:, 6]
        # rotation part without the mirror: aug = R @ F, F = diag(1, -1, 1)
        r = aug[:3, :3] @ np.diag([1.0, -1.0, 1.0]) if mirrored else aug[:3, :3]
        b[:, 6] = wrap_angle(yaw + np.arctan2(r[1, 0], r[0, 0]))
        v = np.concatenate([b[:, 7:9], np.zeros((len(b), 1))], axis=1) @ aug[:3, :3].T
        b[:, 7:9] = v[:, :2]
    return b, aug[None] @ cam2ego


def sample_bev_transform(cfg: BevAugmentConfig, rng: np.random.Generator) -> NDArray[np.float64]:
    """Draw one random augmentation transform."""
    rot = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    return bev_transform(rot, bool(rng.random() < cfg.flip_y_prob))
