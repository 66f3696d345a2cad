"""qdbev_core.runtime (codecs, errors, calibration, transforms): decoding, validation errors, rig assembly, calibration YAML, TF tree."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.data.rig import NUSCENES_RIG, rig_arrays
from qdbev_core.runtime.calibration import (
    CameraCalibration,
    CameraRig,
    load_extrinsics_yaml,
    validate_intrinsics,
)
from qdbev_core.runtime.codecs import (
    decode_compressed_image,
    decode_raw_image,
    encode_compressed_image,
    encode_raw_image,
)
from qdbev_core.runtime.errors import (
    FrameAssemblyError,
    ImageDecodeError,
    ImageSizeMismatchError,
    InvalidExtrinsicsError,
    InvalidIntrinsicsError,
    InvalidPoseError,
    MissingCameraError,
    MissingExtrinsicsError,
    UnsupportedEncodingError,
)
from qdbev_core.runtime.transforms import PoseHistory, StaticTransformTree, validate_pose
from qdbev_core.geometry import invert_transform, make_transform
from qdbev_core.types import CAMERA_NAMES

REPO = Path(__file__).resolve().parents[2]
H, W = 45, 80


def _rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _rig(scale: float = 0.05) -> CameraRig:
    ks, ts = rig_arrays(scale)
    cals = {n: CameraCalibration.create(n, ks[i], W, H, ts[i]) for i, n in enumerate(CAMERA_NAMES)}
    return CameraRig(cals)


# ---- decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_raw_roundtrip(encoding: str) -> None:
    img = _rgb()
    data = encode_raw_image(img, encoding)
    out = decode_raw_image(data, encoding, W, H, 3 * W, camera="CAM_FRONT")
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


def test_bgr_channel_order() -> None:
    bgr = bytes([10, 20, 30]) * (W * H)  # B=10 G=20 R=30
    out = decode_raw_image(bgr, "bgr8", W, H)
    assert out[0, 0].tolist() == [30, 20, 10]


def test_raw_with_row_padding_and_buffer_types() -> None:
    import array

    img = _rgb()
    step = 3 * W + 16
    padded = np.zeros((H, step), np.uint8)
    padded[:, : 3 * W] = img.reshape(H, -1)
    for data in (padded.tobytes(), array.array("B", padded.tobytes()), memoryview(padded.tobytes()), padded):
        np.testing.assert_array_equal(decode_raw_image(data, "rgb8", W, H, step), img)
    # the last row's padding may be missing
    np.testing.assert_array_equal(decode_raw_image(padded.tobytes()[:-16], "rgb8", W, H, step), img)


@pytest.mark.parametrize("encoding", ["mono8", "rgba8", "16UC1", "yuv422", ""])
def test_unsupported_encoding_names_camera_and_fix(encoding: str) -> None:
    with pytest.raises(UnsupportedEncodingError) as ei:
        decode_raw_image(b"\0" * (W * H * 4), encoding, W, H, camera="CAM_BACK")
    e = ei.value
    assert e.camera == "CAM_BACK" and e.kind == "encoding"
    assert repr(encoding) in str(e) and "rgb8" in e.hint and "compressed" in e.hint


def test_truncated_raw_and_bad_step() -> None:
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_raw_image(b"\0" * 100, "rgb8", W, H, camera="CAM_FRONT")
    with pytest.raises(ImageDecodeError, match="step"):
        decode_raw_image(b"\0" * (W * H * 3), "rgb8", W, H, step=W, camera="CAM_FRONT")


def test_jpeg_and_png_roundtrip() -> None:
    img = _rgb()
    np.testing.assert_array_equal(decode_compressed_image(encode_compressed_image(img, "png"), "png"), img)
    smooth = np.zeros((H, W, 3), np.uint8)
    smooth[..., 0] = 200  # red: JPEG keeps it near 200 and in the R channel
    for fmt in ("jpeg", "rgb8; jpeg compressed bgr8", ""):  # "" -> magic bytes
        out = decode_compressed_image(encode_compressed_image(smooth, "jpeg", 95), fmt, camera="CAM_FRONT")
        assert out.shape == (H, W, 3)
        assert abs(int(out[..., 0].mean()) - 200) < 4 and out[..., 2].mean() < 4


def test_compressed_errors() -> None:
    with pytest.raises(UnsupportedEncodingError) as ei:
        decode_compressed_image(b"\0\0\0", "h264", camera="CAM_BACK_LEFT")
    assert ei.value.camera == "CAM_BACK_LEFT" and "JPEG or PNG" in ei.value.hint
    with pytest.raises(UnsupportedEncodingError):
        decode_compressed_image(b"xx", "16UC1; compressedDepth png")
    with pytest.raises(ImageDecodeError, match="do not decode"):
        decode_compressed_image(encode_compressed_image(_rgb(), "jpeg")[:40], "jpeg")


# ---- validation ------------------------------------------------------------------------------------


def test_validate_intrinsics() -> None:
    k = NUSCENES_RIG["CAM_FRONT"].intrinsics()
    np.testing.assert_array_equal(validate_intrinsics("CAM_FRONT", k.reshape(-1).tolist(), 1600, 900), k)
    bad = {
        "NaN": np.where(np.eye(3, dtype=bool), np.nan, k),
        "focal": np.zeros((3, 3)),
        "last row": k * 2.0,
    }
    for what, kk in bad.items():
        with pytest.raises(InvalidIntrinsicsError, match=what) as ei:
            validate_intrinsics("CAM_FRONT_LEFT", kk, 1600, 900)
        assert ei.value.camera == "CAM_FRONT_LEFT" and ei.value.kind == "intrinsics"
        assert "CameraInfo" in ei.value.hint
    with pytest.raises(InvalidIntrinsicsError, match="0x900"):
        validate_intrinsics("CAM_FRONT", k, 0, 900)


def test_validate_extrinsics_and_pose() -> None:
    t = NUSCENES_RIG["CAM_BACK"].cam2ego()
    with pytest.raises(MissingExtrinsicsError) as ei:
        CameraCalibration.create("CAM_BACK", NUSCENES_RIG["CAM_BACK"].intrinsics(), 1600, 900, None)
    assert ei.value.kind == "extrinsics_missing" and "/tf_static" in ei.value.hint
    nan_t = t.copy()
    nan_t[0, 3] = np.nan
    with pytest.raises(InvalidExtrinsicsError, match="NaN"):
        CameraCalibration.create("CAM_BACK", NUSCENES_RIG["CAM_BACK"].intrinsics(), 1600, 900, nan_t)
    scaled = t.copy()
    scaled[:3, :3] *= 2
    with pytest.raises(InvalidExtrinsicsError, match="rotation"):
        CameraCalibration.create("CAM_BACK", NUSCENES_RIG["CAM_BACK"].intrinsics(), 1600, 900, scaled)
    assert validate_pose(None) is None
    np.testing.assert_array_equal(validate_pose(t), t)
    with pytest.raises(InvalidPoseError) as ei:
        validate_pose(nan_t)
    assert ei.value.kind == "ego_pose" and "temporal" in ei.value.hint


# ---- assembly ---------------------------------------------------------------------------------------


def test_assemble_frame() -> None:
    rig = _rig()
    imgs = {n: _rgb(seed=i) for i, n in enumerate(CAMERA_NAMES)}
    stamps = {n: 100.0 + 0.01 * i for i, n in enumerate(CAMERA_NAMES)}
    pose = make_transform((1, 0, 0, 0), (5.0, -2.0, 0.0))
    frame = rig.assemble(imgs, stamps, ego2global=pose, scene="s1")
    assert frame.stamp == 100.0  # the CAM_FRONT stamp
    assert [id(a) for a in frame.images] == [id(imgs[n]) for n in CAMERA_NAMES]  # no copies, model order
    ks, ts = rig_arrays(0.05)
    np.testing.assert_array_equal(frame.intrinsics, ks)
    np.testing.assert_array_equal(frame.cam2ego, ts)
    np.testing.assert_array_equal(frame.ego2global, pose)
    assert frame.scene == "s1"


def test_assemble_errors() -> None:
    rig = _rig()
    imgs = {n: _rgb() for n in CAMERA_NAMES}
    stamps = {n: 1.0 for n in CAMERA_NAMES}
    wrong = dict(imgs, CAM_BACK=_rgb(H + 1, W))
    with pytest.raises(ImageSizeMismatchError) as ei:
        rig.assemble(wrong, stamps)
    assert ei.value.camera == "CAM_BACK" and f"{W}x{H + 1}" in str(ei.value) and f"{W}x{H}" in str(ei.value)
    gray = dict(imgs, CAM_FRONT=np.zeros((H, W), np.uint8))
    with pytest.raises(ImageDecodeError):
        rig.assemble(gray, stamps)
    missing = {n: v for n, v in imgs.items() if n != "CAM_FRONT_RIGHT"}
    with pytest.raises(MissingCameraError, match="CAM_FRONT_RIGHT"):
        rig.assemble(missing, stamps)
    bad_pose = np.full((4, 4), np.inf)
    with pytest.raises(InvalidPoseError):
        rig.assemble(imgs, stamps, ego2global=bad_pose)
    with pytest.raises(FrameAssemblyError, match="not finite"):
        rig.assemble(imgs, dict(stamps, CAM_FRONT=math.nan))
    # allow_missing: black stand-in, stamp from the first present camera
    no_front = {n: v for n, v in imgs.items() if n != "CAM_FRONT"}
    frame = rig.assemble(no_front, dict(stamps, CAM_FRONT_RIGHT=2.5), allow_missing=True)
    assert frame.images[0].shape == (H, W, 3) and not frame.images[0].any() and frame.stamp == 2.5
    with pytest.raises(MissingCameraError):
        rig.assemble({}, stamps, allow_missing=True)
    with pytest.raises(MissingCameraError):
        CameraRig({n: rig.calibrations[n] for n in CAMERA_NAMES[:5]})


def test_frame_runs_through_prepare_frame() -> None:
    from qdbev_core.runtime.preprocess import prepare_frame

    rig = _rig()
    frame = rig.assemble({n: _rgb() for n in CAMERA_NAMES}, {n: 0.0 for n in CAMERA_NAMES})
    net = prepare_frame(frame, (32, 64))
    assert net.img.shape == (6, 3, 32, 64) and np.all(np.isfinite(net.intrinsics))


# ---- calibration YAML -------------------------------------------------------------------------------


def test_calibration_yaml_matches_rig() -> None:
    ext = load_extrinsics_yaml(REPO / "config" / "calibration_nuscenes.yaml", target_frame="base_link")
    assert list(ext) == list(CAMERA_NAMES)
    for n in CAMERA_NAMES:
        np.testing.assert_allclose(ext[n], NUSCENES_RIG[n].cam2ego(), rtol=0, atol=1e-12)


def test_calibration_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_extrinsics_yaml(tmp_path / "nope.yaml")
    f = tmp_path / "c.yaml"
    f.write_text("frame_id: base_link\ncameras:\n  CAM_FRONT: {translation: [0, 0, 0], rotation: [1, 0, 0, 0]}\n")
    with pytest.raises(MissingExtrinsicsError) as ei:
        load_extrinsics_yaml(f)
    assert ei.value.camera == "CAM_FRONT_RIGHT" and str(f) in str(ei.value)
    f.write_text("frame_id: base_link\ncameras:\n  CAM_FRONT: {translation: [0, 0, 0], rotation: [2, 0, 0, 0]}\n")
    with pytest.raises(InvalidExtrinsicsError, match="unit quaternion"):
        load_extrinsics_yaml(f, camera_names=["CAM_FRONT"])
    with pytest.raises(ValueError, match="'odom'"):
        f.write_text("frame_id: odom\ncameras: {}\n")
        load_extrinsics_yaml(f, target_frame="base_link")


# ---- transform tree / pose history --------------------------------------------------------------------


def test_static_transform_tree_chains() -> None:
    tree = StaticTransformTree()
    mount = make_transform((0.9238795, 0, 0, 0.3826834), (1.0, 0.0, 1.5))  # base_link <- mount
    optical = NUSCENES_RIG["CAM_FRONT"].cam2ego()  # mount <- optical (any rigid transform)
    tree.set("base_link", "cam_mount", mount)
    tree.set("/cam_mount", "cam_front_optical", optical)
    tree.set("base_link", "lidar", make_transform((1, 0, 0, 0), (0.5, 0, 2)))
    np.testing.assert_allclose(tree.lookup("base_link", "cam_front_optical"), mount @ optical, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam_front_optical", "base_link"), invert_transform(mount @ optical),
                               atol=1e-12)
    lidar_t_cam = invert_transform(tree.lookup("base_link", "lidar")) @ mount @ optical
    np.testing.assert_allclose(tree.lookup("lidar", "cam_front_optical"), lidar_t_cam, atol=1e-12)
    assert tree.lookup("base_link", "unknown") is None
    np.testing.assert_array_equal(tree.lookup("lidar", "lidar"), np.eye(4))


def test_pose_history() -> None:
    h = PoseHistory(maxlen=3)
    assert h.lookup(1.0, 0.1) is None
    for t in (1.0, 1.5, 2.0, 2.5):
        h.add(t, np.eye(4) * t)
    assert len(h) == 3  # oldest dropped
    assert h.lookup(1.0, 0.1) is None
    assert h.lookup(1.9, 0.15)[0, 0] == 2.0
    assert h.lookup(2.26, 0.3)[0, 0] == 2.5
    assert h.lookup(3.0, 0.1) is None
    h.add(0.2, np.eye(4))  # before the whole history (bag loop): starts over
    assert len(h) == 1 and h.lookup(0.2, 0.0) is not None


def test_calibration_inputs_collect_and_rebuild() -> None:
    """``CalibrationInputs`` (node startup and bag replay): a rig once every camera has CameraInfo and
    extrinsics; an invalid CameraInfo keeps the last valid one; a changed one asks for a rebuild."""
    from qdbev_core.runtime.calibration import CalibrationInputs

    ks, ts = rig_arrays(0.05)
    cal = CalibrationInputs(CAMERA_NAMES, "base_link")
    for i, n in enumerate(CAMERA_NAMES):
        assert cal.set_camera_info(n, ks[i], W, H, n) is False  # no rig yet: nothing to rebuild
    with pytest.raises(MissingExtrinsicsError) as err:
        cal.build()
    assert err.value.camera == CAMERA_NAMES[0] and cal.rig is None
    cal.extrinsics.update({n: ts[i] for i, n in enumerate(CAMERA_NAMES)})
    rig = cal.build()
    assert cal.rig is rig and rig.calibrations["CAM_BACK"].width == W
    assert cal.set_camera_info("CAM_BACK", ks[3], W, H, "CAM_BACK") is False  # the same calibration again
    with pytest.raises(InvalidIntrinsicsError):
        cal.set_camera_info("CAM_BACK", np.zeros((3, 3)), W, H, "CAM_BACK")
    assert np.array_equal(cal.intrinsics["CAM_BACK"][0], ks[3])  # the last valid one stays
    assert cal.set_camera_info("CAM_BACK", ks[3] * [[2], [2], [1]], 2 * W, 2 * H, "CAM_BACK") is True
    assert cal.build().calibrations["CAM_BACK"].width == 2 * W
