"""Engines: onnxruntime vs PyTorch detections, temporal state and resets, engine loading and caching,
the TensorRT cache key (pure) and its GPU parity test (skipped without TensorRT + CUDA)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qdbev_core.checkpoint import save_weights
from qdbev_core.data.rig import rig_arrays
from qdbev_core.geometry import make_transform
from qdbev_core.model import BEVDetector
from qdbev_core.types import Frame

ort = pytest.importorskip("onnxruntime")

from qdbev_core.engine import TorchEngine, load_engine  # noqa: E402
from qdbev_core.engine.onnx_engine import OnnxEngine  # noqa: E402
from qdbev_core.engine.tensorrt_engine import engine_cache_key  # noqa: E402
from qdbev_core.export import export_onnx  # noqa: E402

torch.set_num_threads(2)
SMALL = dict(image_size=(64, 176), bev_h=16, bev_w=16, num_queries=30, dec_layers=2)
KW = dict(score_threshold=0.0, topk=20)


def yaw_pose(yaw: float, x: float, y: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return make_transform(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), [x, y, 0.0])


def make_frame(seed: int, stamp: float, pose: np.ndarray, scene: str = "s0") -> Frame:
    """Six random 400x225 images with the nuScenes rig scaled to them."""
    rng = np.random.default_rng(seed)
    k, t = rig_arrays(0.25)
    imgs = [rng.integers(0, 256, (225, 400, 3), dtype=np.uint8) for _ in range(6)]
    return Frame(images=imgs, intrinsics=k, cam2ego=t, stamp=stamp, ego2global=pose, scene=scene)


def same(a, b, atol: float = 1e-3) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return BEVDetector("nano", **SMALL).eval()


@pytest.fixture(scope="module")
def small_onnx(small_model, tmp_path_factory):
    return export_onnx(small_model, tmp_path_factory.mktemp("eng") / "small.onnx")


@pytest.fixture(scope="module")
def frames():
    a = make_frame(1, 10.0, yaw_pose(0.0, 100.0, 50.0))
    b = make_frame(2, 10.5, yaw_pose(0.05, 102.0, 50.3))
    return a, b


@pytest.fixture(params=["torch", "onnxruntime"])
def engine(request, small_model, small_onnx):
    if request.param == "torch":
        return TorchEngine(small_model, **KW)
    return OnnxEngine(small_onnx, threads=2, **KW)


def test_onnx_engine_matches_torch_engine_over_a_sequence(small_model, small_onnx, frames):
    te, oe = TorchEngine(small_model, **KW), OnnxEngine(small_onnx, threads=2, **KW)
    for f in frames:  # second frame uses the previous BEV in both
        same(oe.detect(f), te.detect(f))
    assert oe.temporal.bev is not None and oe.temporal.resets == te.temporal.resets == 0
    t = oe.last_timing
    assert t.preprocess_ms > 0 and t.inference_ms > 0 and t.postprocess_ms > 0
    assert t.total_ms == pytest.approx(t.preprocess_ms + t.inference_ms + t.postprocess_ms)


def test_previous_bev_changes_detections_and_time_jumps_reset(engine, frames):
    a, b = frames
    engine.reset()
    fresh_b = engine.detect(b)  # b as the first frame of a sequence
    engine.reset()
    engine.detect(a)
    with_prev = engine.detect(b)  # b after a: previous BEV + ego motion used
    assert engine.temporal.resets == 0
    assert not np.allclose(with_prev.scores, fresh_b.scores, atol=1e-6) or not np.allclose(with_prev.boxes, fresh_b.boxes, atol=1e-4)

    # stamp going backwards: state reset, previous BEV not used
    engine.reset()
    engine.detect(a)
    back = make_frame(2, a.stamp - 0.5, b.ego2global)
    n = engine.temporal.resets
    same(engine.detect(back), fresh_b, atol=1e-5)
    assert engine.temporal.resets == n + 1

    # gap larger than max_gap_s: same
    engine.reset()
    engine.detect(a)
    late = make_frame(2, a.stamp + engine.temporal.max_gap_s + 0.1, b.ego2global)
    same(engine.detect(late), fresh_b, atol=1e-5)
    assert engine.temporal.resets == n + 2

    # another scene: same
    engine.reset()
    engine.detect(a)
    other = make_frame(2, b.stamp, b.ego2global, scene="s1")
    same(engine.detect(other), fresh_b, atol=1e-5)
    assert engine.temporal.resets == n + 3


def test_history_free_state_carries_the_bev_encoded_without_history(small_model, frames, tmp_path):
    """``history_free_state``: the state a frame leaves is its BEV encoded with no previous BEV
    (what training feeds as prev_bev), in torch and in the exported graph alike; it changes the
    detections from the third frame of a sequence on (the second sees a history-free BEV anyway)."""
    a, b = frames
    c = make_frame(3, 11.0, yaw_pose(0.1, 104.0, 50.7))
    hf = BEVDetector(small_model.cfg.replace(history_free_state=True)).eval()
    hf.load_state_dict(small_model.state_dict())
    te, rec = TorchEngine(hf, **KW), TorchEngine(small_model, **KW)
    oe = OnnxEngine(export_onnx(hf, tmp_path / "hf.onnx"), threads=2, **KW)

    fresh = TorchEngine(small_model, **KW)
    fresh.detect(b)  # b alone: its BEV without history
    outs = [(te.detect(f), oe.detect(f), rec.detect(f)) for f in (a, b)]
    np.testing.assert_allclose(te.temporal.bev.numpy(), fresh.temporal.bev.numpy(), atol=1e-5)
    assert not torch.allclose(te.temporal.bev, rec.temporal.bev, atol=1e-4)  # recursive state differs
    np.testing.assert_allclose(oe.temporal.bev, te.temporal.bev.numpy(), atol=1e-3)
    for t_det, o_det, r_det in outs:  # first two frames: identical detections
        same(t_det, r_det, atol=1e-5)
        same(o_det, t_det)
    t_c, o_c, r_c = te.detect(c), oe.detect(c), rec.detect(c)
    same(o_c, t_c)
    assert not np.allclose(t_c.scores, r_c.scores, atol=1e-6) or not np.allclose(t_c.boxes, r_c.boxes, atol=1e-4)


def test_load_engine_exports_once_and_checks_precision(small_model, frames, tmp_path):
    weights = tmp_path / "small.safetensors"
    save_weights(small_model.state_dict(), weights, {"config": small_model.cfg.to_dict()})
    cache = tmp_path / "cache"
    e1 = load_engine(str(weights), backend="onnxruntime", threads=2, cache_dir=cache, **KW)
    assert isinstance(e1, OnnxEngine) and e1.precision == "fp32"
    onnx_files = sorted(cache.glob("*.onnx"))
    assert len(onnx_files) == 1 and ".fp32." in onnx_files[0].name
    mtime = onnx_files[0].stat().st_mtime_ns
    e2 = load_engine(str(weights), backend="onnxruntime", threads=2, cache_dir=cache, **KW)
    assert onnx_files[0].stat().st_mtime_ns == mtime  # cache hit, not re-exported
    same(e2.detect(frames[0]), TorchEngine(small_model, **KW).detect(frames[0]))
    # same weights, another config (history_free_state): the cached graph is not reused
    save_weights(small_model.state_dict(), weights, {"config": small_model.cfg.replace(history_free_state=True).to_dict()})
    load_engine(str(weights), backend="onnxruntime", threads=2, cache_dir=cache, **KW)
    assert onnx_files[0].stat().st_mtime_ns != mtime
    assert json.loads(onnx_files[0].with_suffix(".json").read_text())["config"]["history_free_state"] is True
    with pytest.raises(ValueError, match="quantized model"):
        load_engine(str(weights), backend="onnxruntime", precision="int8", cache_dir=cache)
    with pytest.raises(ValueError, match="backend"):
        load_engine(str(weights), backend="openvino")


def test_split_results_match_between_torch_and_onnxruntime(small_model, small_onnx, synth_dataroot):
    """Same results JSON content through both backends on the synth_val split (random weights:
    NDS would be ~0 for both, so the boxes themselves are compared)."""
    from qdbev_core.data.reader import NuScenesReader
    from qdbev_core.predict import predict_split

    reader = NuScenesReader(synth_dataroot, "v1.0-mini", split="synth_val")
    wt, _ = predict_split(TorchEngine(small_model, **KW), reader, progress=False)
    wo, _ = predict_split(OnnxEngine(small_onnx, threads=2, **KW), reader, progress=False)
    rt, ro = wt.to_dict()["results"], wo.to_dict()["results"]
    assert rt.keys() == ro.keys() and wt.num_boxes == wo.num_boxes > 0
    for tok in rt:
        for a, b in zip(rt[tok], ro[tok], strict=True):
            assert a["detection_name"] == b["detection_name"]
            np.testing.assert_allclose(a["translation"], b["translation"], atol=1e-3)
            np.testing.assert_allclose(a["size"], b["size"], atol=1e-3)
            np.testing.assert_allclose(a["rotation"], b["rotation"], atol=1e-3)
            assert abs(a["detection_score"] - b["detection_score"]) < 1e-4


# --- TensorRT -------------------------------------------------------------------------------------------
def test_tensorrt_cache_key_is_a_pure_function_of_its_parts():
    base = dict(model_sha256="ab" * 32, trt_version="10.3.0", gpu_name="NVIDIA A40", precision="int8",
                fp16_fallback=True, onnx_sha256="cd" * 32)
    k = engine_cache_key(**base)
    assert k == engine_cache_key(**base) and len(k) == 16 and int(k, 16) >= 0
    for field, other in [("model_sha256", "ef" * 32), ("trt_version", "10.4.0"), ("gpu_name", "Orin"),
                         ("precision", "fp16"), ("fp16_fallback", False), ("onnx_sha256", "00" * 32)]:
        assert engine_cache_key(**{**base, field: other}) != k, field


def _trt_available() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not importable"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to PyTorch"
    return None


def test_tensorrt_backend_says_what_is_missing(small_model, tmp_path):
    if _trt_available() is None:
        pytest.skip("TensorRT and a GPU are present")
    weights = tmp_path / "m.safetensors"
    save_weights(small_model.state_dict(), weights, {"config": small_model.cfg.to_dict()})
    with pytest.raises(RuntimeError, match="tensorrt|CUDA"):
        load_engine(str(weights), backend="tensorrt", cache_dir=tmp_path)


@pytest.mark.skipif(_trt_available() is not None, reason=f"TensorRT parity needs TensorRT + CUDA: {_trt_available()}")
def test_tensorrt_matches_torch(small_model, small_onnx, frames, tmp_path):  # pragma: no cover - GPU only
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine

    te = TorchEngine(small_model, **KW)
    trt_e = TensorRTEngine(small_onnx, precision="fp32", cache_dir=tmp_path, **KW)
    assert trt_e.plan_path.is_file() and trt_e.build_seconds is not None
    for f in frames:
        a, b = trt_e.detect(f), te.detect(f)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    again = TensorRTEngine(small_onnx, precision="fp32", cache_dir=tmp_path, **KW)
    assert again.build_seconds is None  # loaded from the cache


@pytest.mark.skipif(_trt_available() is not None, reason=f"TensorRT INT8 parity needs TensorRT + CUDA: {_trt_available()}")
def test_tensorrt_int8_matches_fake_quant(small_model, frames, tmp_path):  # pragma: no cover - GPU only
    """The symmetric-int8 Q/DQ export (``act_format="s8"``, output quantizers included) built as an
    explicit-quantization TensorRT engine gives the fake-quant model's detections. FP16 fallback off,
    so the only differences are the integer kernels' accumulation order, as for onnxruntime
    (``test_export_onnx.test_qdq_matches_fake_quant``); same detection criteria."""
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine
    from qdbev_core.export import example_inputs
    from qdbev_core.quant import QuantSpec, calibrate, quantize_model

    fq = quantize_model(small_model, QuantSpec(weight_init="lsq", act_init="minmax"), inplace=False)
    calibrate(fq, [example_inputs(small_model.cfg, seed=s)[:3] for s in (1, 2)])
    fq.eval()
    path = export_onnx(fq, tmp_path / "small-qdq-s8.onnx", precision="qdq", act_format="s8")
    trt_e = TensorRTEngine(path, precision="int8", fp16_fallback=False, cache_dir=tmp_path, **KW)
    te = TorchEngine(fq, **KW)
    for f in frames:
        a, b = trt_e.detect(f), te.detect(f)
        assert np.abs(a.scores - b.scores).max() <= 0.005
        hit = sum(bool(np.any((np.linalg.norm(b.boxes[:, :2] - a.boxes[i, :2], axis=1) < 0.5) & (b.labels == a.labels[i])))
                  for i in range(len(a)))
        assert hit >= 0.8 * len(a)


def test_bench_interleaved_times_every_backend_in_one_process(small_model, synth_dataroot, tmp_path, monkeypatch, capsys):
    """``qdbev bench --interleave``: one row per backend x precision (int8 = a PTQ model with output
    quantizers), each timed on every frame, speed-ups against torch fp32 in the table."""
    import json

    from qdbev_core.checkpoint import read_sidecar
    from qdbev_core.cli.main import main

    weights = tmp_path / "small.safetensors"
    save_weights(small_model.state_dict(), weights, {"config": small_model.cfg.to_dict()})
    monkeypatch.setenv("QDBEV_ENGINE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(weights), "--dataroot", str(synth_dataroot), "--split", "synth_val",
                 "--backends", "torch,onnxruntime", "--frames", "3", "--warmup", "1", "--ptq-frames", "1",
                 "--no-nds", "--interleave", "--repeat", "2", "--json", str(out), "--out-dir", str(tmp_path / "o")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("torch", "fp32"), ("torch", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    assert all(r["interleaved"] and r["timed_runs"] == 6 and r["total_ms_median"] > 0 for r in rows)
    assert "speed-up" in capsys.readouterr().out
    int8_model = json.loads(out.read_text())["int8_model"]
    assert read_sidecar(int8_model)["quant_spec"]["quantize_outputs"] is True


def test_onnx_optimization_levels_change_speed_not_results(small_onnx, frames) -> None:
    """``optimization_level`` (tools/int8_study.py times the levels) keeps the graph's arithmetic;
    an unknown level is refused with the choices."""
    ref = OnnxEngine(small_onnx, threads=2, **KW)
    want = [ref.detect(f) for f in frames]
    for level in ("extended", "basic"):
        e = OnnxEngine(small_onnx, threads=2, optimization_level=level, **KW)
        for w, got in zip(want, (e.detect(f) for f in frames)):
            np.testing.assert_allclose(got.boxes, w.boxes, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(got.scores, w.scores, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="all, extended, basic"):
        OnnxEngine(small_onnx, optimization_level="fastest")
