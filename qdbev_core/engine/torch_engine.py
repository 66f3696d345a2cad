"""PyTorch backend: a ``BEVDetector`` in eval mode, CPU or CUDA."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..model import BEVDetector
from ..model.postprocess import decode_detections
from ..preprocess import prepare_frame
from ..types import Detections, Frame
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

    @torch.no_grad()
    def detect(self, frame: Frame) -> Detections:
        t0 = time.perf_counter()
        net = prepare_frame(frame, tuple(self.cfg.image_size))
        dev = self.device
        img = torch.from_numpy(net.img).unsqueeze(0).to(dev)
        k = torch.from_numpy(net.intrinsics).unsqueeze(0).to(dev)
        c2e = torch.from_numpy(net.cam2ego).unsqueeze(0).to(dev)
        motion = self.temporal.motion(frame) if self.use_temporal else None
        prev = None if motion is None else self.temporal.bev
        ego = None if motion is None else torch.from_numpy(motion.astype(np.float32)).unsqueeze(0).to(dev)
        t1 = time.perf_counter()
        out = self.model(img, k, c2e, prev_bev=prev, ego_motion=ego)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if self.use_temporal:
            self.temporal.update(frame, out["bev"])
        det = decode_detections(out, self.score_threshold, self.topk)[0]
        t3 = time.perf_counter()
        self.last_timing.preprocess_ms = (t1 - t0) * 1e3
        self.last_timing.inference_ms = (t2 - t1) * 1e3
        self.last_timing.postprocess_ms = (t3 - t2) * 1e3
        return det
