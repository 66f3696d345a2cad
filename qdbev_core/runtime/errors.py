"""Errors of bad camera input: one class per problem, each naming the camera, a ``kind``, the
reason and what to do about it (the node logs each ``(camera, kind)`` once and counts it)."""

from __future__ import annotations

__all__ = [
    "FrameAssemblyError",
    "ImageDecodeError",
    "ImageSizeMismatchError",
    "InvalidExtrinsicsError",
    "InvalidIntrinsicsError",
    "InvalidPoseError",
    "MissingCameraError",
    "MissingExtrinsicsError",
    "UnsupportedEncodingError",
]


class FrameAssemblyError(ValueError):
    """Bad input for one camera (or the ego pose): what is wrong and what to do about it.

    Attributes:
        camera: camera name (``"CAM_FRONT"``...), or ``"ego_pose"`` / ``"frame"``.
        kind: short stable key of the problem (``"encoding"``, ``"image_size"``, ...): callers
            log each ``(camera, kind)`` once and count it.
        reason: what is wrong, with the offending values.
        hint: what to do about it.
    """

    kind = "invalid_input"

    def __init__(self, camera: str, reason: str, hint: str = "") -> None:
        self.camera = camera
        self.reason = reason
        self.hint = hint
        super().__init__(f"{camera}: {reason}" + (f"; {hint}" if hint else ""))


class UnsupportedEncodingError(FrameAssemblyError):
    """An image encoding / compressed format the node cannot decode."""

    kind = "encoding"


class ImageDecodeError(FrameAssemblyError):
    """Image bytes that do not decode (truncated data, wrong step, corrupt JPEG/PNG)."""

    kind = "decode"


class ImageSizeMismatchError(FrameAssemblyError):
    """Image width/height different from the camera's CameraInfo."""

    kind = "image_size"


class InvalidIntrinsicsError(FrameAssemblyError):
    """CameraInfo intrinsics that are zero, NaN/Inf or otherwise not a pinhole matrix."""

    kind = "intrinsics"


class MissingExtrinsicsError(FrameAssemblyError):
    """No camera -> base_link transform for a camera."""

    kind = "extrinsics_missing"


class InvalidExtrinsicsError(FrameAssemblyError):
    """A camera -> base_link transform that is not finite or not rigid."""

    kind = "extrinsics"


class InvalidPoseError(FrameAssemblyError):
    """An ego pose (base_link -> odom/world) that is not finite or not rigid."""

    kind = "ego_pose"


class MissingCameraError(FrameAssemblyError):
    """A camera without an image (or without calibration) in a frame that needs all six."""

    kind = "missing_camera"
