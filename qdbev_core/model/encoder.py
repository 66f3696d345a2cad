"""BEVFormer-style BEV encoder: temporal self-attention + spatial cross-attention + FFN.

Shapes (B = batch, N = 6 cameras, C = embed_dims, HW = bev_h * bev_w, Z = pillar heights):

- BEV tensors are ``(B, HW, C)``, row-major over ``(row r along +y, column c along +x)``:
  cell ``(r, c)`` covers ``x in [x_min + c * dx, x_min + (c + 1) * dx)``,
  ``y in [y_min + r * dy, ...)`` of the *current* ego frame (see ``ops`` module doc).
- Image features ``(B * N, C, h_l, w_l)`` per level, camera-major inside a sample
  (index ``b * N + n``), cameras in ``CAMERA_NAMES`` order.

Module names: ``encoder.bev_embedding`` (learned BEV queries), ``encoder.pos_row`` /
``encoder.pos_col`` (learned positional encoding), ``encoder.cams_embeds``,
``encoder.level_embeds``, ``encoder.layers.{i}.{tsa,norm1,sca,norm2,ffn,norm3}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .ops import FFN, bev_cell_centres, deformable_sample, init_sampling_offsets, project_to_cameras, rigid_inverse, split_heads


class TemporalSelfAttention(nn.Module):
    """Deformable self-attention over the queue ``[aligned previous BEV, current BEV query]``.

    Each BEV query samples ``tsa_points`` locations per head around its own cell in each of the
    two BEV maps (offsets and weights predicted from ``[prev feature, query + pos]``), softmax
    per queue, and averages the two queues. Without a previous BEV the current query is used
    twice (BEVFormer's first-frame behaviour).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, self.heads, self.points = cfg.embed_dims, cfg.num_heads, cfg.tsa_points
        self.sampling_offsets = nn.Linear(2 * c, self.heads * 2 * self.points * 2)
        self.attention_weights = nn.Linear(2 * c, self.heads * 2 * self.points)
        self.value_proj = nn.Linear(c, c)
        self.output_proj = nn.Linear(c, c)
        self.drop = nn.Dropout(cfg.dropout)
        init_sampling_offsets(self.sampling_offsets, self.heads, 2, self.points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, query: torch.Tensor, query_pos: torch.Tensor, prev: torch.Tensor, ref: torch.Tensor, bev_hw: tuple[int, int]
    ) -> torch.Tensor:
        """query, query_pos, prev: ``(B, HW, C)``; ref: ``(HW, 2)`` cell centres; returns ``(B, HW, C)``."""
        b, lq, c = query.shape
        bh, bw = bev_hw
        q = torch.cat([prev, query + query_pos], dim=-1)
        off = self.sampling_offsets(q).view(b, lq, self.heads, 2, self.points, 2)
        attw = torch.softmax(self.attention_weights(q).view(b, lq, self.heads, 2, self.points), dim=-1)
        norm = torch.tensor([1.0 / bw, 1.0 / bh], dtype=q.dtype, device=q.device)
        locs = ref.view(1, lq, 1, 1, 1, 2) + off * norm  # (B, HW, heads, 2, P, 2)
        # the two queue entries become two batch items of one single-level sampling
        locs = locs.permute(0, 3, 1, 2, 4, 5).reshape(b * 2, lq, self.heads, 1, self.points, 2)
        attw = attw.permute(0, 3, 1, 2, 4).reshape(b * 2, lq, self.heads, 1, self.points)
        value = self.value_proj(torch.stack([prev, query], dim=1)).reshape(b * 2, bh, bw, c)
        out = deformable_sample([split_heads(value, self.heads)], locs, attw)  # (B*2, HW, C)
        out = out.view(b, 2, lq, c).mean(1)
        return query + self.drop(self.output_proj(out))


class SpatialCrossAttention(nn.Module):
    """Deformable attention from each BEV cell into the cameras that see its pillar.

    For every BEV cell, ``Z`` pillar points are projected into each camera (normalized image
    coords from ``project_to_cameras``); around each projection ``sca_points / Z`` offsets per
    head and level are sampled with bilinear ``grid_sample`` from every feature level.
    Attention weights are a softmax over levels x points, zeroed for pillar points a camera
    does not see; the per-camera results are summed and divided by the number of cameras that
    see any point of the pillar (BEVFormer's hit-count average).

    Only the ``k = sca_cams_per_cell`` cameras that see most pillar points of a cell are sampled
    (static shapes, chosen with ``topk``). To let each query read from a different camera with a
    single ``grid_sample`` per level, the six camera feature maps are laid side by side in one
    "atlas" per sample, each framed by a one-pixel zero border, and a sample whose location
    leaves its own camera by more than that border gets weight 0: this is exactly
    ``grid_sample``'s zero padding of the separate maps.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.embed_dims
        self.heads, self.levels, self.points, self.z = cfg.num_heads, cfg.num_levels, cfg.sca_points, cfg.pillar_points
        self.cams_per_cell = cfg.sca_cams_per_cell
        self.sampling_offsets = nn.Linear(c, self.heads * self.levels * self.points * 2)
        self.attention_weights = nn.Linear(c, self.heads * self.levels * self.points)
        self.value_proj = nn.Linear(c, c)
        self.output_proj = nn.Linear(c, c)
        self.drop = nn.Dropout(cfg.dropout)
        init_sampling_offsets(self.sampling_offsets, self.heads, self.levels, self.points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _atlas(self, f: torch.Tensor, b: int, ncam: int) -> torch.Tensor:
        """``(B*N, h, w, C)`` -> value atlas ``(B*heads, d, h, N*(w+2))`` (zero column each side)."""
        _, h, w, c = f.shape
        v = self.value_proj(f).view(b, ncam, h, w, c)
        v = F.pad(v, (0, 0, 1, 1))  # (B, N, h, w+2, C)
        nh = self.heads
        v = v.view(b, ncam, h, w + 2, nh, c // nh).permute(0, 4, 5, 2, 1, 3)  # (B, heads, d, h, N, w+2)
        return v.reshape(b * nh, c // nh, h, ncam * (w + 2))

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor,
        feats: list[torch.Tensor],
        ref_cam: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            query, query_pos: ``(B, HW, C)``.
            feats: per level ``(B * N, h_l, w_l, C)`` channels-last image features (with
                camera and level embeddings added).
            ref_cam: ``(B, N, HW, Z, 2)`` normalized image coordinates of the pillar points.
            mask: ``(B, N, HW, Z)`` 1 where the camera sees the pillar point.

        Returns ``(B, HW, C)``.
        """
        b, lq, c = query.shape
        ncam = ref_cam.shape[1]
        k = self.cams_per_cell
        lv, nh, p, z = self.levels, self.heads, self.points, self.z
        pz = p // z

        # the k cameras seeing most pillar points of each cell (ties: lower camera index)
        seen = mask.sum(-1)  # (B, N, HW)
        rank = seen * ncam - torch.arange(ncam, dtype=seen.dtype, device=seen.device).view(1, ncam, 1)
        cam = torch.topk(rank, k, dim=1).indices  # (B, k, HW)
        ref_k = torch.gather(ref_cam, 1, cam.view(b, k, lq, 1, 1).expand(-1, -1, -1, z, 2))
        mask_k = torch.gather(mask, 1, cam.view(b, k, lq, 1).expand(-1, -1, -1, z))  # (B, k, HW, Z)

        q = query + query_pos
        off = self.sampling_offsets(q).view(b, 1, lq, nh, lv, pz, z, 2)
        attw = torch.softmax(self.attention_weights(q).view(b, lq, nh, lv * p), dim=-1)
        attw = attw.view(b, 1, lq, nh, lv, pz, z) * mask_k.view(b, k, lq, 1, 1, 1, z)
        widths = torch.tensor([float(f.shape[2]) for f in feats], dtype=q.dtype, device=q.device).view(1, 1, 1, 1, lv, 1, 1)
        heights = torch.tensor([float(f.shape[1]) for f in feats], dtype=q.dtype, device=q.device).view(1, 1, 1, 1, lv, 1, 1)
        # point index i = j * Z + pillar height: BEVFormer's layout; offsets in feature pixels
        u = ref_k[..., 0].reshape(b, k, lq, 1, 1, 1, z) * widths + off[..., 0]  # own-camera pixels
        v = ref_k[..., 1].reshape(b, k, lq, 1, 1, 1, z) + off[..., 1] / heights  # normalized
        inside = ((u > -1.0) & (u < widths + 1.0)).to(q.dtype)  # within the zero frame
        camf = cam.to(q.dtype).view(b, k, lq, 1, 1, 1, 1)
        u_atlas = (camf * (widths + 2.0) + 1.0 + torch.minimum(u.clamp(min=-1.0), widths + 1.0)) / (ncam * (widths + 2.0))
        locs = torch.stack([u_atlas, v.expand_as(u_atlas)], -1)  # (B, k, HW, heads, L, P/Z, Z, 2)
        locs = locs.reshape(b, k * lq, nh, lv, p, 2)
        attw = (attw * inside).reshape(b, k * lq, nh, lv, p)
        values = [self._atlas(f, b, ncam) for f in feats]
        out = deformable_sample(values, locs, attw).view(b, k, lq, c)
        hits = mask_k.amax(dim=-1)  # (B, k, HW)
        count = hits.sum(1).clamp(min=1.0).unsqueeze(-1)  # (B, HW, 1)
        out = out.sum(1) / count
        return query + self.drop(self.output_proj(out))


class EncoderLayer(nn.Module):
    """``tsa -> norm1 -> sca -> norm2 -> ffn -> norm3`` (post-norm, as BEVFormer)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.embed_dims
        self.tsa = TemporalSelfAttention(cfg)
        self.norm1 = nn.LayerNorm(c)
        self.sca = SpatialCrossAttention(cfg)
        self.norm2 = nn.LayerNorm(c)
        self.ffn = FFN(c, cfg.ffn_dims, cfg.dropout)
        self.norm3 = nn.LayerNorm(c)

    def forward(self, query, query_pos, prev, ref_bev, bev_hw, feats, ref_cam, mask):
        query = self.norm1(self.tsa(query, query_pos, prev, ref_bev, bev_hw))
        query = self.norm2(self.sca(query, query_pos, feats, ref_cam, mask))
        return self.norm3(self.ffn(query))


class BEVEncoder(nn.Module):
    """Turns multi-camera image features (and the previous BEV) into the current BEV features.

    ``forward(feats, intrinsics, cam2ego, image_hw, prev_bev, ego_motion, prev_valid)``
    returns ``(bev (B, HW, C), cam_mask (B, N, HW))`` where ``cam_mask`` is 1 where camera ``n``
    sees at least one pillar point of the cell (for view-guided distillation masks).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.embed_dims
        self.cfg = cfg
        self.bev_h, self.bev_w = cfg.bev_h, cfg.bev_w
        self.bev_embedding = nn.Embedding(cfg.bev_h * cfg.bev_w, c)
        self.pos_row = nn.Embedding(cfg.bev_h, c // 2)
        self.pos_col = nn.Embedding(cfg.bev_w, c - c // 2)
        self.cams_embeds = nn.Parameter(torch.empty(cfg.num_cams, c))
        self.level_embeds = nn.Parameter(torch.empty(cfg.num_levels, c))
        nn.init.uniform_(self.pos_row.weight)
        nn.init.uniform_(self.pos_col.weight)
        nn.init.normal_(self.cams_embeds)
        nn.init.normal_(self.level_embeds)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))

        x0, y0, z0, x1, y1, z1 = cfg.pc_range
        ref = bev_cell_centres(cfg.bev_h, cfg.bev_w)  # (HW, 2) normalized
        zs = (torch.arange(cfg.pillar_points, dtype=torch.float32) + 0.5) / cfg.pillar_points * (z1 - z0) + z0
        xy = ref * torch.tensor([x1 - x0, y1 - y0]) + torch.tensor([x0, y0])  # metres
        pillars = torch.cat(
            [xy[:, None, :].expand(-1, cfg.pillar_points, 2), zs.view(1, -1, 1).expand(xy.shape[0], -1, 1)], -1
        )
        self.register_buffer("ref_bev", ref, persistent=False)
        self.register_buffer("bev_xy", xy, persistent=False)
        self.register_buffer("pillars", pillars.reshape(-1, 3), persistent=False)  # (HW*Z, 3) metres

    def positional_encoding(self) -> torch.Tensor:
        """``(HW, C)``: ``[col_embed(c), row_embed(r)]`` of every cell."""
        row = self.pos_row.weight[:, None, :].expand(self.bev_h, self.bev_w, -1)
        col = self.pos_col.weight[None, :, :].expand(self.bev_h, self.bev_w, -1)
        return torch.cat([col, row], dim=-1).reshape(self.bev_h * self.bev_w, -1)

    def align_prev_bev(
        self, prev_bev: torch.Tensor, ego_motion: torch.Tensor | None, fill: torch.Tensor, prev_valid: torch.Tensor | None
    ) -> torch.Tensor:
        """Resample the previous BEV onto the current grid.

        ``ego_motion (B, 4, 4)`` maps previous-ego coordinates to current-ego coordinates
        (``p_cur = M @ p_prev``; identity when ``None``). Each current cell centre is moved into
        the previous frame with ``M^-1`` and bilinearly sampled there; cells not covered by the
        previous grid (and whole samples with ``prev_valid == 0``) take ``fill`` (the current BEV
        query) instead.
        """
        b, hw, c = prev_bev.shape
        x0, y0, _, x1, y1, _ = self.cfg.pc_range
        prev_map = prev_bev.transpose(1, 2).reshape(b, c, self.bev_h, self.bev_w)
        if ego_motion is None:
            grid_xy = self.bev_xy.unsqueeze(0).expand(b, -1, -1)
        else:
            rt, tinv = rigid_inverse(ego_motion)  # cur -> prev
            pts = torch.cat([self.bev_xy, torch.zeros_like(self.bev_xy[:, :1])], -1)  # (HW, 3)
            grid_xy = (pts.unsqueeze(0) @ rt.transpose(-1, -2) + tinv.unsqueeze(1))[..., :2]
        scale = torch.tensor([2.0 / (x1 - x0), 2.0 / (y1 - y0)], dtype=prev_bev.dtype, device=prev_bev.device)
        shift = torch.tensor([x0, y0], dtype=prev_bev.dtype, device=prev_bev.device)
        grid = ((grid_xy - shift) * scale - 1.0).view(b, self.bev_h, self.bev_w, 2)
        both = torch.cat([prev_map, torch.ones_like(prev_map[:, :1])], 1)
        sampled = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.flatten(2).transpose(1, 2)  # (B, HW, C + 1)
        cover = sampled[..., c:]
        if prev_valid is not None:
            cover = cover * prev_valid.view(b, 1, 1)
            aligned = sampled[..., :c] * prev_valid.view(b, 1, 1)
        else:
            aligned = sampled[..., :c]
        return aligned + (1.0 - cover) * fill

    def forward(
        self,
        feats: list[torch.Tensor],
        intrinsics: torch.Tensor,
        cam2ego: torch.Tensor,
        image_hw: tuple[int, int],
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
        prev_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, ncam = intrinsics.shape[:2]
        hw, z = self.bev_h * self.bev_w, self.cfg.pillar_points
        query = self.bev_embedding.weight.unsqueeze(0).expand(b, -1, -1)
        pos = self.positional_encoding().unsqueeze(0).expand(b, -1, -1)
        prev = query if prev_bev is None else self.align_prev_bev(prev_bev, ego_motion, query, prev_valid)

        uv, valid = project_to_cameras(self.pillars, intrinsics, cam2ego, image_hw)
        ref_cam = uv.view(b, ncam, hw, z, 2)
        mask = valid.view(b, ncam, hw, z)

        # channels-last image tokens with camera and level embeddings (the SCA values)
        values = []
        for lvl, f in enumerate(feats):
            _, c, h, w = f.shape
            f = f.view(b, ncam, c, h, w).permute(0, 1, 3, 4, 2)
            f = f + self.cams_embeds.view(1, ncam, 1, 1, c) + self.level_embeds[lvl].view(1, 1, 1, 1, c)
            values.append(f.reshape(b * ncam, h, w, c))

        for layer in self.layers:
            query = layer(query, pos, prev, self.ref_bev, (self.bev_h, self.bev_w), values, ref_cam, mask)
        return query, mask.amax(dim=-1)
