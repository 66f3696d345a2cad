"""Rigid transforms, quaternions and 3D box geometry (NumPy, float64).

Conventions (docs/DESIGN.md §3):
- Frames follow REP 103: ``base_link`` / ego is x forward, y left, z up; cameras are the optical
  frame (x right, y down, z forward).
- A transform ``a_T_b`` (named ``b2a`` in code, e.g. ``cam2ego``) is a 4x4 homogeneous matrix that
  maps points in frame ``b`` to frame ``a``: ``p_a = a_T_b @ p_b``.
- Quaternions are ``(w, x, y, z)``, as in the nuScenes tables.
- A box is ``[x, y, z, l, w, h, yaw]`` (+ optional ``vx, vy``): centre at mid-height in metres,
  full extents (``l`` along the box's own x axis, ``w`` along its y, ``h`` along z), ``yaw`` in
  radians about +z, velocity in m/s in the same frame as the centre.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

BOX_DIM = 9
"""Columns of an ego-frame box array: x, y, z, l, w, h, yaw, vx, vy."""


def quat_to_matrix(q: ArrayLike) -> NDArray[np.float64]:
    """3x3 rotation matrix of a unit quaternion ``(w, x, y, z)`` (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(r: ArrayLike) -> NDArray[np.float64]:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a 3x3 rotation matrix."""
    m = np.asarray(r, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def yaw_to_quat(yaw: float) -> NDArray[np.float64]:
    """Quaternion ``(w, x, y, z)`` of a rotation by ``yaw`` radians about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_to_yaw(q: ArrayLike) -> float:
    """Yaw (radians about +z) of a quaternion ``(w, x, y, z)``; pitch and roll are ignored."""
    r = quat_to_matrix(q)
    return float(np.arctan2(r[1, 0], r[0, 0]))


def make_transform(rotation: ArrayLike, translation: ArrayLike) -> NDArray[np.float64]:
    """4x4 transform from a quaternion ``(w, x, y, z)`` or 3x3 matrix and a translation (m)."""
    rot = np.asarray(rotation, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = quat_to_matrix(rot) if rot.shape == (4,) else rot
    t[:3, 3] = np.asarray(translation, dtype=np.float64)
    return t


def invert_transform(t: ArrayLike) -> NDArray[np.float64]:
    """Inverse of a rigid 4x4 transform (exact, without a general matrix inverse)."""
    t = np.asarray(t, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return out


def transform_points(t: ArrayLike, points: ArrayLike) -> NDArray[np.float64]:
    """Apply a 4x4 transform to ``(..., 3)`` points."""
    t = np.asarray(t, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return p @ t[:3, :3].T + t[:3, 3]


def transform_boxes(t: ArrayLike, boxes: ArrayLike) -> NDArray[np.float64]:
    """Move ``(N, 7|9)`` boxes into another frame with a 4x4 transform ``dst_T_src``.

    Centres are transformed as points, yaw is rotated by the transform's yaw, and velocities
    (if present) are rotated as vectors. Assumes the transform is yaw-only up to small
    roll/pitch (true for ego <-> global on a ground plane); the box stays upright.
    """
    t = np.asarray(t, dtype=np.float64)
    b = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else BOX_DIM)
    if b.shape[0] == 0:
        return b
    b[:, 0:3] = transform_points(t, b[:, 0:3])
    dyaw = np.arctan2(t[1, 0], t[0, 0])
    b[:, 6] = wrap_angle(b[:, 6] + dyaw)
    if b.shape[1] >= 9:
        v = np.concatenate([b[:, 7:9], np.zeros((b.shape[0], 1))], axis=1) @ t[:3, :3].T
        b[:, 7:9] = v[:, :2]
    return b


def wrap_angle(a: ArrayLike) -> NDArray[np.float64]:
    """Wrap angles (radians) to ``[-pi, pi)``."""
    return (np.asarray(a, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def box_corners(boxes: ArrayLike) -> NDArray[np.float64]:
    """The 8 corners ``(N, 8, 3)`` of ``(N, >=7)`` boxes ``[x, y, z, l, w, h, yaw, ...]``.

    Corner order: bottom face (z - h/2) front-left, front-right, back-right, back-left, then the
    same four on the top face. "Front" is the box's +x side.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else 7)
    sx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * 0.5
    sy = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * 0.5
    sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * 0.5
    local = np.stack([sx * b[:, 3:4], sy * b[:, 4:5], sz * b[:, 5:6]], axis=-1)  # (N, 8, 3)
    c, s = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], axis=-1) + b[:, None, 0:3]


def project_points(
    points_ego: ArrayLike, intrinsics: ArrayLike, cam2ego: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Project ego-frame points ``(..., 3)`` into a pinhole camera.

    Returns ``(uv, depth)``: pixel coordinates ``(..., 2)`` (u right, v down, origin at the
    top-left pixel corner convention of OpenCV) and the depth along the optical axis in metres.
    Points with ``depth <= 0`` are behind the camera; their ``uv`` is meaningless.
    """
    p_cam = transform_points(invert_transform(cam2ego), points_ego)
    depth = p_cam[..., 2]
    pix = p_cam @ np.asarray(intrinsics, dtype=np.float64).T
    uv = pix[..., :2] / np.where(np.abs(pix[..., 2:3]) < 1e-9, 1e-9, pix[..., 2:3])
    return uv, depth
