"""Six decoded camera images + calibration + stamps (+ ego pose) -> one validated ``Frame``.

This is the single code path from sensor data to a ``Frame``: the live ROS node
(``qdbev_ros.node``) and offline bag replay both call it, so both hand the engine the same arrays
for the same input. It is ROS-free: ROS messages are turned into plain numbers by
``qdbev_ros.ros_io`` first.

What lives here:

- Image decoding from raw bytes: ``decode_raw_image`` (``rgb8``, ``bgr8``) and
  ``decode_compressed_image`` (JPEG, PNG), both returning ``(H, W, 3)`` uint8 RGB; the inverse
  helpers ``encode_raw_image`` / ``encode_compressed_image`` (tests, bag writers).
- Validation of calibration and pose: ``validate_intrinsics``, ``validate_extrinsics``,
  ``validate_pose``.
- ``CameraRig``: six validated calibrations (``CameraCalibration``: K, image size, cam->base_link)
  with ``assemble(images, stamps, ego2global)`` -> ``Frame``.
- ``load_extrinsics_yaml``: camera -> base_link extrinsics from a calibration YAML (format in
  ``config/calibration_nuscenes.yaml``).
- ``StaticTransformTree`` (chains of static transforms, for TF-like extrinsics without tf2_ros)
  and ``PoseHistory`` (stamped ego poses, nearest lookup).

Every validation failure raises a subclass of ``FrameAssemblyError`` that carries the camera name,
a short machine-readable ``kind`` (used to log each problem once and count it in diagnostics), the
reason and what to do about it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from .geometry import make_transform
from .types import CAMERA_NAMES, Frame

__all__ = [
    "RAW_ENCODINGS",
    "CameraCalibration",
    "CameraRig",
    "FrameAssemblyError",
    "ImageDecodeError",
    "ImageSizeMismatchError",
    "InvalidExtrinsicsError",
    "InvalidIntrinsicsError",
    "InvalidPoseError",
    "MissingCameraError",
    "MissingExtrinsicsError",
    "PoseHistory",
    "StaticTransformTree",
    "UnsupportedEncodingError",
    "decode_compressed_image",
    "decode_raw_image",
    "encode_compressed_image",
    "encode_raw_image",
    "load_extrinsics_yaml",
    "validate_extrinsics",
    "validate_intrinsics",
    "validate_pose",
]

RAW_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8")
"""``sensor_msgs/Image`` encodings the node accepts (8-bit, 3 channels)."""

COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")
"""``sensor_msgs/CompressedImage`` formats the node accepts (``format`` names one of them)."""


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# image decoding / encoding
# --------------------------------------------------------------------------------------------


def _as_u8(data) -> NDArray[np.uint8]:
    """A read-only uint8 view of bytes / bytearray / memoryview / array.array / ndarray."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def decode_raw_image(data, encoding: str, width: int, height: int, step: int | None = None,
                     camera: str = "camera", is_bigendian: bool = False) -> NDArray[np.uint8]:
    """``(height, width, 3)`` uint8 RGB array of a raw ``sensor_msgs/Image`` payload.

    Args:
        data: the image bytes (``bytes``, ``array.array('B')``, memoryview or uint8 ndarray).
        encoding: ``"rgb8"`` or ``"bgr8"`` (other encodings raise ``UnsupportedEncodingError``).
        width, height: image size in pixels.
        step: bytes per row (``>= 3 * width``; row padding is skipped); default ``3 * width``.
        camera: name used in error messages.
        is_bigendian: ignored for 8-bit encodings (kept for the message's field).

    Returns a new contiguous array (the message buffer is not referenced afterwards).
    """
    enc = (encoding or "").strip().lower()
    if enc not in RAW_ENCODINGS:
        raise UnsupportedEncodingError(
            camera, f"unsupported image encoding {encoding!r}",
            f"publish one of {', '.join(RAW_ENCODINGS)} (raw) or set image_transport to 'compressed' "
            "for JPEG/PNG",
        )
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageDecodeError(camera, f"image size {width}x{height} is empty", "check the camera driver")
    row = 3 * width
    step = row if not step else int(step)
    if step < row:
        raise ImageDecodeError(camera, f"step {step} is smaller than 3 x width = {row} bytes ({enc})",
                               "the image header does not match its encoding; check the camera driver")
    buf = _as_u8(data)
    if buf.size < step * (height - 1) + row:
        raise ImageDecodeError(
            camera, f"{buf.size} data bytes for a {width}x{height} {enc} image with step {step} "
            f"(need {step * height})", "the message is truncated or its header is wrong",
        )
    if buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)
    else:  # last row without its padding
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    img = rows[:, :row].reshape(height, width, 3)
    if enc == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
    return np.array(img, dtype=np.uint8, copy=True, order="C")


def _compressed_kind(fmt: str, buf: NDArray[np.uint8]) -> str | None:
    """``"jpeg"``/``"png"`` from a CompressedImage ``format`` string, else from magic bytes."""
    f = (fmt or "").lower()
    # image_transport writes e.g. "bgr8; jpeg compressed bgr8" or "rgb8; png compressed rgb8"
    if "compresseddepth" in f:
        return "compressedDepth"
    for word in ("jpeg", "jpg", "png"):
        if word in f:
            return "jpeg" if word == "jpg" else word
    if f.strip():
        return None
    if buf.size >= 3 and buf[0] == 0xFF and buf[1] == 0xD8 and buf[2] == 0xFF:
        return "jpeg"
    if buf.size >= 8 and bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def decode_compressed_image(data, fmt: str = "", camera: str = "camera") -> NDArray[np.uint8]:
    """``(H, W, 3)`` uint8 RGB array of a ``sensor_msgs/CompressedImage`` (JPEG or PNG).

    ``fmt`` is the message's ``format`` field (``"jpeg"``, ``"png"``, or image_transport's
    ``"bgr8; jpeg compressed bgr8"``); when empty the kind is read from the magic bytes. Grey or
    alpha images are converted to 3-channel RGB. Other formats raise
    ``UnsupportedEncodingError``; undecodable bytes raise ``ImageDecodeError``.
    """
    buf = _as_u8(data)
    kind = _compressed_kind(fmt, buf)
    if kind not in COMPRESSED_FORMATS:
        raise UnsupportedEncodingError(
            camera, f"unsupported compressed image format {fmt!r}",
            "publish JPEG or PNG CompressedImage messages, or set image_transport to 'raw'",
        )
    if buf.size == 0:
        raise ImageDecodeError(camera, f"empty {kind} payload", "check the camera driver / compression")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageDecodeError(camera, f"{buf.size} bytes do not decode as {kind}",
                               "the message is truncated or corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_raw_image(rgb: NDArray[np.uint8], encoding: str = "rgb8") -> bytes:
    """Bytes of an ``(H, W, 3)`` uint8 RGB image in ``encoding`` (``rgb8`` or ``bgr8``), step 3 W."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    enc = encoding.lower()
    if enc == "rgb8":
        return np.ascontiguousarray(rgb).tobytes()
    if enc == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR).tobytes()
    raise ValueError(f"cannot encode {encoding!r}; supported: {', '.join(RAW_ENCODINGS)}")


def encode_compressed_image(rgb: NDArray[np.uint8], fmt: str = "jpeg", quality: int = 90) -> bytes:
    """JPEG (``quality`` 0-100) or PNG bytes of an ``(H, W, 3)`` uint8 RGB image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    f = fmt.lower()
    if f in ("jpeg", "jpg"):
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif f == "png":
        ext, params = ".png", []
    else:
        raise ValueError(f"cannot compress to {fmt!r}; supported: jpeg, png")
    ok, out = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {f}")
    return out.tobytes()


# --------------------------------------------------------------------------------------------
# calibration / pose validation
# --------------------------------------------------------------------------------------------


def validate_intrinsics(camera: str, k, width: int, height: int) -> NDArray[np.float64]:
    """Check a CameraInfo's ``K`` (3x3 or 9 values) and image size; returns ``K`` as 3x3 float64.

    Rejects: empty image size, NaN/Inf entries, zero or negative focal lengths, a last row other
    than ``[0, 0, 1]``. (A principal point outside the image is allowed: cropped rigs have it.)
    """
    hint = "fix the camera's CameraInfo (calibration not loaded by the driver?)"
    try:
        mat = np.asarray(k, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError) as exc:
        raise InvalidIntrinsicsError(camera, f"K is not 9 numbers ({exc})", hint) from exc
    if int(width) <= 0 or int(height) <= 0:
        raise InvalidIntrinsicsError(camera, f"CameraInfo image size is {int(width)}x{int(height)}",
                                     "the CameraInfo width/height must be the published image size")
    if not np.all(np.isfinite(mat)):
        raise InvalidIntrinsicsError(camera, f"K contains NaN/Inf: {mat.reshape(-1).tolist()}", hint)
    if mat[0, 0] <= 0 or mat[1, 1] <= 0:
        raise InvalidIntrinsicsError(camera, f"focal lengths fx={mat[0, 0]:g}, fy={mat[1, 1]:g} must be > 0 "
                                     "(all-zero K means 'uncalibrated')", hint)
    if not np.allclose(mat[2], (0.0, 0.0, 1.0), atol=1e-9):
        raise InvalidIntrinsicsError(camera, f"K's last row is {mat[2].tolist()}, expected [0, 0, 1]", hint)
    return mat


def _check_rigid(t: NDArray[np.float64], tol: float = 1e-3) -> str | None:
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


def validate_extrinsics(camera: str, cam2ego, target_frame: str = "base_link") -> NDArray[np.float64]:
    """Check a camera optical frame -> ``target_frame`` 4x4 transform; returns it as float64.

    ``None`` raises ``MissingExtrinsicsError``; a non-finite or non-rigid matrix raises
    ``InvalidExtrinsicsError``.
    """
    if cam2ego is None:
        raise MissingExtrinsicsError(
            camera, f"no transform {target_frame} <- {camera}",
            "publish it on /tf_static or list the camera in the calibration YAML",
        )
    t = np.asarray(cam2ego, dtype=np.float64)
    problem = _check_rigid(t)
    if problem:
        raise InvalidExtrinsicsError(camera, f"{target_frame} <- camera transform {problem}",
                                     "fix the extrinsic calibration (TF or calibration YAML)")
    return t


def validate_pose(ego2global, name: str = "ego_pose") -> NDArray[np.float64] | None:
    """Check a ``base_link -> odom/world`` 4x4 pose (``None`` passes through as ``None``)."""
    if ego2global is None:
        return None
    t = np.asarray(ego2global, dtype=np.float64)
    problem = _check_rigid(t)
    if problem:
        raise InvalidPoseError(name, f"ego pose {problem}",
                               "check the odometry / TF odom->base_link source; the frame is processed "
                               "without temporal history")
    return t


# --------------------------------------------------------------------------------------------
# the rig and frame assembly
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraCalibration:
    """One camera's calibration: pinhole ``K`` for a ``width x height`` image + cam->base_link.

    Build with ``CameraCalibration.create`` to validate.
    """

    name: str
    k: NDArray[np.float64]
    width: int
    height: int
    cam2ego: NDArray[np.float64]

    @classmethod
    def create(cls, name: str, k, width: int, height: int, cam2ego,
               target_frame: str = "base_link") -> "CameraCalibration":
        """Validated calibration (raises ``FrameAssemblyError`` subclasses naming ``name``)."""
        return cls(name, validate_intrinsics(name, k, width, height), int(width), int(height),
                   validate_extrinsics(name, cam2ego, target_frame))


class CameraRig:
    """The six calibrated cameras of one vehicle, in ``camera_names`` order (model order).

    ``assemble`` builds a ``Frame`` from decoded images; it checks every image against its
    CameraInfo size and refuses incomplete sets unless missing cameras are allowed (then a black
    image of the CameraInfo size stands in for each missing camera).
    """

    def __init__(self, calibrations: Mapping[str, CameraCalibration],
                 camera_names: Sequence[str] = CAMERA_NAMES) -> None:
        self.camera_names = tuple(camera_names)
        missing = [n for n in self.camera_names if n not in calibrations]
        if missing:
            raise MissingCameraError(missing[0], f"no calibration for camera(s) {', '.join(missing)}",
                                     "every camera needs CameraInfo and extrinsics")
        self.calibrations = {n: calibrations[n] for n in self.camera_names}
        self.intrinsics = np.stack([self.calibrations[n].k for n in self.camera_names])
        self.cam2ego = np.stack([self.calibrations[n].cam2ego for n in self.camera_names])

    def check_image(self, camera: str, image: NDArray[np.uint8]) -> None:
        """Raise ``ImageSizeMismatchError`` / ``ImageDecodeError`` unless ``image`` fits ``camera``."""
        cal = self.calibrations[camera]
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            desc = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ImageDecodeError(camera, f"expected an (H, W, 3) uint8 RGB image, got {desc}",
                                   "decode images with decode_raw_image / decode_compressed_image")
        h, w = image.shape[:2]
        if (w, h) != (cal.width, cal.height):
            raise ImageSizeMismatchError(
                camera, f"image is {w}x{h} but its CameraInfo says {cal.width}x{cal.height}",
                "publish CameraInfo for the size actually sent (after any resize/crop), or fix the "
                "image pipeline",
            )

    def assemble(self, images: Mapping[str, NDArray[np.uint8] | None], stamps: Mapping[str, float],
                 ego2global=None, scene: str | None = None, allow_missing: bool = False,
                 stamp_camera: str | None = None) -> Frame:
        """A validated ``Frame`` from per-camera RGB images and stamps (seconds).

        Args:
            images: camera name -> ``(H, W, 3)`` uint8 RGB image (``None``/absent = missing).
            stamps: camera name -> capture time in seconds.
            ego2global: ``base_link -> odom/world`` 4x4 pose or ``None``.
            scene: sequence id passed through to the ``Frame``.
            allow_missing: fill missing cameras with black images instead of raising
                ``MissingCameraError`` (at least one camera must be present).
            stamp_camera: camera whose stamp becomes ``Frame.stamp``; default the first camera
                (``CAM_FRONT``), or the first present one when it is missing.
        """
        present = [n for n in self.camera_names if images.get(n) is not None]
        missing = [n for n in self.camera_names if images.get(n) is None]
        if missing and (not allow_missing or not present):
            raise MissingCameraError(missing[0], f"no image from camera(s) {', '.join(missing)}",
                                     "all six cameras are needed (allow_missing_cameras is off)"
                                     if not allow_missing else "no camera delivered an image")
        out = []
        for n in self.camera_names:
            img = images.get(n)
            if img is None:
                cal = self.calibrations[n]
                img = np.zeros((cal.height, cal.width, 3), dtype=np.uint8)
            else:
                self.check_image(n, img)
            out.append(img)
        ref = stamp_camera if stamp_camera in present else present[0]
        stamp = float(stamps[ref])
        if not math.isfinite(stamp):
            raise FrameAssemblyError(ref, f"stamp {stamp!r} is not finite", "check the camera driver's clock")
        return Frame(images=out, intrinsics=self.intrinsics.copy(), cam2ego=self.cam2ego.copy(),
                     stamp=stamp, ego2global=validate_pose(ego2global), scene=scene)


# --------------------------------------------------------------------------------------------
# calibration YAML
# --------------------------------------------------------------------------------------------


def load_extrinsics_yaml(path: str | Path, camera_names: Sequence[str] = CAMERA_NAMES,
                         target_frame: str | None = None) -> dict[str, NDArray[np.float64]]:
    """``{camera: cam2ego 4x4}`` from a calibration YAML (format: ``config/calibration_nuscenes.yaml``).

    ::

        frame_id: base_link             # the frame the transforms map into
        cameras:
          CAM_FRONT:
            frame_id: CAM_FRONT         # optical frame name (informational)
            translation: [x, y, z]      # metres, camera origin in base_link
            rotation: [w, x, y, z]      # unit quaternion, optical frame -> base_link

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and key (also when the top level
    is not a mapping, or its ``frame_id`` is not ``target_frame`` where that is given), and
    ``MissingExtrinsicsError`` / ``InvalidExtrinsicsError`` naming the camera.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration YAML not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__} ({str(data)[:60]!r})"
        raise ValueError(f"{path}: the file is {what}, expected a mapping with 'frame_id:' and 'cameras:' "
                         "(format: config/calibration_nuscenes.yaml)")
    if target_frame is not None and data.get("frame_id", target_frame) != target_frame:
        raise ValueError(f"{path}: transforms map into frame_id {data.get('frame_id')!r}, but the node's frame_id "
                         f"is {target_frame!r}; use a calibration for {target_frame!r} or set the node's frame_id "
                         f"to {data.get('frame_id')!r}")
    cams = data.get("cameras")
    if not isinstance(cams, dict):
        raise ValueError(f"{path}: no 'cameras:' mapping")
    out = {}
    for name in camera_names:
        entry = cams.get(name)
        if entry is None:
            raise MissingExtrinsicsError(name, f"not listed in {path}", "add the camera to the calibration YAML")
        try:
            rot = np.asarray(entry["rotation"], dtype=np.float64).reshape(4)
            trans = np.asarray(entry["translation"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidExtrinsicsError(name, f"{path}: needs 'rotation: [w, x, y, z]' and "
                                         f"'translation: [x, y, z]' ({exc})", "fix the calibration YAML") from exc
        norm = float(np.linalg.norm(rot))
        if not np.all(np.isfinite(rot)) or abs(norm - 1.0) > 1e-3:
            raise InvalidExtrinsicsError(name, f"{path}: rotation {rot.tolist()} is not a unit quaternion "
                                         f"(norm {norm:g})", "fix the calibration YAML")
        out[name] = validate_extrinsics(name, make_transform(rot, trans))
    return out


# --------------------------------------------------------------------------------------------
# transform bookkeeping without tf2
# --------------------------------------------------------------------------------------------


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
