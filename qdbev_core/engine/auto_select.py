"""``backend="auto"``: time the execution paths of a model once per machine and run the fastest accurate one.

int8 speed depends on the CPU (docs/BENCHMARKS.md): with VNNI the onnxruntime Q/DQ int8 graph of
a W4A6 model is ~2x the fp32 graph, on an AVX2-only CPU it is not faster at all. So, like
TensorRT timing its tactics, ``load_auto_engine`` builds every candidate *execution path* of the
model, checks each against the model's own torch result, times them round-robin on a fixed
synthetic input and caches the measurements; later loads read the cache and build only the
chosen path (no timing).

**Candidate paths** (``candidate_paths``):

- quantized (packed W4A6) model: ``torch-int8`` (the fake-quant model itself: the *reference*),
  ``onnxruntime-int8`` (its Q/DQ export, the same arithmetic in integer kernels) and
  ``onnxruntime-fp32w`` (an fp32 graph holding the dequantized 4-bit weights; activations are
  *not* quantized, so it computes something slightly different from the reference);
- fp32 model: ``torch-fp32`` (reference) and ``onnxruntime-fp32``.

onnxruntime paths are left out when onnxruntime is not installed. ``auto`` chooses among CPU
paths only (TensorRT needs a GPU: name ``backend="tensorrt"`` there).

**Accuracy gate.** A path is eligible when

1. it is the reference; or
2. the *probe check* passes: on ``probe_frames()`` (two fixed synthetic frames, 0.5 s apart, the
   second using the first's BEV) the path's BEV features are within ``AccuracyGate.bev_rel_exact``
   (exact paths, 0.10) / ``bev_rel_approx`` (approximate paths, 0.30) relative L2 error of the
   reference's, and at least ``det_agreement_min`` (60 %) of the confident detections agree both
   ways (``detection_agreement``; skipped when the reference has fewer than ``min_detections``
   confident ones on the probe, e.g. an untrained model). The probe catches a broken path (export
   bug, wrong weights), not a 0.01 NDS change;
3. and, per model, the *NDS record* does not fail it: ``qdbev bench --path-nds`` scores every path
   over a dataset split with the official evaluator and writes ``nds-<model sha16>.json`` to the
   cache directory (``qdbev_core.path_nds.score_paths``); a path whose NDS is more than ``nds_tolerance`` (0.01)
   below or above the reference's is not eligible. An *approximate* path (``exact=False``:
   ``onnxruntime-fp32w``) needs that record: without it, it is not eligible.

**Cache.** One JSON file per (model content, machine): ``auto-<model stem>-<key>.json`` in
``auto_cache_dir()`` (``$QDBEV_AUTO_CACHE``, else ``$XDG_CACHE_HOME/qdbev/auto``, else
``~/.cache/qdbev/auto``). The key (``AutoKey``) hashes the model file's sha256, the CPU model
name, architecture, core count and ISA flags (``hardware.cpu_info``), the library versions
(``hardware.library_versions``), the thread count, onnxruntime's spin-waiting setting, the
candidate names and ``SELECTOR_VERSION``. It holds the measured milliseconds and probe results
per path; the choice is recomputed from them on every load (so a newer NDS record takes effect
without re-timing). Written atomically (temporary file + ``os.replace``); a file that cannot be
read or parsed is ignored with a warning, re-timed and rewritten.

The choice is logged in one line (``AutoChoice.log_line``): the path, the measured ms of every
candidate (with why a path is not eligible), the cache file, whether it was timed now (and in how
many seconds), and, for a quantized model, whether int8 pays off here (``int8 is not faster than
fp32 here (no VNNI): using onnxruntime-fp32w``). A first run (no usable cache) first says that it
is timing the paths, then one line per path built and probed. Lines go to the ``qdbev.engine.auto``
logger at INFO where logging is configured to show them, else to stderr (``announce``), so the
node's and the CLI's output show them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..types import Detections, Frame
from .base import Engine

log = logging.getLogger("qdbev.engine.auto")

SELECTOR_VERSION = 1
"""Bumped when the candidates, the probe or the timing procedure change (invalidates caches)."""
CACHE_FORMAT = "qdbev-auto-choice"
NDS_FORMAT = "qdbev-path-nds"
INT8_GAIN_MIN = 1.05
"""int8 "pays off" when the fp32 path takes at least this many times the int8 path's ms."""


# --- paths ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutionPath:
    """One way to run a model.

    Attributes:
        name: ``<backend>-<precision>``, e.g. ``onnxruntime-int8``.
        backend: ``torch`` | ``onnxruntime``.
        precision: ``int8`` (fake-quant / Q/DQ), ``fp32w`` (fp32 graph, dequantized low-bit
            weights, float activations) or ``fp32``.
        description: what runs, in words.
        exact: computes the reference's arithmetic (up to kernel rounding); False = approximate
            (needs an NDS record to be eligible).
        reference: the model's own torch result (always eligible; every other path is checked against it).
    """

    name: str
    backend: str
    precision: str
    description: str
    exact: bool = True
    reference: bool = False


TORCH_INT8 = ExecutionPath("torch-int8", "torch", "int8", "torch fake-quant W4A6 model", True, True)
ORT_INT8 = ExecutionPath("onnxruntime-int8", "onnxruntime", "int8", "onnxruntime Q/DQ int8 graph")
ORT_FP32W = ExecutionPath("onnxruntime-fp32w", "onnxruntime", "fp32w",
                          "onnxruntime fp32 graph with the dequantized low-bit weights, float activations", exact=False)
TORCH_FP32 = ExecutionPath("torch-fp32", "torch", "fp32", "torch fp32 model", True, True)
ORT_FP32 = ExecutionPath("onnxruntime-fp32", "onnxruntime", "fp32", "onnxruntime fp32 graph")


def onnxruntime_available() -> bool:
    """True when ``import onnxruntime`` would work."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def candidate_paths(quantized: bool, with_onnxruntime: bool = True) -> list[ExecutionPath]:
    """The paths ``auto`` times for a quantized (packed low-bit) or an fp32 model, reference first."""
    if quantized:
        return [TORCH_INT8] + ([ORT_INT8, ORT_FP32W] if with_onnxruntime else [])
    return [TORCH_FP32] + ([ORT_FP32] if with_onnxruntime else [])


@dataclass
class ModelSource:
    """A loaded model and how to get its ONNX graphs (built by ``engine.auto_source``).

    Attributes:
        label: the model as the user named it (manifest name or path), for logs.
        detector: ``engine.load_detector``'s ``(BEVDetector, sha256, path, is_fake_quant)``.
        onnx_dir: where exported graphs are cached (``engine_cache_dir()``).
        export: ``precision -> .onnx path`` for ``"fp32"`` / ``"int8"`` (``engine.cached_onnx``, u8 activations).
    """

    label: str
    detector: tuple
    onnx_dir: Path
    export: Callable[[str], Path]

    @property
    def sha256(self) -> str:
        return self.detector[1]

    @property
    def quantized(self) -> bool:
        return bool(self.detector[3])


def dequantized_fp32_model(fake_quant):
    """A plain fp32 ``BEVDetector`` whose Conv / Linear / Embedding weights are the fake-quant model's
    *dequantized* low-bit weights (``wq(weight)``), with no activation or output quantizers: the
    ``fp32w`` path. Every other tensor (biases, norms, raw embeddings) is copied as is."""
    import torch

    from ..model import BEVDetector
    from ..quant.modules import QuantEmbedding
    from ..quant.quantize import quant_modules

    plain = BEVDetector(fake_quant.cfg)
    src = fake_quant.state_dict()
    qmods = dict(quant_modules(fake_quant))
    state = {}
    with torch.no_grad():
        for key in plain.state_dict():
            owner, _, attr = key.rpartition(".")
            m = qmods.get(owner)
            if m is not None and attr == "weight":
                w = m.weight if isinstance(m, QuantEmbedding) else m.wq(m._parameters["weight"])
                state[key] = w.detach().clone()
            else:
                state[key] = src[key]
    plain.load_state_dict(state, strict=True)
    return plain.eval()


def fp32w_onnx(source: ModelSource) -> Path:
    """The ``fp32w`` graph, exported once: ``<onnx_dir>/<stem>.<sha16>.fp32w.onnx`` (reused when its
    sidecar names the same model sha256 and config)."""
    from ..export import export_onnx, read_onnx_sidecar

    net, sha, path, _ = source.detector
    out = Path(source.onnx_dir) / f"{Path(path).stem}.{sha[:16]}.fp32w.onnx"
    if out.is_file():
        try:
            meta = read_onnx_sidecar(out)
            if meta.get("model_sha256") == sha and meta.get("config") == json.loads(json.dumps(net.cfg.to_dict())):
                return out
        except (OSError, ValueError, KeyError):
            pass
    return export_onnx(dequantized_fp32_model(net), out, "fp32", model_sha256=sha)


def build_path(path: ExecutionPath, source: ModelSource, threads: int, allow_spinning: bool | None = None,
               score_threshold: float = 0.05, topk: int = 300) -> Engine:
    """An engine running ``source``'s model along ``path`` on the CPU with ``threads`` threads."""
    from .torch_engine import TorchEngine

    if path.backend == "torch":
        return TorchEngine(source.detector[0], device="cpu", score_threshold=score_threshold, topk=topk)
    from .onnx_engine import OnnxEngine

    if path.precision == "fp32w":
        onnx_path = fp32w_onnx(source)
    else:
        onnx_path = source.export(path.precision)
    return OnnxEngine(onnx_path, threads=threads, score_threshold=score_threshold, topk=topk,
                      allow_spinning=allow_spinning)


# --- cache key -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoKey:
    """Everything a cached choice depends on. ``digest()`` is its 16-hex-digit hash.

    Attributes:
        model_sha256: sha256 of the model file's bytes.
        cpu_model: the CPU model name string (``/proc/cpuinfo``).
        arch: ``platform.machine()``.
        cores: logical CPU count.
        isa: the ISA flags of ``hardware.ISA_FEATURES`` the CPU has.
        libraries: ``{library: version or None}``.
        threads: intra-op threads of every path.
        allow_spinning: onnxruntime thread-pool busy-waiting (None: its default).
        paths: candidate path names, in order.
        selector_version: ``SELECTOR_VERSION``.
    """

    model_sha256: str
    cpu_model: str
    arch: str
    cores: int
    isa: tuple[str, ...]
    libraries: tuple[tuple[str, str | None], ...]
    threads: int
    allow_spinning: bool | None
    paths: tuple[str, ...]
    selector_version: int = SELECTOR_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["isa"] = list(self.isa)
        d["libraries"] = dict(self.libraries)
        d["paths"] = list(self.paths)
        return d

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_key(model_sha256: str, threads: int, paths: Sequence[ExecutionPath], allow_spinning: bool | None = None,
             cpu=None, libraries: dict[str, str | None] | None = None) -> AutoKey:
    """The key for this machine (``cpu`` / ``libraries`` default to ``hardware.cpu_info()`` / ``library_versions()``)."""
    from ..hardware import cpu_info, library_versions

    cpu = cpu or cpu_info()
    libs = library_versions() if libraries is None else libraries
    return AutoKey(model_sha256=model_sha256, cpu_model=cpu.model, arch=cpu.arch, cores=int(cpu.cores),
                   isa=tuple(cpu.isa), libraries=tuple(sorted(libs.items())), threads=int(threads),
                   allow_spinning=allow_spinning, paths=tuple(p.name for p in paths))


def auto_cache_dir() -> Path:
    """``$QDBEV_AUTO_CACHE``, else ``$XDG_CACHE_HOME/qdbev/auto``, else ``~/.cache/qdbev/auto``."""
    env = os.environ.get("QDBEV_AUTO_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "qdbev" / "auto"


def cache_file(cache_dir: Path, model_path: str | Path, key: AutoKey) -> Path:
    """``<cache_dir>/auto-<model stem>-<key digest>.json``."""
    return Path(cache_dir) / f"auto-{Path(model_path).stem}-{key.digest()}.json"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` via a unique temporary file in the same folder + ``os.replace``
    (a reader sees the old file or the new one, never a partial one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- probe and accuracy -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccuracyGate:
    """Tolerances of the accuracy check (see the module doc).

    The probe is a sanity check that catches a broken path (an export bug, the wrong weights: BEV
    error ~1, almost no agreeing detections), not a 0.01 NDS change; the NDS record is the accuracy
    criterion. Measured on the probe with the bundled ``nano-w4a6-qdbev`` (reference: its torch
    fake-quant model): ``onnxruntime-int8`` BEV error 0.056, 93 % agreeing detections;
    ``onnxruntime-fp32w`` 0.118, 77 %; its fp32 teacher (another model) 0.166, 69 %. (On real
    SynthScenes frames the agreement is higher: 99 %, 97 %, 93 %; the probe's noise images are
    out of distribution.)

    Attributes:
        bev_rel_exact: largest relative L2 error ``|bev - bev_ref| / |bev_ref|`` of an exact path on
            any probe frame.
        bev_rel_approx: the same for an approximate path.
        det_agreement_min: smallest share of confident detections (either side's) that the other
            side reproduces (same class, centre within ``radius_m``).
        score_min: a detection scoring at least this is "confident".
        partner_score_min: the other side's detection must score at least this to count.
        radius_m: centre distance in metres (x, y) for two detections to agree.
        min_detections: fewer confident reference detections on the probe: the detection test is skipped.
        nds_tolerance: largest |NDS(path) - NDS(reference)| in an NDS record.
    """

    bev_rel_exact: float = 0.10
    bev_rel_approx: float = 0.30
    det_agreement_min: float = 0.60
    score_min: float = 0.3
    partner_score_min: float = 0.15
    radius_m: float = 1.0
    min_detections: int = 5
    nds_tolerance: float = 0.01


@dataclass
class ProbeCheck:
    """How one path compares with the reference on the probe frames.

    Attributes:
        bev_rel: largest relative L2 error of the BEV state over the probe frames.
        det_agreement: smallest two-way share of agreeing confident detections (None: skipped).
        n_confident: confident detections of the reference over the probe frames.
        passed: within the gate's tolerances.
        reason: why not, in words ("" when passed).
    """

    bev_rel: float
    det_agreement: float | None
    n_confident: int
    passed: bool
    reason: str = ""


def probe_frames(scale: float = 0.25, seed: int = 20) -> list[Frame]:
    """Two fixed synthetic frames (same scene, 0.5 s apart, 2 m of ego motion): six smooth random
    images each (low-frequency noise, ``1600*scale x 900*scale``) on the nuScenes rig."""
    import cv2

    from ..data.rig import rig_arrays
    from ..geometry import make_transform

    rng = np.random.default_rng(seed)
    k, t = rig_arrays(scale)
    w, h = int(round(1600 * scale)), int(round(900 * scale))
    frames = []
    for i in range(2):
        imgs = []
        for _ in range(6):
            coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
            imgs.append(np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8))
        yaw = 0.02 * i
        c, s = np.cos(yaw), np.sin(yaw)
        pose = make_transform(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), [100.0 + 2.0 * i, 50.0, 0.0])
        frames.append(Frame(images=imgs, intrinsics=k, cam2ego=t, stamp=1000.0 + 0.5 * i, ego2global=pose,
                            scene="qdbev-auto-probe"))
    return frames


def detection_agreement(ref: Sequence[Detections], cand: Sequence[Detections], gate: AccuracyGate = AccuracyGate()
                        ) -> tuple[float | None, int]:
    """``(share, n_confident_ref)``: the smaller of (confident reference detections that ``cand``
    reproduces) and (confident ``cand`` detections the reference reproduces); None when the
    reference has fewer than ``gate.min_detections`` confident detections."""

    def one_way(a: Sequence[Detections], b: Sequence[Detections]) -> tuple[int, int]:
        hit = tot = 0
        for da, db in zip(a, b):
            keep_b = db.scores >= gate.partner_score_min
            for i in np.flatnonzero(da.scores >= gate.score_min):
                tot += 1
                d = np.linalg.norm(db.boxes[keep_b, :2] - da.boxes[i, :2], axis=1)
                hit += bool(np.any((d <= gate.radius_m) & (db.labels[keep_b] == da.labels[i])))
        return hit, tot

    h1, n_ref = one_way(ref, cand)
    if n_ref < gate.min_detections:
        return None, n_ref
    h2, n_cand = one_way(cand, ref)
    return min(h1 / n_ref, h2 / n_cand if n_cand else 0.0), n_ref


def _bev_array(bev) -> np.ndarray:
    if hasattr(bev, "detach"):
        bev = bev.detach().float().cpu().numpy()
    return np.asarray(bev, dtype=np.float64)


def check_against_reference(path: ExecutionPath, ref: list[tuple[Detections, np.ndarray]],
                            cand: list[tuple[Detections, np.ndarray]], gate: AccuracyGate = AccuracyGate()) -> ProbeCheck:
    """Compare a path's probe outputs ``[(detections, bev)]`` with the reference's (see ``AccuracyGate``)."""
    rels = [float(np.linalg.norm(c[1] - r[1]) / max(float(np.linalg.norm(r[1])), 1e-12)) for r, c in zip(ref, cand)]
    bev_rel = max(rels) if rels else float("inf")
    if not np.isfinite(bev_rel):
        bev_rel = float("inf")
    agree, n = detection_agreement([r[0] for r in ref], [c[0] for c in cand], gate)
    tol = gate.bev_rel_exact if path.exact else gate.bev_rel_approx
    why = []
    if not bev_rel <= tol:
        why.append(f"BEV differs from the torch reference by {bev_rel:.3f} (relative, tolerance {tol})")
    if agree is not None and agree < gate.det_agreement_min:
        why.append(f"detections agree with the torch reference {agree:.0%} (needs {gate.det_agreement_min:.0%})")
    return ProbeCheck(bev_rel=bev_rel, det_agreement=agree, n_confident=n, passed=not why, reason="; ".join(why))


# --- timing -------------------------------------------------------------------------------------------------
FrameTimer = Callable[[ExecutionPath, Engine, Frame], float]
"""Runs ``engine.detect(frame)`` once and returns its duration in milliseconds."""


def wall_clock_ms(path: ExecutionPath, engine: Engine, frame: Frame) -> float:
    """The default ``FrameTimer``: wall-clock ms of one ``detect`` (preprocess + inference + postprocess)."""
    t0 = time.perf_counter()
    engine.detect(frame)
    return (time.perf_counter() - t0) * 1e3


def run_probe(engine: Engine, frames: Sequence[Frame]) -> list[tuple[Detections, np.ndarray]]:
    """``[(detections, BEV state)]`` of ``frames`` as one sequence from a reset engine."""
    engine.reset()
    out = []
    for f in frames:
        det = engine.detect(f)
        out.append((det, _bev_array(engine.temporal.bev)))
    return out


def time_paths(engines: dict[str, tuple[ExecutionPath, Engine]], frames: Sequence[Frame], repeats: int,
               timer: FrameTimer = wall_clock_ms) -> dict[str, list[float]]:
    """Per path, ``repeats`` x ``len(frames)`` frame times (ms), round-robin: pass ``r`` runs the
    frame sequence through every engine, the order rotating each pass, so a load change on a
    shared CPU hits every path alike."""
    names = list(engines)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(max(1, repeats)):
        for j in range(len(names)):
            name = names[(j + r) % len(names)]
            path, engine = engines[name]
            engine.reset()
            for f in frames:
                out[name].append(float(timer(path, engine, f)))
    return out


# --- NDS record ------------------------------------------------------------------------------------------------
def nds_record_file(cache_dir: Path, model_sha256: str) -> Path:
    """``<cache_dir>/nds-<model sha16>.json``: the per-path NDS of one model (``path_nds.score_paths``)."""
    return Path(cache_dir) / f"nds-{model_sha256[:16]}.json"


def read_nds_record(path: Path, model_sha256: str) -> dict | None:
    """The NDS record at ``path`` when it exists and is for ``model_sha256``; None otherwise (a
    damaged file is reported with a warning)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
        if rec.get("format") != NDS_FORMAT or not isinstance(rec.get("paths"), dict):
            raise ValueError("not a path-NDS record")
    except (OSError, ValueError) as exc:
        log.warning("auto backend: ignoring NDS record %s (%s)", path, exc)
        return None
    return rec if rec.get("model_sha256") == model_sha256 else None


def nds_verdicts(record: dict | None, tolerance: float) -> dict[str, tuple[bool, str]]:
    """``{path name: (within tolerance, description)}`` from an NDS record (empty without one)."""
    if not record:
        return {}
    ref = record.get("reference_nds")
    out = {}
    for name, r in record["paths"].items():
        nds = r.get("nds")
        if nds is None or ref is None:
            out[name] = (False, f"no NDS for {name} in the record")
            continue
        delta = float(nds) - float(ref)
        ok = abs(delta) <= tolerance
        out[name] = (ok, f"NDS {float(nds):.4f} vs torch {float(ref):.4f} ({delta:+.4f}, tolerance {tolerance})")
    return out


# --- choice ---------------------------------------------------------------------------------------------------
@dataclass
class PathResult:
    """One candidate on this machine: measured ms (median of its timed frames; None when it failed
    to build), the probe check, and whether ``auto`` may choose it."""

    path: ExecutionPath
    ms: float | None
    check: ProbeCheck | None
    eligible: bool = False
    why_not: str = ""
    nds_note: str = ""


@dataclass
class AutoChoice:
    """What ``auto`` chose on this machine and why.

    Attributes:
        path: the chosen path.
        results: every candidate, in candidate order.
        cache_file: the cache file read or written.
        timed_now: True when the paths were timed in this call (False: read from the cache).
        cpu_summary: ``CpuInfo.summary()``.
        vnni: the CPU has an int8 dot-product instruction.
        threads: intra-op threads.
        int8_note: for a quantized model, whether int8 pays off here ("" otherwise).
        model: the model as named.
        elapsed_s: seconds the building, probing and timing took (None: read from the cache).
    """

    path: ExecutionPath
    results: list[PathResult]
    cache_file: Path
    timed_now: bool
    cpu_summary: str
    vnni: bool
    threads: int
    int8_note: str = ""
    model: str = ""
    elapsed_s: float | None = None

    def result(self, name: str) -> PathResult | None:
        return next((r for r in self.results if r.path.name == name), None)

    @property
    def log_line(self) -> str:
        """One line: choice, ms of every candidate, int8 note, cache file."""
        parts = []
        for r in self.results:
            ms = "failed" if r.ms is None else f"{r.ms:.1f} ms"
            extra = "" if r.eligible else f" (not eligible: {r.why_not})"
            parts.append(f"{r.path.name} {ms}{extra}")
        note = f"; {self.int8_note}" if self.int8_note else ""
        how = "cached timing" if not self.timed_now else (
            "timed now" if self.elapsed_s is None else f"timed now in {self.elapsed_s:.0f} s")
        return (f"auto backend: using {self.path.name} ({self.path.description}) for {self.model} on "
                f"{self.cpu_summary}, {self.threads} threads; measured per frame: {', '.join(parts)}{note}; "
                f"{how}, cache {self.cache_file}")

    def to_dict(self) -> dict:
        return {"path": self.path.name, "backend": self.path.backend, "precision": self.path.precision,
                "timed_now": self.timed_now, "elapsed_s": self.elapsed_s, "cache_file": str(self.cache_file), "int8_note": self.int8_note,
                "candidates": [{"path": r.path.name, "ms": r.ms, "eligible": r.eligible, "why_not": r.why_not,
                                "nds": r.nds_note, "check": None if r.check is None else asdict(r.check)}
                               for r in self.results],
                "log_line": self.log_line}


def decide(results: list[PathResult], record: dict | None, gate: AccuracyGate = AccuracyGate()) -> PathResult:
    """Mark each result eligible or not (reference; probe check; NDS record; see the module doc) and
    return the fastest eligible one (ties: candidate order). The reference is always eligible, so
    there is always a choice."""
    verdicts = nds_verdicts(record, gate.nds_tolerance)
    for r in results:
        r.eligible, r.why_not, r.nds_note = False, "", ""
        ok, note = verdicts.get(r.path.name, (None, ""))
        r.nds_note = note
        if r.path.reference:
            r.eligible = True
        elif r.ms is None:
            r.why_not = "could not be built"
        elif r.check is None or not r.check.passed:
            r.why_not = r.check.reason if r.check else "not checked"
        elif ok is False:
            r.why_not = note
        elif ok is None and not r.path.exact:
            r.why_not = ("activations not quantized and no NDS record for this model "
                         "(`qdbev bench --path-nds` writes one)")
        else:
            r.eligible = True
    ok = [r for r in results if r.eligible and r.ms is not None]
    if not ok:
        return next(r for r in results if r.path.reference)
    return min(ok, key=lambda r: r.ms)


def int8_note(results: list[PathResult], chosen: PathResult, vnni: bool) -> str:
    """For a model with both an onnxruntime int8 and an onnxruntime fp32 path: does int8 pay off here?"""
    i8 = next((r for r in results if r.path.backend == "onnxruntime" and r.path.precision == "int8"), None)
    f32 = next((r for r in results if r.path.backend == "onnxruntime" and r.path.precision in ("fp32", "fp32w")), None)
    if i8 is None or f32 is None or i8.ms is None or f32.ms is None:
        return ""
    isa = "VNNI" if vnni else "no VNNI"
    if f32.ms >= INT8_GAIN_MIN * i8.ms:
        msg = f"int8 is {f32.ms / i8.ms:.2f}x faster than fp32 here ({isa})"
        if chosen.path != i8.path and not i8.eligible:
            msg += f", but {i8.path.name} is not eligible ({i8.why_not}): using {chosen.path.name}"
        return msg
    msg = f"int8 is not faster than fp32 here ({isa})"
    if chosen.path != f32.path and not f32.eligible:
        msg += f", but {f32.path.name} is not eligible ({f32.why_not})"
    return f"{msg}: using {chosen.path.name}"


# --- cache file --------------------------------------------------------------------------------------------------
def _results_to_json(results: list[PathResult], times: dict[str, list[float]]) -> list[dict]:
    return [{"path": asdict(r.path), "ms": r.ms, "ms_all": times.get(r.path.name, []),
             "check": None if r.check is None else asdict(r.check)} for r in results]


def read_cache(path: Path, key: AutoKey, paths: Sequence[ExecutionPath]) -> list[PathResult] | None:
    """The cached ``PathResult``s (eligibility not yet decided), or None when there is no usable
    cache; a file that exists but cannot be read, parsed or matched is reported with a warning."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {CACHE_FORMAT!r}")
        if data.get("key") != key.to_dict():
            raise ValueError("its key does not match this model / machine")
        by_name = {p.name: p for p in paths}
        out = []
        for item in data["paths"]:
            p = by_name[item["path"]["name"]]
            chk = item.get("check")
            out.append(PathResult(path=p, ms=None if item["ms"] is None else float(item["ms"]),
                                  check=None if chk is None else ProbeCheck(**chk)))
        if [r.path.name for r in out] != [p.name for p in paths]:
            raise ValueError("its candidate list differs")
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("auto backend: ignoring the cache file %s (%s: %s); timing the paths again and rewriting it",
                    path, type(exc).__name__, exc)
        return None


# --- entry point ---------------------------------------------------------------------------------------------------
def announce(line: str) -> None:
    """The default log function: INFO on the ``qdbev.engine.auto`` logger where logging is set up to
    show it, else a line on stderr. ``qdbev_node`` and the ``qdbev`` CLI do not configure Python
    logging, and a first start that spends a minute timing paths must not be silent."""
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


@dataclass
class AutoRun:
    """What one ``load_auto_engine`` call works with: the model, this machine's cache key and files.

    Attributes:
        source: the model.
        threads: intra-op threads of every path.
        cpu: ``hardware.cpu_info()``.
        paths: the candidates, reference first.
        key: the cache key; ``cache_file`` its file.
        record: the model's NDS record (None without one).
        build_kw: ``build_path`` keyword arguments (threads, spinning, score threshold, top-k).
    """

    source: ModelSource
    threads: int
    cpu: Any
    paths: list[ExecutionPath]
    key: AutoKey
    cache_file: Path
    record: dict | None
    build_kw: dict[str, Any]

    def build(self, path: ExecutionPath) -> Engine:
        return build_path(path, self.source, **self.build_kw)


def _prepare_run(source: ModelSource, threads: int | None, allow_spinning: bool | None, score_threshold: float,
                 topk: int, device: str, cache_dir: str | Path | None, nds_record: str | Path | None) -> AutoRun:
    """Check the device, set the thread count, and work out the key, the cache file and the NDS record."""
    import torch

    if not str(device).startswith("cpu"):
        raise ValueError(f"backend 'auto' chooses among CPU paths (torch, onnxruntime); device {device!r}: "
                         "name backend 'tensorrt' (or 'torch') for a GPU")
    from ..hardware import cpu_info

    threads = int(threads) if threads else torch.get_num_threads()
    torch.set_num_threads(threads)
    cpu = cpu_info()
    paths = candidate_paths(source.quantized, onnxruntime_available())
    key = make_key(source.sha256, threads, paths, allow_spinning, cpu=cpu)
    cdir = Path(cache_dir) if cache_dir else auto_cache_dir()
    record_path = Path(nds_record) if nds_record else nds_record_file(cdir, source.sha256)
    return AutoRun(source=source, threads=threads, cpu=cpu, paths=paths, key=key,
                   cache_file=cache_file(cdir, source.detector[2], key),
                   record=read_nds_record(record_path, source.sha256),
                   build_kw=dict(threads=threads, allow_spinning=allow_spinning, score_threshold=score_threshold,
                                 topk=topk))


def _engine_from_cache(run: AutoRun, results: list[PathResult], gate: AccuracyGate) -> tuple[PathResult, Engine]:
    """Build only the path the cached measurements choose (the reference if that one cannot be built)."""
    best = decide(results, run.record, gate)
    try:
        return best, run.build(best.path)
    except Exception as exc:  # noqa: BLE001 - e.g. its ONNX export was deleted and cannot be redone
        log.warning("auto backend: cached choice %s cannot be built (%s: %s); using the reference path",
                    best.path.name, type(exc).__name__, exc)
        ref = next(r for r in results if r.path.reference)
        return ref, run.build(ref.path)


def _reference_check(out: list[tuple[Detections, np.ndarray]], gate: AccuracyGate) -> ProbeCheck:
    """The reference's own ``ProbeCheck``: exact by definition; counts its confident detections."""
    return ProbeCheck(0.0, 1.0, sum(int((d.scores >= gate.score_min).sum()) for d, _ in out), True)


def _build_and_probe(run: AutoRun, frames: list[Frame], warmup: int, gate: AccuracyGate,
                     progress: Callable[[str], None]) -> tuple[dict[str, tuple[ExecutionPath, Engine]],
                                                               dict[str, ProbeCheck]]:
    """Build every candidate, run the probe through it (its first untimed pass) and check it against
    the reference. A path that cannot be built or run is a failed check; the reference must work."""
    built: dict[str, tuple[ExecutionPath, Engine]] = {}
    checks: dict[str, ProbeCheck] = {}
    ref_out: list = []
    for i, p in enumerate(run.paths, 1):  # the reference comes first (candidate_paths)
        t0 = time.perf_counter()
        try:
            e = run.build(p)
            out = run_probe(e, frames)
            for _ in range(max(0, warmup - 1)):
                run_probe(e, frames)
            if p.reference:
                ref_out = out
                checks[p.name] = _reference_check(out, gate)
            else:
                checks[p.name] = check_against_reference(p, ref_out, out, gate)
            built[p.name] = (p, e)
        except Exception as exc:  # noqa: BLE001 - a path that cannot run is just not a candidate
            if p.reference:
                raise
            reason = f"failed to build or run: {type(exc).__name__}: {exc}"
            checks[p.name] = ProbeCheck(float("inf"), None, 0, False, reason)
            log.warning("auto backend: path %s %s", p.name, reason)
        verdict = "ok" if checks[p.name].passed else checks[p.name].reason
        progress(f"auto backend: [{i}/{len(run.paths)}] {p.name} built and probed in "
                 f"{time.perf_counter() - t0:.1f} s ({verdict})")
    return built, checks


def _write_cache(run: AutoRun, results: list[PathResult], times: dict[str, list[float]], probe: dict[str, int],
                 gate: AccuracyGate) -> None:
    """Write the measurements to ``run.cache_file`` (a failure is a warning: timed again next time)."""
    data = {"format": CACHE_FORMAT, "key": run.key.to_dict(), "model": run.source.label,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpu_summary": run.cpu.summary(), "probe": probe, "gate": asdict(gate),
            "paths": _results_to_json(results, times)}
    try:
        write_json_atomic(run.cache_file, data)
    except OSError as exc:
        log.warning("auto backend: cannot write the cache %s (%s); the paths will be timed again next time",
                    run.cache_file, exc)


def _time_now(run: AutoRun, warmup: int, repeats: int, timer: FrameTimer, gate: AccuracyGate,
              progress: Callable[[str], None]) -> tuple[PathResult, list[PathResult], Engine]:
    """No usable cache: build, probe and time every path, choose, write the cache; keep only the
    chosen engine."""
    names = ", ".join(p.name for p in run.paths)
    progress(f"auto backend: no cached choice for {run.source.label} on this machine ({run.cpu.summary()}, "
             f"{run.threads} threads): building, checking and timing {len(run.paths)} execution paths ({names}) "
             f"once; on a busy CPU this takes minutes. Later starts read {run.cache_file}")
    frames = probe_frames()
    built, checks = _build_and_probe(run, frames, warmup, gate, progress)
    progress(f"auto backend: timing {', '.join(built)}: {max(1, repeats)} round-robin passes over "
             f"{len(frames)} probe frames")
    times = time_paths(built, frames, repeats, timer)
    results = [PathResult(p, float(np.median(times[p.name])) if p.name in built else None, checks[p.name])
               for p in run.paths]
    best = decide(results, run.record, gate)
    _write_cache(run, results, times, {"frames": len(frames), "warmup": warmup, "repeats": repeats}, gate)
    engine = built[best.path.name][1]
    built.clear()
    return best, results, engine


def load_auto_engine(source: ModelSource, threads: int | None = None, allow_spinning: bool | None = None,
                     score_threshold: float = 0.05, topk: int = 300, device: str = "cpu",
                     cache_dir: str | Path | None = None, nds_record: str | Path | None = None,
                     warmup: int = 1, repeats: int = 4, timer: FrameTimer = wall_clock_ms,
                     gate: AccuracyGate = AccuracyGate(), log_fn: Callable[[str], None] | None = None,
                     progress_fn: Callable[[str], None] | None = None) -> Engine:
    """The engine of the fastest eligible path of ``source`` on this machine; its choice is
    ``engine.auto_choice`` (an ``AutoChoice``) and is logged in one line with ``log_fn``.

    Steps: ``_prepare_run`` (key, cache file, NDS record), then either ``_engine_from_cache`` (a
    usable cache: build the chosen path only, no timing) or ``_time_now`` (build and probe every
    path, time them, write the cache), then the choice is attached and logged.

    Args:
        threads: intra-op threads of every path (None: ``torch.get_num_threads()``).
        allow_spinning: onnxruntime busy-waiting (None: its default); part of the cache key.
        device: must be ``"cpu"``.
        cache_dir: where the choice is cached (default ``auto_cache_dir()``).
        nds_record: the per-path NDS record (default ``nds-<sha16>.json`` in ``cache_dir``).
        warmup: untimed passes over the probe frames per path (the first is the accuracy probe).
        repeats: timed passes over the 2 probe frames per path (round-robin).
        timer: measures one frame (tests inject one; it is never called when the cache is used).
        gate: accuracy tolerances.
        log_fn: receives the choice line (default ``announce``: INFO log, or stderr where logging
            is not configured).
        progress_fn: receives the progress lines of a first run, before and while it times
            (default ``announce``); never called when the cache is used.
    """
    run = _prepare_run(source, threads, allow_spinning, score_threshold, topk, device, cache_dir, nds_record)
    t0 = time.perf_counter()
    results = read_cache(run.cache_file, run.key, run.paths)
    timed_now = results is None
    if results is not None:
        best, engine = _engine_from_cache(run, results, gate)
    else:
        best, results, engine = _time_now(run, warmup, repeats, timer, gate, progress_fn or announce)
    choice = AutoChoice(path=best.path, results=results, cache_file=run.cache_file, timed_now=timed_now,
                        cpu_summary=run.cpu.summary(), vnni=run.cpu.vnni, threads=run.threads,
                        model=source.label, elapsed_s=time.perf_counter() - t0 if timed_now else None)
    choice.int8_note = int8_note(results, best, run.cpu.vnni)
    engine.auto_choice = choice
    (log_fn or announce)(choice.log_line)
    return engine


__all__ = [
    "AccuracyGate", "AutoChoice", "AutoKey", "AutoRun", "ExecutionPath", "FrameTimer", "ModelSource", "PathResult",
    "ProbeCheck",
    "announce", "auto_cache_dir", "build_path", "cache_file", "candidate_paths", "check_against_reference", "decide",
    "dequantized_fp32_model", "detection_agreement", "fp32w_onnx", "int8_note", "load_auto_engine", "make_key",
    "nds_record_file", "probe_frames", "read_cache", "read_nds_record", "run_probe", "time_paths",
    "wall_clock_ms",
    "write_json_atomic",
]
