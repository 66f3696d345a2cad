"""PyTorch backend: a ``BEVDetector`` in eval mode, CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model import BEVDetector
from .base import Engine


class TorchEngine(Engine):
    """Run ``model`` on frames; temporal BEV history is carried between calls.

    Args:
        model: the detector (moved to ``device`` and put in eval mode).
        device: ``"cpu"`` or ``"cuda"``; asking for CUDA without one raises ``RuntimeError``.
        score_threshold, topk: post-processing (see ``decode_detections``).
        use_temporal: feed the previous BEV (set False to run every frame independently).
    """

    name = "torch"

    def __init__(self, model: BEVDetector, device: str = "cpu", score_threshold: float = 0.05,
                 topk: int = 300, use_temporal: bool = True) -> None:
        super().__init__()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but no CUDA GPU is available to PyTorch; use device 'cpu'")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.score_threshold = score_threshold
        self.topk = topk
        self.use_temporal = use_temporal

    @classmethod
    def from_file(cls, model: str | Path, **kwargs) -> "TorchEngine":
        """Load a manifest model name or a ``.safetensors`` path (verified by sha256)."""
        from ..models_manifest import load_model

        return cls(load_model(model), **kwargs)

    def _feed(self, net, prev_bev, motion):
        dev = self.device
        return {
            "img": torch.from_numpy(net.img).unsqueeze(0).to(dev),
            "intrinsics": torch.from_numpy(net.intrinsics).unsqueeze(0).to(dev),
            "cam2ego": torch.from_numpy(net.cam2ego).unsqueeze(0).to(dev),
            "prev_bev": prev_bev,
            "ego_motion": None if motion is None else torch.from_numpy(motion.astype(np.float32)).unsqueeze(0).to(dev),
        }

    @torch.no_grad()
    def _run(self, feeds: dict) -> dict:
        out = self.model(**feeds)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        # Engines keep ``bev`` as the next prev_bev (the exported graphs' ``bev`` output is the
        # model's ``bev_state`` too); the decoder's BEV stays available as ``bev_fused``.
        return {**out, "bev": out["bev_state"], "bev_fused": out["bev"]}
