"""Export a model to ONNX: ``--format onnx`` (fp32) or ``onnx-qdq`` (QuantizeLinear/DequantizeLinear
with the QAT-learned steps and zero points of a packed quantized model; no re-calibration).

Writes ``OUT`` and its sidecar ``OUT.json`` (model sha256, input/output names and shapes,
precision, opset, per-layer quantization table). ``--act-format s8`` writes the symmetric int8
variant TensorRT needs (the default ``u8`` is the one onnxruntime runs fastest).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name from models/manifest.yaml or a .safetensors path "
                   "(a packed low-bit file for onnx-qdq)")
    p.add_argument("--format", choices=["onnx", "onnx-qdq"], default="onnx", help="fp32 graph or Q/DQ INT8 graph")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17: native GridSample)")
    p.add_argument("--act-format", choices=["u8", "s8"], default="u8",
                   help="Q/DQ activation type: u8 (onnxruntime) or s8 symmetric (TensorRT)")
    p.add_argument("--no-prev-valid", action="store_true", help="omit the prev_valid input (not usable by the engines)")


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from ..engine import load_detector
    from ..export import export_onnx, read_onnx_sidecar

    net, sha, path, quant = load_detector(args.model)
    precision = "qdq" if args.format == "onnx-qdq" else "fp32"
    if precision == "qdq" and not quant:
        raise ValueError(f"{path}: --format onnx-qdq needs a quantized (packed low-bit) model; this one is float")
    t0 = time.perf_counter()
    out = export_onnx(net, args.out, precision, opset=args.opset, with_prev_valid=not args.no_prev_valid,
                      act_format=args.act_format, model_sha256=sha)
    side = read_onnx_sidecar(out)
    size_mb = out.stat().st_size / 1e6
    print(f"{out}: {precision} opset {args.opset}, {size_mb:.2f} MB, {time.perf_counter() - t0:.1f} s; "
          f"inputs {[i['name'] for i in side['inputs']]}, outputs {[o['name'] for o in side['outputs']]}")
    if precision == "qdq":
        print("quantization: " + json.dumps(side["quant"]["counts"], sort_keys=True))
    return 0
