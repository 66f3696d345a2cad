"""Parameter and FLOP counts of a config, measured on the ``meta`` device (no memory, no compute).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass at the
config's ``image_size`` and batch 1 (2 FLOPs per multiply-accumulate). It counts matmul / conv /
attention kernels only: ``grid_sample`` (deformable sampling), normalization and elementwise ops
are not included.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig, get_config
from .detector import BEVDetector


def _cfg(cfg: ModelConfig | str) -> ModelConfig:
    return get_config(cfg) if isinstance(cfg, str) else cfg


def count_parameters(cfg: ModelConfig | str, trainable_only: bool = False) -> int:
    """Number of parameters of ``BEVDetector(cfg)`` (all, or only ``requires_grad`` ones)."""
    with torch.device("meta"):
        model = BEVDetector(_cfg(cfg))
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(cfg: ModelConfig | str) -> dict[str, int]:
    """Parameters per top-level group (``backbone``, ``neck``, ``encoder``, ``decoder``, ``heads``)."""
    with torch.device("meta"):
        model = BEVDetector(_cfg(cfg))
    return {g: sum(p.numel() for _, p in ps) for g, ps in model.param_groups().items()}


def count_flops(cfg: ModelConfig | str, batch: int = 1, image_size: tuple[int, int] | None = None) -> int:
    """FLOPs of one forward pass (see module doc for what is counted)."""
    c = _cfg(cfg)
    h, w = image_size or c.image_size
    with torch.device("meta"):
        model = BEVDetector(c).eval()
        img = torch.zeros(batch, c.num_cams, 3, h, w)
        k = torch.eye(3).expand(batch, c.num_cams, 3, 3).contiguous()
        t = torch.eye(4).expand(batch, c.num_cams, 4, 4).contiguous()
        counter = FlopCounterMode(display=False)
        with counter:  # (no torch.no_grad: the module tracker then trips over meta tensors)
            model(img, k, t)
    return int(counter.get_total_flops())
