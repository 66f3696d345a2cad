"""QAT with the default recipe (output quantizers included) resumes exactly from its checkpoint:
an interrupted run, rerun, logs the same losses as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qdbev_core.models_manifest import load_model
from qdbev_core.quant import out_quantizers
from qdbev_core.train.trainer import read_metrics, train


def _losses(out: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in read_metrics(out / "metrics.csv") if r.get("loss")}


def test_standard_qat_with_output_quantizers_resumes_exactly(synth_dataroot: Path, tiny_teacher: Path, standard_qat_config,
                                                            standard_qat_run: Path, tmp_path: Path) -> None:
    full, part = standard_qat_run, tmp_path / "part"  # full: the session's uninterrupted run of the same config
    train(standard_qat_config(synth_dataroot, part, tiny_teacher), progress=False, stop_at=2)  # interrupted after step 2
    train(standard_qat_config(synth_dataroot, part, tiny_teacher), progress=False)  # the same command resumes at 2
    a, b = _losses(full), _losses(part)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5]
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    m1, m2 = load_model(full / "model.safetensors"), load_model(part / "model.safetensors")
    p1, p2 = dict(out_quantizers(m1)), dict(out_quantizers(m2))
    assert p1 and p1.keys() == p2.keys()
    for n in p1:  # learned output steps / zero points, restored and trained on identically
        assert torch.allclose(p1[n].step, p2[n].step, rtol=1e-5) and torch.equal(p1[n].zero_point.round(), p2[n].zero_point.round()), n
