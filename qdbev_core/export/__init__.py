"""Model export: ONNX (fp32 or Q/DQ from the LSQ fake-quant model) with a JSON sidecar.

    from qdbev_core.export import export_onnx
    export_onnx(model, "out/nano.onnx")                      # fp32
    export_onnx(qmodel, "out/nano-qdq.onnx", precision="qdq")  # QuantizeLinear/DequantizeLinear

See ``onnx_export`` (graph I/O, sidecar) and ``qdq`` (how the LSQ grids become Q/DQ nodes).
"""

from .onnx_export import ONNX_FORMAT, PRECISIONS, example_inputs, export_onnx, read_onnx_sidecar, sidecar_path, state_sha256

__all__ = ["ONNX_FORMAT", "PRECISIONS", "example_inputs", "export_onnx", "read_onnx_sidecar", "sidecar_path", "state_sha256"]
