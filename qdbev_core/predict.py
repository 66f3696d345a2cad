"""Run an engine over a dataset split and collect a nuScenes results file.

Temporal state is carried across consecutive samples of a scene and reset at scene boundaries
(the engine's ``TemporalState`` keys on ``Frame.scene`` and the stamp gap; ``reset`` is also
called explicitly at every scene start).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.reader import NuScenesReader
from .engine.base import Engine
from .eval.results import ResultsWriter


def predict_split(engine: Engine, reader: NuScenesReader, progress: bool = True) -> tuple[ResultsWriter, dict]:
    """Detections for every sample of ``reader`` -> ``(ResultsWriter, timing stats in ms)``."""
    from tqdm import tqdm

    writer = ResultsWriter(reader.sample_tokens)
    starts = {sc.first for sc in reader.scenes()}
    times = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []}
    for i in tqdm(range(len(reader)), desc="predict", unit="sample", disable=not progress, leave=False):
        if i in starts:
            engine.reset()
        s = reader[i]
        det = engine.detect(s.frame)
        writer.add(s.token, det, s.frame.ego2global)
        for k in times:
            times[k].append(getattr(engine.last_timing, k))
    stats = {k: float(np.median(v)) if v else 0.0 for k, v in times.items()}
    return writer, stats


def predict_and_evaluate(engine: Engine, dataroot: Path, version: str, split: str, out_dir: Path,
                         progress: bool = True) -> dict:
    """Predict a split, write ``out_dir/results.json``, score it with the official evaluator.

    Returns the devkit's metrics summary (``nd_score``, ``mean_ap``, ...) with ``timing`` added.
    A submission without a single box (an untrained model) scores 0 instead of crashing.
    """
    from .eval.nuscenes_eval import evaluate

    reader = NuScenesReader(dataroot, version, split=split)
    writer, timing = predict_split(engine, reader, progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if writer.num_boxes == 0:
        return {"nd_score": 0.0, "mean_ap": 0.0, "tp_errors": {}, "timing": timing, "note": "no boxes predicted"}
    path = writer.write(out_dir / "results.json")
    summary = evaluate(path, dataroot, version, split, out_dir, nusc=reader.nusc)
    summary["timing"] = timing
    return summary
