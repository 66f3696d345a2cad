"""TensorRT vs onnxruntime (CPU) on the same exported graphs and the same frames (run by tools/gpu_check.sh).

For a float model and a quantized model (manifest names or .safetensors paths):

1. export the fp32 ONNX and the symmetric-int8 Q/DQ ONNX (``cached_onnx``, into ``<out>/cache``);
2. build the TensorRT fp32, fp16 and int8 engines (fp16 is refused on TensorRT 11: recorded);
3. run TensorRT and onnxruntime (CPU) on the same frames of a dataset split, the temporal state
   carried, and compare the raw head outputs (max |diff| of ``boxes`` and ``cls_logits``) and the
   decoded detections (fraction matched by class and centre within 0.5 m);
4. time each engine's inference stage (``last_timing.inference_ms``; TensorRT: host-to-device copy,
   execute on its stream, device-to-host copy) over ``--timing-frames`` frames: median and p90, ms.

Writes ``<out>/gpu_check.json`` (every number, the TensorRT / GPU / driver versions, each engine's
build settings) and ``<out>/gpu_check.md`` (a table). Exit status 1 when the fp32 boxes differ by
more than 1e-3 or an engine fails to build (other than fp16 refused on TensorRT 11).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", default="nano-fp32-yaw", help="float model (fp32 / fp16 engines)")
    p.add_argument("--int8-model", default="nano-w4a6-qdbev", help="packed quantized model (int8 engine)")
    p.add_argument("--dataroot", type=Path, required=True, help="nuScenes-format dataset (SynthScenes)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="synth_val")
    p.add_argument("--frames", type=int, default=20, help="frames compared (from the start of the split)")
    p.add_argument("--timing-frames", type=int, default=50, help="frames timed per engine (median of these)")
    p.add_argument("--threads", type=int, default=8, help="onnxruntime CPU threads")
    return p.parse_args(argv)


def raw_outputs(engine, frames, starts: set[int]) -> list[dict]:
    """Raw ``cls_logits`` / ``boxes`` and decoded detections per frame (as ``Engine.detect`` runs them)."""
    from qdbev_core.model.postprocess import decode_detections
    from qdbev_core.runtime.preprocess import prepare_frame

    engine.reset()
    outs = []
    for i, f in enumerate(frames):
        if i in starts:
            engine.reset()
        net = prepare_frame(f, tuple(engine.cfg.image_size))
        motion = engine.temporal.motion(f)
        out = engine._run(engine._feed(net, None if motion is None else engine.temporal.bev, motion))
        engine.temporal.update(f, out["bev"])
        det = decode_detections(out, engine.score_threshold, engine.topk)[0]
        outs.append({"cls_logits": np.asarray(out["cls_logits"], np.float32),
                     "boxes": np.asarray(out["boxes"], np.float32), "det": det})
    return outs


def compare(a: list[dict], b: list[dict]) -> dict:
    """Max |a - b| of the raw outputs; fraction of a's detections with a same-class b detection within 0.5 m."""
    hit = total = 0
    for x, y in zip(a, b):
        da, db = x["det"], y["det"]
        for i in range(len(da)):
            total += 1
            d = np.linalg.norm(db.boxes[:, :2] - da.boxes[i, :2], axis=1) if len(db) else np.array([np.inf])
            hit += bool(np.any((d < 0.5) & (db.labels == da.labels[i]))) if len(db) else 0
    return {
        "boxes_max_abs_diff": max(float(np.abs(x["boxes"] - y["boxes"]).max()) for x, y in zip(a, b)),
        "cls_logits_max_abs_diff": max(float(np.abs(x["cls_logits"] - y["cls_logits"]).max()) for x, y in zip(a, b)),
        "detections_matched": hit / total if total else 1.0,
        "detections": total,
    }


def timing(engine, frames, starts: set[int], count: int) -> dict:
    """Median / p90 of ``last_timing.inference_ms`` and of the whole ``detect`` over ``count`` frames (3 warm-up)."""
    inf, tot = [], []
    engine.reset()
    for i in range(count + 3):
        k = i % len(frames)
        if k in starts:
            engine.reset()
        t = time.perf_counter()
        engine.detect(frames[k])
        if i >= 3:
            tot.append((time.perf_counter() - t) * 1e3)
            inf.append(engine.last_timing.inference_ms)
    return {"frames": count, "inference_ms_median": float(np.median(inf)), "inference_ms_p90": float(np.percentile(inf, 90)),
            "total_ms_median": float(np.median(tot))}


def environment() -> dict:
    import onnxruntime
    import tensorrt
    import torch

    return {"tensorrt": tensorrt.__version__, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "onnxruntime": onnxruntime.__version__, "gpu": torch.cuda.get_device_name(0),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from qdbev_core.data.reader import NuScenesReader
    from qdbev_core.engine import cached_onnx, load_detector
    from qdbev_core.engine.onnx_engine import OnnxEngine
    from qdbev_core.engine.tensorrt_engine import TensorRTEngine
    from qdbev_core.engine.trt_decisions import TensorRTSupportError

    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cache"
    report: dict = {"environment": environment(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    n = min(max(args.frames, 1), len(reader))
    frames = [reader[i].frame for i in range(n)]
    starts = {sc.first for sc in reader.scenes() if sc.first < n}

    t0 = time.perf_counter()
    fp32_det, q_det = load_detector(args.model), load_detector(args.int8_model)
    graphs = {"fp32": cached_onnx(args.model, "fp32", cache_dir=cache, detector=fp32_det),
              "int8": cached_onnx(args.int8_model, "int8", "s8", cache_dir=cache, detector=q_det)}
    report["export_s"] = round(time.perf_counter() - t0, 1)
    kw = dict(score_threshold=0.05, topk=300)
    ok = True
    for precision in ("fp32", "fp16", "int8"):
        graph = graphs["int8" if precision == "int8" else "fp32"]
        row: dict = {"precision": precision, "onnx": graph.name}
        report["rows"].append(row)
        try:
            t = time.perf_counter()
            trt_e = TensorRTEngine(graph, precision=precision, cache_dir=cache, **kw)
            row.update(engine_s=round(time.perf_counter() - t, 1), build_s=trt_e.build_seconds,
                       pinned_geometry_layers=trt_e.pinned_layers, settings=trt_e.settings.to_json(),
                       flags_set=list(trt_e.build.set_flags), flags_cleared=list(trt_e.build.clear_flags))
        except TensorRTSupportError as exc:
            row["refused"] = str(exc)
            print(f"[{precision}] refused: {exc}", flush=True)
            continue
        except Exception as exc:  # noqa: BLE001 - recorded, the other precisions still run
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["traceback"] = traceback.format_exc()
            print(f"[{precision}] FAILED: {row['error']}", flush=True)
            ok = False
            continue
        ort_e = OnnxEngine(graph, threads=args.threads, **kw)
        row["vs_onnxruntime"] = compare(raw_outputs(trt_e, frames, starts), raw_outputs(ort_e, frames, starts))
        row["tensorrt_timing"] = timing(trt_e, frames, starts, args.timing_frames)
        row["onnxruntime_cpu_timing"] = timing(ort_e, frames, starts, min(args.timing_frames, 20))
        print(f"[{precision}] {json.dumps(row['vs_onnxruntime'])} trt {row['tensorrt_timing']['inference_ms_median']:.2f} ms",
              flush=True)
        if precision == "fp32" and row["vs_onnxruntime"]["boxes_max_abs_diff"] > 1e-3:
            ok = False
        del trt_e, ort_e
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if ok else 1


def markdown(report: dict) -> str:
    """A table of the rows: build time, parity against onnxruntime, median timings."""
    env = report["environment"]
    lines = [f"GPU {env['gpu']} (sm {env['compute_capability']}), TensorRT {env['tensorrt']}, torch {env['torch']} "
             f"(CUDA {env['torch_cuda']}), onnxruntime {env['onnxruntime']}", "",
             "| precision | build s | pinned | boxes max diff | logits max diff | det matched | TRT inf ms (median/p90) "
             "| TRT detect ms | ORT CPU inf ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "vs_onnxruntime" not in r:
            lines.append(f"| {r['precision']} | {r.get('refused') or r.get('error')} |||||||")
            continue
        c, t, o = r["vs_onnxruntime"], r["tensorrt_timing"], r["onnxruntime_cpu_timing"]
        lines.append(f"| {r['precision']} | {r.get('build_s') or 0:.1f} | {r['pinned_geometry_layers']} | "
                     f"{c['boxes_max_abs_diff']:.2e} | {c['cls_logits_max_abs_diff']:.2e} | {c['detections_matched']:.3f} | "
                     f"{t['inference_ms_median']:.2f} / {t['inference_ms_p90']:.2f} | {t['total_ms_median']:.2f} | "
                     f"{o['inference_ms_median']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
