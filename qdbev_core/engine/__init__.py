"""Inference engines: ``Frame`` in, ``Detections`` (ego frame) out.

Backends (all share ``TemporalState`` - previous BEV + ego motion, reset on a scene change or a
time jump - and report ``last_timing`` in milliseconds: preprocess / inference / postprocess):

- ``TorchEngine``: a ``BEVDetector`` (fp32 or fake-quant) on CPU or CUDA;
- ``OnnxEngine``: onnxruntime (CPU EP) on an exported fp32 or Q/DQ INT8 graph;
- ``TensorRTEngine``: a TensorRT engine built from the Q/DQ (or fp32) ONNX, cached on disk.

``load_engine(model, backend, precision)`` builds any of them from a manifest name or a weights
file; ONNX exports (and TensorRT plans) are cached in ``engine_cache_dir()`` keyed by the model
file's sha256 and the precision, so only the first call exports. ``backend="auto"`` times the
model's CPU execution paths once per machine and runs the fastest one whose accuracy was checked
(``auto_select``; the choice is ``engine.auto_choice``).
"""

from __future__ import annotations

from pathlib import Path

from .base import Engine, EngineTiming, TemporalState
from .cache import engine_cache_dir
from .torch_engine import TorchEngine

__all__ = [
    "BACKENDS", "Engine", "EngineTiming", "TemporalState", "TorchEngine", "OnnxEngine", "TensorRTEngine",
    "auto_source", "cached_onnx", "engine_cache_dir", "load_detector", "load_engine", "resolve_precision",
]

BACKENDS = ("torch", "onnxruntime", "tensorrt", "auto")
_PRECISIONS = {"auto": "auto", "fp32": "fp32", "fp16": "fp16", "int8": "int8", "qdq": "int8", "fake-quant": "int8"}


def __getattr__(name: str):
    if name == "OnnxEngine":
        from .onnx_engine import OnnxEngine

        return OnnxEngine
    if name == "TensorRTEngine":
        from .tensorrt_engine import TensorRTEngine

        return TensorRTEngine
    raise AttributeError(name)


def load_detector(model: str | Path):
    """``(BEVDetector, sha256 of the weights file, path, is_fake_quant)`` for a name or a path.

    A packed low-bit file (``quant.pack``) comes back as its fake-quant model, any other
    weights file as the fp32 model; both are verified against manifest / sidecar sha256.
    """
    from ..checkpoint import read_sidecar, sha256_file
    from ..models_manifest import load_model, resolve_model
    from ..quant.pack import PACK_FORMAT, unpack_model

    path, expected, _ = resolve_model(model)
    side = read_sidecar(path) if Path(path).is_file() else {}
    if side.get("format") == PACK_FORMAT:
        net, quant = unpack_model(path, expected), True
    else:
        net, quant = load_model(model), False
    return net.eval(), sha256_file(path), Path(path), quant


def resolve_precision(precision: str, is_fake_quant: bool) -> str:
    """``auto`` -> ``int8`` for a fake-quant (packed) model, ``fp32`` otherwise; checks the rest."""
    p = _PRECISIONS.get(str(precision).lower())
    if p is None:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if p == "auto":
        return "int8" if is_fake_quant else "fp32"
    if p == "int8" and not is_fake_quant:
        raise ValueError(
            "precision 'int8' needs a quantized model (a packed low-bit .safetensors from QAT, "
            "quant.pack_model); this is a float model - use precision 'fp32', or quantize it first "
            "(e.g. `qdbev bench --ptq-frames N` calibrates one)"
        )
    return p


def cached_onnx(model: str | Path, precision: str = "auto", act_format: str = "u8",
                cache_dir: str | Path | None = None, detector=None) -> Path:
    """Export ``model`` to ONNX once and reuse it: ``<cache>/<stem>.<sha16>.<fp32|qdq-u8|qdq-s8>.onnx``.

    The cached file is reused only when its sidecar names the same model sha256, precision and
    model config (the config can change without the weights, e.g. ``history_free_state``).
    ``detector``: an already loaded ``load_detector`` tuple (saves loading the weights twice).
    """
    import json

    from ..export import export_onnx, sidecar_path

    net, sha, path, quant = detector or load_detector(model)
    prec = resolve_precision(precision, quant)
    if prec == "fp16":
        prec = "fp32"  # the FP16 TensorRT engine is built from the fp32 graph
    tag = "fp32" if prec == "fp32" else f"qdq-{act_format}"
    out = Path(cache_dir or engine_cache_dir()) / f"{path.stem}.{sha[:16]}.{tag}.onnx"
    side = sidecar_path(out)
    if out.is_file() and side.is_file():
        try:
            meta = json.loads(side.read_text())
            if meta.get("model_sha256") == sha and meta.get("precision") == ("fp32" if prec == "fp32" else "qdq") \
                    and (prec == "fp32" or meta.get("act_format") == act_format) \
                    and meta.get("config") == json.loads(json.dumps(net.cfg.to_dict())):
                return out
        except json.JSONDecodeError:
            pass
    return export_onnx(net, out, "fp32" if prec == "fp32" else "qdq", act_format=act_format, model_sha256=sha)


def auto_source(model: str | Path, cache_dir: str | Path | None = None) -> "auto_select.ModelSource":  # noqa: F821
    """``auto_select.ModelSource`` of ``model``: the loaded detector and its cached ONNX exports (u8 Q/DQ)."""
    from .auto_select import ModelSource

    det = load_detector(model)
    return ModelSource(label=str(model), detector=det, onnx_dir=Path(cache_dir or engine_cache_dir()),
                       export=lambda prec: cached_onnx(model, prec, "u8", cache_dir, detector=det))


def load_engine(model: str | Path, backend: str = "torch", device: str = "cpu", score_threshold: float = 0.05,
                topk: int = 300, precision: str = "auto", threads: int | None = None,
                cache_dir: str | Path | None = None, fp16_fallback: bool = True,
                allow_spinning: bool | None = None, auto_cache_dir: str | Path | None = None) -> Engine:
    """Build an engine from a manifest model name or a ``.safetensors`` path.

    Args:
        backend: ``"torch"`` | ``"onnxruntime"`` | ``"tensorrt"`` | ``"auto"`` (the fastest CPU path
            whose accuracy was checked, timed once per machine and cached: ``auto_select``; needs
            ``device="cpu"`` and ``precision="auto"``).
        precision: ``"auto"`` (``int8`` for a packed quantized model, else ``fp32``), ``"fp32"``,
            ``"int8"`` (torch: fake-quant; onnxruntime / TensorRT: the Q/DQ export) or ``"fp16"``
            (TensorRT only).
        device: torch backend: ``"cpu"`` / ``"cuda"``; TensorRT: ``"cuda[:i]"``.
        threads: CPU threads (onnxruntime intra-op; torch ``set_num_threads``); None = default.
        cache_dir: ONNX / TensorRT plan cache (default ``engine_cache_dir()``).
        fp16_fallback: TensorRT INT8: layers without INT8 kernels may run in FP16.
        allow_spinning: onnxruntime thread-pool busy-waiting (None: onnxruntime's default).
        auto_cache_dir: backend ``auto``: where its choice is cached (default ``auto_select.auto_cache_dir()``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if str(precision).lower() != "auto":
            raise ValueError(f"backend 'auto' chooses the precision itself; leave precision 'auto' (got {precision!r})")
        from .auto_select import load_auto_engine

        return load_auto_engine(auto_source(model, cache_dir), threads=threads, allow_spinning=allow_spinning,
                                score_threshold=score_threshold, topk=topk, device=device, cache_dir=auto_cache_dir)
    if backend == "tensorrt":
        from .tensorrt_engine import require_tensorrt

        require_tensorrt()  # fail before any export work
    det = load_detector(model)
    prec = resolve_precision(precision, det[3])
    if backend == "torch":
        if prec == "fp16":
            raise ValueError("precision 'fp16' is for the tensorrt backend")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        return TorchEngine(det[0], device=device, score_threshold=score_threshold, topk=topk)
    if backend == "onnxruntime":
        if prec == "fp16":
            raise ValueError("precision 'fp16' is for the tensorrt backend")
        from .onnx_engine import OnnxEngine

        onnx_path = cached_onnx(model, prec, "u8", cache_dir, detector=det)
        return OnnxEngine(onnx_path, threads=threads or 0, score_threshold=score_threshold, topk=topk,
                          allow_spinning=allow_spinning)
    from .tensorrt_engine import TensorRTEngine

    onnx_path = cached_onnx(model, prec, "s8", cache_dir, detector=det)
    dev = int(device.split(":")[1]) if str(device).startswith("cuda:") else 0
    return TensorRTEngine(onnx_path, precision=prec, fp16_fallback=fp16_fallback, cache_dir=cache_dir,
                          device=dev, score_threshold=score_threshold, topk=topk)
