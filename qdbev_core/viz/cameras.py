"""Six camera images in a 3x2 mosaic with 3D boxes projected as wireframes."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from ..classes import CLASS_NAMES
from ..geometry import box_corners, project_points
from ..types import CAMERA_NAMES, Frame
from .colors import CLASS_COLORS_RGB

# Mosaic layout like the nuScenes visualizations: front row then back row.
_LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def draw_boxes(
    image: NDArray[np.uint8],
    boxes: NDArray[np.float64],
    labels: NDArray[np.int64],
    intrinsics: NDArray[np.float64],
    cam2ego: NDArray[np.float64],
    color: tuple[int, int, int] | None = None,
    thickness: int = 1,
) -> NDArray[np.uint8]:
    """Draw ego-frame ``boxes`` (N, >=7) into one camera image (RGB, copied).

    Boxes with any corner behind the camera (depth < 0.1 m) are skipped rather than drawn wrong.
    ``color=None`` uses the class colour; the front face gets a cross so heading is visible.
    """
    out = image.copy()
    if len(boxes) == 0:
        return out
    corners = box_corners(boxes)
    uv, depth = project_points(corners, intrinsics, cam2ego)
    h, w = out.shape[:2]
    for i in range(len(boxes)):
        if np.any(depth[i] < 0.1):
            continue
        pts = uv[i]
        if pts[:, 0].max() < 0 or pts[:, 0].min() >= w or pts[:, 1].max() < 0 or pts[:, 1].min() >= h:
            continue
        c = color or CLASS_COLORS_RGB[CLASS_NAMES[int(labels[i])]]
        p = np.round(pts).astype(np.int32)
        for a, b in _EDGES:
            cv2.line(out, tuple(p[a]), tuple(p[b]), c, thickness, cv2.LINE_AA)
        cv2.line(out, tuple(p[0]), tuple(p[5]), c, thickness, cv2.LINE_AA)
        cv2.line(out, tuple(p[1]), tuple(p[4]), c, thickness, cv2.LINE_AA)
    return out


def render_camera_mosaic(
    frame: Frame,
    boxes: NDArray[np.float64] | None = None,
    labels: NDArray[np.int64] | None = None,
    gt_boxes: NDArray[np.float64] | None = None,
    tile_width: int = 480,
    title: str | None = None,
) -> NDArray[np.uint8]:
    """A 3x2 RGB mosaic of the frame's cameras, predictions in class colours, GT in white."""
    index = {name: i for i, name in enumerate(CAMERA_NAMES)}
    rows = []
    for row in _LAYOUT:
        tiles = []
        for name in row:
            i = index[name]
            img = frame.images[i]
            if gt_boxes is not None and len(gt_boxes):
                img = draw_boxes(img, gt_boxes, np.zeros(len(gt_boxes), dtype=np.int64), frame.intrinsics[i],
                                 frame.cam2ego[i], color=(255, 255, 255))
            if boxes is not None and labels is not None:
                img = draw_boxes(img, boxes, labels, frame.intrinsics[i], frame.cam2ego[i], thickness=2)
            scale = tile_width / img.shape[1]
            tile = cv2.resize(img, (tile_width, int(round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
            cv2.putText(tile, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        hmin = min(t.shape[0] for t in tiles)
        rows.append(np.concatenate([t[:hmin] for t in tiles], axis=1))
    mosaic = np.concatenate(rows, axis=0)
    if title:
        bar = np.zeros((24, mosaic.shape[1], 3), dtype=np.uint8)
        cv2.putText(bar, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        mosaic = np.concatenate([bar, mosaic], axis=0)
    return mosaic
