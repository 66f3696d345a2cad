"""Frame -> network input tensors: resize, normalize, and rescale the intrinsics to match.

One function serves training, offline prediction, the engines and the ROS node, so every path
feeds the model identically. Work is vectorized: one ``cv2.resize`` per camera, then a single
NumPy normalization over the stacked batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ..data.rig import scaled_intrinsics
from ..types import Frame

IMAGENET_MEAN_RGB = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD_RGB = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass
class NetworkInput:
    """Arrays ready for the model (batch dimension of 1 not yet added).

    Attributes:
        img: ``(6, 3, H, W)`` float32, ImageNet-normalized RGB at the network input size.
        intrinsics: ``(6, 3, 3)`` float32 pinhole matrices in pixels of the *resized* image.
        cam2ego: ``(6, 4, 4)`` float32 camera optical frame -> ego transforms (metres).
    """

    img: NDArray[np.float32]
    intrinsics: NDArray[np.float32]
    cam2ego: NDArray[np.float32]


def prepare_frame(frame: Frame, input_hw: tuple[int, int]) -> NetworkInput:
    """Resize every camera image of ``frame`` to ``input_hw = (H, W)`` and normalize.

    Each camera's intrinsics are scaled by its own resize factors, so images of any size (and
    of different sizes per camera) are accepted. Raises ``ValueError`` naming the camera when an
    image is not ``(H, W, 3)`` uint8 or its calibration is not finite.
    """
    h, w = input_hw
    n = len(frame.images)
    if n != frame.intrinsics.shape[0] or n != frame.cam2ego.shape[0]:
        raise ValueError(
            f"frame has {n} images but {frame.intrinsics.shape[0]} intrinsics and "
            f"{frame.cam2ego.shape[0]} extrinsics; every camera needs all three"
        )
    batch = np.empty((n, h, w, 3), dtype=np.uint8)
    ks = np.empty((n, 3, 3), dtype=np.float64)
    for i, image in enumerate(frame.images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"camera {i}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        if not (np.all(np.isfinite(frame.intrinsics[i])) and np.all(np.isfinite(frame.cam2ego[i]))):
            raise ValueError(f"camera {i}: calibration contains NaN/Inf; check its CameraInfo / extrinsics")
        ih, iw = image.shape[:2]
        if (ih, iw) == (h, w):
            batch[i] = image
        else:  # straight into the batch: no temporary per camera
            cv2.resize(image, (w, h), dst=batch[i], interpolation=cv2.INTER_AREA)
        ks[i] = scaled_intrinsics(frame.intrinsics[i], w / iw, h / ih)
    return NetworkInput(
        img=normalize_nchw(batch),
        intrinsics=ks.astype(np.float32),
        cam2ego=frame.cam2ego.astype(np.float32),
    )


def normalize_nchw(batch: NDArray[np.uint8]) -> NDArray[np.float32]:
    """``(N, H, W, 3)`` uint8 RGB -> contiguous ``(N, 3, H, W)`` float32, ``(x - mean) / std``.

    The same float32 operations, element for element, as
    ``np.ascontiguousarray(((batch.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2))``,
    written into one output array instead of three full-size temporaries.
    """
    n, h, w, _ = batch.shape
    out = np.empty((n, 3, h, w), dtype=np.float32)
    np.subtract(batch.transpose(0, 3, 1, 2), IMAGENET_MEAN_RGB[:, None, None], out=out, dtype=np.float32)
    np.divide(out, IMAGENET_STD_RGB[:, None, None], out=out)
    return out


def ego_motion(prev_ego2global: NDArray[np.float64], cur_ego2global: NDArray[np.float64]) -> NDArray[np.float64]:
    """Transform mapping points in the previous ego frame into the current ego frame (4x4)."""
    from ..geometry import invert_transform

    return invert_transform(cur_ego2global) @ prev_ego2global
