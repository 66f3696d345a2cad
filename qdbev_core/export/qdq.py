"""Export-time stand-ins for the fake-quant layers: LSQ grids as ONNX Q/DQ nodes.

How the Q/DQ graph is made (the choice, and why)
-----------------------------------------------
``to_qdq_modules(model)`` (on a deep copy) replaces every ``QuantConv2d`` / ``QuantLinear`` /
``QuantEmbedding`` by a module whose forward calls two ``torch.autograd.Function`` s with a
``symbolic`` method. In PyTorch they compute *exactly* the fake-quant arithmetic of
``quant.lsq.fake_quant`` (so tracing sees the same values); in the legacy ONNX exporter
(``dynamo=False``) they emit the ONNX nodes directly:

* weights: the LSQ integer codes ``q = clamp(round(w / s_c), qmin, qmax)`` as an **int8
  initializer** + ``DequantizeLinear(axis = output channel, scale = s_c, zero point 0)``. 4-bit
  codes (-8..7) sit on the int8 grid unchanged. Linear weights are stored transposed ``(in,
  out)`` with ``axis=1`` so the graph is ``MatMul(x, DQ(W^T))`` without a Transpose between the
  DQ and the MatMul (backends fuse DQ -> MatMul only when they are adjacent);
* activations (``act_format="u8"``, for onnxruntime): ``QuantizeLinear(scale = s, zero point =
  round(z), uint8)`` -> ``Clip(uint8 0, 2^b - 1)`` -> ``DequantizeLinear``. The LSQ grid is
  ``clamp(round(x / s) + zi, 0, 2^b - 1)``; the uint8 Q saturates at 0..255 and the integer
  Clip narrows that to the b-bit range, so 6-bit activations are reproduced exactly (an 8-bit
  quantizer needs no Clip). Unsigned activations + signed weights (u8s8) is the format
  onnxruntime's CPU int8 kernels take for every convolution (docs/DESIGN.md §4);
* activations (``act_format="s8"``, for TensorRT, which only accepts symmetric int8 Q/DQ with
  zero point 0): a float ``Clip`` to ``[(0 - zi) s, (2^b - 1 - zi) s]`` -> ``QuantizeLinear(int8,
  zero point 0)`` -> ``DequantizeLinear``. An integer zero point only shifts the grid, so a
  b-bit affine grid is a subset of the int8 grid whenever ``-zi >= -128`` and ``2^b - 1 - zi
  <= 127`` (always for b <= 7, 8-bit only with zi = 128); quantizers that do not fit stay as
  float fake-quant ops (Div/Round/Clip/Mul), exact but not int8, and their layer's weight is
  written as the float constant ``q * s`` (no weight-only DQ for TensorRT to interpret); both
  are listed in the sidecar (in this recipe: the W8A8 first conv and final prediction layers).

Output quantizers (``quant.outputs``: residual block / branch / shortcut / stem / FPN outputs,
on by default in new QAT specs) become the same ``_ActExport`` forms as input quantizers (their
forward hook calls whatever module sits at ``<point>.oq``), so a residual block exports as
``DQ -> Conv -> Q`` (branch), ``DQ -> Conv -> Q`` (shortcut), ``DQ, DQ -> Add -> Relu -> Q``
(output): the patterns onnxruntime's QDQ transformer turns into ``QLinearConv`` and
``QLinearAdd`` (the ``Relu`` before a zero-point-0 ``Q`` is dropped, exactly). Layers reading a
point's output have no input quantizer (``aq = None``) and export as ``DQ -> Conv`` on the
point's DQ. The stem's point sits before its max-pool; the export copy applies the same
quantizer again after the max-pool (``_requantize_after_pool``: max-pool of grid values is on
the grid and the quantizer is idempotent there, so the values are unchanged) so that the first
block's convolutions and addition read a ``DequantizeLinear`` directly.

Nothing else is touched, so the camera geometry (projection ``MatMul`` s, visibility masks,
reference points, sampling locations), softmax, LayerNorm, the transformer's residual additions
and every ``GridSample`` stay float32 by construction: only the inputs and weights of the
network's conv / linear / embedding layers and the output quantizers' tensors carry Q/DQ,
exactly where the fake-quant model quantizes.
(The alternative, rewriting the traced Div/Round/Clip/Mul pattern of ``fake_quant`` in the ONNX
graph afterwards, has to pattern-match exporter output; the module swap states the intent at
the layer level and cannot catch a geometry MatMul by accident.)

After export, ``onnx_export`` folds each ``BatchNormalization`` that directly follows a Q/DQ
``Conv`` into that conv: the integer codes stay, the per-channel DQ scale becomes ``s_c * gamma_c
/ sqrt(var_c + eps)`` (a negative factor flips the codes' sign) and the bias absorbs the shift.
That is the same arithmetic up to float rounding and gives onnxruntime the ``DQ -> Conv -> (Relu)
-> Q`` chains its int8 kernels need.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..quant.lsq import LsqQuantizer, fake_quant
from ..quant.modules import QuantConv2d, QuantEmbedding, QuantLinear, master_weight
from ..quant.outputs import attach, output_points

ACT_FORMATS = ("u8", "s8")


class _WeightDQ(torch.autograd.Function):
    """``q * scale`` (per channel along ``axis``); ONNX: ``DequantizeLinear(q int8, scale, 0, axis)``."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> torch.Tensor:
        shape = [1] * q.dim()
        shape[axis] = -1
        return q.to(torch.float32) * scale.view(shape)

    @staticmethod
    def symbolic(g, q, scale, zero_point, axis: int):
        return g.op("DequantizeLinear", q, scale, zero_point, axis_i=axis)


class _ActQDQu8(torch.autograd.Function):
    """LSQ affine grid ``clamp(round(x/s) + zi, lo, hi)`` as ``Q(uint8) [-> Clip(uint8)] -> DQ``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        zi = zero_point.to(torch.float32)
        return ((torch.round(x / scale) + zi).clamp(lo, hi) - zi) * scale

    @staticmethod
    def symbolic(g, x, scale, zero_point, lo: int, hi: int):
        q = g.op("QuantizeLinear", x, scale, zero_point)
        if (lo, hi) != (0, 255):
            q = g.op(
                "Clip", q,
                g.op("Constant", value_t=torch.tensor(lo, dtype=torch.uint8)),
                g.op("Constant", value_t=torch.tensor(hi, dtype=torch.uint8)),
            )
        return g.op("DequantizeLinear", q, scale, zero_point)


class _ActQDQs8(torch.autograd.Function):
    """Symmetric int8 form: ``Clip(x, flo, fhi) -> Q(int8, zp 0) -> DQ`` (TensorRT)."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, flo: torch.Tensor, fhi: torch.Tensor) -> torch.Tensor:
        xc = torch.minimum(torch.maximum(x, flo), fhi)
        return torch.round(xc / scale).clamp(-128, 127) * scale

    @staticmethod
    def symbolic(g, x, scale, zero_point, flo, fhi):
        xc = g.op("Clip", x, flo, fhi)
        return g.op("DequantizeLinear", g.op("QuantizeLinear", xc, scale, zero_point), scale, zero_point)


@dataclass
class QdqReport:
    """What the swap did, layer by layer (written to the export sidecar)."""

    act_format: str
    layers: list[dict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """``{"weight:<mode>": n, "act:<mode>": n}`` over layers and output quantizers (``act``
        counts both; output quantizers have no ``weight``)."""
        out: dict[str, int] = {}
        for r in self.layers:
            for k in ("weight", "act"):
                if r.get(k) is None:
                    continue
                key = f"{k}:{str(r[k]).split(':')[0]}"
                out[key] = out.get(key, 0) + 1
        return out


class _ActExport(nn.Module):
    """Export form of one activation quantizer (or identity when disabled)."""

    def __init__(self, aq: LsqQuantizer | None, act_format: str):
        super().__init__()
        self.mode = "float"
        if aq is None or not aq.is_enabled:
            return
        with torch.no_grad():
            s = aq.effective_step().detach().float().reshape(())
            zi = int(aq.effective_zero_point().item())
        lo, hi = aq.qmin, aq.qmax
        self.lo, self.hi = lo, hi
        self.register_buffer("scale", s.clone())
        if act_format == "u8" and 0 <= zi <= 255:
            self.mode = "qdq-u8"
            self.register_buffer("zp", torch.tensor(zi, dtype=torch.uint8))
        elif act_format == "s8" and lo - zi >= -128 and hi - zi <= 127:
            self.mode = "qdq-s8"
            self.register_buffer("zp", torch.tensor(0, dtype=torch.int8))
            self.register_buffer("flo", ((lo - zi) * s).reshape(()))
            self.register_buffer("fhi", ((hi - zi) * s).reshape(()))
        else:  # not representable on this integer type: exact float fake-quant ops
            self.mode = "fake"
            self.register_buffer("zpf", torch.tensor(float(zi)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "qdq-u8":
            return _ActQDQu8.apply(x, self.scale, self.zp, self.lo, self.hi)
        if self.mode == "qdq-s8":
            return _ActQDQs8.apply(x, self.scale, self.zp, self.flo, self.fhi)
        if self.mode == "fake":
            return fake_quant(x, self.scale, self.zpf, self.lo, self.hi)
        return x


class _WeightExport(nn.Module):
    """Int8 codes + per-channel scales, dequantized along ``axis`` (or the float weight)."""

    def __init__(self, layer: nn.Module, axis: int, transpose: bool = False, as_float: bool = False):
        super().__init__()
        w = master_weight(layer).detach().float()
        wq: LsqQuantizer = layer.wq
        self.axis = axis
        if not wq.is_enabled or as_float:
            # disabled quantizer: the float weight; as_float: the fake-quantized weight q * s as a
            # float constant (same values, for a layer whose input cannot be int8 on the target)
            self.mode = "float" if not wq.is_enabled else "float-qweight"
            if wq.is_enabled:
                with torch.no_grad():
                    w = wq(w) if wq.is_initialized else w
            self.register_buffer("w", (w.t() if transpose else w).contiguous())
            return
        self.mode = "dq-int8"
        with torch.no_grad():
            q = wq.integers(w).to(torch.int8)
            s = wq.effective_step().detach().float().reshape(-1)
        if transpose:
            q = q.t()
        self.register_buffer("q", q.contiguous())
        self.register_buffer("scale", s.clone())
        self.register_buffer("zp", torch.zeros(s.numel(), dtype=torch.int8))
        self.bits = wq.bits

    def forward(self) -> torch.Tensor:
        if self.mode != "dq-int8":
            return self.w
        return _WeightDQ.apply(self.q, self.scale, self.zp, self.axis)


def _float_input(ax: "_ActExport", input_mode: str | None) -> bool:
    """True when a layer's input reaches it as float (not a DQ output): its own quantizer cannot
    be Q/DQ on this format, or it reads an output quantizer (``input_mode``) that is off / fake."""
    if ax.mode != "float":
        return ax.mode == "fake"
    return input_mode in ("fake", "float")


class QdqConv2d(nn.Module):
    def __init__(self, m: QuantConv2d, act_format: str, input_mode: str | None = None):
        super().__init__()
        if m.padding_mode != "zeros":
            raise ValueError(f"Q/DQ export supports zero-padded convolutions only, got padding_mode={m.padding_mode!r}")
        self.stride, self.padding, self.dilation, self.groups = m.stride, m.padding, m.dilation, m.groups
        self.bias = None if m.bias is None else nn.Parameter(m.bias.detach().clone(), requires_grad=False)
        self.ax = _ActExport(m.aq, act_format)
        self.wx = _WeightExport(m, 0, as_float=_float_input(self.ax, input_mode))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.ax(x), self.wx(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class QdqLinear(nn.Module):
    def __init__(self, m: QuantLinear, act_format: str, input_mode: str | None = None):
        super().__init__()
        self.bias = None if m.bias is None else nn.Parameter(m.bias.detach().clone(), requires_grad=False)
        self.ax = _ActExport(m.aq, act_format)
        # (in, out), scales along the outputs
        self.wx = _WeightExport(m, 1, transpose=True, as_float=_float_input(self.ax, input_mode))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(self.ax(x), self.wx())
        return y if self.bias is None else y + self.bias


class QdqEmbedding(nn.Module):
    """``.weight`` is the dequantized table (the model reads it directly); ``forward(idx)`` gathers."""

    def __init__(self, m: QuantEmbedding):
        super().__init__()
        self.wx = _WeightExport(m, 1)

    @property
    def weight(self) -> torch.Tensor:
        return self.wx()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


def to_qdq_modules(model: nn.Module, act_format: str = "u8") -> tuple[nn.Module, QdqReport]:
    """A deep copy of the fake-quant ``model`` with every quantized layer in its Q/DQ export form.

    Raises ``ValueError`` when the model has no quantized layer (export it as fp32 instead).
    """
    if act_format not in ACT_FORMATS:
        raise ValueError(f"act_format must be one of {ACT_FORMATS}, got {act_format!r}")
    model = copy.deepcopy(model).cpu().eval()
    report = QdqReport(act_format)
    todo = [(n, m) for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear, QuantEmbedding))]
    if not todo:
        raise ValueError("precision 'qdq' needs a fake-quant model (quant.quantize_model); this model has no quantized layer")
    # output quantizers first: a layer reading one needs to know how it exports
    points = {name: (oq, _ActExport(oq, act_format)) for name, oq in output_points(model)}
    for name, m in todo:
        shared = getattr(m, "shared_input_from", None) if getattr(m, "aq", None) is None else None
        in_mode = points[shared][1].mode if shared in points else None
        if isinstance(m, QuantConv2d):
            new, kind = QdqConv2d(m, act_format, in_mode), "conv"
        elif isinstance(m, QuantLinear):
            new, kind = QdqLinear(m, act_format, in_mode), "linear"
        else:
            new, kind = QdqEmbedding(m), "embedding"
        ax = getattr(new, "ax", None)
        report.layers.append({
            "name": name, "type": kind,
            "w_bits": m.wq.bits if m.wq.is_enabled else None,
            "a_bits": (m.aq.bits if m.aq is not None and m.aq.is_enabled else None),
            "weight": new.wx.mode,
            "act": "none" if ax is None else (f"shared:{shared}" if shared else ax.mode),
        })
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
    for name, (oq, ax) in points.items():
        attach(model, name, ax)  # (re-)hooks a point whose module was just swapped (an FPN conv)
        report.layers.append({"name": name, "type": "output", "w_bits": None,
                              "a_bits": oq.bits if oq.is_enabled else None, "weight": None, "act": ax.mode})
        if name.endswith("stem.relu") and ax.mode != "float":
            _requantize_after_pool(model.get_submodule(name[: -len(".relu")]), ax)
    return model, report


def _requant_hook(module: nn.Module, inputs, output):
    return module._modules["requant_after_pool"](output)


def _requantize_after_pool(stem: nn.Module, ax: "_ActExport") -> None:
    """Export copy only: apply the stem point's quantizer again after the stem's max-pool (exact:
    see the module doc), so the first block reads ``DequantizeLinear`` output."""
    if not isinstance(getattr(stem, "pool", None), nn.MaxPool2d):
        return
    stem.add_module("requant_after_pool", ax)
    stem.register_forward_hook(_requant_hook)
