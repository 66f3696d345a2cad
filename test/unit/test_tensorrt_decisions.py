"""The TensorRT backend's decisions, without a GPU or TensorRT: supported versions, builder flags per
version and precision, the plan-cache key (every setting changes it), geometry-layer selection on a
network's data flow, atomic cache writes, and rebuilding a cached plan that does not deserialize.

The functions under test take plain values (version strings, layer descriptions, callables), so no
stand-in for TensorRT is needed; the GPU tests in ``test_tensorrt_gpu.py`` run the real thing."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from qdbev_core.engine.trt_decisions import (
    BUILD_CODE_VERSION,
    BuildSettings,
    LayerInfo,
    TensorRTSupportError,
    build_plan,
    check_trt_version,
    engine_cache_key,
    geometry_layers,
    load_or_build,
    network_creation_flags,
    pin_decisions,
    sidecar_of,
    trt_major,
    write_atomic,
)

# BuilderFlag members present in TensorRT 10.0's Python bindings (python/src/infer/pyCore.cpp, 10.0 GA)
FLAGS_IN_TRT10 = {"FP16", "BF16", "INT8", "TF32", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"}
# removed in TensorRT 11 (NVIDIA's "Removed Python APIs" list for 10.x -> 11.x; absent from 11.1's pyCore.cpp)
FLAGS_REMOVED_IN_11 = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                       "PREFER_PRECISION_CONSTRAINTS"}
GEO, NET = ("intrinsics", "cam2ego", "ego_motion"), ("img", "prev_bev", "prev_valid")


# --- versions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version,major", [("10.0.1", 10), ("10.3.0.26", 10), ("11.4.0.106", 11), ("11.1.0", 11)])
def test_supported_versions_give_their_major(version, major):
    assert trt_major(version) == major
    assert check_trt_version(version) == major


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0"])
def test_unsupported_versions_are_refused_with_what_to_do(version):
    with pytest.raises(TensorRTSupportError, match=r"10\.x.*11\.x") as exc:
        check_trt_version(version)
    assert version in str(exc.value) and "pip install" in str(exc.value)


def test_unreadable_version_is_refused():
    with pytest.raises(TensorRTSupportError, match="cannot read"):
        trt_major("unknown")


# --- build plans ------------------------------------------------------------------------------------
def test_trt10_weak_typing_flags_per_precision():
    fp32 = build_plan(10, "fp32")
    assert (fp32.strongly_typed, fp32.set_flags, fp32.clear_flags, fp32.pin_geometry) == (False, (), ("TF32",), False)
    fp16 = build_plan(10, "fp16")
    assert set(fp16.set_flags) == {"FP16", "PREFER_PRECISION_CONSTRAINTS"} and fp16.pin_geometry
    int8 = build_plan(10, "int8", fp16_fallback=True)
    assert set(int8.set_flags) == {"FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS"} and int8.pin_geometry
    assert int8.fp16_fallback
    strict = build_plan(10, "int8", fp16_fallback=False)
    assert strict.set_flags == ("INT8",) and not strict.pin_geometry and not strict.fp16_fallback
    for plan in (fp32, fp16, int8, strict):
        assert set(plan.set_flags) | set(plan.clear_flags) <= FLAGS_IN_TRT10
        assert plan.clear_flags == ("TF32",)  # FP32 layers (geometry, fallback) never round to TF32


def test_trt11_strong_typing_sets_no_removed_flag():
    for precision in ("fp32", "int8"):
        for fallback in (True, False):
            plan = build_plan(11, precision, fp16_fallback=fallback)
            assert plan.strongly_typed and not plan.pin_geometry and plan.set_flags == ()
            assert not (set(plan.set_flags) | set(plan.clear_flags)) & FLAGS_REMOVED_IN_11
            assert plan.clear_flags == ("TF32",) and plan.fp16_fallback is False
    assert build_plan(11, "int8", fp16_fallback=True).notes  # says the fallback is dropped
    assert build_plan(11, "int8", fp16_fallback=False).notes == ()


def test_trt11_fp16_is_refused_with_the_reason_and_the_alternatives():
    with pytest.raises(TensorRTSupportError, match="strongly typed") as exc:
        build_plan(11, "fp16")
    msg = str(exc.value)
    assert "'fp32'" in msg and "'int8'" in msg and "TensorRT 10" in msg


def test_allow_tf32_keeps_tensorrts_default():
    assert build_plan(10, "fp32", allow_tf32=True).clear_flags == ()
    assert build_plan(11, "int8", allow_tf32=True).clear_flags == ()


def test_bad_precision_and_unsupported_major_in_plans():
    with pytest.raises(ValueError, match="precision"):
        build_plan(10, "bf16")
    with pytest.raises(TensorRTSupportError):
        build_plan(8, "fp32")
    assert network_creation_flags(10) == network_creation_flags(11) == 0
    with pytest.raises(TensorRTSupportError):
        network_creation_flags(12)


# --- cache key --------------------------------------------------------------------------------------
def _settings(**kw) -> BuildSettings:
    base = dict(model_sha256="ab" * 32, onnx_sha256="cd" * 32, precision="int8", fp16_fallback=True, tf32=False,
                workspace_bytes=2048 << 20, strongly_typed=False, trt_version="10.3.0.26", gpu_name="NVIDIA A40",
                compute_capability="8.6")
    return BuildSettings(**{**base, **kw})


def _other(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + (1 << 20)
    return value + "x"


def test_every_build_setting_changes_the_key():
    base = _settings()
    k = base.key
    assert k == _settings().key and len(k) == 16 and int(k, 16) >= 0
    fields = [f.name for f in dataclasses.fields(BuildSettings)]
    assert {"tf32", "workspace_bytes", "build_code", "strongly_typed", "compute_capability"} <= set(fields)
    for name in fields:
        changed = dataclasses.replace(base, **{name: _other(getattr(base, name))})
        assert changed.key != k, name


def test_key_defaults_to_the_current_build_code_and_keeps_the_old_positional_form():
    assert _settings().build_code == BUILD_CODE_VERSION
    s = _settings()
    positional = engine_cache_key(s.model_sha256, s.trt_version, s.gpu_name, s.precision, s.fp16_fallback,
                                  s.onnx_sha256, tf32=s.tf32, workspace_bytes=s.workspace_bytes,
                                  strongly_typed=s.strongly_typed, compute_capability=s.compute_capability)
    assert positional == s.key
    assert json.loads(json.dumps(s.to_json())) == dataclasses.asdict(s)


# --- geometry pinning -------------------------------------------------------------------------------
def L(name, ins, outs, in_dt=None, out_dt=None) -> LayerInfo:  # noqa: N802 - short helper
    return LayerInfo(name, tuple(ins), tuple(in_dt or ["FLOAT"] * len(ins)), tuple(outs),
                     tuple(out_dt or ["FLOAT"] * len(outs)))


def _network() -> list[LayerInfo]:
    """A small network as the ONNX parser could build it (names as the parser gives them)."""
    return [
        L("/proj/MatMul", ["intrinsics", "cam2ego"], ["t0"]),                          # 0 geometry
        L("(Unnamed Layer* 1) [Shuffle]", ["t0"], ["t1"]),                            # 1 helper layer of node 0
        L("/proj/Div", ["t1", "c0"], ["t2"]),                                         # 2 geometry (+ constant)
        L("c0_const", [], ["c0"]),                                                   # 3 constant: not geometry
        L("/mask/Less", ["t2", "c0"], ["m0"], out_dt=["BOOL"]),                       # 4 BOOL only: skipped
        L("/mask/Where", ["m0", "t2", "c0"], ["t3"], in_dt=["BOOL", "FLOAT", "FLOAT"]),  # 5 output only
        L("/motion/TopK", ["ego_motion"], ["v", "idx"], out_dt=["FLOAT", "INT32"]),   # 6 float output only
        L("/motion/Cast", ["ego_motion"], ["i64"], out_dt=["INT64"]),                 # 7 INT64: skipped
        L("/enc/Conv", ["img"], ["f0"]),                                              # 8 image
        L("/enc/Sample", ["f0", "t3"], ["f1"]),                                       # 9 mixed: not geometry
        L("/temporal/Mul", ["prev_bev", "v"], ["f2"]),                                # 10 mixed
        L("/after/Add", ["f1", "t2"], ["f3"]),                                        # 11 downstream of mixed
    ]


def test_geometry_layers_follow_data_flow_not_names():
    assert geometry_layers(_network(), GEO, NET) == [0, 1, 2, 4, 5, 6, 7]


def test_geometry_layers_in_any_order():
    net = _network()
    order = list(reversed(range(len(net))))
    picked = geometry_layers([net[i] for i in order], GEO, NET)
    assert sorted(order[i] for i in picked) == [0, 1, 2, 4, 5, 6, 7]


def test_pinning_touches_only_floating_point_tensors():
    by_index = {d.index: d for d in pin_decisions(_network(), GEO, NET)}
    assert set(by_index) == {0, 1, 2, 5, 6}  # 4 (BOOL) and 7 (INT64) have no float output
    for i in (0, 1, 2):
        assert by_index[i].set_precision and by_index[i].float_outputs == (0,)
    assert not by_index[5].set_precision and by_index[5].float_outputs == (0,)  # BOOL condition input
    assert not by_index[6].set_precision and by_index[6].float_outputs == (0,)  # INT32 indices output


def test_geometry_selection_matches_the_onnx_graph_of_the_exported_model(tmp_path):
    """On the real exported graph (ONNX nodes as layers), the data-flow selection equals the ONNX
    descendant query the exporter uses (geometry descendants minus image/history descendants)."""
    onnx = pytest.importorskip("onnx")
    import torch

    from qdbev_core.export import export_onnx
    from qdbev_core.export.graph import descendants
    from qdbev_core.model import BEVDetector

    torch.manual_seed(0)
    model = BEVDetector("nano", image_size=(64, 176), bev_h=16, bev_w=16, num_queries=30, dec_layers=2).eval()
    path = export_onnx(model, tmp_path / "small.onnx")
    g = onnx.load(str(path)).graph
    layers = [L(n.name or n.output[0], [i for i in n.input if i], list(n.output)) for n in g.node]
    picked = {layers[i].name for i in geometry_layers(layers, GEO, NET)}
    expected = descendants(onnx.load(str(path)), set(GEO)) - descendants(onnx.load(str(path)), set(NET))
    assert picked == expected and len(picked) > 10


# --- plan cache -------------------------------------------------------------------------------------
def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "m.plan"
    write_atomic(target, b"old")
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=write_atomic, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.plan"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "m.plan"
    write_atomic(target, b"good")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["m.plan"]


class Builder:
    """Counts builds; its 'engines' are the plan bytes (the deserializer below accepts b'plan-*')."""

    def __init__(self, payload: bytes = b"plan-1") -> None:
        self.calls, self.payload = 0, payload

    def __call__(self) -> bytes:
        self.calls += 1
        return self.payload


def accept(plan: bytes):
    return plan.decode() if plan.startswith(b"plan-") else None


def test_load_or_build_builds_once_then_loads_from_cache(tmp_path):
    plan = tmp_path / "m.fp32.k.plan"
    b = Builder()
    first = load_or_build(plan, "k", b, accept, lambda: {"gpu": "x"})
    assert first.built and first.engine == "plan-1" and b.calls == 1 and not first.rebuilt_bad_plan
    assert json.loads(sidecar_of(plan).read_text()) == {"key": "k", "gpu": "x"}
    again = load_or_build(plan, "k", b, accept, dict)
    assert not again.built and again.engine == "plan-1" and b.calls == 1


@pytest.mark.parametrize("corrupt", ["returns_none", "raises"])
def test_a_cached_plan_that_does_not_deserialize_is_rebuilt(tmp_path, corrupt):
    plan = tmp_path / "m.int8.k.plan"
    load_or_build(plan, "k", Builder(), accept, dict)
    plan.write_bytes(b"\x00truncated")

    def deserialize(data: bytes):
        if corrupt == "raises" and not data.startswith(b"plan-"):
            raise RuntimeError("Serialization assertion failed")
        return accept(data)

    b = Builder(b"plan-2")
    res = load_or_build(plan, "k", b, deserialize, dict)
    assert res.built and res.rebuilt_bad_plan and res.engine == "plan-2" and b.calls == 1
    assert plan.read_bytes() == b"plan-2"


def test_a_sidecar_with_another_key_or_unreadable_means_rebuild(tmp_path):
    plan = tmp_path / "m.plan"
    load_or_build(plan, "k1", Builder(), accept, dict)
    b = Builder(b"plan-new")
    assert load_or_build(plan, "k2", b, accept, dict).built and b.calls == 1
    sidecar_of(plan).write_text("{not json")
    assert load_or_build(plan, "k2", b, accept, dict).built and b.calls == 2


def test_a_fresh_plan_that_does_not_deserialize_is_an_error_and_is_not_cached(tmp_path):
    plan = tmp_path / "m.plan"
    with pytest.raises(RuntimeError, match="just built"):
        load_or_build(plan, "k", Builder(b"garbage"), accept, dict)
    assert not plan.exists() and not sidecar_of(plan).exists()


def test_sidecar_name():
    assert sidecar_of(Path("/c/x.int8.abc.plan")) == Path("/c/x.int8.abc.plan.json")


# --- what the backend says without TensorRT ----------------------------------------------------------
def test_require_tensorrt_names_the_supported_versions_when_missing():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is importable here")
    from qdbev_core.engine.tensorrt_engine import require_tensorrt

    with pytest.raises(RuntimeError, match=r"TensorRT Python package.*10\.x or 11\.x"):
        require_tensorrt()


def test_gpu_extra_and_requirements_gpu_pin_the_same_supported_tensorrt(repo_root):
    """setup.py's ``gpu`` extra and requirements-gpu.txt name the same TensorRT requirement, and it
    admits exactly the majors the backend supports (10 and 11)."""
    import re

    extra = re.search(r'"gpu":\s*\[([^\]]*)\]', (repo_root / "setup.py").read_text()).group(1)
    extra_reqs = re.findall(r'"([^"]+)"', extra)
    reqs = [ln.strip() for ln in (repo_root / "requirements-gpu.txt").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    assert extra_reqs == reqs == ["tensorrt-cu12>=10.0,<12"]
    from qdbev_core.engine.trt_decisions import SUPPORTED_TRT_MAJORS

    assert SUPPORTED_TRT_MAJORS == (10, 11)
