"""``BEVDetector``: ResNet -> FPN -> BEV encoder -> DETR decoder + heads (QD-BEV's FP model).

Inputs of ``forward`` (B = batch, N = 6 cameras in ``CAMERA_NAMES`` order):

=============  ==================  =============================================================
img            (B, N, 3, H, W)     normalized float images (network input size, e.g. resized
                                   and bottom/right-padded; mean/std done by the caller)
intrinsics     (B, N, 3, 3)        pinhole matrices in pixels of *this* H x W input
cam2ego        (B, N, 4, 4)        camera optical frame (x right, y down, z fwd) -> ego
                                   ``base_link`` (x fwd, y left, z up), metres
prev_bev       (B, HW, C) | None   ``outputs["bev"]`` of the previous frame of the same sequence
ego_motion     (B, 4, 4) | None    maps previous-ego coordinates into the current ego frame:
                                   ``p_cur = ego_motion @ p_prev``, i.e.
                                   ``inv(ego2global_cur) @ ego2global_prev``; identity if None
prev_valid     (B,) | None         optional 0/1 per sample: 0 treats ``prev_bev`` as absent
                                   (sequence start) without changing the graph (for ONNX)
=============  ==================  =============================================================

All camera geometry (ego -> image projection, visibility masks, sampling locations) is computed
inside ``forward`` from ``intrinsics`` and ``cam2ego`` in float32, so an exported graph takes
them as inputs.

Output dict (L = decoder layers, Q = queries, K = 10 classes, HW = bev_h * bev_w, C = channels):

=================  ===================  ========================================================
cls_logits         (L, B, Q, K)         class logits per decoder layer (sigmoid -> scores)
box_codes          (L, B, Q, 10)        ``[x, y, z, log l, log w, log h, sin, cos, vx, vy]``
                                        (ego frame, metres; what the losses use)
boxes              (L, B, Q, 9)         decoded ``[x, y, z, l, w, h, yaw, vx, vy]`` ego frame,
                                        centre at mid-height, full extents, rad, m/s
reference_points   (L, B, Q, 3)         normalized reference fed to each layer (debugging)
bev                (B, HW, C)           BEV features the decoder reads (row r along +y, column c
                                        along +x, index ``r * bev_w + c``);
                                        ``bev.transpose(1, 2).reshape(B, C, bev_h, bev_w)``
                                        gives the map layout
bev_state          (B, HW, C)           pass as next ``prev_bev``: ``bev`` itself, or with
                                        ``cfg.history_free_state`` this frame's BEV encoded
                                        without ``prev_bev`` (as training's previous frame;
                                        eval mode only, training never reads it)
bev_cam_mask       (B, N, HW)           1 where camera n sees the cell's pillar (VGD masks)
img_feats          list of (B*N, C,     neck outputs, finest first (image-view features for
                   h_l, w_l)            distillation), sample-major: index ``b * N + n``
heatmap            (B, K, bev_h, bev_w) dense head class logits (absent without dense head)
heatmap_reg        (B, 10, bev_h,       dense regression ``[ox, oy, z, log l, log w, log h,
                   bev_w)               sin, cos, vx, vy]`` (see ``heads.DenseHead``)
=================  ===================  ========================================================

Parameter groups by name prefix: ``backbone.`` (first conv ``backbone.stem.conv``), ``neck.``,
``encoder.``, ``decoder.``, ``heads.`` (final prediction layers: names ending in ``.out`` and
``heads.dense.heatmap_out`` / ``heads.dense.reg_out``; see ``final_layer_names``).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import ResNet
from .config import ModelConfig, get_config
from .decoder import Decoder
from .encoder import BEVEncoder
from .heads import Heads
from .losses import decode_boxes
from .neck import FPN

GROUP_PREFIXES: tuple[str, ...] = ("backbone.", "neck.", "encoder.", "decoder.", "heads.")
"""Progressive-quantization order of the parameter groups (docs/DESIGN.md §2)."""

FIRST_LAYER = "backbone.stem.conv"


class BEVDetector(nn.Module):
    """BEVFormer-style multi-camera 3D detector. ``BEVDetector("nano")`` or ``BEVDetector(cfg)``."""

    def __init__(self, cfg: ModelConfig | str = "nano", **overrides):
        super().__init__()
        if isinstance(cfg, str):
            cfg = get_config(cfg, **overrides)
        elif overrides:
            cfg = cfg.replace(**overrides)
        self.cfg = cfg.validate()
        self.backbone = ResNet(cfg.depth, cfg.width, cfg.out_stages, cfg.frozen_stages, cfg.frozen_bn)
        self.neck = FPN(self.backbone.out_channels, cfg.embed_dims, cfg.num_levels)
        self.encoder = BEVEncoder(cfg)
        self.decoder = Decoder(cfg)
        self.heads = Heads(cfg)

    # --- pieces ----------------------------------------------------------------------------------
    def extract_img_feats(self, img: torch.Tensor) -> list[torch.Tensor]:
        """``(B, N, 3, H, W)`` -> neck outputs, list of ``(B*N, C, h_l, w_l)``."""
        b, n = img.shape[:2]
        return self.neck(self.backbone(img.reshape(b * n, *img.shape[2:])))

    def extract_bev(
        self,
        img: torch.Tensor,
        intrinsics: torch.Tensor,
        cam2ego: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
        prev_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``(bev (B, HW, C), bev_cam_mask (B, N, HW), img_feats)`` without the decoder.

        A training loop computes the previous frames' BEV with this under ``torch.no_grad()``
        (BEVFormer's history queue) and passes it as ``prev_bev``.
        """
        feats = self.extract_img_feats(img)
        bev, mask = self.encoder(
            feats, intrinsics.float(), cam2ego.float(), tuple(img.shape[-2:]), prev_bev, ego_motion, prev_valid
        )
        return bev, mask, feats

    # --- forward ---------------------------------------------------------------------------------
    def forward(
        self,
        img: torch.Tensor,
        intrinsics: torch.Tensor,
        cam2ego: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
        prev_valid: torch.Tensor | None = None,
    ) -> dict:
        cfg = self.cfg
        if img.dim() != 5 or img.shape[1] != cfg.num_cams:
            raise ValueError(f"img must be (B, {cfg.num_cams}, 3, H, W), got {tuple(img.shape)}")
        b = img.shape[0]
        bev, cam_mask, feats = self.extract_bev(img, intrinsics, cam2ego, prev_bev, ego_motion, prev_valid)
        out: dict = {"bev": bev, "bev_cam_mask": cam_mask, "img_feats": feats, "bev_state": bev}
        if cfg.history_free_state and prev_bev is not None and not self.training:
            # Without history the encoder reads the same image features; with prev_bev absent the
            # fused BEV above already is history-free (prev_valid = 0 samples are too, see encoder).
            out["bev_state"], _ = self.encoder(feats, intrinsics.float(), cam2ego.float(), tuple(img.shape[-2:]))

        heatmap = heatmap_reg = None
        if self.heads.dense is not None:
            bev_map = bev.transpose(1, 2).reshape(b, cfg.embed_dims, cfg.bev_h, cfg.bev_w)
            heatmap, heatmap_reg = self.heads.dense(bev_map)
            out["heatmap"], out["heatmap_reg"] = heatmap, heatmap_reg

        query, query_pos, ref = self.decoder.init_queries(bev, heatmap, heatmap_reg)
        logits, codes, refs = self.decoder(query, query_pos, ref, bev, self.heads.predict)
        out["cls_logits"] = torch.stack(logits)
        out["box_codes"] = torch.stack(codes)
        out["boxes"] = decode_boxes(out["box_codes"], cfg.max_log_size)
        out["reference_points"] = torch.stack(refs)
        return out

    # --- introspection for quantization / distillation -------------------------------------------
    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """``{"backbone": [(name, p), ...], "neck": ..., "encoder": ..., "decoder": ..., "heads": ...}``."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {p[:-1]: [] for p in GROUP_PREFIXES}
        for name, p in self.named_parameters():
            groups[name.split(".", 1)[0]].append((name, p))
        return groups

    def final_layer_names(self) -> list[str]:
        """Module names of the final prediction layers (kept at 8 bit by the QAT recipe)."""
        return [
            n for n, m in self.named_modules()
            if n.startswith("heads.") and isinstance(m, (nn.Linear, nn.Conv2d)) and (n.endswith(".out") or n.endswith("_out"))
        ]


class ExportWrapper(nn.Module):
    """ONNX-friendly view: ``(img, intrinsics, cam2ego, prev_bev, ego_motion[, prev_valid])`` ->
    ``(cls_logits (B, Q, K), boxes (B, Q, 9), bev (B, HW, C))`` of the last decoder layer, plus
    ``heatmap``, ``heatmap_reg`` when ``with_dense``. The ``bev`` output is the model's
    ``bev_state``: what the caller feeds back as the next ``prev_bev``.

    ``with_prev_valid`` adds the ``prev_valid (B,)`` input, so one graph also serves the first
    frame of a sequence (feed any ``prev_bev``, e.g. zeros, with ``prev_valid = 0``). Names for
    ``torch.onnx.export``: ``input_names()`` / ``output_names()``; export in eval mode (call
    ``.eval()`` on the wrapper: the exporter restores the wrapper's own training flag).
    """

    INPUT_NAMES = ["img", "intrinsics", "cam2ego", "prev_bev", "ego_motion"]

    def __init__(self, model: BEVDetector, with_dense: bool = False, with_prev_valid: bool = False):
        super().__init__()
        self.model = model
        self.with_dense = with_dense and model.heads.dense is not None
        self.with_prev_valid = with_prev_valid

    def input_names(self) -> list[str]:
        return self.INPUT_NAMES + (["prev_valid"] if self.with_prev_valid else [])

    def output_names(self) -> list[str]:
        return ["cls_logits", "boxes", "bev"] + (["heatmap", "heatmap_reg"] if self.with_dense else [])

    def forward(self, img, intrinsics, cam2ego, prev_bev, ego_motion, prev_valid=None):
        out = self.model(img, intrinsics, cam2ego, prev_bev, ego_motion, prev_valid if self.with_prev_valid else None)
        res = (out["cls_logits"][-1], out["boxes"][-1], out["bev_state"])
        if self.with_dense:
            res = res + (out["heatmap"], out["heatmap_reg"])
        return res
