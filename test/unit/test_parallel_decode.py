"""Issue 20 item 4: the six images of a set are decoded in parallel, with fewer copies, and the
result is the same, byte for byte.

``CameraSetProcessor.decode`` runs ``decode_image_msg`` on a small thread pool: the arrays must be
exactly those of a sequential decode (raw rgb8 / bgr8 / padded rows, JPEG, PNG with grey and
alpha), and a bad image must still raise the error of the first bad camera in camera order. The
copies removed on the way (an unpadded ``rgb8`` image as a read-only view of its message, the
in-place BGR -> RGB of a compressed image, the resize straight into the batch and the one-pass
normalization of ``prepare_frame``) must not change a value either.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from qdbev_core.data.rig import rig_arrays, scaled_intrinsics
from qdbev_core.runtime import processor as processor_mod
from qdbev_core.runtime.calibration import CameraCalibration, CameraRig
from qdbev_core.runtime.codecs import decode_image_msg, decode_raw_image, encode_compressed_image, encode_raw_image
from qdbev_core.runtime.errors import FrameAssemblyError, ImageDecodeError, UnsupportedEncodingError
from qdbev_core.runtime.preprocess import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, prepare_frame
from qdbev_core.runtime.processor import CameraSetProcessor, OutputLimits
from qdbev_core.types import CAMERA_NAMES

from processor_stubs import ListSink, RecordingEngine  # noqa: E402 (test/processor_stubs.py)

H, W = 45, 80


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _header(t: float) -> SimpleNamespace:
    ns = round(t * 1e9)
    return SimpleNamespace(stamp=SimpleNamespace(sec=ns // 10**9, nanosec=ns % 10**9))


def _raw(img: np.ndarray, encoding: str = "rgb8", pad: int = 0, t: float = 1.0, data_type=bytes) -> SimpleNamespace:
    h, w = img.shape[:2]
    rows = np.frombuffer(encode_raw_image(img, encoding), np.uint8).reshape(h, 3 * w)
    data = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1).tobytes()
    if data_type is bytearray:
        data = bytearray(data)
    return SimpleNamespace(header=_header(t), encoding=encoding, width=w, height=h, step=3 * w + pad,
                           is_bigendian=0, data=data)


def _compressed(data: bytes, fmt: str, t: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(header=_header(t), format=fmt, data=data)


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _mixed_set() -> list[SimpleNamespace]:
    """One message per camera, every path of the decoder: rgb8, bgr8, padded rgb8 (bytearray),
    JPEG, grey PNG, PNG with alpha."""
    gray = np.random.default_rng(4).integers(0, 256, (H, W), dtype=np.uint8)
    bgra = np.random.default_rng(5).integers(0, 256, (H, W, 4), dtype=np.uint8)
    return [
        _raw(_rgb(0)),
        _raw(_rgb(1), "bgr8"),
        _raw(_rgb(2), pad=5, data_type=bytearray),
        _compressed(encode_compressed_image(_rgb(3), "jpeg", 90), "jpeg"),
        _compressed(_png(gray), "png"),
        _compressed(_png(bgra), ""),
    ]


def _sequential(msgs) -> dict[str, np.ndarray]:
    """The reference: ``decode_image_msg`` (copying) one camera after the other."""
    return {cam: decode_image_msg(m, cam) for cam, m in zip(CAMERA_NAMES, msgs) if m is not None}


def _assert_identical(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for cam in want:
        assert got[cam].dtype == np.uint8 and got[cam].shape == want[cam].shape, cam
        assert got[cam].tobytes() == want[cam].tobytes(), cam


def _rig() -> CameraRig:
    ks, ts = rig_arrays(0.05)
    return CameraRig({n: CameraCalibration.create(n, ks[i], W, H, ts[i]) for i, n in enumerate(CAMERA_NAMES)})


# ---- parallel decode -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 6])
def test_parallel_decode_gives_the_bytes_of_a_sequential_decode(workers: int) -> None:
    msgs = _mixed_set()
    proc = CameraSetProcessor(RecordingEngine(prepare_hw=(32, 48)), ListSink(), decode_workers=workers)
    try:
        _assert_identical(proc.decode(msgs), _sequential(msgs))
        missing = [msgs[0], None, *msgs[2:5], None]  # a degraded set: absent cameras stay absent
        _assert_identical(proc.decode(missing), _sequential(missing))
    finally:
        proc.close()


def test_parallel_and_sequential_processors_hand_the_engine_the_same_frame_and_input() -> None:
    runs = []
    for workers in (1, 6):
        engine = RecordingEngine(prepare_hw=(32, 48))
        proc = CameraSetProcessor(engine, ListSink(), decode_workers=workers)
        out = proc.process(_rig(), _mixed_set(), OutputLimits(0.05, 300))
        proc.close()
        assert out.detections is not None
        runs.append(engine)
    seq, par = runs
    for a, b in zip(seq.frames[0].images, par.frames[0].images):
        assert a.tobytes() == b.tobytes()
    assert seq.inputs[0].img.tobytes() == par.inputs[0].img.tobytes()


def test_decoding_really_runs_on_the_pool(monkeypatch) -> None:
    threads: list[str] = []

    def spy(msg, camera="camera", copy=True, reduce=1):
        threads.append(threading.current_thread().name)
        return decode_image_msg(msg, camera, copy, reduce)

    monkeypatch.setattr(processor_mod, "decode_image_msg", spy)
    proc = CameraSetProcessor(RecordingEngine(prepare_hw=(32, 48)), ListSink(), decode_workers=3)
    proc.decode(_mixed_set())
    proc.close()
    assert len(threads) == 6 and all(t.startswith("qdbev_decode") for t in threads), threads
    assert not [t for t in threading.enumerate() if t.name.startswith("qdbev_decode")], "close() left threads"


def test_a_bad_image_names_the_first_bad_camera_as_a_sequential_decode_does() -> None:
    msgs = _mixed_set()
    msgs[2] = _compressed(encode_compressed_image(_rgb(9), "jpeg")[:40], "jpeg")  # truncated
    msgs[4] = _raw(_rgb(8))
    msgs[4].encoding = "mono16"  # also bad, but later in camera order
    with pytest.raises(FrameAssemblyError) as seq:
        _sequential(msgs)
    proc = CameraSetProcessor(RecordingEngine(prepare_hw=(32, 48)), ListSink(), decode_workers=6)
    try:
        with pytest.raises(ImageDecodeError) as par:
            proc.decode(msgs)
        assert par.value.camera == seq.value.camera == CAMERA_NAMES[2]
        assert str(par.value) == str(seq.value)
        msgs[2] = _mixed_set()[2]  # now only CAM_BACK_LEFT is bad
        with pytest.raises(UnsupportedEncodingError) as par:
            proc.decode(msgs)
        assert par.value.camera == CAMERA_NAMES[4]
        sink = ListSink()
        proc.sink = sink
        assert proc.process(_rig(), msgs, OutputLimits(0.05, 300)).skipped == "encoding"
        assert [(p.source, p.kind) for p in sink.problems] == [(CAMERA_NAMES[4], "encoding")]
    finally:
        proc.close()


# ---- fewer copies, same values -------------------------------------------------------------------


def test_unpadded_rgb8_is_a_read_only_view_of_the_message_only_when_asked() -> None:
    img = _rgb(0)
    msg = _raw(img, data_type=bytearray)
    view = decode_image_msg(msg, "CAM_FRONT", copy=False)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8)) and not view.flags.writeable
    assert view.tobytes() == img.tobytes()
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1  # the message can never be changed through the frame
    copied = decode_image_msg(msg, "CAM_FRONT")  # the default keeps the old contract: a new array
    assert copied.flags.writeable and not np.shares_memory(copied, np.frombuffer(msg.data, np.uint8))
    padded = _raw(img, pad=3, data_type=bytearray)  # rows not contiguous: copied, not a strided view
    out = decode_raw_image(padded.data, "rgb8", W, H, padded.step, copy=False)
    assert out.flags.c_contiguous and not np.shares_memory(out, np.frombuffer(padded.data, np.uint8))
    assert out.tobytes() == img.tobytes()


def test_compressed_decode_equals_imdecode_then_a_bgr_to_rgb_copy() -> None:
    for data in (encode_compressed_image(_rgb(3, 90, 160), "jpeg", 85), _png(_rgb(4))):
        ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert decode_image_msg(_compressed(data, ""), "CAM_FRONT").tobytes() == ref.tobytes()


def _prepare_frame_before(frame, input_hw):
    """``prepare_frame`` as it was before the copies were removed (the reference)."""
    h, w = input_hw
    n = len(frame.images)
    batch = np.empty((n, h, w, 3), dtype=np.uint8)
    ks = np.empty((n, 3, 3), dtype=np.float64)
    for i, image in enumerate(frame.images):
        ih, iw = image.shape[:2]
        batch[i] = image if (ih, iw) == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        ks[i] = scaled_intrinsics(frame.intrinsics[i], w / iw, h / ih)
    img = (batch.astype(np.float32) - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    return np.ascontiguousarray(img.transpose(0, 3, 1, 2)), ks.astype(np.float32)


def test_prepare_frame_without_temporaries_gives_the_same_float_bits() -> None:
    ks, ts = rig_arrays(0.05)
    sizes = [(H, W), (32, 48), (90, 160), (H, W), (32, 48), (61, 97)]  # 32x48 = the input: no resize
    rig = CameraRig({n: CameraCalibration.create(n, ks[i], sizes[i][1], sizes[i][0], ts[i])
                     for i, n in enumerate(CAMERA_NAMES)})
    images = {n: _rgb(i, *sizes[i]) for i, n in enumerate(CAMERA_NAMES)}
    images[CAMERA_NAMES[1]] = np.frombuffer(images[CAMERA_NAMES[1]].tobytes(), np.uint8).reshape(32, 48, 3)  # read-only
    frame = rig.assemble(images, {n: 0.0 for n in CAMERA_NAMES})
    img, intrinsics = _prepare_frame_before(frame, (32, 48))
    net = prepare_frame(frame, (32, 48))
    assert net.img.flags.c_contiguous and net.img.dtype == np.float32 and net.img.shape == (6, 3, 32, 48)
    assert net.img.tobytes() == img.tobytes() and net.intrinsics.tobytes() == intrinsics.tobytes()
