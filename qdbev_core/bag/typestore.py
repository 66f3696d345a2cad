"""The ``rosbags`` type store qdbev's bag tools read and write with (no ROS install needed).

``get_typestore()`` returns a ``rosbags`` typestore for the ROS 2 release of the PyPI wheels the
node runs on (``Stores.ROS2_KILTED``; the newest ROS 2 store of older ``rosbags`` releases
otherwise) with the message types that are not part of it registered from their ``.msg`` text:

- ``vision_msgs/msg/{ObjectHypothesis, ObjectHypothesisWithPose, BoundingBox3D, Detection3D,
  Detection3DArray}`` from the repository's ``ros_interfaces/vision_msgs/msg/`` (the public
  vision_msgs 4.x field list), or from an installed ``share/vision_msgs/msg/`` (ROS install /
  ``AMENT_PREFIX_PATH``) when the repository folder is not there;
- ``tf2_msgs/msg/TFMessage`` the same way, only if the store lacks it;
- ``qdbev_msgs/msg/ObjectVelocityArray`` (qdbev's own message: per-detection velocities beside a
  ``Detection3DArray``) from ``ros_interfaces/qdbev_msgs/msg/`` the same way.

The registered types get the same RIHS01 type hashes as the generated ROS packages
(``test/unit/test_bag.py`` checks it), so ``ros2 bag`` and rclpy accept bags written with them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

__all__ = [
    "CAMERA_INFO",
    "COMPRESSED_IMAGE",
    "DETECTION3D_ARRAY",
    "IMAGE",
    "MARKER_ARRAY",
    "OBJECT_VELOCITY_ARRAY",
    "ODOMETRY",
    "TF_MESSAGE",
    "VISION_MSGS_TYPES",
    "get_typestore",
    "interface_dirs",
    "store_name",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
ODOMETRY = "nav_msgs/msg/Odometry"
DETECTION3D_ARRAY = "vision_msgs/msg/Detection3DArray"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
OBJECT_VELOCITY_ARRAY = "qdbev_msgs/msg/ObjectVelocityArray"

VISION_MSGS_TYPES: tuple[str, ...] = (
    "ObjectHypothesis", "ObjectHypothesisWithPose", "BoundingBox3D", "Detection3D", "Detection3DArray",
)
"""The vision_msgs messages qdbev uses (dependency order)."""

_REPO_INTERFACES = Path(__file__).resolve().parents[2] / "ros_interfaces"

# newest first: the wheels are kilted; fall back for older rosbags releases
_STORE_PREFERENCE = ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE")


def store_name() -> str:
    """Name of the ``rosbags.typesys.Stores`` member in use (e.g. ``"ROS2_KILTED"``)."""
    from rosbags.typesys import Stores

    for name in _STORE_PREFERENCE:
        if hasattr(Stores, name):
            return name
    raise RuntimeError(f"rosbags {_rosbags_version()} has none of the stores {', '.join(_STORE_PREFERENCE)}; "
                       "upgrade rosbags (pip install -U rosbags)")


def _rosbags_version() -> str:
    try:
        from importlib.metadata import version

        return version("rosbags")
    except Exception:  # noqa: BLE001 - only used in a message
        return "(unknown version)"


def interface_dirs(package: str) -> list[Path]:
    """Folders that may hold ``<package>``'s ``.msg`` files, in the order they are tried.

    The repository's ``ros_interfaces/<package>/msg`` first, then ``share/<package>/msg`` of every
    prefix in ``AMENT_PREFIX_PATH`` (a sourced ROS install or the venv).
    """
    dirs = [_REPO_INTERFACES / package / "msg"]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        dirs.append(Path(prefix) / "share" / package / "msg")
    return [d for d in dirs if d.is_dir()]


def _msg_types(package: str, names: tuple[str, ...]) -> dict:
    """``rosbags`` type definitions of ``package/msg/<name>`` parsed from their ``.msg`` files."""
    from rosbags.typesys import get_types_from_msg

    for folder in interface_dirs(package):
        files = {n: folder / f"{n}.msg" for n in names}
        if all(f.is_file() for f in files.values()):
            out: dict = {}
            for n, f in files.items():
                out.update(get_types_from_msg(f.read_text(encoding="utf-8"), f"{package}/msg/{n}"))
            return out
    tried = ", ".join(str(d) for d in interface_dirs(package)) or f"{_REPO_INTERFACES / package / 'msg'} (missing)"
    raise FileNotFoundError(
        f"cannot find the .msg files of {package} ({', '.join(names)}); looked in {tried}. Run from a qdbev "
        "source checkout (ros_interfaces/) or source a ROS install that provides the package"
    )


@lru_cache(maxsize=1)
def get_typestore():
    """The shared typestore (built once per process; treat it as read-only)."""
    from rosbags.typesys import Stores, get_typestore as _get

    store = _get(getattr(Stores, store_name()))
    extra = {}
    if DETECTION3D_ARRAY not in store.fielddefs:
        extra.update(_msg_types("vision_msgs", VISION_MSGS_TYPES))
    if TF_MESSAGE not in store.fielddefs:
        extra.update(_msg_types("tf2_msgs", ("TFMessage",)))
    if OBJECT_VELOCITY_ARRAY not in store.fielddefs:
        extra.update(_msg_types("qdbev_msgs", ("ObjectVelocityArray",)))
    if extra:
        store.register(extra)
    return store
