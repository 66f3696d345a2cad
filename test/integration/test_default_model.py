"""The model users run by default (the manifest's `default:`), loaded as users load it.

Random-weight parity tests (test_engines.py) cannot show how far a *trained* low-bit model drifts
between the fake-quant PyTorch model and the int8 onnxruntime graph; this test runs the bundled
default through both backends on SynthScenes frames it was not trained on and checks that they
agree on the boxes and on the official NDS, and that the model really detects objects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdbev_core.data.reader import NuScenesReader
from qdbev_core.engine import load_engine
from qdbev_core.eval.nuscenes_eval import evaluate
from qdbev_core.eval.results import ResultsWriter
from qdbev_core.models_manifest import default_model, read_manifest

pytest.importorskip("onnxruntime")

SPLIT = "synth_train"  # 3 scenes x 6 samples of the session dataset (seed 7, a seed no bundled model saw)
CONFIDENT = 0.3
"""Detections at or above this score are matched between the backends."""


def _run(engine, reader: NuScenesReader) -> tuple[list, ResultsWriter]:
    writer = ResultsWriter(reader.sample_tokens)
    starts = {sc.first for sc in reader.scenes()}
    dets = []
    for i in range(len(reader)):
        if i in starts:
            engine.reset()
        s = reader[i]
        d = engine.detect(s.frame)
        writer.add(s.token, d, s.frame.ego2global)
        dets.append(d)
    return dets, writer


def _match(a, b) -> tuple[int, int, list[float], list[float]]:
    """Confident boxes of ``a`` with a same-class box of ``b`` within 1 m: (matched, total, centre
    distances in m, score differences)."""
    matched = total = 0
    dist, dscore = [], []
    for da, db in zip(a, b, strict=True):
        for i in np.flatnonzero(da.scores >= CONFIDENT):
            total += 1
            same = np.flatnonzero(db.labels == da.labels[i])
            if not len(same):
                continue
            d = np.linalg.norm(db.boxes[same, :2] - da.boxes[i, :2], axis=1)
            j = int(np.argmin(d))
            if d[j] < 1.0:
                matched += 1
                dist.append(float(d[j]))
                dscore.append(abs(float(db.scores[same[j]] - da.scores[i])))
    return matched, total, dist, dscore


def test_default_model_agrees_between_torch_and_onnxruntime(synth_dataroot: Path, tmp_path: Path) -> None:
    name = default_model()
    entry = read_manifest()[name]
    assert entry["precision"] == "w4a6", "the default is the QD-BEV W4A6 model"
    reader = NuScenesReader(synth_dataroot, "v1.0-mini", split=SPLIT)
    fq = load_engine(name, backend="torch", score_threshold=0.05)  # packed file -> fake-quant model
    i8 = load_engine(name, backend="onnxruntime", score_threshold=0.05, threads=2)  # int8 Q/DQ graph
    d_fq, w_fq = _run(fq, reader)
    d_i8, w_i8 = _run(i8, reader)

    # the same objects, in the same places, with similar confidence (both directions)
    for a, b in ((d_fq, d_i8), (d_i8, d_fq)):
        matched, total, dist, dscore = _match(a, b)
        assert total >= 2 * len(reader), f"only {total} confident boxes in {len(reader)} samples"
        assert matched >= 0.9 * total, f"{matched}/{total} confident boxes matched across backends"
        assert np.median(dist) < 0.15 and np.median(dscore) < 0.05, (np.median(dist), np.median(dscore))

    # official NDS of both on the same samples: equal within 0.01, and the model detects objects
    nds = {}
    for tag, w in (("torch", w_fq), ("onnxruntime", w_i8)):
        path = w.write(tmp_path / tag / "results.json")
        nds[tag] = evaluate(path, synth_dataroot, "v1.0-mini", SPLIT, tmp_path / tag, nusc=reader.nusc)["nd_score"]
    assert abs(nds["torch"] - nds["onnxruntime"]) <= 0.01, nds
    assert min(nds.values()) > 0.2, nds  # an untrained model scores ~0
