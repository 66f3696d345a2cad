"""Ego-frame ``Detections`` -> a nuScenes detection submission (results JSON).

Format (https://www.nuscenes.org/object-detection, devkit ``DetectionBox``)::

    {"meta": {"use_camera": true, "use_lidar": false, "use_radar": false,
              "use_map": false, "use_external": false},
     "results": {sample_token: [{"sample_token", "translation": [x, y, z] (global, box centre),
                                  "size": [w, l, h], "rotation": [w, x, y, z] (global),
                                  "velocity": [vx, vy] (global, m/s), "detection_name",
                                  "detection_score", "attribute_name"}, ...], ...}}

Every sample of the evaluated split must have an entry (an empty list is fine), at most 500 boxes
per sample (the highest scores are kept). The devkit crashes on a submission without a single
box, so writing one raises ``ValueError`` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..classes import CLASS_NAMES, default_attribute
from ..data.reader import ego_boxes_to_global
from ..geometry import yaw_to_quat
from ..types import Detections

MAX_BOXES_PER_SAMPLE = 500
"""``detection_cvpr_2019`` ``max_boxes_per_sample``."""

DEFAULT_META: dict[str, bool] = {
    "use_camera": True,
    "use_lidar": False,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}

_DEVKIT_ATTRIBUTES = {
    "pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing", "cycle.with_rider",
    "cycle.without_rider", "vehicle.moving", "vehicle.parked", "vehicle.stopped", "",
}


def detections_to_nusc(
    sample_token: str,
    detections: Detections,
    ego2global: ArrayLike,
    attributes: Sequence[str] | None = None,
    max_boxes: int = MAX_BOXES_PER_SAMPLE,
) -> list[dict]:
    """Submission boxes of one sample, highest score first.

    Args:
        sample_token: the sample the detections belong to.
        detections: ego-frame boxes ``(N, 9)``, scores, labels (names from ``class_names``).
        ego2global: the sample's 4x4 ego pose (``Sample.frame.ego2global``: LIDAR_TOP key frame).
        attributes: optional attribute name per detection; default
            ``classes.default_attribute(name, speed)``.
        max_boxes: keep at most this many (top scores).
    """
    n = len(detections)
    if n == 0:
        return []
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(n, -1)
    if boxes.shape[1] < 9:
        boxes = np.concatenate([boxes, np.zeros((n, 9 - boxes.shape[1]))], axis=1)
    scores = np.asarray(detections.scores, dtype=np.float64).reshape(n)
    labels = np.asarray(detections.labels).reshape(n)
    if attributes is not None and len(attributes) != n:
        raise ValueError(f"{len(attributes)} attributes given for {n} detections")
    if not np.all(np.isfinite(boxes[:, :7])) or not np.all(np.isfinite(scores)):
        raise ValueError(f"sample {sample_token}: detections contain NaN/inf boxes or scores")
    order = np.argsort(-scores, kind="stable")[:max_boxes]
    g = ego_boxes_to_global(boxes[order], ego2global)
    out = []
    for row, k in zip(g, order):
        name = detections.class_names[int(labels[k])]
        if name not in CLASS_NAMES:
            raise ValueError(f"class '{name}' is not a nuScenes detection class {CLASS_NAMES}")
        vel = row[7:9] if np.all(np.isfinite(row[7:9])) else np.zeros(2)
        attr = attributes[k] if attributes is not None else default_attribute(name, float(np.hypot(*vel)))
        if attr not in _DEVKIT_ATTRIBUTES:
            raise ValueError(f"unknown nuScenes attribute '{attr}' for a {name}")
        l, w, h = (float(v) for v in row[3:6])
        out.append({
            "sample_token": sample_token,
            "translation": [float(v) for v in row[0:3]],
            "size": [w, l, h],
            "rotation": [float(v) for v in yaw_to_quat(float(row[6]))],
            "velocity": [float(vel[0]), float(vel[1])],
            "detection_name": name,
            "detection_score": float(scores[k]),
            "attribute_name": attr,
        })
    return out


def count_boxes(submission: dict) -> int:
    """Total boxes of a submission dict."""
    return sum(len(v) for v in submission.get("results", {}).values())


def validate_submission(submission: dict, expected_tokens: Iterable[str] | None = None) -> None:
    """Raise ``ValueError`` for a submission the devkit would reject or crash on."""
    if not isinstance(submission, dict) or "results" not in submission or "meta" not in submission:
        raise ValueError("results JSON must be an object with 'meta' and 'results' fields "
                         "(nuScenes detection submission format)")
    results = submission["results"]
    if not isinstance(results, dict):
        raise ValueError("'results' must map sample tokens to lists of boxes")
    for tok, boxes in results.items():
        if len(boxes) > MAX_BOXES_PER_SAMPLE:
            raise ValueError(f"sample {tok} has {len(boxes)} boxes; the evaluator allows at most "
                             f"{MAX_BOXES_PER_SAMPLE} per sample")
    if expected_tokens is not None:
        expected = list(expected_tokens)
        missing = [t for t in expected if t not in results]
        if missing:
            raise ValueError(f"results are missing {len(missing)} of {len(expected)} samples of the split "
                             f"(e.g. {missing[0]}); every sample needs an entry, an empty list is fine")
    if count_boxes(submission) == 0:
        raise ValueError("the submission contains no boxes at all; the nuScenes evaluator cannot score "
                         "an empty submission (it crashes in filter_eval_boxes) — check the model output "
                         "and the score threshold")


class ResultsWriter:
    """Collects per-sample detections and writes the submission JSON.

    Args:
        sample_tokens: the samples of the split; when given, ``to_dict``/``write`` require every
            one of them to have been added (use an empty ``Detections()`` for "nothing found")
            and ``add`` rejects other tokens.
        meta: overrides of the ``meta`` block (default: camera only).
        max_boxes_per_sample: top-score cap per sample (500 = evaluator limit).
    """

    def __init__(self, sample_tokens: Iterable[str] | None = None, meta: dict | None = None,
                 max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE) -> None:
        self.expected = list(sample_tokens) if sample_tokens is not None else None
        self._expected_set = set(self.expected) if self.expected is not None else None
        self.meta = {**DEFAULT_META, **(meta or {})}
        self.max_boxes = int(min(max_boxes_per_sample, MAX_BOXES_PER_SAMPLE))
        self.results: dict[str, list[dict]] = {}

    def add(self, sample_token: str, detections: Detections, ego2global: ArrayLike,
            attributes: Sequence[str] | None = None) -> int:
        """Add one sample's ego-frame detections; returns the number of boxes kept."""
        if self._expected_set is not None and sample_token not in self._expected_set:
            raise ValueError(f"sample {sample_token} is not in the split this writer was made for")
        if sample_token in self.results:
            raise ValueError(f"sample {sample_token} was added twice")
        boxes = detections_to_nusc(sample_token, detections, ego2global, attributes, self.max_boxes)
        self.results[sample_token] = boxes
        return len(boxes)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def num_boxes(self) -> int:
        return sum(len(v) for v in self.results.values())

    def to_dict(self) -> dict:
        """The submission; raises ``ValueError`` if samples are missing or there is no box at all."""
        sub = {"meta": dict(self.meta), "results": dict(self.results)}
        validate_submission(sub, self.expected)
        return sub

    def write(self, path: str | os.PathLike) -> Path:
        """Validate and write the JSON (parent folders are created)."""
        sub = self.to_dict()
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "w") as f:
            json.dump(sub, f)
        return p
