"""NDS of every execution path of a model (``qdbev bench --path-nds``): the record the ``auto`` backend reads.

Each candidate path of ``engine.auto_select`` predicts a split and the official nuScenes evaluator scores
it; a path more than the gate's tolerance (0.01 NDS) from the model's own torch result is not eligible
for ``auto``. This sits above both ``engine`` and ``predict`` (it needs the engines and the scoring loop).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from .engine.auto_select import (NDS_FORMAT, AccuracyGate, ExecutionPath, ModelSource, auto_cache_dir, build_path,
                                 candidate_paths, nds_record_file, onnxruntime_available, write_json_atomic)
from .hardware import cpu_info
from .predict import predict_and_evaluate

log = logging.getLogger("qdbev.engine.auto")


def score_paths(source: ModelSource, dataroot: Path, version: str, split: str, out_dir: Path, threads: int,
                allow_spinning: bool | None = None, record_out: Path | None = None,
                paths: Sequence[ExecutionPath] | None = None, progress: bool = False,
                gate: AccuracyGate = AccuracyGate()) -> dict:
    """Predict ``split`` along every candidate path (``paths``: default all) and score each with the
    official evaluator; write the NDS record (``record_out``, default ``nds_record_file(auto_cache_dir(), sha)``)
    that ``load_auto_engine`` reads. Returns the record."""
    paths = list(paths or candidate_paths(source.quantized, onnxruntime_available()))
    ref = next((p for p in paths if p.reference), None)
    if ref is None:
        raise ValueError("score_paths needs the reference path (the model's own torch result) among the paths")
    rec_paths: dict[str, dict] = {}
    for p in paths:
        engine = build_path(p, source, threads=threads, allow_spinning=allow_spinning)
        summary = predict_and_evaluate(engine, Path(dataroot), version, split, Path(out_dir) / p.name, progress=progress)
        rec_paths[p.name] = {"nds": float(summary.get("nd_score", 0.0)), "map": float(summary.get("mean_ap", 0.0)),
                             "description": p.description}
        log.info("path %s: NDS %.4f", p.name, rec_paths[p.name]["nds"])
    ref_nds = rec_paths[ref.name]["nds"]
    for name, r in rec_paths.items():
        r["delta_vs_reference"] = r["nds"] - ref_nds
        r["within_tolerance"] = abs(r["nds"] - ref_nds) <= gate.nds_tolerance
    record = {"format": NDS_FORMAT, "model": source.label, "model_sha256": source.sha256, "reference": ref.name,
              "reference_nds": ref_nds, "tolerance": gate.nds_tolerance, "dataroot": str(dataroot),
              "version": version, "split": split,
              "cpu_summary": cpu_info().summary(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "paths": rec_paths}
    out = Path(record_out) if record_out else nds_record_file(auto_cache_dir(), source.sha256)
    write_json_atomic(out, record)
    record["file"] = str(out)
    return record
