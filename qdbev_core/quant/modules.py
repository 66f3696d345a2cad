"""Fake-quantized drop-in layers: ``QuantConv2d``, ``QuantLinear``, ``QuantEmbedding``.

Each is a *subclass* of the layer it replaces and takes over that layer's ``weight`` / ``bias``
Parameter objects (no copy), so

- ``isinstance(m, nn.Linear)`` etc. still hold, state-dict keys of the original parameters are
  unchanged (an fp32 checkpoint loads into the quantized model with ``strict=False``; the new
  keys are ``<layer>.wq.*`` and ``<layer>.aq.*``), and an optimizer built before the swap
  keeps training the same tensors;
- ``QuantConv2d`` / ``QuantLinear``: ``forward(x) = layer(aq(x), weight=wq(weight))``:
  per-tensor affine input-activation quantizer ``aq``, per-output-channel weight quantizer
  ``wq`` (``aq`` is ``None`` for a layer whose input is already quantized by an output
  quantizer: ``quant.outputs``, "shared input", the producer named by ``shared_input_from``);
  the bias stays float32 (an integer kernel would hold it as int32 at scale ``s_w * s_a``; we
  keep the float so the fake-quant and the packed model agree exactly);
- ``QuantEmbedding``: ``.weight`` *returns the fake-quantized table* (the model reads
  ``bev_embedding.weight`` directly, not through ``forward``), one step per embedding
  dimension; ``._parameters["weight"]`` is the float master copy. No activation quantizer.

The model has no ``nn.MultiheadAttention``: ``ops.SelfAttention`` uses four ``nn.Linear``
projections and the deformable attentions use ``nn.Linear`` for value / output projections,
sampling offsets and attention weights, so all of them are covered. Not quantized (float32):
LayerNorm, BatchNorm (not folded), softmax, ``grid_sample``, residual additions (unless
``QuantSpec.quantize_outputs`` quantizes their outputs, see ``quant.outputs``), and the raw
``nn.Parameter`` embeddings ``encoder.cams_embeds`` / ``encoder.level_embeds``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lsq import LsqQuantizer


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` with LSQ fake quantization of its weight (per output channel) and input."""

    wq: LsqQuantizer
    aq: LsqQuantizer | None
    shared_input_from: str | None = None

    @classmethod
    def from_float(cls, conv: nn.Conv2d, w_bits: int, a_bits: int) -> "QuantConv2d":
        q = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, conv.bias is not None, conv.padding_mode, device="meta",
        )
        q.weight = conv.weight
        q.bias = conv.bias
        q.train(conv.training)
        dev = conv.weight.device
        q.wq = LsqQuantizer(w_bits, "weight", conv.out_channels, 0).to(dev)
        q.aq = LsqQuantizer(a_bits, "act").to(dev)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x if self.aq is None else self.aq(x), self.wq(self.weight), self.bias)


class QuantLinear(nn.Linear):
    """``nn.Linear`` with LSQ fake quantization of its weight (per output row) and input."""

    wq: LsqQuantizer
    aq: LsqQuantizer | None
    shared_input_from: str | None = None

    @classmethod
    def from_float(cls, lin: nn.Linear, w_bits: int, a_bits: int) -> "QuantLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None, device="meta")
        q.weight = lin.weight
        q.bias = lin.bias
        q.train(lin.training)
        dev = lin.weight.device
        q.wq = LsqQuantizer(w_bits, "weight", lin.out_features, 0).to(dev)
        q.aq = LsqQuantizer(a_bits, "act").to(dev)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x if self.aq is None else self.aq(x), self.wq(self.weight), self.bias)


class QuantEmbedding(nn.Embedding):
    """``nn.Embedding`` whose ``.weight`` is the fake-quantized table (one step per dimension)."""

    wq: LsqQuantizer
    aq = None

    @classmethod
    def from_float(cls, emb: nn.Embedding, w_bits: int, a_bits: int | None = None) -> "QuantEmbedding":
        q = cls(
            emb.num_embeddings, emb.embedding_dim, emb.padding_idx, emb.max_norm, emb.norm_type,
            emb.scale_grad_by_freq, emb.sparse, device="meta",
        )
        q._parameters["weight"] = emb._parameters["weight"]
        q.train(emb.training)
        q.wq = LsqQuantizer(w_bits, "weight", emb.embedding_dim, 1).to(emb._parameters["weight"].device)
        return q

    @property
    def float_weight(self) -> nn.Parameter:
        """The float master table (what the optimizer updates)."""
        return self._parameters["weight"]

    def __getattr__(self, name: str):
        if name == "weight" and "wq" in self._modules:
            return self._modules["wq"](self._parameters["weight"])
        return super().__getattr__(name)


QUANT_TYPES = (QuantConv2d, QuantLinear, QuantEmbedding)
"""The layer types ``quantize_model`` inserts."""


def master_weight(m: nn.Module) -> nn.Parameter:
    """The float weight Parameter of a (quantized or plain) layer."""
    return m._parameters["weight"]
