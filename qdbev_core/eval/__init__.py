"""nuScenes-standard evaluation: results JSON writing and the official devkit scorer.

- ``results``: ego-frame ``Detections`` -> nuScenes submission (``ResultsWriter``).
- ``nuscenes_eval``: ``evaluate(results_json, dataroot, version, split, output_dir)`` runs the
  devkit's ``DetectionEval`` (``detection_cvpr_2019``) and returns its metrics summary.

The devkit itself is imported lazily inside the functions, so importing this package is cheap.
"""

from .nuscenes_eval import TP_ERROR_NAMES, evaluate, format_summary
from .results import DEFAULT_META, MAX_BOXES_PER_SAMPLE, ResultsWriter, detections_to_nusc, validate_submission

__all__ = [
    "DEFAULT_META",
    "MAX_BOXES_PER_SAMPLE",
    "TP_ERROR_NAMES",
    "ResultsWriter",
    "detections_to_nusc",
    "evaluate",
    "format_summary",
    "validate_submission",
]
