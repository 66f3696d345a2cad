"""Camera calibration: validated intrinsics + extrinsics of one camera, the six-camera rig that
assembles a ``Frame``, and the calibration YAML.

Names (one per concept):

- ``CameraCalibration``: one camera as the node / replay receive it at run time: a validated
  pinhole ``K`` for the published ``width x height`` image (from its ``CameraInfo``) and the
  validated ``cam2ego`` (camera optical frame -> ``base_link``, from TF or the calibration YAML).
- ``CameraRig``: the six ``CameraCalibration`` of one vehicle in model order; ``assemble``
  turns decoded images + stamps (+ ego pose) into a validated ``Frame``.
- ``CalibrationInputs``: the CameraInfo / extrinsics received so far, from which a
  ``CameraRig`` is built once every camera has both (and rebuilt when a CameraInfo changes).
- ``qdbev_core.data.rig.CameraCalib`` is a different thing on purpose: the *nominal* nuScenes
  rig (``calibrated_sensor`` rows at 1600x900: focal lengths, principal point, quaternion,
  translation) that the SynthScenes generator renders with and that tests / export use as a
  default. It is a constant of the dataset, never received from a sensor, so it is not
  validated; ``CameraCalibration.create(name, calib.intrinsics(s), w, h, calib.cam2ego())``
  turns one into the other.

Every failure raises a ``FrameAssemblyError`` subclass (``errors.py``) naming the camera.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..data.rig import scaled_intrinsics
from ..geometry import make_transform
from ..types import CAMERA_NAMES, Frame
from .errors import (
    FrameAssemblyError,
    ImageDecodeError,
    ImageSizeMismatchError,
    InvalidExtrinsicsError,
    InvalidIntrinsicsError,
    MissingCameraError,
    MissingExtrinsicsError,
)
from .transforms import rigid_problem, validate_pose

__all__ = [
    "CalibrationInputs",
    "CameraCalibration",
    "CameraRig",
    "load_extrinsics_yaml",
    "validate_extrinsics",
    "validate_intrinsics",
]


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
    problem = rigid_problem(t)
    if problem:
        raise InvalidExtrinsicsError(camera, f"{target_frame} <- camera transform {problem}",
                                     "fix the extrinsic calibration (TF or calibration YAML)")
    return t



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

    def reduced_size(self, camera: str, reduce: int = 1) -> tuple[int, int]:
        """``(width, height)`` of ``camera``'s image decoded at ``1 / reduce`` (JPEG DCT scaling)."""
        cal = self.calibrations[camera]
        return -(-cal.width // reduce), -(-cal.height // reduce)

    def check_image(self, camera: str, image: NDArray[np.uint8], reduce: int = 1) -> None:
        """Raise ``ImageSizeMismatchError`` / ``ImageDecodeError`` unless ``image`` fits ``camera``
        (decoded at ``1 / reduce`` of its CameraInfo size)."""
        cal = self.calibrations[camera]
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            desc = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ImageDecodeError(camera, f"expected an (H, W, 3) uint8 RGB image, got {desc}",
                                   "decode images with decode_raw_image / decode_compressed_image")
        h, w = image.shape[:2]
        if (w, h) != self.reduced_size(camera, reduce):
            raise ImageSizeMismatchError(
                camera, f"image is {w}x{h} but its CameraInfo says {cal.width}x{cal.height}",
                "publish CameraInfo for the size actually sent (after any resize/crop), or fix the "
                "image pipeline",
            )

    def assemble(self, images: Mapping[str, NDArray[np.uint8] | None], stamps: Mapping[str, float],
                 ego2global=None, scene: str | None = None, allow_missing: bool = False,
                 stamp_camera: str | None = None, reductions: Mapping[str, int] | None = None) -> Frame:
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
            reductions: camera name -> ``f`` for images decoded at ``1 / f`` of their CameraInfo
                size (``codecs.jpeg_reduction``); their intrinsics in the ``Frame`` are scaled by
                ``1 / f`` (each pixel covers ``f x f`` of the full image). Default: none.
        """
        present = [n for n in self.camera_names if images.get(n) is not None]
        missing = [n for n in self.camera_names if images.get(n) is None]
        if missing and (not allow_missing or not present):
            raise MissingCameraError(missing[0], f"no image from camera(s) {', '.join(missing)}",
                                     "all six cameras are needed (allow_missing_cameras is off)"
                                     if not allow_missing else "no camera delivered an image")
        out = []
        intrinsics = self.intrinsics.copy()
        for i, n in enumerate(self.camera_names):
            img = images.get(n)
            if img is None:
                cal = self.calibrations[n]
                img = np.zeros((cal.height, cal.width, 3), dtype=np.uint8)
            else:
                f = int((reductions or {}).get(n, 1))
                self.check_image(n, img, f)
                if f != 1:
                    intrinsics[i] = scaled_intrinsics(intrinsics[i], 1.0 / f)
            out.append(img)
        ref = stamp_camera if stamp_camera in present else present[0]
        stamp = float(stamps[ref])
        if not math.isfinite(stamp):
            raise FrameAssemblyError(ref, f"stamp {stamp!r} is not finite", "check the camera driver's clock")
        return Frame(images=out, intrinsics=intrinsics, cam2ego=self.cam2ego.copy(),
                     stamp=stamp, ego2global=validate_pose(ego2global), scene=scene)



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
# collecting the calibration as it arrives (node startup, bag replay)
# --------------------------------------------------------------------------------------------


class CalibrationInputs:
    """Each camera's latest valid CameraInfo and its extrinsics, until (and after) a ``CameraRig``
    can be built; the node at startup and bag replay fill it the same way.

    Attributes:
        intrinsics: camera -> ``(K 3x3, width, height, CameraInfo header.frame_id)``, validated.
        extrinsics: camera -> ``cam2ego`` 4x4 (optical frame -> ``frame_id``), as found so far.
        rig: the last rig ``build`` made, or ``None``.
    """

    def __init__(self, camera_names: Sequence[str] = CAMERA_NAMES, frame_id: str = "base_link") -> None:
        self.camera_names = tuple(camera_names)
        self.frame_id = frame_id
        self.intrinsics: dict[str, tuple[NDArray[np.float64], int, int, str]] = {}
        self.extrinsics: dict[str, NDArray[np.float64]] = {}
        self.rig: CameraRig | None = None

    def set_camera_info(self, camera: str, k, width: int, height: int, frame: str) -> bool:
        """Validate and keep one CameraInfo's intrinsics.

        Returns True when it changes the calibration of an already built rig (``build`` again).
        Raises ``InvalidIntrinsicsError`` (the last valid intrinsics stay).
        """
        k = validate_intrinsics(camera, k, width, height)
        old = self.intrinsics.get(camera)
        self.intrinsics[camera] = (k, int(width), int(height), frame)
        return self.rig is not None and (old is None or old[1:3] != (int(width), int(height))
                                         or not np.array_equal(old[0], k))

    def build(self) -> CameraRig:
        """A validated rig of every camera (raises the first camera's ``FrameAssemblyError``)."""
        cals = {}
        for cam in self.camera_names:
            if cam not in self.intrinsics:
                raise MissingCameraError(cam, "no valid CameraInfo yet", "publish the camera's CameraInfo")
            k, w, h, _ = self.intrinsics[cam]
            cals[cam] = CameraCalibration.create(cam, k, w, h, self.extrinsics.get(cam), self.frame_id)
        self.rig = CameraRig(cals, self.camera_names)
        return self.rig
