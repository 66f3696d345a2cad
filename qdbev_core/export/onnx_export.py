"""``export_onnx``: a ``BEVDetector`` (fp32 or LSQ fake-quant) -> ONNX file + JSON sidecar.

The graph is ``detector.ExportWrapper`` (batch 1, static shapes, the config's input size):

=============  =====================  ====================================================
inputs         img (1, 6, 3, H, W), intrinsics (1, 6, 3, 3), cam2ego (1, 6, 4, 4),
               prev_bev (1, HW, C), ego_motion (1, 4, 4), prev_valid (1,) [with_prev_valid]
outputs        cls_logits (1, Q, K), boxes (1, Q, 9), bev (1, HW, C)  (last decoder layer)
=============  =====================  ====================================================

Feed ``bev`` back as the next ``prev_bev``; on the first frame of a sequence feed zeros with
``prev_valid = 0`` (the model then ignores ``prev_bev``, exactly as with ``prev_bev=None``).

Precisions: ``"fp32"`` (any model; fake-quant layers export their fake-quant arithmetic as float
ops) and ``"qdq"`` (a fake-quant model; ``QuantizeLinear`` / ``DequantizeLinear`` with the
LSQ-learned steps and zero points, no re-calibration: see ``export.qdq`` for the construction
and the ``act_format`` choice). Opset 17 with the legacy TorchScript exporter (``dynamo=False``):
``GridSample`` is native there.

The sidecar ``<name>.json`` beside the ``.onnx`` records: ``format``, ``model_sha256`` (of the
weights file it came from, or of the state dict), ``onnx_sha256``, ``precision``,
``act_format``, ``opset``, input / output names, shapes and dtypes, the model config, the
exporter versions and, for Q/DQ, the per-layer quantization table and BatchNorm folds.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ONNX_FORMAT = "qdbev-onnx-v1"
PRECISIONS = ("fp32", "qdq")


def state_sha256(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): identifies in-memory weights."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def sidecar_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def read_onnx_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    """The export sidecar of an ONNX file (``FileNotFoundError`` when absent)."""
    p = sidecar_path(onnx_path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: export sidecar missing (export with qdbev export / export_onnx)")
    return json.loads(p.read_text())


def example_inputs(cfg, with_prev_valid: bool = True, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Batch-1 inputs with the real nuScenes rig calibration at ``cfg.image_size``."""
    from ..data.rig import NUSCENES_RIG, rig_arrays, scaled_intrinsics
    from ..types import CAMERA_NAMES

    h, w = cfg.image_size
    _, t = rig_arrays()
    k = np.stack([scaled_intrinsics(NUSCENES_RIG[n].intrinsics(), w / 1600, h / 900) for n in CAMERA_NAMES])
    g = torch.Generator().manual_seed(seed)
    args = [
        torch.randn(1, cfg.num_cams, 3, h, w, generator=g),
        torch.tensor(k, dtype=torch.float32)[None],
        torch.tensor(t, dtype=torch.float32)[None],
        torch.zeros(1, cfg.bev_h * cfg.bev_w, cfg.embed_dims),
        torch.eye(4)[None],
    ]
    if with_prev_valid:
        args.append(torch.ones(1))
    return tuple(args)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    precision: str = "fp32",
    opset: int = 17,
    with_prev_valid: bool = True,
    act_format: str = "u8",
    fold_bn: bool = True,
    model_sha256: str | None = None,
) -> Path:
    """Export ``model`` to ``path`` (+ sidecar JSON); returns the ONNX path.

    Args:
        model: a ``BEVDetector``; for ``precision="qdq"`` a fake-quant one (``quantize_model`` +
            ``calibrate`` / QAT, or ``quant.unpack_model``). Not modified (a copy is exported).
        precision: ``"fp32"`` or ``"qdq"``.
        opset: ONNX opset (17: native GridSample).
        with_prev_valid: add the ``prev_valid`` input (one graph for the first and later frames).
        act_format: Q/DQ activation format, ``"u8"`` (onnxruntime: uint8 with zero point) or
            ``"s8"`` (TensorRT: symmetric int8, zero point 0); see ``export.qdq``.
        fold_bn: fold BatchNorm into the preceding Q/DQ convolutions (``qdq`` only).
        model_sha256: sha256 of the weights file the model came from (recorded in the sidecar;
            default: ``state_sha256(model)``).
    """
    import copy

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = model_sha256 or state_sha256(model)
    report = None
    if precision == "qdq":
        from .qdq import to_qdq_modules

        net, report = to_qdq_modules(model, act_format)
    else:
        net = copy.deepcopy(model).cpu().eval()
    tmp = path.with_name(path.name + ".tmp")
    _trace_to_onnx(net, model.cfg, tmp, opset, with_prev_valid)
    graph_model, folds = _clean_graph(tmp, fold_bn=precision == "qdq" and fold_bn)
    tmp.replace(path)
    side = _sidecar(path, graph_model, model, sha, precision, act_format, opset, with_prev_valid)
    if report is not None:
        side["quant"] = {"counts": report.counts(), "bn_folded_into": folds, "layers": report.layers}
        spec = getattr(model, "quant_spec", None)
        if spec is not None:
            side["quant"]["spec"] = spec.to_dict()
    sidecar_path(path).write_text(json.dumps(side, indent=2, default=str) + "\n")
    return path


def _trace_to_onnx(net: nn.Module, cfg, out: Path, opset: int, with_prev_valid: bool) -> None:
    """``torch.onnx.export`` (legacy tracer) of ``net`` wrapped for export, on ``example_inputs(cfg)``."""
    from ..model.detector import ExportWrapper

    wrapper = ExportWrapper(net, with_dense=False, with_prev_valid=with_prev_valid).eval()
    args = example_inputs(cfg, with_prev_valid)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings: shape-derived constants are intended
        torch.onnx.export(
            wrapper, args, str(out), opset_version=opset, dynamo=False, do_constant_folding=True,
            input_names=wrapper.input_names(), output_names=wrapper.output_names(),
        )


def _clean_graph(path: Path, fold_bn: bool):
    """Inline identity initializers, fold BatchNorm into Q/DQ convolutions (``fold_bn``), drop
    unused initializers, check and save ``path`` in place; returns the graph and the folds."""
    import onnx

    from .graph import drop_unused_initializers, fold_batchnorm_into_qdq_conv, inline_initializer_identities

    folds: list[str] = []
    graph_model = onnx.load(str(path))
    inline_initializer_identities(graph_model)
    if fold_bn:
        folds = fold_batchnorm_into_qdq_conv(graph_model)
    drop_unused_initializers(graph_model)
    graph_model.producer_name = "qdbev"
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return graph_model, folds


def _io_spec(values) -> list[dict]:
    """Name, shape (numbers or symbolic names) and numpy dtype of graph inputs / outputs."""
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        out.append({
            "name": v.name,
            "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
        })
    return out


def _sidecar(path: Path, graph_model, model: nn.Module, sha: str, precision: str, act_format: str, opset: int,
             with_prev_valid: bool) -> dict:
    """The export sidecar (``read_onnx_sidecar``) without the ``quant`` section."""
    import onnx

    from ..checkpoint import sha256_file

    return {
        "format": ONNX_FORMAT,
        "file": path.name,
        "onnx_sha256": sha256_file(path),
        "model_sha256": sha,
        "precision": precision,
        "act_format": act_format if precision == "qdq" else None,
        "opset": opset,
        "with_prev_valid": with_prev_valid,
        "inputs": _io_spec(graph_model.graph.input),
        "outputs": _io_spec(graph_model.graph.output),
        "config": model.cfg.to_dict(),
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "dynamo": False},
    }
