"""ROS message <-> NumPy for the node's inputs (images, CameraInfo, transforms, odometry).

Thin wrappers: decoding lives in ``qdbev_core.runtime.codecs`` and transform reading in
``qdbev_core.runtime.transforms`` (shared with the offline bag replay); this module builds the
rclpy input messages (tests, ``qdbev play``, benchmarks) and reads CameraInfo.

- ``Image`` / ``CompressedImage`` -> ``(H, W, 3)`` uint8 RGB (``image_msg_to_rgb``,
  ``compressed_msg_to_rgb``, or ``msg_to_rgb`` for either), and back (``rgb_to_image_msg``,
  ``rgb_to_compressed_msg``).
- ``CameraInfo`` -> ``(K 3x3, width, height, frame_id)`` (``camera_info_to_intrinsics``) and
  back (``make_camera_info``).
- ``Transform`` / ``TransformStamped`` / ``Pose`` / ``Odometry`` -> 4x4 ``parent_T_child``
  (``transform_to_matrix``, ``pose_to_matrix``) and back (``matrix_to_transform_stamped``).

``geometry_msgs/Quaternion`` is ``(x, y, z, w)``; ``qdbev_core.geometry`` uses ``(w, x, y, z)``.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from numpy.typing import NDArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from qdbev_core.geometry import matrix_to_quat
from qdbev_core.runtime.codecs import (
    decode_compressed_image,
    decode_image_msg,
    decode_raw_image,
    encode_compressed_image,
    encode_raw_image,
)
from qdbev_core.runtime.transforms import pose_to_matrix, transform_to_matrix

from .conversions import make_header

__all__ = [
    "camera_info_to_intrinsics",
    "compressed_msg_to_rgb",
    "image_msg_to_rgb",
    "make_camera_info",
    "matrix_to_transform_stamped",
    "msg_to_rgb",
    "pose_to_matrix",
    "rgb_to_compressed_msg",
    "rgb_to_image_msg",
    "transform_to_matrix",
]


def image_msg_to_rgb(msg: Image, camera: str = "camera") -> NDArray[np.uint8]:
    """RGB array of a raw ``sensor_msgs/Image`` (``rgb8`` / ``bgr8``; others raise)."""
    return decode_raw_image(msg.data, msg.encoding, msg.width, msg.height, msg.step, camera=camera,
                            is_bigendian=bool(msg.is_bigendian))


def compressed_msg_to_rgb(msg: CompressedImage, camera: str = "camera") -> NDArray[np.uint8]:
    """RGB array of a JPEG/PNG ``sensor_msgs/CompressedImage`` (other formats raise)."""
    return decode_compressed_image(msg.data, msg.format, camera=camera)


def msg_to_rgb(msg: Image | CompressedImage, camera: str = "camera") -> NDArray[np.uint8]:
    """RGB array of either image message type (``qdbev_core.runtime.codecs.decode_image_msg``)."""
    return decode_image_msg(msg, camera)


def rgb_to_image_msg(rgb: NDArray[np.uint8], header: Header, encoding: str = "rgb8") -> Image:
    """A raw ``sensor_msgs/Image`` of an RGB array (``rgb8`` or ``bgr8``)."""
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    return Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=3 * w,
                 data=encode_raw_image(rgb, encoding))


def rgb_to_compressed_msg(rgb: NDArray[np.uint8], header: Header, fmt: str = "jpeg",
                          quality: int = 90) -> CompressedImage:
    """A JPEG/PNG ``sensor_msgs/CompressedImage`` of an RGB array."""
    return CompressedImage(header=header, format=fmt, data=encode_compressed_image(rgb, fmt, quality))


def camera_info_to_intrinsics(msg: CameraInfo) -> tuple[NDArray[np.float64], int, int, str]:
    """``(K 3x3, width, height, frame_id)`` of a ``CameraInfo`` (not validated here)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    return k, int(msg.width), int(msg.height), msg.header.frame_id


def make_camera_info(k: NDArray[np.float64], width: int, height: int, header: Header) -> CameraInfo:
    """A ``CameraInfo`` for an undistorted pinhole camera (``P = [K | 0]``, no distortion)."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob",
                      d=[0.0] * 5, k=k.reshape(-1).tolist(), r=np.eye(3).reshape(-1).tolist(),
                      p=p.reshape(-1).tolist())


def matrix_to_transform_stamped(t: NDArray[np.float64], parent: str, child: str,
                                stamp: float | Time = 0.0) -> TransformStamped:
    """``TransformStamped`` ``parent <- child`` of a 4x4 ``parent_T_child``."""
    t = np.asarray(t, dtype=np.float64)
    msg = TransformStamped(header=make_header(stamp, parent), child_frame_id=child)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in t[:3, 3])
    w, x, y, z = matrix_to_quat(t[:3, :3])
    msg.transform.rotation.x, msg.transform.rotation.y = float(x), float(y)
    msg.transform.rotation.z, msg.transform.rotation.w = float(z), float(w)
    return msg
