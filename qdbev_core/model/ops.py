"""Tensor geometry and the grid_sample-based deformable attention shared by encoder and decoder.

Everything here is plain differentiable PyTorch in float32 that exports to ONNX opset 17
(``GridSample``, ``MatMul``, elementwise ops): no custom kernels, no data-dependent shapes.

Coordinate conventions:
- Ego frame: REP 103 ``base_link`` (x forward, y left, z up), metres.
- Normalized image coordinates ``(nu, nv)`` in ``[0, 1]``: ``nu = (u + 0.5) / W`` where ``u`` is
  the OpenCV pixel coordinate (pixel centres at integers) of the *network input* image of width
  ``W``. ``0`` and ``1`` are the outer edges of the image, so the same value addresses every
  feature level (each level covers the whole image), and ``grid_sample(align_corners=False)``
  takes ``2 * n - 1``.
- Normalized BEV coordinates ``(nx, ny)`` in ``[0, 1]``: ``nx = (x - x_min) / (x_max - x_min)``
  along the BEV columns (W axis), ``ny = (y - y_min) / (y_max - y_min)`` along the rows
  (H axis); cell ``(r, c)`` has its centre at ``((c + 0.5) / W, (r + 0.5) / H)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to ``[eps, 1 - eps]``."""
    x = x.clamp(min=eps, max=1 - eps)
    return torch.log(x / (1 - x))


def rigid_inverse(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R^T, -R^T p)`` of rigid ``(..., 4, 4)`` transforms as ``(..., 3, 3)`` and ``(..., 3)``.

    Uses a transpose instead of a general matrix inverse (exact for rigid transforms, and
    exportable).
    """
    r = t[..., :3, :3]
    p = t[..., :3, 3]
    rt = r.transpose(-1, -2)
    return rt, -(rt @ p.unsqueeze(-1)).squeeze(-1)


def bev_cell_centres(bev_h: int, bev_w: int) -> torch.Tensor:
    """``(H*W, 2)`` normalized ``(nx, ny)`` centres of the BEV cells, row-major (index r*W + c)."""
    ny = (torch.arange(bev_h, dtype=torch.float32) + 0.5) / bev_h
    nx = (torch.arange(bev_w, dtype=torch.float32) + 0.5) / bev_w
    gy, gx = torch.meshgrid(ny, nx, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def project_to_cameras(
    points: torch.Tensor,
    intrinsics: torch.Tensor,
    cam2ego: torch.Tensor,
    image_hw: tuple[int, int],
    min_depth: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ego points into every camera.

    Args:
        points: ``(N, 3)`` ego-frame points in metres (shared by the batch).
        intrinsics: ``(B, Ncam, 3, 3)`` pinhole matrices in pixels of the network input.
        cam2ego: ``(B, Ncam, 4, 4)`` camera optical frame -> ego transforms.
        image_hw: ``(H, W)`` of the network input in pixels.

    Returns:
        ``uv`` ``(B, Ncam, N, 2)``: normalized image coordinates (see module doc); points behind
        the camera get ``-1`` (outside the image).
        ``valid`` ``(B, Ncam, N)`` float 0/1: in front of the camera and inside the image.
    """
    rt, tinv = rigid_inverse(cam2ego)  # ego -> cam
    # p_cam = R^T p + tinv, as row vectors: p @ R + tinv
    p_cam = points.unsqueeze(0).unsqueeze(0) @ rt.transpose(-1, -2) + tinv.unsqueeze(-2)
    pix = p_cam @ intrinsics.transpose(-1, -2)  # (B, Ncam, N, 3)
    depth = pix[..., 2:3]
    in_front = depth > min_depth
    uv = pix[..., 0:2] / depth.clamp(min=min_depth)
    h, w = image_hw
    scale = torch.tensor([1.0 / w, 1.0 / h], dtype=uv.dtype, device=uv.device)
    uv = (uv + 0.5) * scale
    uv = torch.where(in_front, uv, torch.full_like(uv, -1.0))
    inside = (uv > 0.0) & (uv < 1.0)
    valid = in_front.squeeze(-1) & inside[..., 0] & inside[..., 1]
    return uv, valid.to(uv.dtype)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(N, h, w, C)`` channels-last features -> ``(N * heads, C / heads, h, w)``."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w, num_heads, c // num_heads).permute(0, 3, 4, 1, 2).reshape(
        n * num_heads, c // num_heads, h, w
    )


def deformable_sample(values: list[torch.Tensor], locs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention core, with ``F.grid_sample`` only.

    Args:
        values: per level ``(N * heads, d, h_l, w_l)`` (from ``split_heads``).
        locs: ``(N, Lq, heads, L, P, 2)`` sampling locations, normalized ``[0, 1]`` (x, y) of
            each level's map; outside samples read zeros.
        weights: ``(N, Lq, heads, L, P)`` attention weights.

    Returns:
        ``(N, Lq, heads * d)``: per query, the weighted sum of bilinear samples, heads
        concatenated.
    """
    n, lq, nh, _, p, _ = locs.shape
    grids = 2.0 * locs - 1.0
    out = None
    for lvl, v in enumerate(values):
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(n * nh, lq, p, 2)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (N*h, d, Lq, P)
        w = weights[:, :, :, lvl].permute(0, 2, 1, 3).reshape(n * nh, 1, lq, p)
        o = (s * w).sum(-1)
        out = o if out is None else out + o
    d = out.shape[1]
    return out.reshape(n, nh, d, lq).permute(0, 3, 1, 2).reshape(n, lq, nh * d)


def init_sampling_offsets(linear: nn.Linear, num_heads: int, groups: int, points: int) -> None:
    """BEVFormer-style init: zero weights; bias = head-specific direction x (point index + 1).

    The layer's output is viewed as ``(heads, groups, points, 2)``; offsets are in units of
    the sampled map's cells (they are divided by the map size before use).
    """
    nn.init.zeros_(linear.weight)
    theta = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
    grid = torch.stack([theta.cos(), theta.sin()], -1)
    grid = grid / grid.abs().max(-1, keepdim=True)[0]
    grid = grid.view(num_heads, 1, 1, 2).repeat(1, groups, points, 1)
    for i in range(points):
        grid[:, :, i, :] *= i + 1
    with torch.no_grad():
        linear.bias.copy_(grid.reshape(-1))


class FFN(nn.Module):
    """``fc2(dropout(relu(fc1(x))))`` + residual (post-norm is applied by the caller)."""

    def __init__(self, dims: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.fc2 = nn.Linear(hidden, dims)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.xavier_uniform_(self.fc2.weight)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SelfAttention(nn.Module):
    """Multi-head attention with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` Linears.

    Same parameters as ``nn.MultiheadAttention`` but as plain ``nn.Linear`` modules, so
    fake-quantization wrappers find them. ``forward(q, k, v)`` with ``(B, L, C)`` tensors.
    """

    def __init__(self, dims: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dims, dims)
        self.k_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        self.out_proj = nn.Linear(dims, dims)
        self.drop = nn.Dropout(dropout)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, lq, c = q.shape
        h = self.num_heads
        d = c // h
        qh = self.q_proj(q).reshape(b, lq, h, d).transpose(1, 2)
        kh = self.k_proj(k).reshape(b, -1, h, d).transpose(1, 2)
        vh = self.v_proj(v).reshape(b, -1, h, d).transpose(1, 2)
        attn = torch.softmax((qh @ kh.transpose(-1, -2)) * (1.0 / math.sqrt(d)), dim=-1)
        out = (self.drop(attn) @ vh).transpose(1, 2).reshape(b, lq, c)
        return self.out_proj(out)
