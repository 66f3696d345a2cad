"""DETR-style decoder with deformable cross-attention into the BEV and iterative box refinement.

Shapes: queries ``(B, Q, C)``; reference points ``(B, Q, 3)`` normalized ``(nx, ny, nz)`` in
``[0, 1]`` over ``pc_range`` (x along BEV columns, y along rows, z over ``[z_min, z_max]``);
BEV ``(B, HW, C)`` row-major (see ``encoder``).

Module names: ``decoder.query_embedding`` (``(Q, 2C)``: positional half, content half; N(0,1)),
``decoder.reference_points`` (Linear C->3, xavier; ``learned`` init), or ``decoder.query_class_embed``
+ ``decoder.pos_mlp`` (``heatmap`` init), ``decoder.layers.{i}.{self_attn, norm1, cross_attn,
norm2, ffn, norm3}``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .ops import FFN, SelfAttention, deformable_sample, init_sampling_offsets, split_heads


class BEVCrossAttention(nn.Module):
    """Each query samples ``dec_points`` BEV locations per head around its reference (x, y)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, self.heads, self.points = cfg.embed_dims, cfg.num_heads, cfg.dec_points
        self.sampling_offsets = nn.Linear(c, self.heads * self.points * 2)
        self.attention_weights = nn.Linear(c, self.heads * self.points)
        self.value_proj = nn.Linear(c, c)
        self.output_proj = nn.Linear(c, c)
        self.drop = nn.Dropout(cfg.dropout)
        init_sampling_offsets(self.sampling_offsets, self.heads, 1, self.points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query, query_pos, ref_xy, bev, bev_hw):
        """query, query_pos ``(B, Q, C)``; ref_xy ``(B, Q, 2)``; bev ``(B, HW, C)`` -> ``(B, Q, C)``."""
        b, nq, c = query.shape
        bh, bw = bev_hw
        q = query + query_pos
        off = self.sampling_offsets(q).view(b, nq, self.heads, 1, self.points, 2)
        attw = torch.softmax(self.attention_weights(q).view(b, nq, self.heads, self.points), -1)
        norm = torch.tensor([1.0 / bw, 1.0 / bh], dtype=q.dtype, device=q.device)
        locs = ref_xy.view(b, nq, 1, 1, 1, 2) + off * norm
        value = split_heads(self.value_proj(bev).view(b, bh, bw, c), self.heads)
        out = deformable_sample([value], locs, attw.view(b, nq, self.heads, 1, self.points))
        return query + self.drop(self.output_proj(out))


class DecoderLayer(nn.Module):
    """``self_attn -> norm1 -> cross_attn -> norm2 -> ffn -> norm3`` (post-norm)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.embed_dims
        self.self_attn = SelfAttention(c, cfg.num_heads, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.norm1 = nn.LayerNorm(c)
        self.cross_attn = BEVCrossAttention(cfg)
        self.norm2 = nn.LayerNorm(c)
        self.ffn = FFN(c, cfg.ffn_dims, cfg.dropout)
        self.norm3 = nn.LayerNorm(c)

    def forward(self, query, query_pos, ref_xy, bev, bev_hw):
        qk = query + query_pos
        query = self.norm1(query + self.drop(self.self_attn(qk, qk, query)))
        query = self.norm2(self.cross_attn(query, query_pos, ref_xy, bev, bev_hw))
        return self.norm3(self.ffn(query))


Predict = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class Decoder(nn.Module):
    """Object queries -> per-layer class logits and boxes, refining reference points layer by layer.

    ``init_queries`` builds ``(query, query_pos, reference)``; ``forward`` runs the layers and
    calls ``predict(i, query, reference) -> (logits, code, new_reference)`` (the heads) after each;
    the next layer uses ``new_reference.detach()`` (BEVFormer's ``with_box_refine``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.embed_dims
        self.cfg = cfg
        self.query_init = cfg.query_init
        if cfg.query_init == "learned":
            # nn.Embedding initializes N(0, 1): std 0.02 collapsed every reference point to the
            # BEV centre in the CPU prototype (docs/DESIGN.md §4)
            self.query_embedding = nn.Embedding(cfg.num_queries, 2 * c)
            self.reference_points = nn.Linear(c, 3)
            nn.init.xavier_uniform_(self.reference_points.weight)
            nn.init.zeros_(self.reference_points.bias)
        else:
            # no per-slot parameters: the decoder is permutation-equivariant over the selected
            # peaks, so the order topk returns them in (ties) cannot change the detections
            self.query_class_embed = nn.Embedding(cfg.num_classes, c)
            self.pos_mlp = nn.Sequential(nn.Linear(3, c), nn.ReLU(inplace=True), nn.Linear(c, c))
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))

    def init_queries(
        self, bev: torch.Tensor, heatmap: torch.Tensor | None = None, heatmap_reg: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(query (B, Q, C), query_pos (B, Q, C), reference (B, Q, 3) in [0, 1])``.

        ``heatmap`` init: the ``Q`` highest class-max heat-map logits that are 3x3 local maxima
        (ties broken by ``topk``) choose cells; the reference is the cell centre plus the dense
        head's sub-cell offset and height, detached; the query content is the BEV feature there
        plus a learned embedding of the peak's class; the positional part is an MLP of the
        reference.
        """
        b = bev.shape[0]
        c = self.cfg.embed_dims
        if self.query_init == "learned":
            w = self.query_embedding.weight
            query_pos, query = w[:, :c], w[:, c:]
            ref = self.reference_points(query_pos).sigmoid()
            return query.unsqueeze(0).expand(b, -1, -1), query_pos.unsqueeze(0).expand(b, -1, -1), ref.unsqueeze(0).expand(b, -1, -1)
        assert heatmap is not None and heatmap_reg is not None
        cfg = self.cfg
        bh, bw = cfg.bev_h, cfg.bev_w
        with torch.no_grad():
            best, cls = heatmap.detach().max(1, keepdim=True)  # (B, 1, H, W) logits, class
            peak = F.max_pool2d(best, 3, stride=1, padding=1)
            prob = torch.sigmoid(best)
            # peaks rank above every non-peak; sigmoid keeps full float precision in (0, 2)
            score = torch.where(best >= peak, prob + 1.0, prob).view(b, bh * bw)
            idx = torch.topk(score, cfg.num_queries, dim=1).indices  # (B, Q)
            cls = torch.gather(cls.view(b, bh * bw), 1, idx)
            reg = heatmap_reg.detach().flatten(2).transpose(1, 2)  # (B, HW, 10)
            reg = torch.gather(reg, 1, idx.unsqueeze(-1).expand(-1, -1, reg.shape[-1]))
            col = (idx % bw).to(bev.dtype)
            row = torch.div(idx, bw, rounding_mode="floor").to(bev.dtype)
            nx = (col + 0.5 + reg[..., 0]) / bw
            ny = (row + 0.5 + reg[..., 1]) / bh
            nz = (reg[..., 2] - cfg.pc_range[2]) / (cfg.pc_range[5] - cfg.pc_range[2])
            ref = torch.stack([nx, ny, nz], -1).clamp(0.001, 0.999)
        feat = torch.gather(bev, 1, idx.unsqueeze(-1).expand(-1, -1, c))
        query = feat + self.query_class_embed(cls)
        return query, self.pos_mlp(ref), ref

    def forward(self, query, query_pos, reference, bev, predict: Predict):
        """Returns per-layer lists ``logits (B, Q, K)``, ``codes (B, Q, 10)``, references used."""
        bev_hw = (self.cfg.bev_h, self.cfg.bev_w)
        logits, codes, refs = [], [], []
        for i, layer in enumerate(self.layers):
            query = layer(query, query_pos, reference[..., :2], bev, bev_hw)
            lg, code, new_ref = predict(i, query, reference)
            logits.append(lg)
            codes.append(code)
            refs.append(reference)
            reference = new_ref.detach()
        return logits, codes, refs
