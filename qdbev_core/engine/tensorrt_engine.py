"""TensorRT backend: an engine built from the exported ONNX (Q/DQ INT8, FP16 or FP32), cached on disk.

Building (``TensorRTEngine(onnx_path, precision=...)`` or ``load_engine(model, "tensorrt")``):

1. The ONNX comes from ``export_onnx``. For ``precision="int8"`` it must be the Q/DQ export with
   ``act_format="s8"`` (TensorRT takes only symmetric int8 Q/DQ with zero point 0; see
   ``export.qdq``); ``load_engine`` exports that variant itself.
2. ``trt.OnnxParser`` reads it (no plugins: the deformable sampling is the native
   ``GridSample`` layer, opset 17). Explicit quantization: TensorRT reads the scales from the
   Q/DQ nodes; there is no calibrator. ``BuilderFlag.INT8`` is set for Q/DQ graphs and, with
   ``fp16_fallback`` (default), ``BuilderFlag.FP16`` lets layers without an INT8 kernel run in
   FP16 instead of FP32.
3. Camera geometry stays FP32: every layer computed only from ``intrinsics`` / ``cam2ego`` /
   ``ego_motion`` (projection, visibility masks, pillar reference points; found with
   ``export.graph.descendants`` on the ONNX) gets ``layer.precision = float32`` with
   ``PREFER_PRECISION_CONSTRAINTS``, so FP16 fallback never touches it.
4. The serialized engine is written to ``models/engines/`` (or ``cache_dir``) as
   ``<onnx stem>.<key>.plan`` + ``.plan.json`` (the key's parts and the build time). The key is
   ``engine_cache_key(model sha256, TensorRT version, GPU name, precision, fp16_fallback,
   onnx sha256)``: a new model, a TensorRT upgrade or another GPU gives a new key and so a
   rebuild; an existing plan whose sidecar does not match its key is rebuilt too.

Running: device buffers are PyTorch CUDA tensors (no pycuda dependency); inputs are copied in,
``execute_async_v3`` runs on the current CUDA stream, outputs are copied back for
``decode_detections``. The previous BEV stays on the GPU between frames.

Requirements (checked with a ``RuntimeError`` naming what is missing): the ``tensorrt`` Python
package (8.6 or newer: named-tensor API) and a CUDA build of PyTorch that sees a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from .base import Engine

log = logging.getLogger(__name__)

ENGINE_FORMAT = "qdbev-trt-v1"
TRT_PRECISIONS = ("fp32", "fp16", "int8")
GEOMETRY_INPUTS = ("intrinsics", "cam2ego", "ego_motion")
NETWORK_INPUTS = ("img", "prev_bev", "prev_valid")


def engine_cache_key(model_sha256: str, trt_version: str, gpu_name: str, precision: str,
                     fp16_fallback: bool = True, onnx_sha256: str = "") -> str:
    """16 hex digits identifying a built engine (pure function: no GPU needed).

    Any change of the model weights, the TensorRT version, the GPU, the precision, the fallback
    flag or the ONNX graph itself gives another key, so the cached plan is not reused.
    """
    parts = [ENGINE_FORMAT, model_sha256, trt_version, gpu_name.strip(), precision, str(bool(fp16_fallback)), onnx_sha256]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def require_tensorrt():
    """``(tensorrt module, torch)`` or ``RuntimeError`` saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(
            "backend 'tensorrt' needs the TensorRT Python package (`import tensorrt` failed: "
            f"{exc}); install TensorRT >= 8.6 for your CUDA version on a machine with an NVIDIA GPU, "
            "or use backend 'onnxruntime' / 'torch'"
        ) from exc
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            "backend 'tensorrt' needs a CUDA GPU visible to PyTorch (used for the device buffers): "
            f"torch {torch.__version__} reports torch.cuda.is_available() == False "
            "(no GPU, no driver, or a CPU-only PyTorch build)"
        )
    return trt, torch


def geometry_node_names(onnx_model) -> set[str]:
    """ONNX node names computed from the calibration / ego-motion inputs only (kept FP32)."""
    from ..export.graph import descendants

    geo = descendants(onnx_model, set(GEOMETRY_INPUTS))
    net = descendants(onnx_model, set(NETWORK_INPUTS))
    return geo - net


class TensorRTEngine(Engine):
    """Run the detector with a TensorRT engine built from its ONNX export.

    Args:
        onnx_path: exported ``.onnx`` with its sidecar (``export_onnx``).
        precision: ``"int8"`` (Q/DQ graph, explicit quantization), ``"fp16"`` or ``"fp32"``.
        fp16_fallback: allow FP16 for layers without INT8 kernels (``int8``) - geometry stays FP32.
        cache_dir: where plans are cached (default ``models/engines/`` of ``models_manifest``).
        workspace_mb: builder workspace limit.
        device: CUDA device index.
        score_threshold, topk, use_temporal: as ``TorchEngine``.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, precision: str = "int8", fp16_fallback: bool = True,
                 cache_dir: str | Path | None = None, workspace_mb: int = 2048, device: int = 0,
                 score_threshold: float = 0.05, topk: int = 300, use_temporal: bool = True) -> None:
        super().__init__()
        if precision not in TRT_PRECISIONS:
            raise ValueError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {precision!r}")
        trt, torch = require_tensorrt()
        from ..checkpoint import sha256_file
        from ..export import read_onnx_sidecar
        from ..models_manifest import config_from_dict

        self.trt, self.torch = trt, torch
        self.onnx_path = Path(onnx_path)
        self.meta = read_onnx_sidecar(self.onnx_path)
        if precision == "int8" and (self.meta.get("precision") != "qdq" or self.meta.get("act_format") != "s8"):
            raise ValueError(
                f"{self.onnx_path}: precision 'int8' needs the Q/DQ export with act_format='s8' "
                f"(this file: precision={self.meta.get('precision')!r}, act_format={self.meta.get('act_format')!r})"
            )
        self.cfg = config_from_dict(self.meta["config"])
        self.precision = precision
        self.fp16_fallback = fp16_fallback
        self.score_threshold, self.topk, self.use_temporal = score_threshold, topk, use_temporal
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)
        self.gpu_name = torch.cuda.get_device_name(self.device)
        self.key = engine_cache_key(self.meta["model_sha256"], trt.__version__, self.gpu_name, precision,
                                    fp16_fallback, self.meta.get("onnx_sha256") or sha256_file(self.onnx_path))
        if cache_dir is None:
            from . import engine_cache_dir

            cache_dir = engine_cache_dir()
        self.plan_path = Path(cache_dir) / f"{self.onnx_path.stem}.{precision}.{self.key}.plan"
        self.build_seconds: float | None = None
        self.workspace_bytes = int(workspace_mb) << 20
        self.logger = trt.Logger(trt.Logger.WARNING)
        plan = self._load_cached() or self._build()
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError(f"{self.plan_path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        self._alloc()

    # --- build / cache -----------------------------------------------------------------------
    def _sidecar(self) -> Path:
        return self.plan_path.with_suffix(".plan.json")

    def _load_cached(self) -> bytes | None:
        side = self._sidecar()
        if not (self.plan_path.is_file() and side.is_file()):
            return None
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError:
            return None
        if meta.get("key") != self.key:
            log.info("%s: cache key changed (%s -> %s); rebuilding", self.plan_path, meta.get("key"), self.key)
            return None
        log.info("TensorRT engine from cache %s", self.plan_path)
        return self.plan_path.read_bytes()

    def _build(self) -> bytes:
        import onnx

        trt = self.trt
        t0 = time.perf_counter()
        builder = trt.Builder(self.logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"{self.onnx_path}: TensorRT ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace_bytes))
        if self.precision == "fp16" or (self.precision == "int8" and self.fp16_fallback):
            config.set_flag(trt.BuilderFlag.FP16)
        if self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales from the Q/DQ nodes
        if self.precision != "fp32":
            geo = geometry_node_names(onnx.load(str(self.onnx_path), load_external_data=False))
            pinned = 0
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                if layer.name in geo:
                    layer.precision = trt.float32
                    pinned += 1
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
            log.info("TensorRT: %d geometry layers pinned to FP32", pinned)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"{self.onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
        plan = bytes(plan)
        self.build_seconds = time.perf_counter() - t0
        log.warning("TensorRT engine built in %.1f s -> %s", self.build_seconds, self.plan_path)
        self.plan_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_path.with_suffix(".plan.tmp")
        tmp.write_bytes(plan)
        tmp.replace(self.plan_path)
        self._sidecar().write_text(json.dumps({
            "format": ENGINE_FORMAT, "key": self.key, "model_sha256": self.meta["model_sha256"],
            "onnx": str(self.onnx_path), "onnx_sha256": self.meta.get("onnx_sha256"),
            "tensorrt": trt.__version__, "gpu": self.gpu_name, "precision": self.precision,
            "fp16_fallback": self.fp16_fallback, "build_seconds": round(self.build_seconds, 2),
        }, indent=2) + "\n")
        return plan

    # --- buffers / run -------------------------------------------------------------------------
    def _alloc(self) -> None:
        trt, torch = self.trt, self.torch
        self.buffers: dict = {}
        self.outputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            buf = torch.zeros(shape, dtype=dtype, device=self.device)
            self.buffers[name] = buf
            self.context.set_tensor_address(name, buf.data_ptr())
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.outputs.append(name)
        self._eye = torch.eye(4, device=self.device)[None]

    def _feed(self, net, prev_bev, motion) -> dict:
        torch = self.torch
        b = self.buffers
        b["img"].copy_(torch.from_numpy(net.img[None]))
        b["intrinsics"].copy_(torch.from_numpy(net.intrinsics[None]))
        b["cam2ego"].copy_(torch.from_numpy(net.cam2ego[None]))
        if motion is None:
            b["prev_bev"].zero_()
            b["ego_motion"].copy_(self._eye)
            b["prev_valid"].zero_()
        else:
            b["prev_bev"].copy_(prev_bev)
            b["ego_motion"].copy_(torch.from_numpy(motion.astype(np.float32)[None]))
            b["prev_valid"].fill_(1.0)
        return b

    def _run(self, feeds: dict) -> dict:
        stream = self.torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        # bev is copied: the binding buffer is overwritten by the next frame's inputs
        return {"cls_logits": feeds["cls_logits"].float().cpu().numpy(), "boxes": feeds["boxes"].float().cpu().numpy(),
                "bev": feeds["bev"].clone()}
