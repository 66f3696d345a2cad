"""QD-BEV quantization: LSQ fake quantizers, layer swapping, calibration, real low-bit files.

    from qdbev_core.quant import QuantSpec, quantize_model, calibrate, pack_model, unpack_model
    qmodel = quantize_model(BEVDetector("nano"), QuantSpec())   # W4A6, first/final layers W8A8
    calibrate(qmodel, batches)                                  # initial steps from data
    ... QAT ...
    pack_model(qmodel, "models/nano-w4a6.safetensors", meta)    # integers on disk
    same = unpack_model("models/nano-w4a6.safetensors")         # equal outputs

Modules: ``lsq`` (quantizer math), ``modules`` (QuantConv2d / QuantLinear / QuantEmbedding),
``outputs`` (output quantizers on block / shortcut / stem / FPN outputs, so integer runtimes
stay integer), ``spec`` (QuantSpec, parse_bits), ``quantize`` (quantize_model, enable_stage, calibrate),
``pack`` (pack_model, unpack_model, model_size_report).
"""

from .lsq import LsqQuantizer, act_range, weight_range
from .modules import QUANT_TYPES, QuantConv2d, QuantEmbedding, QuantLinear
from .pack import PACK_FORMAT, model_size_report, pack_model, unpack_model
from .quantize import (
    calibrate,
    enable_stage,
    enabled_layers,
    out_quantizers,
    quant_modules,
    quantize_model,
    quantizer_parameters,
    quantizers,
    set_quant_enabled,
)
from .spec import DEFAULT_OVERRIDES, DEFAULT_STAGES, QuantSpec, parse_bits

__all__ = [
    "LsqQuantizer",
    "act_range",
    "weight_range",
    "QUANT_TYPES",
    "QuantConv2d",
    "QuantEmbedding",
    "QuantLinear",
    "PACK_FORMAT",
    "model_size_report",
    "pack_model",
    "unpack_model",
    "calibrate",
    "enable_stage",
    "enabled_layers",
    "out_quantizers",
    "quant_modules",
    "quantize_model",
    "quantizer_parameters",
    "quantizers",
    "set_quant_enabled",
    "DEFAULT_OVERRIDES",
    "DEFAULT_STAGES",
    "QuantSpec",
    "parse_bits",
]
