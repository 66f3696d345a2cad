"""View-guided masks: which image-feature cells the BEV grid sees, and where the GT objects are.

``view_guided_masks`` projects the BEV grid's pillar points into every camera and rasterizes
the hits onto each image-feature level's grid. The points are the encoder's spatial
cross-attention anchors (``cfg.bev_h x cfg.bev_w`` cell centres x ``cfg.pillar_points``
heights evenly over ``[z_min, z_max]``, ``z_k = z_min + (k + 0.5) / Z * (z_max - z_min)``),
optionally on a finer ``subdivide x subdivide`` lattice per cell so the near field, where a
3 m cell covers many feature cells, has no holes. A point counts when it is in front of the
camera and inside the image; its feature cell is ``(floor(nv * h_l), floor(nu * w_l))`` with
the normalized image coordinates of ``model.ops.project_to_cameras`` (``nu = (u + 0.5) / W``,
OpenCV pixel ``u``), i.e. exactly the convention the encoder samples with.

Mask values: ``1`` where at least one point lands, ``0`` elsewhere; with GT boxes, feature
cells covered by a box's projection (the 2-D bounding rectangle of its 8 corners, using the
corners in front of the camera) get ``fg_weight`` instead (foreground emphasis; values then lie
in ``[0, max(1, fg_weight)]``). ``bev_foreground_weights`` does the same on the BEV grid.

Everything is ``torch`` (no gradients), batched over samples and cameras.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..geometry import box_corners
from ..model.config import ModelConfig, get_config
from ..model.ops import project_to_cameras, rigid_inverse


def _cfg(cfg: ModelConfig | str) -> ModelConfig:
    return get_config(cfg) if isinstance(cfg, str) else cfg


def pillar_points(cfg: ModelConfig | str, subdivide: int = 1, heights: int | None = None) -> torch.Tensor:
    """``(bev_h * bev_w * subdivide^2 * Z, 3)`` ego-frame points (metres) of the BEV pillars.

    ``subdivide=1`` gives the encoder's own anchors (cell centres); ``heights`` defaults to
    ``cfg.pillar_points``.
    """
    cfg = _cfg(cfg)
    x0, y0, z0, x1, y1, z1 = cfg.pc_range
    z = heights or cfg.pillar_points
    sx, sy = cfg.bev_w * subdivide, cfg.bev_h * subdivide
    xs = (torch.arange(sx, dtype=torch.float32) + 0.5) / sx * (x1 - x0) + x0
    ys = (torch.arange(sy, dtype=torch.float32) + 0.5) / sy * (y1 - y0) + y0
    zs = (torch.arange(z, dtype=torch.float32) + 0.5) / z * (z1 - z0) + z0
    gy, gx, gz = torch.meshgrid(ys, xs, zs, indexing="ij")
    return torch.stack([gx, gy, gz], -1).reshape(-1, 3)


def rasterize_hits(uv: torch.Tensor, valid: torch.Tensor, feat_hw: tuple[int, int]) -> torch.Tensor:
    """Normalized image coords ``uv (M, P, 2)`` with ``valid (M, P)`` -> 0/1 mask ``(M, 1, h, w)``."""
    h, w = feat_hw
    col = (uv[..., 0] * w).floor().clamp(0, w - 1).long()
    row = (uv[..., 1] * h).floor().clamp(0, h - 1).long()
    idx = row * w + col
    out = torch.zeros(uv.shape[0], h * w, dtype=torch.float32, device=uv.device)
    out.scatter_reduce_(1, idx, valid.float(), reduce="amax")
    return out.view(uv.shape[0], 1, h, w)


def _boxes_list(gt_boxes, batch: int) -> list[torch.Tensor]:
    if gt_boxes is None:
        return []
    if isinstance(gt_boxes, torch.Tensor) and gt_boxes.dim() == 2:
        gt_boxes = [gt_boxes]
    out = []
    for b in gt_boxes:
        t = torch.as_tensor(np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64))
        out.append(t.reshape(-1, t.shape[-1]) if t.numel() else t.reshape(0, 9))
    if len(out) != batch:
        raise ValueError(f"gt_boxes has {len(out)} entries for a batch of {batch}")
    return out


def box_image_rects(
    boxes: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor, image_hw: tuple[int, int], min_depth: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized 2-D rectangles of boxes in each camera.

    Args: ``boxes (Nb, >=7)`` ego frame; ``intrinsics (N, 3, 3)``, ``cam2ego (N, 4, 4)`` of one
    sample. Returns ``rect (N, Nb, 4)`` = ``[nu0, nv0, nu1, nv1]`` (clipped to ``[0, 1]``) and
    ``ok (N, Nb)``: at least one corner in front of the camera and a non-empty rectangle.
    """
    corners = torch.as_tensor(box_corners(boxes.numpy()), dtype=torch.float32)  # (Nb, 8, 3)
    pts = corners.reshape(-1, 3)
    rt, tinv = rigid_inverse(cam2ego.float())  # (N, 3, 3), (N, 3)
    p_cam = pts.unsqueeze(0) @ rt.transpose(-1, -2) + tinv.unsqueeze(1)  # (N, Nb*8, 3)
    pix = p_cam @ intrinsics.float().transpose(-1, -2)
    depth = pix[..., 2]
    front = depth > min_depth
    uv = pix[..., :2] / depth.clamp(min=min_depth).unsqueeze(-1)
    h, w = image_hw
    nuv = (uv + 0.5) / torch.tensor([w, h], dtype=torch.float32)
    n, nb = cam2ego.shape[0], boxes.shape[0]
    nuv = nuv.view(n, nb, 8, 2)
    front = front.view(n, nb, 8)
    big = torch.tensor(1e6)
    lo = torch.where(front.unsqueeze(-1), nuv, big).amin(2)
    hi = torch.where(front.unsqueeze(-1), nuv, -big).amax(2)
    rect = torch.cat([lo.clamp(0, 1), hi.clamp(0, 1)], -1)
    ok = front.any(-1) & (hi[..., 0] > 0) & (hi[..., 1] > 0) & (lo[..., 0] < 1) & (lo[..., 1] < 1)
    return rect, ok


def _rects_to_mask(rect: torch.Tensor, ok: torch.Tensor, feat_hw: tuple[int, int]) -> torch.Tensor:
    """``rect (N, Nb, 4)`` normalized, ``ok (N, Nb)`` -> ``(N, 1, h, w)`` 0/1 union of rectangles."""
    h, w = feat_hw
    cx = (torch.arange(w, dtype=torch.float32) + 0.5) / w  # cell centres, normalized
    cy = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    # a cell is covered when the rectangle overlaps it: cell [c/w, (c+1)/w) vs [nu0, nu1]
    inx = (cx.view(1, 1, -1) + 0.5 / w > rect[..., 0:1]) & (cx.view(1, 1, -1) - 0.5 / w < rect[..., 2:3])
    iny = (cy.view(1, 1, -1) + 0.5 / h > rect[..., 1:2]) & (cy.view(1, 1, -1) - 0.5 / h < rect[..., 3:4])
    cover = (iny.unsqueeze(-1) & inx.unsqueeze(-2) & ok.view(*ok.shape, 1, 1)).any(1)  # (N, h, w)
    return cover.float().unsqueeze(1)


@torch.no_grad()
def view_guided_masks(
    cfg: ModelConfig | str,
    intrinsics: torch.Tensor,
    cam2ego: torch.Tensor,
    feat_shapes: Sequence[tuple[int, int]],
    image_hw: tuple[int, int] | None = None,
    gt_boxes: Sequence | torch.Tensor | None = None,
    fg_weight: float = 2.0,
    subdivide: int = 2,
) -> list[torch.Tensor]:
    """Per feature level a ``(B*N, 1, h_l, w_l)`` mask (sample-major: index ``b * N + n``).

    Args:
        cfg: model config (``pc_range``, ``bev_h/bev_w``, ``pillar_points``, ``image_size``).
        intrinsics: ``(B, N, 3, 3)`` pinhole matrices in pixels of the network input.
        cam2ego: ``(B, N, 4, 4)`` camera optical frame -> ego.
        feat_shapes: ``[(h_l, w_l), ...]`` of the image-feature levels (e.g.
            ``[f.shape[-2:] for f in out["img_feats"]]``).
        image_hw: network input ``(H, W)``; defaults to ``cfg.image_size``.
        gt_boxes: optional per-sample ``(Ni, >=7)`` boxes ``[x, y, z, l, w, h, yaw, ...]`` in the
            ego frame (list of length B, or one tensor for B = 1).
        fg_weight: value of cells covered by a GT box projection.
        subdivide: pillars per BEV cell along x and y (1 = the encoder's anchors exactly).
    """
    cfg = _cfg(cfg)
    image_hw = tuple(image_hw or cfg.image_size)
    b, n = intrinsics.shape[:2]
    pts = pillar_points(cfg, subdivide).to(intrinsics.device)
    uv, valid = project_to_cameras(pts, intrinsics.float(), cam2ego.float(), image_hw)
    uv = uv.reshape(b * n, -1, 2)
    valid = valid.reshape(b * n, -1)
    masks = [rasterize_hits(uv, valid, (int(h), int(w))) for h, w in feat_shapes]
    boxes = _boxes_list(gt_boxes, b)
    if boxes:
        for bi, bx in enumerate(boxes):
            if bx.shape[0] == 0:
                continue
            rect, ok = box_image_rects(bx, intrinsics[bi].cpu(), cam2ego[bi].cpu(), image_hw)
            for lvl, (h, w) in enumerate(feat_shapes):
                fg = _rects_to_mask(rect, ok, (int(h), int(w))).to(masks[lvl].device)
                sl = masks[lvl][bi * n : (bi + 1) * n]
                masks[lvl][bi * n : (bi + 1) * n] = torch.where(fg > 0, torch.full_like(sl, fg_weight), sl)
    return masks


@torch.no_grad()
def bev_foreground_weights(
    cfg: ModelConfig | str, gt_boxes: Sequence | torch.Tensor | None, batch: int, fg_weight: float = 2.0
) -> torch.Tensor:
    """``(B, 1, bev_h, bev_w)`` BEV weights: ``1``, and ``fg_weight`` on cells inside a GT box.

    A cell is inside when its centre lies in the box's footprint enlarged by half a cell on
    each side (so the cell holding a small object's centre always counts). Row ``r`` runs
    along +y, column ``c`` along +x (the ``bev`` layout of ``detector.py``).
    """
    cfg = _cfg(cfg)
    x0, y0, _, x1, y1, _ = cfg.pc_range
    dx, dy = cfg.bev_cell
    out = torch.ones(batch, 1, cfg.bev_h, cfg.bev_w)
    boxes = _boxes_list(gt_boxes, batch)
    if not boxes:
        return out
    ys = (torch.arange(cfg.bev_h, dtype=torch.float64) + 0.5) * dy + y0
    xs = (torch.arange(cfg.bev_w, dtype=torch.float64) + 0.5) * dx + x0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    margin = 0.5 * max(dx, dy)
    for bi, bx in enumerate(boxes):
        if bx.shape[0] == 0:
            continue
        bx = bx.to(torch.float64)
        ox = gx.unsqueeze(0) - bx[:, 0].view(-1, 1, 1)
        oy = gy.unsqueeze(0) - bx[:, 1].view(-1, 1, 1)
        c, s = torch.cos(bx[:, 6]).view(-1, 1, 1), torch.sin(bx[:, 6]).view(-1, 1, 1)
        lx = ox * c + oy * s
        ly = -ox * s + oy * c
        inside = (lx.abs() <= bx[:, 3].view(-1, 1, 1) / 2 + margin) & (ly.abs() <= bx[:, 4].view(-1, 1, 1) / 2 + margin)
        out[bi, 0][inside.any(0)] = fg_weight
    return out
