"""Inference engines: ``Frame`` in, ``Detections`` (ego frame) out.

``TorchEngine`` runs a ``BEVDetector`` (fp32 or fake-quantized) on CPU or CUDA. All engines share
``TemporalState`` (previous BEV + ego motion, reset on a scene change or a time jump) and report
``last_timing`` in milliseconds (preprocess / inference / postprocess).
"""

from .base import Engine, EngineTiming, TemporalState
from .torch_engine import TorchEngine

__all__ = ["Engine", "EngineTiming", "TemporalState", "TorchEngine", "load_engine"]


def load_engine(model: str, backend: str = "torch", device: str = "cpu", score_threshold: float = 0.05,
                topk: int = 300) -> Engine:
    """Build an engine from a manifest model name or a ``.safetensors`` path."""
    if backend != "torch":
        raise ValueError(f"backend {backend!r} is not available yet; supported: torch")
    return TorchEngine.from_file(model, device=device, score_threshold=score_threshold, topk=topk)
