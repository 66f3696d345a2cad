"""Where an engine spends its time: the top operators of a few frames (``qdbev bench --profile``).

onnxruntime: its built-in profiler on a second session of the same graph (kernel time per node,
grouped by operator type). torch: ``torch.profiler`` (self CPU time per aten operator). Both are
reported per frame and as a share of the profiled operator time; profiling overhead makes the
absolute numbers larger than the benchmark's timings, the shares are what to read.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ..types import Frame
from .base import Engine


def _table(times_us: dict[str, float], calls: dict[str, int], frames: int, tool: str, top: int) -> dict:
    total = sum(times_us.values()) or 1.0
    ops = sorted(times_us, key=times_us.get, reverse=True)[:top]
    return {"tool": tool, "frames": frames, "total_ms_per_frame": total / 1e3 / frames,
            "ops": [{"op": op, "ms_per_frame": times_us[op] / 1e3 / frames, "share": times_us[op] / total,
                     "calls_per_frame": calls[op] / frames} for op in ops]}


def onnxruntime_op_times(profile_json: Path, skip_runs: int = 0) -> tuple[dict[str, float], dict[str, int]]:
    """Kernel microseconds and call counts per operator type from an onnxruntime profile file,
    leaving out the nodes of the first ``skip_runs`` ``Run`` calls (warm-up)."""
    events = json.loads(Path(profile_json).read_text())
    runs = sorted((ev["ts"], ev["ts"] + ev.get("dur", 0)) for ev in events
                  if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    start = runs[skip_runs][0] if len(runs) > skip_runs else float("inf")
    times: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for ev in events:
        if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith("_kernel_time") and ev.get("ts", 0) >= start:
            op = ev.get("args", {}).get("op_name", "?")
            times[op] += float(ev.get("dur", 0))
            calls[op] += 1
    return dict(times), dict(calls)


def profile_engine(engine: Engine, frames: Sequence[Frame], top: int = 12) -> dict:
    """Profile ``engine`` over ``frames`` (after one untimed frame); returns
    ``{"tool", "frames", "total_ms_per_frame", "ops": [{"op", "ms_per_frame", "share", "calls_per_frame"}]}``.

    Raises ValueError for an engine kind it cannot profile (TensorRT: use nsys)."""
    if not frames:
        raise ValueError("profile_engine needs at least one frame")
    if engine.name == "onnxruntime":
        from .onnx_engine import OnnxEngine

        with tempfile.TemporaryDirectory(prefix="qdbev-ort-profile-") as tmp:
            prof = OnnxEngine(engine.path, profile_prefix=str(Path(tmp) / "ort"), **engine._init_args)
            for f in (frames[0], *frames):  # the first run (allocations) is left out below
                prof.detect(f)
            times, calls = onnxruntime_op_times(Path(prof.session.end_profiling()), skip_runs=1)
        return _table(times, calls, len(frames), "onnxruntime profiler", top)
    if engine.name == "torch":
        from torch.profiler import ProfilerActivity, profile

        engine.detect(frames[0])
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for f in frames:
                engine.detect(f)
        averages = p.key_averages()
        times = {e.key: float(e.self_cpu_time_total) for e in averages}
        calls = {e.key: int(e.count) for e in averages}
        return _table(times, calls, len(frames), "torch.profiler", top)
    raise ValueError(f"cannot profile the {engine.name} engine here (TensorRT: use nsys / trtexec --dumpProfile)")
