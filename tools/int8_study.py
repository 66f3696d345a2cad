#!/usr/bin/env python3
"""Does int8 pay off on this CPU? onnxruntime execution variants of one quantized model, timed side by side.

    python tools/int8_study.py                                   # the bundled default, 12 frames x 4 rounds
    python tools/int8_study.py --model runs/x/model.packed.safetensors --json out/int8_study.json

Variants (all onnxruntime, CPU execution provider, same frames, round-robin in one process so a
busy machine slows all of them alike):

- ``int8 u8s8``: the Q/DQ export with uint8 activations (the ``onnxruntime-int8`` path of
  ``backend=auto``), with the onnxruntime-specific Q/DQ preparation (``export.graph``);
- ``int8 u8s8, no Q/DQ prep``: the same graph as exported (``optimize_qdq=False``);
- ``int8 s8s8``: the TensorRT form, symmetric int8 activations (``act_format="s8"``);
- ``fp32w``: an fp32 graph with the dequantized low-bit weights (``onnxruntime-fp32w``);
- each of ``int8 u8s8`` and ``fp32w`` again at optimization level ``extended`` (no NCHWc blocked
  layout for float convolutions), to show what the layout transformation gives;
- ``fp32w, 1 thread`` and ``int8 u8s8, 1 thread`` (how each scales to the second core).

Per variant: median / p90 ms per frame (pre + inference + post), the speed-up over ``fp32w``,
the optimized graph's operator counts (how many convolutions / matmuls run as int8 kernels) and,
with ``--profile``, onnxruntime's per-operator-type times. The CPU and its ISA (AVX2, AVX-512,
VNNI) head the table and go into the JSON: the answer depends on them.

Frames: the first ``--frames`` samples of a SynthScenes split (``make nano-data``), decoded
before timing. Timing is not a test: this is a benchmark command; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = (
    # label, graph, OnnxEngine options
    ("int8 u8s8", "qdq-u8", {}),
    ("int8 u8s8, no Q/DQ prep", "qdq-u8", {"optimize_qdq": False}),
    ("int8 s8s8", "qdq-s8", {}),
    ("fp32w", "fp32w", {}),
    ("int8 u8s8, level extended", "qdq-u8", {"optimization_level": "extended"}),
    ("fp32w, level extended", "fp32w", {"optimization_level": "extended"}),
    ("int8 u8s8, 1 thread", "qdq-u8", {"threads": 1}),
    ("fp32w, 1 thread", "fp32w", {"threads": 1}),
)
"""What is timed; the reference for the speed-up column is ``fp32w``."""

KERNEL_OPS = ("QLinearConv", "Conv", "FusedConv", "NchwcConv", "QLinearMatMul", "MatMulIntegerToFloat", "MatMul",
              "FusedMatMul", "Gemm", "QLinearAdd", "GridSample", "DequantizeLinear", "QuantizeLinear",
              "DynamicQuantizeMatMul", "ReorderInput", "ReorderOutput")
"""Operator types counted in each optimized graph (the rest are summed as ``other``)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="nano-w4a6-qdbev", help="quantized model: manifest name or packed .safetensors")
    p.add_argument("--dataroot", type=Path, default=REPO / "data" / "synth-val")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="synth_val")
    p.add_argument("--frames", type=int, default=12, help="timed frames per round")
    p.add_argument("--rounds", type=int, default=4, help="round-robin passes over the frames")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (variants marked '1 thread' use 1)")
    p.add_argument("--profile", type=int, default=4, help="frames per variant for the per-operator profile (0: none)")
    p.add_argument("--only", default="", help="comma-separated variant labels to run (default: all)")
    p.add_argument("--json", type=Path, default=REPO / "out" / "int8_study.json", help="also write the result here")
    args = p.parse_args(argv)
    if args.frames < 2 or args.rounds < 1:
        p.error("--frames must be >= 2 and --rounds >= 1")
    return args


def graph_files(model: str) -> dict[str, Path]:
    """``{"qdq-u8", "qdq-s8", "fp32w"}`` -> the ONNX file of each graph of ``model`` (exported once, cached)."""
    from qdbev_core.engine import auto_source, cached_onnx
    from qdbev_core.engine.auto_select import fp32w_onnx

    source = auto_source(model)
    if not source.quantized:
        raise SystemExit(f"int8_study: {model} is not a quantized model (give a W4A6 / W8A8 packed file)")
    return {"qdq-u8": cached_onnx(model, "int8", "u8", detector=source.detector),
            "qdq-s8": cached_onnx(model, "int8", "s8", detector=source.detector),
            "fp32w": fp32w_onnx(source)}


def optimized_op_counts(path: Path, options: dict) -> dict[str, int]:
    """Operator types of the graph onnxruntime runs (its optimized model, saved to a temp file)."""
    import onnx
    import onnxruntime as ort

    level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[options.get("optimization_level", "all")]
    with tempfile.TemporaryDirectory(prefix="qdbev-int8-study-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        so.log_severity_level = 3
        source, disabled = str(path), []
        if path.name.endswith((".qdq-u8.onnx", ".qdq-s8.onnx")) and options.get("optimize_qdq", True):
            from qdbev_core.export.graph import fold_unfusable_weight_dq

            m = onnx.load(str(path))
            fold_unfusable_weight_dq(m)
            source, disabled = m.SerializeToString(), ["MatMulAddFusion"]
        ort.InferenceSession(source, so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        counts = Counter(n.op_type for n in onnx.load(str(Path(tmp) / "opt.onnx")).graph.node)
    out = {k: counts.pop(k) for k in KERNEL_OPS if k in counts}
    out["other"] = sum(counts.values())
    return out


def percentile(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q))


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from qdbev_core.data.reader import NuScenesReader
    from qdbev_core.engine.onnx_engine import OnnxEngine
    from qdbev_core.engine.profiling import profile_engine
    from qdbev_core.hardware import machine_info

    chosen = [v for v in VARIANTS if not args.only or v[0] in args.only.split(",")]
    if not chosen:
        raise SystemExit(f"int8_study: --only matches no variant; choose from {', '.join(v[0] for v in VARIANTS)}")
    machine = machine_info()
    print(f"int8_study: {machine['cpu_summary']}", file=sys.stderr)
    files = graph_files(args.model)
    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    frames = [reader[i].frame for i in range(min(args.frames, len(reader)))]
    engines = []
    for label, graph, opts in chosen:
        kw = {"threads": args.threads, "allow_spinning": False, **opts}
        engines.append(OnnxEngine(files[graph], **kw))
    times: list[list[float]] = [[] for _ in engines]
    for e in engines:  # one untimed pass each: allocations, thread pools
        e.reset()
        e.detect(frames[0])
    bar = tqdm(total=args.rounds * len(frames) * len(engines), desc="int8 study", unit="frame", file=sys.stderr)
    for r in range(args.rounds):
        for e in engines:
            e.reset()
        for i, frame in enumerate(frames):
            for j in range(len(engines)):
                k = (j + i + r) % len(engines)  # rotate who goes first
                t = time.perf_counter()
                engines[k].detect(frame)
                times[k].append((time.perf_counter() - t) * 1e3)
                bar.update()
    bar.close()
    ref = next((i for i, v in enumerate(chosen) if v[0] == "fp32w"), None)
    ref_ms = percentile(times[ref], 50) if ref is not None else None
    rows = []
    for (label, graph, opts), e, ts in zip(chosen, engines, times):
        med = percentile(ts, 50)
        row = {"variant": label, "graph": graph, "file": str(files[graph]), "options": opts,
               "threads": opts.get("threads", args.threads), "ms_median": round(med, 2),
               "ms_p90": round(percentile(ts, 90), 2), "timed_frames": len(ts),
               "speedup_vs_fp32w": None if ref_ms is None else round(ref_ms / med, 3),
               "ops": optimized_op_counts(files[graph], opts)}
        if args.profile:
            prof = profile_engine(e, frames[: args.profile], top=8)
            row["profile"] = prof
        rows.append(row)
    return {"tool": "tools/int8_study.py", "model": args.model, "frames": len(frames), "rounds": args.rounds,
            "split": f"{args.dataroot}:{args.split}", "machine": machine, "rows": rows,
            "note": "synthetic data (SynthScenes); timing only, accuracy of the int8 / fp32w paths is checked by "
                    "qdbev bench --path-nds"}


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"int8 study of {result['model']} on {m['cpu_summary']}; {result['frames']} frames x "
             f"{result['rounds']} rounds, round-robin", "",
             "| variant | threads | ms / frame (median) | p90 | vs fp32w | int8 kernels (QLinearConv / MatMulIntegerToFloat "
             "/ QLinearMatMul) | float convs (Conv / FusedConv / NchwcConv) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        o = r["ops"]
        q = f"{o.get('QLinearConv', 0)} / {o.get('MatMulIntegerToFloat', 0)} / {o.get('QLinearMatMul', 0)}"
        f = f"{o.get('Conv', 0)} / {o.get('FusedConv', 0)} / {o.get('NchwcConv', 0)}"
        sp = "n/a" if r["speedup_vs_fp32w"] is None else f"{r['speedup_vs_fp32w']:.2f}x"
        lines.append(f"| {r['variant']} | {r['threads']} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} | {sp} | {q} | {f} |")
    for r in result["rows"]:
        if "profile" in r:
            ops = ", ".join(f"{o['op']} {o['ms_per_frame']:.1f} ms ({o['share']:.0%})" for o in r["profile"]["ops"][:6])
            lines.append(f"\n- profile `{r['variant']}`: {ops}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"int8_study: wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
