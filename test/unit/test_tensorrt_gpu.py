"""TensorRT on a real GPU against onnxruntime (CPU) on the same ONNX graphs and frames: fp32 raw head
outputs within 1e-3, fp16 (TensorRT 10.x) and int8 close, the plan cache (reuse, rebuild of a corrupt
plan), TF32 off, the engine's own CUDA stream. Every test skips with the reason when TensorRT or a
CUDA GPU is missing (``pytest -rs`` shows it); nothing here stands in for TensorRT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qdbev_core.data.rig import rig_arrays
from qdbev_core.geometry import make_transform
from qdbev_core.model import BEVDetector
from qdbev_core.types import Frame


def _missing() -> str | None:
    try:
        import tensorrt
    except ImportError as exc:
        return f"tensorrt is not importable ({exc})"
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to PyTorch {torch.__version__}"
    from qdbev_core.engine.trt_decisions import TensorRTSupportError, check_trt_version

    try:
        check_trt_version(tensorrt.__version__)
    except TensorRTSupportError as exc:
        return str(exc)
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"needs TensorRT 10.x/11.x + a CUDA GPU: {MISSING}")
ort = pytest.importorskip("onnxruntime")
SMALL = dict(image_size=(64, 176), bev_h=16, bev_w=16, num_queries=30, dec_layers=2)
KW = dict(score_threshold=0.0, topk=20)


def _frame(seed: int, stamp: float, yaw: float, x: float) -> Frame:
    rng = np.random.default_rng(seed)
    k, t = rig_arrays(0.25)
    c, s = np.cos(yaw), np.sin(yaw)
    pose = make_transform(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), [x, 50.0, 0.0])
    imgs = [rng.integers(0, 256, (225, 400, 3), dtype=np.uint8) for _ in range(6)]
    return Frame(images=imgs, intrinsics=k, cam2ego=t, stamp=stamp, ego2global=pose, scene="s0")


def raw_outputs(engine, frames) -> list[dict]:
    """``cls_logits`` / ``boxes`` of each frame, the temporal state carried as ``Engine.detect`` does."""
    from qdbev_core.runtime.preprocess import prepare_frame

    engine.reset()
    outs = []
    for f in frames:
        net = prepare_frame(f, tuple(engine.cfg.image_size))
        motion = engine.temporal.motion(f)
        out = engine._run(engine._feed(net, None if motion is None else engine.temporal.bev, motion))
        engine.temporal.update(f, out["bev"])
        outs.append({k: np.asarray(out[k], dtype=np.float32) for k in ("cls_logits", "boxes")})
    return outs


def max_diff(a: list[dict], b: list[dict], key: str) -> float:
    return max(float(np.abs(x[key] - y[key]).max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def frames():
    return [_frame(1, 10.0, 0.0, 100.0), _frame(2, 10.5, 0.05, 102.0), _frame(3, 11.0, 0.1, 104.0)]


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return BEVDetector("nano", **SMALL).eval()


@pytest.fixture(scope="module")
def fp32_onnx(small_model, tmp_path_factory):
    from qdbev_core.export import export_onnx

    return export_onnx(small_model, tmp_path_factory.mktemp("trt") / "small.onnx")


@pytest.fixture(scope="module")
def s8_onnx(small_model, tmp_path_factory):
    from qdbev_core.export import example_inputs, export_onnx
    from qdbev_core.quant import QuantSpec, calibrate, quantize_model

    fq = quantize_model(small_model, QuantSpec(weight_init="lsq", act_init="minmax"), inplace=False)
    calibrate(fq, [example_inputs(small_model.cfg, seed=s)[:3] for s in (1, 2)])
    fq.eval()
    return export_onnx(fq, tmp_path_factory.mktemp("trt8") / "small-qdq-s8.onnx", precision="qdq", act_format="s8")


def _ort(path):
    from qdbev_core.engine.onnx_engine import OnnxEngine

    return OnnxEngine(path, threads=2, **KW)


def test_fp32_engine_matches_onnxruntime_within_1e3_and_caches(fp32_onnx, frames, tmp_path):
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine
    from qdbev_core.engine.trt_decisions import sidecar_of

    trt_e = TensorRTEngine(fp32_onnx, precision="fp32", cache_dir=tmp_path, **KW)
    assert trt_e.build_seconds is not None and trt_e.plan_path.is_file()
    assert trt_e.stream.cuda_stream != 0  # its own stream, not the legacy default stream
    side = json.loads(sidecar_of(trt_e.plan_path).read_text())
    assert side["key"] == trt_e.key and side["settings"]["tf32"] is False and "TF32" in side["builder_flags_cleared"]
    a, b = raw_outputs(trt_e, frames), raw_outputs(_ort(fp32_onnx), frames)
    assert max_diff(a, b, "boxes") <= 1e-3, max_diff(a, b, "boxes")
    assert max_diff(a, b, "cls_logits") <= 1e-3, max_diff(a, b, "cls_logits")
    again = TensorRTEngine(fp32_onnx, precision="fp32", cache_dir=tmp_path, **KW)
    assert again.build_seconds is None and again.key == trt_e.key  # loaded from the cache


def test_a_corrupt_cached_plan_is_rebuilt(fp32_onnx, frames, tmp_path):
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine

    first = TensorRTEngine(fp32_onnx, precision="fp32", cache_dir=tmp_path, **KW)
    first.plan_path.write_bytes(first.plan_path.read_bytes()[:1000])  # truncated plan, sidecar still matching
    second = TensorRTEngine(fp32_onnx, precision="fp32", cache_dir=tmp_path, **KW)
    assert second.rebuilt_bad_plan and second.build_seconds is not None
    assert len(second.detect(frames[0])) > 0


def test_fp16_engine_on_trt10_pins_geometry_and_on_trt11_is_refused(fp32_onnx, frames, tmp_path):
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine
    from qdbev_core.engine.trt_decisions import TensorRTSupportError, trt_major
    import tensorrt

    if trt_major(tensorrt.__version__) >= 11:
        with pytest.raises(TensorRTSupportError, match="strongly typed"):
            TensorRTEngine(fp32_onnx, precision="fp16", cache_dir=tmp_path, **KW)
        return
    trt_e = TensorRTEngine(fp32_onnx, precision="fp16", cache_dir=tmp_path, **KW)
    assert trt_e.pinned_layers > 0
    a, b = raw_outputs(trt_e, frames), raw_outputs(_ort(fp32_onnx), frames)
    assert max_diff(a, b, "boxes") <= 0.1, max_diff(a, b, "boxes")  # FP16 features, FP32 geometry


@pytest.mark.parametrize("fallback", [False, True])
def test_int8_engine_matches_onnxruntime_on_the_same_qdq_graph(s8_onnx, frames, tmp_path, fallback):
    """Same symmetric-int8 Q/DQ graph in both: scores within 0.02 and >= 80 % of detections matched by
    class and centre within 0.5 m (integer kernels and fusions differ in accumulation order)."""
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine

    trt_e = TensorRTEngine(s8_onnx, precision="int8", fp16_fallback=fallback, cache_dir=tmp_path, **KW)
    ref = _ort(s8_onnx)
    trt_e.reset()
    ref.reset()
    for f in frames:
        a, b = trt_e.detect(f), ref.detect(f)
        assert np.abs(np.sort(a.scores) - np.sort(b.scores)).max() <= 0.02
        hit = sum(bool(np.any((np.linalg.norm(b.boxes[:, :2] - a.boxes[i, :2], axis=1) < 0.5) & (b.labels == a.labels[i])))
                  for i in range(len(a)))
        assert hit >= 0.8 * len(a)
