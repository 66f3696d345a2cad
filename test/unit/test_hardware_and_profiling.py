"""Where a benchmark ran (CPU model, ISA features that decide int8 speed) and where an engine spends
its time (`qdbev bench --profile`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qdbev_core.data.rig import rig_arrays
from qdbev_core.hardware import CpuInfo, cpu_info, machine_info
from qdbev_core.types import Frame

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""
XEON_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni avx512_bf16
processor\t: 1
model name\t: ignored second core
flags\t\t: fpu
"""
ALDER_LAKE = "model name\t: 12th Gen Intel(R) Core(TM) i7-1260P\nflags\t\t: avx2 fma avx_vnni\n"


def test_isa_detection_from_cpuinfo() -> None:
    epyc = cpu_info(EPYC_AVX2)
    assert epyc.model == "AMD EPYC" and epyc.isa == ("avx2", "fma") and not epyc.vnni
    xeon = cpu_info(XEON_VNNI)
    assert xeon.model.startswith("Intel(R) Xeon(R) Platinum 8375C")
    assert xeon.isa == ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16") and xeon.vnni
    assert cpu_info(ALDER_LAKE).vnni and "avx512f" not in cpu_info(ALDER_LAKE).isa
    x86 = CpuInfo("AMD EPYC", 2, "x86_64", ("avx2", "fma"))
    assert x86.summary() == "AMD EPYC (x86_64, 2 cores; avx2 fma; no AVX-512, no VNNI)"
    assert "VNNI)" in CpuInfo("Xeon", 4, "x86_64", ("avx2", "avx512f", "avx512_vnni")).summary()
    assert cpu_info("").isa == ()  # no /proc/cpuinfo: nothing claimed


def test_machine_info_names_this_machine() -> None:
    m = machine_info()
    assert m["cores"] >= 1 and m["cpu"] and m["libraries"]["torch"] and m["libraries"]["onnxruntime"]
    assert m["isa"] == list(cpu_info().isa) and m["cpu_summary"].startswith(m["cpu"])


def _frame() -> Frame:
    rng = np.random.default_rng(0)
    k, t = rig_arrays(0.25)
    return Frame(images=[rng.integers(0, 256, (225, 400, 3), dtype=np.uint8) for _ in range(6)], intrinsics=k,
                 cam2ego=t, stamp=1.0, ego2global=np.eye(4), scene="s")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_profile_engine_lists_the_top_operators(backend: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from qdbev_core.engine.profiling import profile_engine
    from qdbev_core.engine.torch_engine import TorchEngine
    from qdbev_core.model import BEVDetector

    torch.manual_seed(0)
    model = BEVDetector("nano", image_size=(64, 176), bev_h=16, bev_w=16, num_queries=30, dec_layers=2).eval()
    if backend == "torch":
        engine = TorchEngine(model)
    else:
        from qdbev_core.engine.onnx_engine import OnnxEngine
        from qdbev_core.export import export_onnx

        engine = OnnxEngine(export_onnx(model, tmp_path / "m.onnx"), threads=1)
    prof = profile_engine(engine, [_frame(), _frame()], top=5)
    assert prof["frames"] == 2 and len(prof["ops"]) == 5 and prof["total_ms_per_frame"] > 0
    shares = [op["share"] for op in prof["ops"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-9
    names = " ".join(op["op"] for op in prof["ops"]).lower()
    assert "conv" in names or "gridsample" in names or "grid_sampler" in names or "matmul" in names or "linear" in names
