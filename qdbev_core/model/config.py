"""Hyper-parameters of the BEVFormer-style detector and its named sizes.

One dataclass, ``ModelConfig``, carries every number the model, the losses and the
matcher use; ``CONFIGS`` holds the named sizes:

- ``tiny`` / ``small`` / ``base``: the three BEVFormer reference designs
  (fundamentalvision/BEVFormer ``bevformer_{tiny,small,base}.py``), same backbone depth, input
  size, BEV grid, layer counts, channel widths, FFN width (512 = 2 x 256), number of levels and
  attention points, so that parameter counts land within a few percent of the published ones.
  Differences, all deliberate and documented in ``ModelConfig.notes``: no DCNv2 in ResNet-101
  (custom CUDA op, not exportable to plain ONNX; BEVFormer-small/base have it in stages 3-4,
  ~1.8 M offset-conv parameters), no CAN-bus MLP (~37 k parameters; the ego motion enters via
  the aligned previous BEV instead), plus a small dense CenterPoint-style heat-map head.
- ``nano``: a 2-core-CPU-trainable model over the same metric range (eval ranges reach 50 m).

``get_config(name, **overrides)`` returns a copy; ``summary.describe()`` prints one table of all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..checkpoint import CheckpointError
from ..classes import CLASS_NAMES


@dataclass
class ModelConfig:
    """Every hyper-parameter of ``BEVDetector`` and its losses.

    Units: metres for ranges, pixels for ``image_size`` (network input, after resize/pad; the
    model accepts other sizes at run time as long as intrinsics refer to the actual input).
    """

    name: str = "custom"

    # --- image backbone (ResNet) -------------------------------------------------------------
    depth: int = 50
    """ResNet depth: 18, 34 (BasicBlock) or 50, 101 (Bottleneck)."""
    width: float = 1.0
    """Channel multiplier of every backbone stage (1.0 = torchvision widths)."""
    out_stages: tuple[int, ...] = (4,)
    """Backbone stages fed to the neck: 1..4 = C2 (stride 4) .. C5 (stride 32)."""
    frozen_stages: int = 1
    """Freeze the stem and the first ``frozen_stages`` stages (BEVFormer: 1). 0 = train all."""
    frozen_bn: bool = True
    """Backbone BatchNorm in eval mode with non-trainable affine (mmdet ``norm_eval``)."""

    # --- neck (FPN) --------------------------------------------------------------------------
    embed_dims: int = 256
    """Channels of the neck, the BEV features and the queries."""
    num_levels: int = 1
    """FPN outputs used by spatial cross-attention (extra stride-2 levels beyond out_stages)."""

    # --- input and BEV grid ------------------------------------------------------------------
    image_size: tuple[int, int] = (480, 800)
    """Network input (H, W) in pixels (BEVFormer resizes, then pads to a multiple of 32)."""
    num_cams: int = 6
    bev_h: int = 50
    """BEV rows, along ego +y (row 0 at y_min)."""
    bev_w: int = 50
    """BEV columns, along ego +x (column 0 at x_min)."""
    pc_range: tuple[float, float, float, float, float, float] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    """(x_min, y_min, z_min, x_max, y_max, z_max) in metres, ego frame (x fwd, y left, z up)."""

    # --- BEV encoder -------------------------------------------------------------------------
    enc_layers: int = 3
    num_heads: int = 8
    ffn_dims: int = 512
    dropout: float = 0.1
    pillar_points: int = 4
    """Heights sampled per BEV cell (spatial cross-attention anchors), evenly over z range."""
    sca_points: int = 8
    """Deformable sampling points per camera, level and head (split evenly over the heights)."""
    sca_cams_per_cell: int = 2
    """Cameras sampled per BEV cell (those seeing most of its pillar points). On the nuScenes rig
    no cell is seen by more than 2 cameras, so 2 is exact there and 3x cheaper than sampling all
    6; set it to ``num_cams`` for rigs with more overlap."""
    tsa_points: int = 4
    """Deformable sampling points per BEV queue (previous, current) and head in temporal attention."""
    history_free_state: bool = False
    """Which BEV a frame hands to the next one as ``prev_bev`` (inference only; no weights change).
    False (BEVFormer): the BEV it detected from, itself built on the previous one (recursive
    history). True: its BEV computed a second time without history, which is what ``qdbev train``
    feeds as ``prev_bev`` (the previous frame, no queue), so inference sees what training saw;
    costs one more encoder pass per frame (the image backbone and neck run once)."""

    # --- decoder -----------------------------------------------------------------------------
    dec_layers: int = 6
    num_queries: int = 900
    dec_points: int = 4
    """Deformable sampling points per head in the decoder's cross-attention into the BEV."""
    query_init: str = "learned"
    """``learned``: BEVFormer object queries (N(0,1) embedding, xavier reference-point layer).
    ``heatmap``: queries start at the top-k peaks of the dense heat-map head (two-stage style;
    needs ``dense_head``), content = BEV feature there + embedding of the peak's class."""

    # --- heads -------------------------------------------------------------------------------
    num_classes: int = len(CLASS_NAMES)
    num_reg_fcs: int = 2
    dense_head: bool = True
    """Auxiliary CenterPoint-style heat-map + regression head on the BEV grid."""
    dense_channels: int = 64
    """Hidden channels of the dense head's shared 3x3 conv."""
    heatmap_min_radius: int = 2
    """Minimum gaussian radius (cells) of heat-map targets."""
    heatmap_min_overlap: float = 0.1
    """CenterPoint's ``gaussian_overlap`` for the heat-map radius."""
    max_log_size: float = 4.0
    """Clamp of predicted log-sizes before ``exp`` (e^4 = 55 m)."""

    # --- losses and matching (BEVFormer values) ----------------------------------------------
    loss_cls_weight: float = 2.0
    loss_bbox_weight: float = 0.25
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
    """Per-element weights of the 10-d box code [x, y, z, log l, log w, log h, sin, cos, vx, vy]."""
    yaw_loss: str = "sincos"
    """How the decoder's yaw (code entries ``sin, cos``) is supervised and matched.

    ``sincos`` (BEVFormer): L1 on ``(sin yaw, cos yaw)``. Where the image cannot tell an object's
    front from its back the two targets ``yaw`` and ``yaw + pi`` average out and the decoded
    ``atan2`` lands *across* the object (90 degrees off).
    ``axis_direction``: the box axis and the heading are learnt apart, both from the same two
    outputs ``v = (s, c)`` (decoding stays ``atan2(s, c)``): the distance between the doubled
    angles of ``v`` and of the target (``sin 2 yaw, cos 2 yaw``: blind to a 180-degree flip;
    weighted by the sin / cos code weights) plus a logistic heading loss ``softplus(-4 v . (sin yaw, cos yaw))``
    (``yaw_direction_weight``), which can only shrink ``v`` along the axis when unsure, never
    turn it across. Classes in ``yaw_axis_only_classes`` get the axis term only."""
    yaw_direction_weight: float = 0.5
    """Weight of the heading term of ``yaw_loss='axis_direction'`` (per matched box)."""
    yaw_axis_only_classes: tuple[str, ...] = ("barrier", "traffic_cone")
    """Classes whose heading is not supervised under ``axis_direction``: barriers (the nuScenes
    metric scores their yaw modulo 180 degrees) and traffic cones (yaw not scored)."""
    match_cls_weight: float = 2.0
    match_bbox_weight: float = 0.25
    loss_heatmap_weight: float = 1.0
    loss_dense_reg_weight: float = 0.25
    aux_loss: bool = True
    """Supervise every decoder layer (True) or only the last one."""

    notes: str = ""
    """Free text: how this config differs from the reference design."""

    # derived ------------------------------------------------------------------------------------
    @property
    def bev_cell(self) -> tuple[float, float]:
        """Cell size (metres) along x (columns) and y (rows)."""
        return (
            (self.pc_range[3] - self.pc_range[0]) / self.bev_w,
            (self.pc_range[4] - self.pc_range[1]) / self.bev_h,
        )

    @property
    def backbone_channels(self) -> tuple[int, ...]:
        """Channels of the backbone stages listed in ``out_stages``."""
        expansion = 1 if self.depth in (18, 34) else 4
        base = [int(round(c * self.width)) for c in (64, 128, 256, 512)]
        return tuple(base[s - 1] * expansion for s in self.out_stages)

    def validate(self) -> "ModelConfig":
        """Raise ``ValueError`` on inconsistent values; returns self."""
        if self.depth not in (18, 34, 50, 101):
            raise ValueError(f"unsupported ResNet depth {self.depth}")
        if not self.out_stages or any(s not in (1, 2, 3, 4) for s in self.out_stages):
            raise ValueError(f"out_stages must be in 1..4, got {self.out_stages}")
        if self.num_levels < len(self.out_stages):
            raise ValueError("num_levels must be >= len(out_stages)")
        if self.embed_dims % self.num_heads:
            raise ValueError("embed_dims must be divisible by num_heads")
        if not 1 <= self.sca_cams_per_cell <= self.num_cams:
            raise ValueError("sca_cams_per_cell must be in 1..num_cams")
        if self.sca_points % self.pillar_points:
            raise ValueError("sca_points must be a multiple of pillar_points")
        if self.query_init not in ("learned", "heatmap"):
            raise ValueError(f"query_init must be 'learned' or 'heatmap', got {self.query_init!r}")
        if self.query_init == "heatmap":
            if not self.dense_head:
                raise ValueError("query_init='heatmap' needs dense_head=True")
            if self.num_queries > self.bev_h * self.bev_w:
                raise ValueError("query_init='heatmap' needs num_queries <= bev_h * bev_w")
        if len(self.code_weights) != 10:
            raise ValueError("code_weights must have 10 entries")
        if self.yaw_loss not in ("sincos", "axis_direction"):
            raise ValueError(f"yaw_loss must be 'sincos' or 'axis_direction', got {self.yaw_loss!r}")
        unknown = [c for c in self.yaw_axis_only_classes if c not in CLASS_NAMES]
        if unknown:
            raise ValueError(f"yaw_axis_only_classes: unknown classes {unknown}; known: {list(CLASS_NAMES)}")
        return self

    def replace(self, **overrides) -> "ModelConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **overrides).validate()

    def to_dict(self) -> dict:
        """Plain JSON-able form (the ``config`` entry of a weights file's sidecar)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """The config ``to_dict()`` wrote, validated (JSON lists come back as tuples).

        Raises ``CheckpointError`` for a field this version does not know (a file written by a
        newer qdbev) and ``ValueError`` for inconsistent values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CheckpointError(f"model config has unknown fields {unknown}: written by a newer qdbev?")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}).validate()


_NO_DCN = (
    "ResNet-101 without DCNv2 (BEVFormer uses DCNv2 in stages 3-4: ~1.8 M offset-conv parameters "
    "and a custom op that plain ONNX cannot express); "
)
_COMMON_NOTES = (
    "no CAN-bus MLP (ego motion enters through the aligned previous BEV); "
    "adds a dense CenterPoint-style heat-map head (aux loss)."
)

CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        name="tiny", depth=50, out_stages=(4,), num_levels=1, image_size=(480, 800),
        bev_h=50, bev_w=50, enc_layers=3, dec_layers=6, num_queries=900,
        notes="BEVFormer-tiny: ResNet-50 C5 only, 1 FPN level, 800x450 padded to 800x480; " + _COMMON_NOTES,
    ),
    "small": ModelConfig(
        name="small", depth=101, out_stages=(4,), num_levels=1, image_size=(736, 1280),
        bev_h=150, bev_w=150, enc_layers=3, dec_layers=6, num_queries=900,
        notes="BEVFormer-small: 1280x720 padded to 1280x736, 1 FPN level; " + _NO_DCN + _COMMON_NOTES,
    ),
    "base": ModelConfig(
        name="base", depth=101, out_stages=(2, 3, 4), num_levels=4, image_size=(928, 1600),
        bev_h=200, bev_w=200, enc_layers=6, dec_layers=6, num_queries=900,
        notes="BEVFormer-base: C3-C5 + 1 extra level = 4 FPN levels, 1600x900 padded to 1600x928; "
        + _NO_DCN + _COMMON_NOTES,
    ),
    "nano": ModelConfig(
        name="nano", depth=18, width=0.5, out_stages=(3, 4), num_levels=2, frozen_stages=0,
        frozen_bn=False, embed_dims=64, num_heads=4, ffn_dims=128, dropout=0.0,
        image_size=(192, 352), bev_h=48, bev_w=48, enc_layers=1, dec_layers=3, num_queries=150,
        query_init="heatmap", dense_channels=64, heatmap_min_radius=1,
        notes="CPU-sized: ResNet-18 at half width, C4+C5, 6x192x352 input (SynthScenes scale-0.22 "
        "images, 198x352, nearly unscaled), BEV 48x48 (2.13 m cells) over the full +-51.2 m range, "
        "64 channels; decoder queries start at heat-map peaks.",
    ),
}
"""The named configurations; use ``get_config`` to get a private copy."""

for _c in CONFIGS.values():
    _c.validate()


def get_config(name: str, **overrides) -> ModelConfig:
    """A copy of the named config (``nano``, ``tiny``, ``small``, ``base``) with overrides."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name].replace(**overrides)


REFERENCE_PARAMS_M: dict[str, float] = {"tiny": 33.6, "small": 59.6, "base": 69.1}
"""Published BEVFormer parameter counts (millions) the named configs are checked against."""


__all__ = ["ModelConfig", "CONFIGS", "REFERENCE_PARAMS_M", "get_config"]
