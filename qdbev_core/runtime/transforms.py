"""Rigid transforms without tf2: validation, static transform chains, the ego pose history, and
4x4 matrices of ``geometry_msgs`` transforms / poses.

- ``rigid_problem`` / ``validate_pose``: is a 4x4 a finite rigid transform (the ego pose
  ``base_link -> odom/world``, or an extrinsic calibration);
- ``StaticTransformTree``: chains of static ``parent <- child`` transforms (what ``/tf_static``
  describes), for extrinsics where ``tf2_ros`` is not installed and in offline replay;
- ``PoseHistory``: stamped ego poses (seconds), nearest lookup within a tolerance;
- ``transform_to_matrix`` / ``pose_to_matrix``: 4x4 ``parent_T_child`` of a message; they read
  fields only, so rclpy and ``rosbags`` messages both work. ``geometry_msgs/Quaternion`` is
  ``(x, y, z, w)``; ``qdbev_core.geometry`` takes ``(w, x, y, z)``.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..geometry import make_transform
from .errors import InvalidPoseError

__all__ = [
    "PoseHistory",
    "StaticTransformTree",
    "pose_to_matrix",
    "rigid_problem",
    "transform_to_matrix",
    "validate_pose",
]


def rigid_problem(t: NDArray[np.float64], tol: float = 1e-3) -> str | None:
    """``None`` when ``t`` is a finite rigid 4x4 transform, else what is wrong."""
    if t.shape != (4, 4):
        return f"shape {t.shape}, expected (4, 4)"
    if not np.all(np.isfinite(t)):
        return "contains NaN/Inf"
    if not np.allclose(t[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        return f"last row {t[3].tolist()}, expected [0, 0, 0, 1]"
    r = t[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=tol) or np.linalg.det(r) < 0:
        return "rotation part is not a proper rotation (orthonormal, det +1)"
    return None



def validate_pose(ego2global, name: str = "ego_pose") -> NDArray[np.float64] | None:
    """Check a ``base_link -> odom/world`` 4x4 pose (``None`` passes through as ``None``)."""
    if ego2global is None:
        return None
    t = np.asarray(ego2global, dtype=np.float64)
    problem = rigid_problem(t)
    if problem:
        raise InvalidPoseError(name, f"ego pose {problem}",
                               "check the odometry / TF odom->base_link source; the frame is processed "
                               "without temporal history")
    return t



def transform_to_matrix(msg: Any) -> NDArray[np.float64]:
    """4x4 ``parent_T_child`` of a ``geometry_msgs/Transform`` or ``TransformStamped``."""
    tf = msg.transform if hasattr(msg, "transform") else msg
    q, t = tf.rotation, tf.translation
    return make_transform((q.w, q.x, q.y, q.z), (t.x, t.y, t.z))


def pose_to_matrix(msg: Any) -> NDArray[np.float64]:
    """4x4 of a ``geometry_msgs/Pose`` (or anything with nested ``.pose``: PoseWithCovariance, Odometry)."""
    pose = msg
    while hasattr(pose, "pose"):
        pose = pose.pose
    q, p = pose.orientation, pose.position
    return make_transform((q.w, q.x, q.y, q.z), (p.x, p.y, p.z))


class StaticTransformTree:
    """Static transforms ``parent <- child`` and chained lookups (what /tf_static describes).

    ``set(parent, child, parent_T_child)`` adds or replaces an edge; ``lookup(target, source)``
    returns ``target_T_source`` by walking both frames up to a common ancestor, or ``None`` when
    they are not connected. Used by the node where ``tf2_ros`` is not installed.
    """

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, NDArray[np.float64]]] = {}

    def set(self, parent: str, child: str, parent_t_child) -> None:
        self._parent[child.lstrip("/")] = (parent.lstrip("/"), np.asarray(parent_t_child, dtype=np.float64))

    def frames(self) -> set[str]:
        return set(self._parent) | {p for p, _ in self._parent.values()}

    def _to_root(self, frame: str) -> dict[str, NDArray[np.float64]]:
        """``{ancestor: ancestor_T_frame}`` for ``frame`` and each of its ancestors."""
        chain = {frame: np.eye(4)}
        t = np.eye(4)
        cur = frame
        while cur in self._parent and len(chain) <= len(self._parent) + 1:
            parent, p_t_c = self._parent[cur]
            t = p_t_c @ t
            if parent in chain:  # cycle
                break
            chain[parent] = t
            cur = parent
        return chain

    def lookup(self, target: str, source: str) -> NDArray[np.float64] | None:
        target, source = target.lstrip("/"), source.lstrip("/")
        up_s = self._to_root(source)
        if target in up_s:
            return up_s[target]
        up_t = self._to_root(target)
        for frame, a_t_s in up_s.items():
            if frame in up_t:  # common ancestor a: target_T_source = inv(a_T_target) a_T_source
                return np.linalg.inv(up_t[frame]) @ a_t_s
        return None


class PoseHistory:
    """Stamped ``base_link -> odom`` poses; ``lookup(t)`` gives the nearest one within a tolerance.

    Keeps at most ``maxlen`` poses in stamp order. A pose older than the newest by more than the
    history span (e.g. a bag loop) clears the history first.
    """

    def __init__(self, maxlen: int = 400) -> None:
        self.maxlen = maxlen
        self._stamps: list[float] = []
        self._poses: list[NDArray[np.float64]] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        self._stamps.clear()
        self._poses.clear()

    def add(self, stamp: float, pose) -> None:
        stamp = float(stamp)
        if self._stamps and stamp < self._stamps[0]:
            self.clear()  # time went backwards past the whole history: start again
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            self._poses[i] = np.asarray(pose, dtype=np.float64)
            return
        self._stamps.insert(i, stamp)
        self._poses.insert(i, np.asarray(pose, dtype=np.float64))
        if len(self._stamps) > self.maxlen:
            del self._stamps[0], self._poses[0]

    def lookup(self, stamp: float, tolerance: float) -> NDArray[np.float64] | None:
        """The pose whose stamp is nearest to ``stamp`` if within ``tolerance`` seconds, else ``None``."""
        if not self._stamps:
            return None
        i = bisect.bisect_left(self._stamps, stamp)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self._stamps):
                d = abs(self._stamps[j] - stamp)
                if d <= tolerance and (best is None or d < best[0]):
                    best = (d, j)
        return None if best is None else self._poses[best[1]]
