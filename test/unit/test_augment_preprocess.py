"""BEV augmentation keeps camera geometry exact; preprocessing rescales intrinsics correctly."""

from __future__ import annotations

import numpy as np
import pytest

from qdbev_core.data.rig import rig_arrays
from qdbev_core.geometry import box_corners, project_points
from qdbev_core.runtime.preprocess import prepare_frame
from qdbev_core.train.augment import apply_bev_transform, bev_transform
from qdbev_core.types import Frame


@pytest.mark.parametrize("rot,flip", [(0.0, False), (0.4, False), (0.4, True), (-1.2, True)])
def test_bev_augmentation_preserves_projection(rot: float, flip: bool) -> None:
    k, t = rig_arrays(0.25)
    boxes = np.array([[12.0, 3.0, 0.8, 4.5, 1.9, 1.6, 0.7, 2.0, 1.0], [-8.0, -2.0, 0.9, 0.7, 0.6, 1.8, -2.0, 0.0, 1.3]])
    aug = bev_transform(rot, flip)
    boxes2, t2 = apply_bev_transform(aug, boxes, t)
    for cam in range(6):
        uv1, d1 = project_points(box_corners(boxes), k[cam], t[cam])
        uv2, d2 = project_points(box_corners(boxes2), k[cam], t2[cam])
        # same set of corners (a mirror permutes them), same pixels
        for i in range(len(boxes)):
            order1 = np.lexsort(uv1[i].T)
            order2 = np.lexsort(uv2[i].T)
            np.testing.assert_allclose(uv1[i][order1], uv2[i][order2], atol=1e-6)
            np.testing.assert_allclose(np.sort(d1[i]), np.sort(d2[i]), atol=1e-9)
    # heading and velocity follow the transform
    for i in range(len(boxes)):
        fwd = aug[:3, :3] @ np.array([np.cos(boxes[i, 6]), np.sin(boxes[i, 6]), 0.0])
        np.testing.assert_allclose(fwd[:2], [np.cos(boxes2[i, 6]), np.sin(boxes2[i, 6])], atol=1e-9)
        v = aug[:3, :3] @ np.array([boxes[i, 7], boxes[i, 8], 0.0])
        np.testing.assert_allclose(v[:2], boxes2[i, 7:9], atol=1e-9)


def test_prepare_frame_rescales_intrinsics_per_camera() -> None:
    k, t = rig_arrays(0.25)  # 400x225 images
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (225, 400, 3), dtype=np.uint8) for _ in range(6)]
    images[3] = rng.integers(0, 255, (450, 800, 3), dtype=np.uint8)  # one camera at another size
    k[3] = rig_arrays(0.5)[0][3]
    frame = Frame(images=images, intrinsics=k, cam2ego=t, stamp=0.0)
    net = prepare_frame(frame, (128, 352))
    assert net.img.shape == (6, 3, 128, 352) and net.img.dtype == np.float32
    # a point straight ahead of each camera lands at the same relative pixel position
    point = np.array([[0.0, 0.0, 20.0]])
    for cam in range(6):
        p_ego = (t[cam][:3, :3] @ point.T).T + t[cam][:3, 3]
        uv_src, _ = project_points(p_ego, frame.intrinsics[cam], t[cam])
        uv_net, _ = project_points(p_ego, net.intrinsics[cam].astype(np.float64), t[cam])
        h, w = images[cam].shape[:2]
        np.testing.assert_allclose((uv_src[0] + 0.5) / [w, h], (uv_net[0] + 0.5) / [352, 128], atol=1e-6)


def test_prepare_frame_rejects_bad_input_with_camera_named() -> None:
    k, t = rig_arrays(0.25)
    images = [np.zeros((225, 400, 3), np.uint8) for _ in range(6)]
    k_bad = k.copy()
    k_bad[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="camera 2: calibration contains NaN"):
        prepare_frame(Frame(images=images, intrinsics=k_bad, cam2ego=t, stamp=0.0), (128, 352))
    images[4] = np.zeros((225, 400), np.uint8)
    with pytest.raises(ValueError, match="camera 4: expected an"):
        prepare_frame(Frame(images=images, intrinsics=k, cam2ego=t, stamp=0.0), (128, 352))
    with pytest.raises(ValueError, match="5 images but 6"):
        prepare_frame(Frame(images=images[:5], intrinsics=k, cam2ego=t, stamp=0.0), (128, 352))
