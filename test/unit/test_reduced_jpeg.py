"""JPEGs much larger than the network input are decoded at 1/2, 1/4 or 1/8 of their size by the
per-set pipeline (``CameraSetProcessor``, shared by node and replay), with the intrinsics scaled
to match: a point still projects onto the pixel it lights up, a wrong-size image is still reported
with the size actually sent, PNGs and raw images are untouched."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from qdbev_core.data.rig import rig_arrays, scaled_intrinsics
from qdbev_core.runtime.calibration import CameraCalibration, CameraRig
from qdbev_core.runtime.codecs import decode_compressed_image, encode_compressed_image, jpeg_reduction
from qdbev_core.runtime.processor import CameraSetProcessor, OutputLimits
from qdbev_core.types import CAMERA_NAMES

from processor_stubs import ListSink, RecordingEngine  # noqa: E402 (test/processor_stubs.py)

FULL_W, FULL_H = 1600, 900
NET_HW = (198, 352)  # the nano input


@pytest.mark.parametrize("image_hw,want", [((900, 1600), 4), ((450, 800), 2), ((198, 352), 1), ((1080, 1920), 4),
                                           ((1800, 3200), 8), ((397, 705), 2), ((393, 705), 1)])
def test_reduction_keeps_the_image_at_least_as_large_as_the_network_input(image_hw, want) -> None:
    f = jpeg_reduction(image_hw, NET_HW)
    assert f == want
    assert -(-image_hw[0] // f) >= NET_HW[0] and -(-image_hw[1] // f) >= NET_HW[1]


def _rig() -> CameraRig:
    ks, ts = rig_arrays(1.0)
    return CameraRig({n: CameraCalibration.create(n, ks[i], FULL_W, FULL_H, ts[i]) for i, n in enumerate(CAMERA_NAMES)})


def _point_image(u: float, v: float, w: int = FULL_W, h: int = FULL_H) -> np.ndarray:
    """Grey image with a white disc (radius 16 px) centred on pixel ``(u, v)`` (pixel-centre coordinates)."""
    img = np.full((h, w, 3), 60, np.uint8)
    cv2.circle(img, (int(round(u * 16)), int(round(v * 16))), 16 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return img


def _msg(img: np.ndarray, stamp_ns: int, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 10**9,
                                                                        nanosec=stamp_ns % 10**9)),
                           format=fmt, data=encode_compressed_image(img, fmt, 95))


def _centroid(img: np.ndarray) -> tuple[float, float]:
    g = img[..., 0].astype(np.float64) - 60.0
    g[g < 0] = 0
    ys, xs = np.mgrid[0: img.shape[0], 0: img.shape[1]]
    return float((g * xs).sum() / g.sum()), float((g * ys).sum() / g.sum())


def test_a_point_projects_onto_its_pixel_in_the_reduced_image() -> None:
    rig = _rig()
    k_full = rig.calibrations["CAM_FRONT"].k
    p_cam = np.array([1.3, -0.4, 12.0])  # metres, CAM_FRONT optical frame
    u, v = (k_full @ p_cam)[:2] / p_cam[2]
    img = _point_image(u, v)
    engine = RecordingEngine(input_hw=NET_HW)
    proc = CameraSetProcessor(engine, ListSink(), decode_workers=2)
    res = proc.process(rig, [_msg(img, 10**9 + i) for i in range(6)], OutputLimits(0.05, 300))
    assert res.skipped is None
    (frame,) = engine.frames
    assert frame.images[0].shape == (225, 400, 3)  # 1/4: still >= 198 x 352
    np.testing.assert_allclose(frame.intrinsics[0], scaled_intrinsics(k_full, 0.25))
    u4, v4 = (frame.intrinsics[0] @ p_cam)[:2] / p_cam[2]
    cu, cv = _centroid(frame.images[0])
    assert abs(cu - u4) < 0.25 and abs(cv - v4) < 0.25, ((cu, cv), (u4, v4))
    # the full-size decode, for comparison, puts the disc where the full intrinsics say
    full = decode_compressed_image(_msg(img, 0).data, "jpeg")
    fu, fv = _centroid(full)
    assert abs(fu - u) < 0.25 and abs(fv - v) < 0.25
    proc.close()


def test_off_png_and_small_images_decode_at_full_size() -> None:
    rig, img = _rig(), _point_image(800.0, 450.0)
    for reduced, fmt in ((False, "jpeg"), (True, "png")):
        engine = RecordingEngine(input_hw=NET_HW)
        CameraSetProcessor(engine, ListSink(), decode_workers=1, reduced_jpeg=reduced).process(
            rig, [_msg(img, 10**9 + i, fmt) for i in range(6)], OutputLimits(0.05, 300))
        (frame,) = engine.frames
        assert frame.images[0].shape == (FULL_H, FULL_W, 3), (reduced, fmt)
        np.testing.assert_array_equal(frame.intrinsics, rig.intrinsics)
    # a network input as large as the image: nothing to gain, full size
    engine = RecordingEngine(input_hw=(600, 1000))
    CameraSetProcessor(engine, ListSink(), decode_workers=1).process(
        rig, [_msg(img, 10**9 + i) for i in range(6)], OutputLimits(0.05, 300))
    assert engine.frames[0].images[0].shape == (FULL_H, FULL_W, 3)


def test_a_wrong_size_jpeg_is_reported_with_the_size_sent() -> None:
    rig, sink, engine = _rig(), ListSink(), RecordingEngine(input_hw=NET_HW)
    small = _point_image(400.0, 225.0, w=800, h=450)  # CameraInfo says 1600 x 900
    msgs = [_msg(_point_image(800.0, 450.0), 10**9 + i) for i in range(6)]
    msgs[2] = _msg(small, 10**9 + 2)
    res = CameraSetProcessor(engine, sink, decode_workers=2).process(rig, msgs, OutputLimits(0.05, 300))
    assert res.skipped == "image_size" and not engine.frames
    (p,) = sink.problems
    assert p.source == CAMERA_NAMES[2] and "800x450 but its CameraInfo says 1600x900" in p.message
