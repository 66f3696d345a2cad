"""Benchmark the inference backends side by side: latency (pre / inference / post), FPS, peak RSS,
model file size and NDS, for every available backend x precision, on the same frames in one run.

Each backend x precision runs in a fresh subprocess (so its peak RSS is its own) on the first
``--frames`` samples of the split (images decoded before timing, ``--warmup`` frames first, temporal
state carried within scenes as in prediction), then predicts the whole split and scores it with
the official nuScenes evaluator (accuracy parity). ``--interleave`` instead loads every engine
in one process and times them round-robin, frame by frame (the order rotating each frame): on a
CPU shared with other work each backend then sees the same load, so the speed-up ratios stay
comparable (the RSS column is then that one process's peak). ``int8`` rows use the quantized model: the
packed QAT file given with ``--int8-model`` (or the ``--model`` itself when it is packed), else a
post-training-calibrated W4A6 model (``--ptq-frames`` frames through ``quant.calibrate``: the
LSQ initialisation, not QAT) that is cached next to the ONNX exports. ONNX exports and TensorRT
plans are made before timing (``engine_cache_dir``). Numbers depend on the machine and its load:
the table names both; ``--json`` keeps every number.

The ``auto`` row is ``load_engine(backend="auto")`` (``engine.auto_select``) on the quantized model
of the int8 rows when there is one (``--int8-model``, a packed ``--model``, or the PTQ model), else
on ``--model``: the path it chose (its precision in the ``prec`` column), with its choice line
(every candidate's ms, the cache file) printed under the table and kept in the JSON. Its
selection timing happens while the engine loads (``engine_load_s``), not in the timed frames;
the choice is cached per model and machine (``$QDBEV_AUTO_CACHE`` or ``~/.cache/qdbev/auto``).
``--path-nds`` instead scores every candidate path of that model over the whole split (official
evaluator) and writes the NDS record that makes a path eligible or not for ``auto``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_BACKENDS = "torch,onnxruntime,tensorrt,auto"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name from models/manifest.yaml or a .safetensors path")
    p.add_argument("--int8-model", default=None, help="packed quantized (QAT) model for the int8 rows")
    p.add_argument("--backends", default=DEFAULT_BACKENDS, help="comma-separated: torch, onnxruntime, tensorrt, auto "
                   "(auto: one row, the path load_engine(backend='auto') chose, on the quantized model when there is one)")
    p.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, int8 (fp16: TensorRT only)")
    p.add_argument("--frames", type=int, default=30, help="timed frames per backend")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    p.add_argument("--dataroot", type=Path, required=True, help="nuScenes-format dataset root (e.g. SynthScenes)")
    p.add_argument("--version", default="v1.0-mini", help="dataset version folder")
    p.add_argument("--split", required=True, help="split: timed frames come from its start; NDS over all of it")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch and onnxruntime intra-op)")
    p.add_argument("--device", default="cpu", help="torch backend device (cpu or cuda)")
    p.add_argument("--ptq-frames", type=int, default=8, help="frames to calibrate a W4A6 model when no --int8-model")
    p.add_argument("--ptq-no-output-quant", action="store_true",
                   help="calibrate the W4A6 model without output quantizers (QuantSpec(quantize_outputs=False): "
                        "Conv/Linear inputs only, the recipe before them; for comparison)")
    p.add_argument("--no-nds", action="store_true", help="skip the NDS evaluation (latency only)")
    p.add_argument("--shared-cpu", action="store_true",
                   help="the CPU also runs other work: no busy-waiting thread pools (OMP_WAIT_POLICY=PASSIVE, "
                        "onnxruntime allow_spinning=0); spinning threads that get preempted slow every backend down")
    p.add_argument("--interleave", action="store_true",
                   help="time all backends in one process, round-robin frame by frame (fair ratios on a loaded CPU; "
                        "RSS is then shared)")
    p.add_argument("--repeat", type=int, default=1, help="passes over the timed frames (--interleave)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile N frames per backend and print its top operators "
                        "(onnxruntime's profiler, torch.profiler; not with --interleave)")
    p.add_argument("--path-nds", action="store_true",
                   help="instead of timing: score every candidate path of backend 'auto' (torch reference, onnxruntime "
                        "int8 / fp32w / fp32) over the whole split with the official evaluator and write the NDS record "
                        "auto reads (a path more than 0.01 NDS from the torch result is not eligible)")
    p.add_argument("--nds-record", type=Path, default=None,
                   help="--path-nds: where to write the record (default: nds-<model sha16>.json in the auto cache "
                        "directory, $QDBEV_AUTO_CACHE or $XDG_CACHE_HOME/qdbev/auto)")
    p.add_argument("--out-dir", type=Path, default=Path("out/bench"), help="results JSON / evaluator output per row")
    p.add_argument("--json", type=Path, default=Path("out/bench.json"), help="where to write the numbers")
    p.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_frames_file", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_interleave", default=None, help=argparse.SUPPRESS)


# --- child: one backend x precision ----------------------------------------------------------------
def _measure(args: argparse.Namespace, backend: str, precision: str, model: str) -> dict:
    import pickle
    import time

    import torch

    from ..engine import load_engine

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    engine = load_engine(model, backend=backend, precision=precision, device=args.device, threads=args.threads,
                         allow_spinning=False if args.shared_cpu else None)
    load_s = time.perf_counter() - t0
    # frames decoded by the parent: no dataset tables in this process while RSS is measured
    with open(args._frames_file, "rb") as f:
        frames, starts = pickle.load(f)
    n = len(frames)

    def run(count: int, keep: bool) -> dict:
        engine.reset()
        rec = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": [], "total_ms": []}
        for i in range(count):
            if i in starts:
                engine.reset()
            t = time.perf_counter()
            engine.detect(frames[i % n])
            total = (time.perf_counter() - t) * 1e3
            if keep:
                for k in ("preprocess_ms", "inference_ms", "postprocess_ms"):
                    rec[k].append(getattr(engine.last_timing, k))
                rec["total_ms"].append(total)
        return rec

    run(min(args.warmup, n), keep=False)
    rec = run(n, keep=True)
    rss_mb = _peak_rss_mb()  # before the evaluator loads
    row = _result_row(args, backend, precision, model, engine, rec, n, load_s, rss_mb)
    if args.profile > 0:
        from ..engine.profiling import profile_engine

        row["profile"] = profile_engine(engine, frames[: args.profile], top=12)
    return row


def _result_row(args, backend: str, precision: str, model, engine, rec: dict, n: int, load_s: float,
                rss_mb: float, **extra) -> dict:
    """One table row: timing medians / p90 (ms) of ``rec``, FPS, model file, and NDS unless ``--no-nds``."""
    import numpy as np

    row: dict = {"backend": backend, "precision": precision, "model": str(model), "frames": n, **extra,
                 "engine_load_s": round(load_s, 2), "peak_rss_MB": round(rss_mb, 1)}
    for k, v in rec.items():
        row[k.replace("_ms", "") + "_ms_median"] = float(np.median(v))
        row[k.replace("_ms", "") + "_ms_p90"] = float(np.percentile(v, 90))
    row["fps"] = 1000.0 / row["total_ms_median"]
    choice = getattr(engine, "auto_choice", None)
    if choice is not None:
        row["auto_path"] = choice.path.name
        row["auto_choice"] = choice.to_dict()
    row["model_file"], row["model_file_MB"] = _model_file(engine, model)
    if not args.no_nds:
        from ..predict import predict_and_evaluate

        summary = predict_and_evaluate(engine, args.dataroot, args.version, args.split,
                                       args.out_dir / f"{backend}-{precision}", progress=False)
        row["nds"] = float(summary.get("nd_score", 0.0))
        row["map"] = float(summary.get("mean_ap", 0.0))
    return row


def _measure_interleaved(args: argparse.Namespace, combos: list[tuple[str, str, str]]) -> list[dict]:
    """All ``combos`` in this process, timed round-robin over the same frames (see module doc)."""
    import pickle
    import time

    import torch

    from ..engine import load_engine

    torch.set_num_threads(args.threads)
    engines, loads = [], []
    for b, p, m in combos:
        t0 = time.perf_counter()
        engines.append(load_engine(m, backend=b, precision=p, device=args.device, threads=args.threads,
                                   allow_spinning=False if args.shared_cpu else None))
        loads.append(time.perf_counter() - t0)
    with open(args._frames_file, "rb") as f:
        frames, starts = pickle.load(f)
    n, k = len(frames), len(engines)
    recs = [{"preprocess_ms": [], "inference_ms": [], "postprocess_ms": [], "total_ms": []} for _ in engines]
    for e in engines:
        e.reset()
        for i in range(min(args.warmup, n)):
            e.detect(frames[i])
    step = 0
    for _ in range(max(1, args.repeat)):
        for e in engines:
            e.reset()
        for i in range(n):
            for j in range(k):
                idx = (j + step) % k  # rotate who goes first
                e = engines[idx]
                if i in starts:
                    e.reset()
                t = time.perf_counter()
                e.detect(frames[i])
                total = (time.perf_counter() - t) * 1e3
                for key in ("preprocess_ms", "inference_ms", "postprocess_ms"):
                    recs[idx][key].append(getattr(e.last_timing, key))
                recs[idx]["total_ms"].append(total)
            step += 1
    rss_mb = _peak_rss_mb()
    rows = []
    for (b, p, m), e, rec, ls in zip(combos, engines, recs, loads):
        rows.append(_result_row(args, b, p, m, e, rec, n, ls, rss_mb, timed_runs=len(rec["total_ms"]),
                                interleaved=True))
    return rows


def _peak_rss_mb() -> float:
    """Peak resident set of this process in MB: ``VmHWM`` (reset by exec, so it is this process's
    own; ``ru_maxrss`` keeps the parent's peak across fork + exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model_file(engine, model: str) -> tuple[str, float]:
    path = getattr(engine, "plan_path", None) or getattr(engine, "path", None)
    if path is None:
        from ..models_manifest import resolve_model

        path = resolve_model(model)[0]
    path = Path(path)
    return str(path), round(path.stat().st_size / 1e6, 3)


# --- parent ------------------------------------------------------------------------------------------
def _available(backend: str) -> str | None:
    """None when usable, else the reason it is skipped."""
    import importlib.util

    if backend in ("torch", "auto"):
        return None
    if backend == "onnxruntime":
        return None if importlib.util.find_spec("onnxruntime") else "onnxruntime not installed"
    if backend == "tensorrt":
        from ..engine.tensorrt_engine import require_tensorrt

        try:
            require_tensorrt()
        except RuntimeError as exc:
            return "tensorrt not importable" if "Python package" in str(exc) else "no CUDA GPU visible to PyTorch"
        return None
    return f"unknown backend {backend!r}"


def _ptq_model(args: argparse.Namespace, model: str) -> str:
    """Calibrate a W4A6 fake-quant model from the float ``model`` on ``--ptq-frames`` frames (cached)."""
    import torch

    from ..data.reader import NuScenesReader
    from ..engine import engine_cache_dir, load_detector
    from ..runtime.preprocess import prepare_frame
    from ..quant import QuantSpec, calibrate, pack_model, quantize_model

    from ..checkpoint import read_sidecar

    net, sha, path, quant = load_detector(model)
    if quant:
        return model
    spec = QuantSpec(quantize_outputs=not args.ptq_no_output_quant)
    tag = "w4a6" if spec.quantize_outputs else "w4a6-inputs-only"
    out = engine_cache_dir() / f"{path.stem}.{sha[:16]}.{tag}-ptq{args.ptq_frames}.safetensors"
    if out.is_file() and out.with_suffix(".json").is_file():
        try:  # reuse only a file made with the same spec (older caches had no output quantizers)
            if QuantSpec.from_dict(read_sidecar(out)["quant_spec"]) == spec:
                return str(out)
        except (KeyError, ValueError, TypeError):
            pass
    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    batches = []
    for i in range(min(args.ptq_frames, len(reader))):
        x = prepare_frame(reader[i].frame, tuple(net.cfg.image_size))
        batches.append((torch.from_numpy(x.img)[None], torch.from_numpy(x.intrinsics)[None], torch.from_numpy(x.cam2ego)[None]))
    q = quantize_model(net, spec, inplace=False)
    calibrate(q, batches)
    pack_model(q, out, {"source_model": str(path), "source_sha256": sha,
                        "note": f"post-training LSQ calibration on {len(batches)} frames of {args.split} (qdbev bench)"})
    return str(out)


def _prepare(args: argparse.Namespace, combos: list[tuple[str, str, str]]) -> None:
    """Export / build once in this process so the timed children only load."""
    from ..engine import cached_onnx

    for backend, precision, model in combos:
        if backend == "onnxruntime":
            cached_onnx(model, precision, "u8")
        elif backend == "tensorrt":
            from ..engine import load_engine

            load_engine(model, backend="tensorrt", precision=precision)


def format_profile(label: str, prof: dict) -> str:
    """The top operators of one backend as a small text table (ms per frame, share of the profiled time)."""
    lines = [f"top operators, {label} ({prof['tool']}, {prof['frames']} frames, {prof['total_ms_per_frame']:.1f} ms "
             "per frame profiled):", "  share   ms/frame  calls/frame  operator"]
    for op in prof["ops"]:
        lines.append(f"  {op['share'] * 100:5.1f} %  {op['ms_per_frame']:8.2f}  {op['calls_per_frame']:11.1f}  {op['op']}")
    return "\n".join(lines)


def _table(title: str, rows: list[dict]) -> str:
    ref = next((r for r in rows if r.get("backend") == "torch" and r.get("precision") == "fp32" and "total_ms_median" in r), None)
    head = (f"{'backend':<12}{'prec':<6}{'pre ms':>8}{'inf ms':>9}{'inf p90':>9}{'post ms':>8}{'total':>8}"
            f"{'FPS':>7}{'speed-up':>9}{'RSS MB':>8}{'file MB':>9}{'NDS':>7}")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['backend']:<12}{r['precision']:<6}  skipped: {r['skipped']}")
            continue
        sp = f"{ref['total_ms_median'] / r['total_ms_median']:.2f}x" if ref else "-"
        nds = f"{r['nds']:.3f}" if "nds" in r else "-"
        prec = r["auto_choice"]["precision"] if r.get("auto_choice") else r["precision"]
        lines.append(
            f"{r['backend']:<12}{prec:<6}{r['preprocess_ms_median']:8.1f}{r['inference_ms_median']:9.1f}"
            f"{r['inference_ms_p90']:9.1f}{r['postprocess_ms_median']:8.1f}{r['total_ms_median']:8.1f}{r['fps']:7.1f}"
            f"{sp:>9}{r['peak_rss_MB']:8.0f}{r['model_file_MB']:9.2f}{nds:>7}")
    for r in rows:
        if r.get("auto_choice"):
            lines.append(r["auto_choice"]["log_line"])
    lines.append("speed-up = torch fp32 total median / row total median (same frames, same run); "
                 + ("RSS = peak of the one process holding all engines (interleaved)" if any(r.get("interleaved") for r in rows)
                    else "RSS = peak of the row's own process (engine + torch runtime + frames), before NDS evaluation"))
    return "\n".join(lines)


def _path_nds(args: argparse.Namespace, model: str) -> int:
    """``--path-nds``: NDS of every ``auto`` candidate path of ``model`` (see ``path_nds.score_paths``)."""
    import torch

    from ..engine import auto_source
    from ..path_nds import score_paths

    torch.set_num_threads(args.threads)
    print(f"bench: scoring every execution path of {model} on {args.split} ...", file=sys.stderr, flush=True)
    rec = score_paths(auto_source(model), args.dataroot, args.version, args.split, args.out_dir / "path-nds",
                      threads=args.threads, allow_spinning=False if args.shared_cpu else None,
                      record_out=args.nds_record, progress=True)
    lines = [f"NDS per execution path — synthetic data if the dataroot is SynthScenes ({args.split!r}): {model}, "
             f"reference {rec['reference']} (NDS {rec['reference_nds']:.4f}), tolerance {rec['tolerance']}",
             f"{'path':<20}{'NDS':>8}{'mAP':>8}{'delta':>9}  eligible for auto"]
    for name, r in rec["paths"].items():
        lines.append(f"{name:<20}{r['nds']:8.4f}{r['map']:8.4f}{r['delta_vs_reference']:+9.4f}  "
                     f"{'yes' if r['within_tolerance'] else 'no'}")
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rec, indent=2) + "\n")
    print(rec["file"])
    return 0


def run(args: argparse.Namespace) -> int:
    if args._one:
        backend, precision, model = args._one.split("|", 2)
        print(json.dumps(_measure(args, backend, precision, model)))
        return 0
    if args._interleave:
        combos = [tuple(c.split("|", 2)) for c in args._interleave.split(";")]
        print(json.dumps(_measure_interleaved(args, combos)))
        return 0
    if args.profile and args.interleave:
        raise SystemExit("qdbev bench: --profile times each backend in its own process; drop --interleave")
    from ..engine import load_detector

    _, _, _, is_quant = load_detector(args.model)
    int8_model = args.int8_model or (args.model if is_quant else None)
    if args.path_nds:
        return _path_nds(args, int8_model or args.model)
    rows, combos, int8_model = _plan(args, int8_model)
    _prepare(args, combos)
    with tempfile.TemporaryDirectory(prefix="qdbev-bench-") as tmp:
        frames_file, n = _write_frames(args, Path(tmp) / "frames.pkl")
        rows += _run_jobs(args, combos, frames_file)
    _report(args, rows, n, int8_model)
    return 0


def _plan(args: argparse.Namespace, int8_model: str | None) -> tuple[list[dict], list[tuple[str, str, str]], str | None]:
    """(rows skipped with their reason, (backend, precision, model) combos to time, the int8 model)."""
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rows: list[dict] = []
    combos: list[tuple[str, str, str]] = []
    for b in backends:
        if b == "auto":
            continue  # one row, after the others (its model is the int8 rows' one)
        why = _available(b)
        for p in precisions:
            if p == "fp16" and b != "tensorrt":
                continue
            if why:
                rows.append({"backend": b, "precision": p, "skipped": why})
                continue
            if p == "int8":
                if int8_model is None:
                    if args.ptq_frames <= 0:
                        rows.append({"backend": b, "precision": p, "skipped": "no quantized model (--int8-model / --ptq-frames)"})
                        continue
                    int8_model = _ptq_model(args, args.model)
                combos.append((b, p, int8_model))
            else:
                combos.append((b, p, args.model))
    if "auto" in backends:
        if str(args.device).startswith("cpu"):
            combos.append(("auto", "auto", int8_model or args.model))
        else:
            rows.append({"backend": "auto", "precision": "auto", "skipped": "auto chooses among CPU paths (--device cpu)"})
    return rows, combos, int8_model


def _write_frames(args: argparse.Namespace, frames_file: Path) -> tuple[Path, int]:
    """Decode the first ``--frames`` frames once and pickle them (with the scene starts) for the child
    processes, so every backend times the same inputs; returns the file and the frame count."""
    from ..data.reader import NuScenesReader

    reader = NuScenesReader(args.dataroot, args.version, split=args.split)
    n = min(args.frames, len(reader))
    frames = [reader[i].frame for i in range(n)]
    starts = {sc.first for sc in reader.scenes() if sc.first < n}
    with open(frames_file, "wb") as f:
        pickle.dump((frames, starts), f)
    return frames_file, n


def _run_jobs(args: argparse.Namespace, combos: list[tuple[str, str, str]], frames_file: Path) -> list[dict]:
    """Time the combos in child processes (one per combo, or one for all with ``--interleave``)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.shared_cpu:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    common = ["--model", args.model, "--frames", str(args.frames), "--warmup", str(args.warmup),
              "--dataroot", str(args.dataroot), "--version", args.version, "--split", args.split,
              "--threads", str(args.threads), "--device", args.device, "--out-dir", str(args.out_dir),
              "--repeat", str(args.repeat), "--profile", str(args.profile), "--_frames_file", str(frames_file)] \
        + (["--no-nds"] if args.no_nds else []) + (["--shared-cpu"] if args.shared_cpu else [])
    jobs = [(f"{b} {p}", ["--_one", f"{b}|{p}|{m}"], [(b, p)]) for b, p, m in combos]
    if args.interleave and combos:
        jobs = [("all (interleaved)", ["--_interleave", ";".join(f"{b}|{p}|{m}" for b, p, m in combos)],
                 [(b, p) for b, p, _ in combos])]
    rows: list[dict] = []
    for label, extra, which in jobs:
        print(f"bench: {label} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, "-m", "qdbev_core", "bench", *extra, *common],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            rows += [{"backend": b, "precision": p, "skipped": f"failed: {err}"} for b, p in which]
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        rows += out if isinstance(out, list) else [out]
    return rows


def _report(args: argparse.Namespace, rows: list[dict], n: int, int8_model: str | None) -> None:
    """Print the table (and profiles) naming the machine, and write the JSON."""
    from ..hardware import machine_info

    machine = machine_info()
    libs = machine["libraries"]
    title = (f"qdbev bench — synthetic data (SynthScenes-format split {args.split!r}, {n} frames): "
             f"{Path(str(args.model)).name}, {machine['cpu_summary']}, {args.threads} threads"
             f"{' (shared CPU: no spin-waiting)' if args.shared_cpu else ''}"
             f"{f', interleaved round-robin x{args.repeat}' if args.interleave else ''}, "
             f"torch {libs['torch']}, onnxruntime {libs['onnxruntime']}")
    print(_table(title, rows))
    for r in rows:
        if r.get("profile"):
            print(format_profile(f"{r['backend']} {r['precision']}", r["profile"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"title": title, "machine": machine, "int8_model": int8_model, "rows": rows},
                                    indent=2) + "\n")
    print(args.json)
