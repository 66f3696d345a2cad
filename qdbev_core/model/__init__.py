"""The BEVFormer-style detector QD-BEV quantizes: config, modules, losses, matcher, decoding.

    from qdbev_core.model import BEVDetector, DetectionLoss, decode_detections, get_config
    model = BEVDetector("nano")
    out = model(img, intrinsics, cam2ego)            # see detector.py for every shape and frame
    losses = DetectionLoss(model.cfg)(out, targets)  # dict of named terms + "loss"
    dets = decode_detections(out, score_threshold=0.1, topk=100)

``python -m qdbev_core.model`` prints the config table with parameter and FLOP counts.
"""

from .config import CONFIGS, ModelConfig, get_config
from .detector import FIRST_LAYER, GROUP_PREFIXES, BEVDetector, ExportWrapper
from .losses import DetectionLoss, decode_boxes, encode_boxes
from .matcher import HungarianMatcher
from .postprocess import decode_dense_detections, decode_detections
from .summary import describe

__all__ = [
    "CONFIGS",
    "ModelConfig",
    "describe",
    "get_config",
    "FIRST_LAYER",
    "GROUP_PREFIXES",
    "BEVDetector",
    "ExportWrapper",
    "DetectionLoss",
    "decode_boxes",
    "encode_boxes",
    "HungarianMatcher",
    "decode_detections",
    "decode_dense_detections",
]
