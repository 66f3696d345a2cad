"""ONNX export: fp32 parity with PyTorch, the Q/DQ graph's structure, and Q/DQ vs fake-quant parity.

Small nano variant (64x176 input, BEV 16x16, 30 queries) for speed, plus one real-size nano
export. Q/DQ tolerance (why not exact): ORT's int8/float kernels sum in another order than
PyTorch, so a value lying within float rounding of a quantizer's rounding boundary lands on the
neighbouring integer; that flip propagates through the later 6-bit quantizers (and can reorder
the dense heat-map peaks that seed the decoder queries). So the Q/DQ graph is held to the same
size of difference that a 1e-6 relative perturbation of the *input* causes in the PyTorch
fake-quant model itself (measured: BEV relative error 0.02-0.03 either way, against 0.22
between fake-quant and fp32): BEV relative error <= 1/4 of the quantization error itself, half
the BEV elements within 1e-3, and the same detections (top-20 scores within 0.005, >= 80 %
matched by class and centre within 0.5 m).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from qdbev_core.model import BEVDetector
from qdbev_core.model.detector import ExportWrapper
from qdbev_core.model.postprocess import decode_detections
from qdbev_core.quant import QuantSpec, calibrate, out_quantizers, quantize_model, quantizers
from qdbev_core.quant.modules import QuantConv2d, QuantLinear

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from qdbev_core.export import example_inputs, export_onnx, read_onnx_sidecar, state_sha256  # noqa: E402
from qdbev_core.export.graph import descendants, op_counts, quantized_layers  # noqa: E402

torch.set_num_threads(2)
SMALL = dict(image_size=(64, 176), bev_h=16, bev_w=16, num_queries=30, dec_layers=2)


def session(path, fold: bool = False, optimized: str | None = None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    if optimized:
        so.optimized_model_filepath = str(optimized)
    src = str(path)
    if fold:
        from qdbev_core.export.graph import fold_unfusable_weight_dq

        m = onnx.load(str(path))
        fold_unfusable_weight_dq(m)
        src = m.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["MatMulAddFusion"] if fold else [])


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def temporal_inputs(cfg, seed: int = 7):
    """Inputs with a random previous BEV and a real ego motion (0.1 rad yaw, 1.2 m forward)."""
    args = list(example_inputs(cfg, seed=seed))
    g = torch.Generator().manual_seed(seed + 1)
    args[3] = torch.randn(args[3].shape, generator=g)
    c, s = np.cos(0.1), np.sin(0.1)
    args[4] = torch.tensor([[[c, -s, 0, 1.2], [s, c, 0, -0.3], [0, 0, 1, 0], [0, 0, 0, 1]]], dtype=torch.float32)
    return args


def feeds(args) -> dict:
    return {n: a.numpy() for n, a in zip(ExportWrapper.INPUT_NAMES + ["prev_valid"], args)}


def torch_outputs(model, args) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in ExportWrapper(model, with_prev_valid=True).eval()(*args)]


def match_fraction(a, b, tol: float = 0.5) -> float:
    hit = 0
    for i in range(len(a)):
        d = np.linalg.norm(b.boxes[:, :2] - a.boxes[i, :2], axis=1)
        hit += bool(np.any((d < tol) & (b.labels == a.labels[i])))
    return hit / max(1, len(a))


@pytest.fixture(scope="module")
def fp_small():
    torch.manual_seed(0)
    return BEVDetector("nano", **SMALL).eval()


def fake_quant_small(fp_small, **spec):
    # W4A6 recipe; "lsq" / "minmax" initialisation only to keep the calibration short (the MSE
    # searches are slow on this CPU). Then every activation step (layer inputs and output
    # quantizers) is shrunk by 0.6, as QAT's learned steps typically are, so a good part of each
    # range is clipped by the b-bit grid.
    q = quantize_model(fp_small, QuantSpec(weight_init="lsq", act_init="minmax", **spec), inplace=False)
    calibrate(q, [example_inputs(fp_small.cfg, seed=s)[:3] for s in (1, 2)])
    with torch.no_grad():
        for _, aq in quantizers(q):
            if aq.kind == "act":
                aq.step.mul_(0.6)
    return q.eval()


@pytest.fixture(scope="module")
def fq_small(fp_small):
    return fake_quant_small(fp_small)  # the default recipe: with output quantizers


@pytest.fixture(scope="module")
def refs(fp_small, fq_small):
    """Temporal inputs and the PyTorch fp32 / fake-quant outputs on them (computed once)."""
    args = temporal_inputs(fp_small.cfg)
    return {"args": args, "fp": torch_outputs(fp_small, args), "fq": torch_outputs(fq_small, args)}


@pytest.fixture(scope="module")
def fp32_onnx(fp_small, tmp_path_factory):
    return export_onnx(fp_small, tmp_path_factory.mktemp("onnx") / "small.onnx")


@pytest.fixture(scope="module")
def qdq_onnx(fq_small, tmp_path_factory):
    return export_onnx(fq_small, tmp_path_factory.mktemp("onnx") / "small-qdq.onnx", precision="qdq")


# --- fp32 -------------------------------------------------------------------------------------------
def test_fp32_export_matches_torch_with_and_without_previous_bev(fp_small, fp32_onnx):
    sess = session(fp32_onnx)
    args = temporal_inputs(fp_small.cfg)
    res = sess.run(None, feeds(args))
    ref = torch_outputs(fp_small, args)
    for name, a, b in zip(["cls_logits", "boxes", "bev"], res, ref):
        assert np.abs(a - b).max() <= 1e-4, name
    da = decode_detections({"cls_logits": res[0], "boxes": res[1]}, 0.0, 20)[0]
    db = decode_detections({"cls_logits": ref[0], "boxes": ref[1]}, 0.0, 20)[0]
    np.testing.assert_array_equal(da.labels, db.labels)
    np.testing.assert_allclose(da.boxes, db.boxes, atol=1e-4)

    # prev_valid = 0 (any prev_bev) is the first frame: equal to the model without a previous BEV
    args0 = list(args)
    args0[5] = torch.zeros(1)
    first = sess.run(None, feeds(args0))
    with torch.no_grad():
        out = fp_small(*args[:3])
    assert np.abs(first[0] - out["cls_logits"][-1].numpy()).max() <= 1e-4
    assert np.abs(first[1] - out["boxes"][-1].numpy()).max() <= 1e-4
    assert np.abs(first[2] - out["bev"].numpy()).max() <= 1e-4
    assert np.abs(first[2] - res[2]).max() > 1e-3  # and the previous BEV did matter


def test_sidecar_records_the_export(fp_small, fp32_onnx):
    side = read_onnx_sidecar(fp32_onnx)
    cfg = fp_small.cfg
    assert side["precision"] == "fp32" and side["opset"] == 17
    assert side["model_sha256"] == state_sha256(fp_small)
    assert [i["name"] for i in side["inputs"]] == ["img", "intrinsics", "cam2ego", "prev_bev", "ego_motion", "prev_valid"]
    assert side["inputs"][0]["shape"] == [1, 6, 3, *cfg.image_size]
    assert side["inputs"][3]["shape"] == [1, cfg.bev_h * cfg.bev_w, cfg.embed_dims]
    assert {o["name"]: o["shape"] for o in side["outputs"]} == {
        "cls_logits": [1, cfg.num_queries, cfg.num_classes], "boxes": [1, cfg.num_queries, 9],
        "bev": [1, cfg.bev_h * cfg.bev_w, cfg.embed_dims]}
    assert side["config"]["bev_h"] == 16


def test_real_size_nano_exports_and_runs(tmp_path):
    torch.manual_seed(1)
    model = BEVDetector("nano").eval()
    path = export_onnx(model, tmp_path / "nano.onnx", with_prev_valid=True)
    args = temporal_inputs(model.cfg)
    res = session(path).run(None, feeds(args))
    ref = torch_outputs(model, args)
    for name, a, b in zip(["cls_logits", "boxes", "bev"], res, ref):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4, name


# --- Q/DQ ---------------------------------------------------------------------------------------------
def test_qdq_graph_quantizes_network_layers_only(fq_small, qdq_onnx):
    m = onnx.load(str(qdq_onnx))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    ops = op_counts(m)
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    assert ops.get("BatchNormalization", 0) == 0  # folded into the Q/DQ convs

    n_quant = sum(isinstance(x, (QuantConv2d, QuantLinear)) for x in fq_small.modules())
    rows = quantized_layers(m)
    qrows = [r for r in rows if r["weight"] == "dq"]
    # every conv / linear of the network (a layer applied twice gives two nodes), nothing else
    assert len({re.split(r"/wx(?:_\d+)?/", r["weight_dq"])[0] for r in qrows}) == n_quant
    assert all(r["act"] == "dq" for r in qrows)
    assert sum(r["op"] == "Conv" for r in qrows) == sum(isinstance(x, QuantConv2d) for x in fq_small.modules())

    # weights: int8 initializers, 4-bit layers on -8..7; per-channel scales; zero point 0
    nodes = {n.output[0]: n for n in m.graph.node}
    for n in m.graph.node:
        if n.op_type in ("Conv", "MatMul") and producers.get(n.input[1], None) is not None \
                and producers[n.input[1]].op_type == "DequantizeLinear":
            dq = producers[n.input[1]]
            q, s = inits[dq.input[0]], inits[dq.input[1]]
            assert q.dtype == np.int8 and s.ndim == 1 and s.size > 1 and np.all(s > 0)
            assert np.all(inits[dq.input[2]] == 0)
            if "stem" not in n.name and "out" not in n.name:
                assert q.min() >= -8 and q.max() <= 7, n.name
    # 6-bit activations: uint8 Q -> Clip(0, 63) -> DQ
    clips = [n for n in m.graph.node if n.op_type == "Clip" and producers.get(n.input[0]) is not None
             and producers[n.input[0]].op_type == "QuantizeLinear"]
    assert clips
    for c in clips:
        lo = onnx.numpy_helper.to_array(nodes[c.input[1]].attribute[0].t) if c.input[1] in nodes else inits[c.input[1]]
        hi = onnx.numpy_helper.to_array(nodes[c.input[2]].attribute[0].t) if c.input[2] in nodes else inits[c.input[2]]
        assert lo.dtype == np.uint8 and int(lo) == 0 and int(hi) == 63

    # geometry stays float: nodes computed only from the calibration / motion inputs
    geo = descendants(m, {"intrinsics", "cam2ego", "ego_motion"}) - descendants(m, {"img", "prev_bev", "prev_valid"})
    geo_nodes = [n for n in m.graph.node if (n.name or n.output[0]) in geo]
    assert any(n.op_type == "MatMul" for n in geo_nodes)  # the camera projection
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in geo_nodes)
    for n in m.graph.node:  # sampling locations are never (de)quantized
        if n.op_type == "GridSample":
            assert producers[n.input[1]].op_type not in ("QuantizeLinear", "DequantizeLinear", "Clip")
    side = read_onnx_sidecar(qdq_onnx)
    assert side["precision"] == "qdq" and side["act_format"] == "u8"
    n_in = sum(isinstance(x, (QuantConv2d, QuantLinear)) and x.aq is not None for x in fq_small.modules())
    n_out = len(out_quantizers(fq_small))
    counts = side["quant"]["counts"]
    assert n_out > 0 and counts.get("act:qdq-u8", 0) == n_in + n_out
    assert counts.get("act:shared", 0) == n_quant - n_in > 0  # layers reading an output quantizer's grid
    assert counts.get("weight:dq-int8", 0) == sum(r["type"] != "output" for r in side["quant"]["layers"])


def test_ort_runs_the_backbone_and_neck_convolutions_in_int8(qdq_onnx, tmp_path):
    """With output quantizers, onnxruntime fuses every backbone convolution into ``QLinearConv`` and
    every residual addition into ``QLinearAdd`` (the speed of the INT8 backend depends on it); the
    only float convolutions left are the FPN's lateral 1x1 convolutions (float top-down sum)."""
    opt = tmp_path / "optimized.onnx"
    session(qdq_onnx, fold=True, optimized=opt)
    m = onnx.load(str(opt))

    def where(n):
        return n.name + " " + " ".join(n.output)

    bb = [n for n in m.graph.node if "/backbone/" in where(n)]
    convs = [n for n in bb if "Conv" in n.op_type]
    assert len(convs) == sum(isinstance(x, torch.nn.Conv2d) for x in BEVDetector("nano", **SMALL).backbone.modules())
    assert all(n.op_type == "QLinearConv" for n in convs), sorted({n.op_type for n in convs})
    adds = [n for n in bb if "Add" in n.op_type]
    assert adds and all(n.op_type == "QLinearAdd" for n in adds), sorted({n.op_type for n in adds})
    # integer from the input quantizer to the stage outputs: no Q/DQ or float ReLU in between
    # (DequantizeLinear only where the backbone's outputs leave for the neck)
    inner = [n for n in bb if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Relu")]
    assert all(n.op_type == "DequantizeLinear" for n in inner), [where(n) for n in inner]
    assert len({n.input[0] for n in inner}) <= len(BEVDetector("nano", **SMALL).backbone.out_stages)
    neck_convs = [n for n in m.graph.node if "/neck/" in where(n) and "Conv" in n.op_type]
    assert {n.op_type for n in neck_convs if "fpn_convs" in where(n)} == {"QLinearConv"}


@pytest.mark.parametrize("fold", [False, True], ids=["plain", "ort-prepared"])
def test_qdq_matches_fake_quant(refs, qdq_onnx, fold):
    res = session(qdq_onnx, fold).run(None, feeds(refs["args"]))
    ref, fp = refs["fq"], refs["fp"]
    quant_err = rel(ref[2], fp[2])
    assert rel(res[2], ref[2]) <= 0.25 * quant_err, (rel(res[2], ref[2]), quant_err)
    assert np.mean(np.abs(res[2] - ref[2]) < 1e-3) >= 0.5
    da = decode_detections({"cls_logits": res[0], "boxes": res[1]}, 0.0, 20)[0]
    db = decode_detections({"cls_logits": ref[0], "boxes": ref[1]}, 0.0, 20)[0]
    assert np.abs(da.scores - db.scores).max() <= 0.005
    assert match_fraction(da, db) >= 0.8


def test_qdq_of_the_inputs_only_recipe_matches_fake_quant(fp_small, refs, tmp_path):
    """``QuantSpec(quantize_outputs=False)`` (the recipe before output quantizers) still exports and matches."""
    fq = fake_quant_small(fp_small, quantize_outputs=False)
    path = export_onnx(fq, tmp_path / "inputs-only.onnx", precision="qdq")
    assert "act:shared" not in read_onnx_sidecar(path)["quant"]["counts"]
    ref = torch_outputs(fq, refs["args"])
    res = session(path, fold=True).run(None, feeds(refs["args"]))
    assert rel(res[2], ref[2]) <= 0.25 * rel(ref[2], refs["fp"][2])


def test_qdq_needs_a_fake_quant_model(fp_small, tmp_path):
    with pytest.raises(ValueError, match="fake-quant"):
        export_onnx(fp_small, tmp_path / "x.onnx", precision="qdq")
    with pytest.raises(ValueError, match="precision"):
        export_onnx(fp_small, tmp_path / "x.onnx", precision="int4")


def test_cli_export_of_a_packed_model_symmetric_int8_for_tensorrt(fq_small, refs, tmp_path, capsys):
    """``qdbev export --format onnx-qdq --act-format s8`` of a packed file: zero points 0, same results."""
    import copy

    from qdbev_core.checkpoint import sha256_file
    from qdbev_core.cli.main import main
    from qdbev_core.quant import pack_model

    packed = tmp_path / "small-w4a6.safetensors"
    pack_model(copy.deepcopy(fq_small), packed, float_dtype="float32")
    out = tmp_path / "cli" / "small-qdq-s8.onnx"
    assert main(["export", "--model", str(packed), "--format", "onnx-qdq", "--act-format", "s8", "--out", str(out)]) == 0
    assert "quantization:" in capsys.readouterr().out
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["model_sha256"] == sha256_file(packed) and side["precision"] == "qdq" and side["act_format"] == "s8"
    counts = side["quant"]["counts"]  # 8-bit affine grids that do not fit int8 stay float (first / final layers)
    assert counts["act:qdq-s8"] > 0 and counts.get("act:fake", 0) == counts.get("weight:float-qweight", 0) > 0
    m = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert qs and all(inits[n.input[2]].dtype == np.int8 and np.all(inits[n.input[2]] == 0) for n in qs)
    res = session(out).run(None, feeds(refs["args"]))
    assert rel(res[2], refs["fq"][2]) <= 0.25 * rel(refs["fq"][2], refs["fp"][2])
