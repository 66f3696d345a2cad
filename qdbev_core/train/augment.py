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


# ================================================================================================
# Image-space augmentation (per camera): photometric distortion, GridMask, resize / crop / flip
# ================================================================================================
#
# Geometry: a resize by (sx, sy), a crop at pixel offset (x0, y0) and a horizontal flip change the
# pinhole model exactly (OpenCV pixel-centre convention, pixel centres at integers):
#   resize:  fx' = sx fx,  cx' = (cx + 0.5) sx - 0.5          (``scaled_intrinsics``)
#   crop:    cx' = cx - x0, cy' = cy - y0
#   flip:    u'  = W - 1 - u. Kept with fx > 0 by mirroring the camera's x axis instead:
#            cam2ego' = cam2ego @ diag(-1, 1, 1, 1) (a reflection; R^T is still its inverse),
#            cx' = W - 1 - cx.
# So ``project(K', cam2ego', p) = T(project(K, cam2ego, p))`` for every ego point p, where T is the
# same pixel map the image went through. The 3D boxes do not change.

IMAGE_AUG_NAMES = ("photometric", "photometric-mild", "gridmask", "resize-crop-flip")
"""Names ``--image-aug`` accepts; ``all`` = every one but ``photometric-mild`` (one photometric step at most)."""


@dataclass
class PhotometricConfig:
    """BEVFormer's ``PhotoMetricDistortionMultiViewImage`` (each step applied with probability 0.5).

    Brightness: add ``U(-brightness_delta, brightness_delta)`` grey levels; contrast: multiply by
    ``U(contrast_range)`` (before or after the HSV steps, chosen at random); saturation: multiply
    the HSV saturation by ``U(saturation_range)``; hue: shift by ``U(-hue_delta_deg, hue_delta_deg)``
    degrees; then swap the channels with probability ``channel_swap_prob``. Unlike mmdet the result
    is clipped to ``[0, 255]`` after every step (our images are 8-bit).
    """

    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta_deg: float = 18.0
    channel_swap_prob: float = 0.5

    @classmethod
    def mild(cls) -> "PhotometricConfig":
        """Half of BEVFormer's ranges and no channel swap (``--image-aug photometric-mild``): a
        colour shift small enough that the class colours stay what they are."""
        return cls(brightness_delta=16.0, contrast_range=(0.75, 1.25), saturation_range=(0.75, 1.25),
                   hue_delta_deg=9.0, channel_swap_prob=0.0)


@dataclass
class GridMaskConfig:
    """BEVFormer's GridMask (``use_h``, ``use_w``, ``ratio=0.5``, ``mode=1``, ``rotate=1``, ``prob=0.7``):
    with probability ``prob`` zero (the ImageNet mean after normalisation) square blocks of a
    grid of random period ``d`` in ``[2, min(H, W))`` pixels; kept stripes ``ratio * d`` wide."""

    prob: float = 0.7
    ratio: float = 0.5


@dataclass
class ResizeCropFlipConfig:
    """Resize each camera image to ``scale`` x the network input size (``U(scale_range)``),
    crop (or pad, for ``scale < 1``) a window of the input size at a uniform random offset, and
    flip it horizontally with probability ``flip_prob``. Intrinsics and camera->ego follow."""

    scale_range: tuple[float, float] = (0.9, 1.1)
    flip_prob: float = 0.5


@dataclass
class ImageAugConfig:
    """Which image augmentations run (``None`` = off). ``from_names("photometric,gridmask")``."""

    photometric: PhotometricConfig | None = None
    gridmask: GridMaskConfig | None = None
    resize_crop_flip: ResizeCropFlipConfig | None = None

    @classmethod
    def from_names(cls, names: str | list[str] | tuple[str, ...]) -> "ImageAugConfig | None":
        """Parse ``"photometric,gridmask,resize-crop-flip"`` (or ``"all"``; ``photometric-mild``
        instead of ``photometric`` for ``PhotometricConfig.mild``); ``""`` -> ``None``."""
        items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
        if items == ["all"]:
            items = [n for n in IMAGE_AUG_NAMES if n != "photometric-mild"]
        bad = [n for n in items if n not in IMAGE_AUG_NAMES]
        if bad:
            raise ValueError(f"unknown image augmentation(s) {bad}; known: {', '.join(IMAGE_AUG_NAMES)} (or 'all')")
        if "photometric" in items and "photometric-mild" in items:
            raise ValueError("choose one of 'photometric' and 'photometric-mild', not both")
        if not items:
            return None
        photometric = (PhotometricConfig() if "photometric" in items
                       else PhotometricConfig.mild() if "photometric-mild" in items else None)
        return cls(photometric=photometric,
                   gridmask=GridMaskConfig() if "gridmask" in items else None,
                   resize_crop_flip=ResizeCropFlipConfig() if "resize-crop-flip" in items else None)


@dataclass
class CameraAugParams:
    """The random draws of one camera image (all units pixels of the network input / grey levels).

    ``scale``: resize factor relative to the input size; ``offset``: crop window's top-left
    ``(x0, y0)`` in the resized image (negative = padding); ``flip``: mirror horizontally.
    ``photometric``: ``None`` or the draws (see ``photometric_distort``); ``gridmask``: ``None`` or
    ``(d, l, start_row, start_col)``.
    """

    scale: float = 1.0
    offset: tuple[int, int] = (0, 0)
    flip: bool = False
    photometric: dict | None = None
    gridmask: tuple[int, int, int, int] | None = None


def _resized_size(input_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    h, w = input_hw
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def sample_photometric(cfg: PhotometricConfig, rng: np.random.Generator) -> dict:
    """Draw one image's photometric distortion (mmdet's order of coin flips and values)."""
    d: dict = {}
    if rng.integers(2):
        d["brightness"] = float(rng.uniform(-cfg.brightness_delta, cfg.brightness_delta))
    d["contrast_first"] = bool(rng.integers(2))
    if rng.integers(2):
        d["contrast"] = float(rng.uniform(*cfg.contrast_range))
    if rng.integers(2):
        d["saturation"] = float(rng.uniform(*cfg.saturation_range))
    if rng.integers(2):
        d["hue"] = float(rng.uniform(-cfg.hue_delta_deg, cfg.hue_delta_deg))
    if rng.random() < cfg.channel_swap_prob:
        d["channels"] = [int(c) for c in rng.permutation(3)]
    return d


def photometric_distort(img: NDArray, d: dict) -> NDArray[np.float32]:
    """Apply the draws ``d`` to an ``(H, W, 3)`` RGB image (0..255); returns float32 in [0, 255]."""
    import cv2

    x = np.asarray(img, dtype=np.float32)
    if "brightness" in d:
        x = np.clip(x + np.float32(d["brightness"]), 0.0, 255.0)
    if "contrast" in d and d["contrast_first"]:
        x = np.clip(x * np.float32(d["contrast"]), 0.0, 255.0)
    if "saturation" in d or "hue" in d:
        hsv = cv2.cvtColor(x / 255.0, cv2.COLOR_RGB2HSV)  # float: H in [0, 360), S, V in [0, 1]
        if "saturation" in d:
            hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(d["saturation"]), 0.0, 1.0)
        if "hue" in d:
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(d["hue"]), 360.0)
        x = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0, 0.0, 255.0)
    if "contrast" in d and not d["contrast_first"]:
        x = np.clip(x * np.float32(d["contrast"]), 0.0, 255.0)
    if "channels" in d:
        x = x[..., d["channels"]]
    return np.ascontiguousarray(x, dtype=np.float32)


def gridmask(hw: tuple[int, int], params: tuple[int, int, int, int]) -> NDArray[np.bool_]:
    """``(H, W)`` mask, True where GridMask blanks the image: blocks of ``d - l`` pixels off the
    kept row and column stripes (``l`` wide, period ``d``, first stripe at ``start``)."""
    h, w = hw
    d, l, sr, sc = params
    keep_r = np.mod(np.arange(h) - sr, d) < l
    keep_c = np.mod(np.arange(w) - sc, d) < l
    return ~(keep_r[:, None] | keep_c[None, :])


def sample_camera_aug(cfg: ImageAugConfig, rng: np.random.Generator, input_hw: tuple[int, int],
                      geometry: bool = True) -> CameraAugParams:
    """Draw one camera image's augmentation. ``geometry=False`` skips resize/crop/flip draws
    (e.g. for the previous frame, which reuses the current frame's geometry per camera)."""
    p = CameraAugParams()
    h, w = input_hw
    rcf = cfg.resize_crop_flip
    if geometry and rcf is not None:
        p.scale = float(rng.uniform(*rcf.scale_range))
        rh, rw = _resized_size(input_hw, p.scale)
        x0 = int(rng.integers(min(0, rw - w), max(0, rw - w) + 1))
        y0 = int(rng.integers(min(0, rh - h), max(0, rh - h) + 1))
        p.offset = (x0, y0)
        p.flip = bool(rng.random() < rcf.flip_prob)
    if cfg.photometric is not None:
        p.photometric = sample_photometric(cfg.photometric, rng)
    if cfg.gridmask is not None and rng.random() < cfg.gridmask.prob:
        d = int(rng.integers(2, max(3, min(h, w))))
        l = min(max(int(d * cfg.gridmask.ratio + 0.5), 1), d - 1)
        p.gridmask = (d, l, int(rng.integers(d)), int(rng.integers(d)))
    return p


def resize_crop_flip(image: NDArray[np.uint8], k: NDArray[np.float64], cam2ego: NDArray[np.float64],
                     input_hw: tuple[int, int], p: CameraAugParams, fill: NDArray | None = None
                     ) -> tuple[NDArray[np.uint8], NDArray[np.float64], NDArray[np.float64]]:
    """Resize ``image`` (any size) to ``p.scale`` x ``input_hw``, crop/pad the ``input_hw``
    window at ``p.offset``, flip if ``p.flip``; return the image and the matching intrinsics
    (pixels of the output) and camera optical frame -> ego transform.

    With ``scale=1, offset=(0, 0), flip=False`` this is exactly ``preprocess.prepare_frame``'s
    per-camera resize (``INTER_AREA``) and intrinsics.
    """
    import cv2

    from ..data.rig import scaled_intrinsics

    h, w = input_hw
    ih, iw = image.shape[:2]
    rh, rw = _resized_size(input_hw, p.scale)
    if (ih, iw) == (rh, rw):
        resized = image
    else:
        interp = cv2.INTER_AREA if rw <= iw and rh <= ih else cv2.INTER_LINEAR
        resized = cv2.resize(image, (rw, rh), interpolation=interp)
    k2 = scaled_intrinsics(k, rw / iw, rh / ih)
    x0, y0 = p.offset
    if (x0, y0) == (0, 0) and (rh, rw) == (h, w):
        out = resized
    else:
        out = np.empty((h, w, 3), dtype=np.uint8)
        out[:] = np.zeros(3, np.uint8) if fill is None else np.asarray(fill, dtype=np.uint8)
        sy0, sx0 = max(0, y0), max(0, x0)
        sy1, sx1 = min(rh, y0 + h), min(rw, x0 + w)
        if sy1 > sy0 and sx1 > sx0:
            out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = resized[sy0:sy1, sx0:sx1]
        k2[0, 2] -= x0
        k2[1, 2] -= y0
    t2 = np.array(cam2ego, dtype=np.float64, copy=True)
    if p.flip:
        out = out[:, ::-1]
        k2[0, 2] = (w - 1) - k2[0, 2]
        k2[0, 1] = -k2[0, 1]  # skew (0 for our rigs) follows the mirrored x axis
        t2 = t2 @ np.diag([-1.0, 1.0, 1.0, 1.0])
    return np.ascontiguousarray(out), k2, t2


def augment_frame(frame, input_hw: tuple[int, int], params: list[CameraAugParams]):
    """``preprocess.prepare_frame`` with per-camera image augmentation: resize/crop/flip (with
    intrinsics and camera->ego updated), photometric distortion on the 8-bit RGB image, ImageNet
    normalisation, then GridMask (blanked pixels = 0, the mean). Returns a ``NetworkInput``."""
    from ..runtime.preprocess import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, NetworkInput

    h, w = input_hw
    n = len(frame.images)
    if len(params) != n:
        raise ValueError(f"{len(params)} camera augmentations for {n} cameras")
    batch = np.empty((n, h, w, 3), dtype=np.float32)
    ks = np.empty((n, 3, 3), dtype=np.float64)
    ts = np.empty((n, 4, 4), dtype=np.float64)
    fill = np.rint(IMAGENET_MEAN_RGB).astype(np.uint8)
    for i, (image, p) in enumerate(zip(frame.images, params)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"camera {i}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        out, ks[i], ts[i] = resize_crop_flip(image, frame.intrinsics[i], frame.cam2ego[i], input_hw, p, fill)
        batch[i] = photometric_distort(out, p.photometric) if p.photometric else out
        if p.gridmask is not None:
            batch[i][gridmask(input_hw, p.gridmask)] = IMAGENET_MEAN_RGB  # 0 after normalisation
    img = (batch - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    return NetworkInput(img=np.ascontiguousarray(img.transpose(0, 3, 1, 2)), intrinsics=ks.astype(np.float32),
                        cam2ego=ts.astype(np.float32))
