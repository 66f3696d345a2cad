"""TensorRT backend: an engine built from the exported ONNX (Q/DQ INT8, FP16 or FP32), cached on disk.

Supported: TensorRT 10.x (weakly typed builds, precision from builder flags) and 11.x (strongly
typed builds, precision from the graph: ``fp32`` and ``int8``; ``fp16`` is refused with a clear
error because it would need an FP16 ONNX graph). Every version-dependent decision lives in
``trt_decisions`` as a plain function, unit-tested without a GPU; this module only applies them.

Building (``TensorRTEngine(onnx_path, precision=...)`` or ``load_engine(model, "tensorrt")``):

1. The ONNX comes from ``export_onnx``. For ``precision="int8"`` it must be the Q/DQ export with
   ``act_format="s8"`` (TensorRT takes only symmetric int8 Q/DQ with zero point 0; see
   ``export.qdq``); ``load_engine`` exports that variant itself. ``fp32`` and ``fp16`` use the
   fp32 export.
2. ``trt.OnnxParser`` reads it (no plugins: the deformable sampling is the native ``GridSample``
   layer, opset 17). Explicit quantization: TensorRT reads the scales from the Q/DQ nodes; there
   is no calibrator. The flags come from ``trt_decisions.build_plan``: on 10.x ``INT8`` for Q/DQ
   graphs, ``FP16`` for ``fp16`` and for ``int8`` with ``fp16_fallback``; on 11.x none (strong
   typing). ``TF32`` is cleared unless ``allow_tf32``: an FP32 layer computes in FP32.
3. Camera geometry stays FP32 whenever FP16 is enabled (10.x): every layer of the TensorRT network
   computed only from ``intrinsics`` / ``cam2ego`` / ``ego_motion`` (projection, visibility masks,
   pillar reference points) is found by data flow on the network itself
   (``trt_decisions.geometry_layers``: all layers the parser made for a node, whatever their
   names); its floating-point outputs get ``set_output_type(float32)`` and, when all its tensors
   are floating point, ``layer.precision = float32``, with ``PREFER_PRECISION_CONSTRAINTS``.
4. The serialized engine is cached in ``models/engines/`` (or ``cache_dir``) as
   ``<onnx stem>.<precision>.<key>.plan`` + ``.plan.json``. The key hashes every build setting
   (``trt_decisions.BuildSettings``: model and ONNX sha256, precision, effective FP16 fallback,
   TF32, workspace bytes, typing mode, TensorRT version, GPU name and compute capability, build-code
   version). A cached plan that does not deserialize is rebuilt; plan and sidecar are written
   atomically through uniquely named temporary files (two builders never collide).

Running: device buffers are PyTorch CUDA tensors (no pycuda dependency); inputs are copied in,
``execute_async_v3`` runs on the engine's own CUDA stream (not the legacy default stream, on which
TensorRT adds synchronizations), outputs are copied back for ``decode_detections``. The previous
BEV stays on the GPU between frames.

Requirements (checked with a ``RuntimeError`` naming what is missing): the ``tensorrt`` Python
package 10.x or 11.x and a CUDA build of PyTorch that sees a GPU (``pip install -e .[gpu]`` /
``requirements-gpu.txt``; docs/TENSORRT.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .base import Engine
from .cache import engine_cache_dir
from .trt_decisions import (
    BUILD_CODE_VERSION,
    TRT_PRECISIONS,
    BuildPlan,
    BuildSettings,
    LayerInfo,
    TensorRTSupportError,
    build_plan,
    check_trt_version,
    engine_cache_key,
    load_or_build,
    network_creation_flags,
    pin_decisions,
)

log = logging.getLogger(__name__)

__all__ = ["TensorRTEngine", "TensorRTSupportError", "engine_cache_key", "require_tensorrt", "TRT_PRECISIONS"]

ENGINE_FORMAT = "qdbev-trt-v2"
GEOMETRY_INPUTS = ("intrinsics", "cam2ego", "ego_motion")
NETWORK_INPUTS = ("img", "prev_bev", "prev_valid")


def require_tensorrt():
    """``(tensorrt module, torch)``, or ``RuntimeError`` saying what is missing or unsupported.

    Checks, in order: ``import tensorrt`` works, its version is 10.x or 11.x
    (``TensorRTSupportError`` otherwise), and PyTorch sees a CUDA GPU.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(
            "backend 'tensorrt' needs the TensorRT Python package (`import tensorrt` failed: "
            f"{exc}); install TensorRT 10.x or 11.x for your CUDA version on a machine with an NVIDIA GPU "
            "(`pip install -e .[gpu]`, docs/TENSORRT.md), or use backend 'onnxruntime' / 'torch'"
        ) from exc
    check_trt_version(trt.__version__)
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            "backend 'tensorrt' needs a CUDA GPU visible to PyTorch (used for the device buffers): "
            f"torch {torch.__version__} reports torch.cuda.is_available() == False "
            "(no GPU, no driver, or a CPU-only PyTorch build: install a CUDA build, docs/TENSORRT.md)"
        )
    return trt, torch


def network_layer_infos(network) -> list[LayerInfo]:
    """``LayerInfo`` (tensor names and ``DataType`` names) of every layer of a ``trt.INetworkDefinition``."""
    infos = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = [layer.get_input(k) for k in range(layer.num_inputs)]
        ins = [t for t in ins if t is not None]  # optional inputs that are not set
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        infos.append(LayerInfo(
            name=layer.name,
            inputs=tuple(t.name for t in ins), input_dtypes=tuple(t.dtype.name for t in ins),
            outputs=tuple(t.name for t in outs), output_dtypes=tuple(t.dtype.name for t in outs),
        ))
    return infos


def pin_geometry_fp32(trt, network) -> tuple[int, int]:
    """Keep the camera-geometry layers of a weakly typed ``network`` in FP32; returns (layers, outputs) pinned."""
    decisions = pin_decisions(network_layer_infos(network), GEOMETRY_INPUTS, NETWORK_INPUTS)
    n_out = 0
    for d in decisions:
        layer = network.get_layer(d.index)
        if d.set_precision:
            layer.precision = trt.float32
        for k in d.float_outputs:
            layer.set_output_type(k, trt.float32)
            n_out += 1
    return len(decisions), n_out


def torch_dtype_of(trt, torch, trt_dtype):
    """The torch dtype of a TensorRT I/O tensor type (via ``trt.nptype``)."""
    return torch.from_numpy(np.zeros(0, dtype=trt.nptype(trt_dtype))).dtype


class TensorRTEngine(Engine):
    """Run the detector with a TensorRT engine built from its ONNX export.

    Args:
        onnx_path: exported ``.onnx`` with its sidecar (``export_onnx``).
        precision: ``"int8"`` (Q/DQ graph, explicit quantization), ``"fp16"`` (TensorRT 10.x only)
            or ``"fp32"``.
        fp16_fallback: ``int8`` on TensorRT 10.x: layers without INT8 kernels may run in FP16
            (geometry stays FP32). No effect on 11.x (strong typing: they run in FP32).
        cache_dir: where plans are cached (default ``engine_cache_dir()``).
        workspace_mb: builder workspace memory-pool limit, MiB.
        device: CUDA device index.
        allow_tf32: let FP32 layers use TF32 (10-bit mantissa inputs); off by default.
        score_threshold, topk, use_temporal: as ``TorchEngine``.

    Attributes set after construction: ``plan_path``, ``key``, ``settings`` (``BuildSettings``),
    ``build`` (``BuildPlan``), ``build_seconds`` (None when the plan came from the cache),
    ``rebuilt_bad_plan`` (a cached plan failed to load and was rebuilt), ``stream``.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, precision: str = "int8", fp16_fallback: bool = True,
                 cache_dir: str | Path | None = None, workspace_mb: int = 2048, device: int = 0,
                 score_threshold: float = 0.05, topk: int = 300, use_temporal: bool = True,
                 allow_tf32: bool = False) -> None:
        super().__init__()
        if precision not in TRT_PRECISIONS:
            raise ValueError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {precision!r}")
        trt, torch = require_tensorrt()
        from ..checkpoint import sha256_file
        from ..export import read_onnx_sidecar
        from ..model.config import ModelConfig

        self.trt, self.torch = trt, torch
        self.onnx_path = Path(onnx_path)
        self.meta = read_onnx_sidecar(self.onnx_path)
        self._check_graph(precision)
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.precision = precision
        self.major = check_trt_version(trt.__version__)
        self.build: BuildPlan = build_plan(self.major, precision, fp16_fallback, allow_tf32)
        for note in self.build.notes:
            log.warning("TensorRT: %s", note)
        self.fp16_fallback = self.build.fp16_fallback
        self.score_threshold, self.topk, self.use_temporal = score_threshold, topk, use_temporal
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)
        self.gpu_name = torch.cuda.get_device_name(self.device)
        cc = torch.cuda.get_device_capability(self.device)
        self.settings = BuildSettings(
            model_sha256=self.meta["model_sha256"],
            onnx_sha256=self.meta.get("onnx_sha256") or sha256_file(self.onnx_path),
            precision=precision, fp16_fallback=self.build.fp16_fallback, tf32=bool(allow_tf32),
            workspace_bytes=int(workspace_mb) << 20, strongly_typed=self.build.strongly_typed,
            trt_version=trt.__version__, gpu_name=self.gpu_name, compute_capability=f"{cc[0]}.{cc[1]}",
        )
        self.key = self.settings.key
        if cache_dir is None:
            cache_dir = engine_cache_dir()
        self.plan_path = Path(cache_dir) / f"{self.onnx_path.stem}.{precision}.{self.key}.plan"
        self.build_seconds: float | None = None
        self.pinned_layers = 0
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        result = load_or_build(self.plan_path, self.key, self._build, self.runtime.deserialize_cuda_engine,
                               self._sidecar_meta)
        self.engine, self.rebuilt_bad_plan = result.engine, result.rebuilt_bad_plan
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)
        self._alloc()

    def _check_graph(self, precision: str) -> None:
        """The ONNX must be the Q/DQ s8 export for int8, and a float export for fp32 / fp16."""
        p, fmt = self.meta.get("precision"), self.meta.get("act_format")
        if precision == "int8" and (p != "qdq" or fmt != "s8"):
            raise ValueError(
                f"{self.onnx_path}: precision 'int8' needs the Q/DQ export with act_format='s8' "
                f"(this file: precision={p!r}, act_format={fmt!r}); export it with "
                "`qdbev export --precision qdq --act-format s8` or use load_engine(..., backend='tensorrt')"
            )
        if precision != "int8" and p == "qdq":
            raise ValueError(f"{self.onnx_path}: precision {precision!r} needs the fp32 export, this is a Q/DQ graph")

    # --- build / cache -----------------------------------------------------------------------
    def _sidecar_meta(self) -> dict:
        return {
            "format": ENGINE_FORMAT, "build_code": BUILD_CODE_VERSION, "onnx": str(self.onnx_path),
            "settings": self.settings.to_json(), "builder_flags_set": list(self.build.set_flags),
            "builder_flags_cleared": list(self.build.clear_flags), "pinned_geometry_layers": self.pinned_layers,
            "notes": list(self.build.notes), "build_seconds": round(self.build_seconds or 0.0, 2),
        }

    def _build(self) -> bytes:
        """Parse the ONNX and build a serialized plan as ``self.build`` says (seconds in ``build_seconds``)."""
        trt = self.trt
        t0 = time.perf_counter()
        builder = trt.Builder(self.logger)
        network = builder.create_network(network_creation_flags(self.major))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"{self.onnx_path}: TensorRT {trt.__version__} ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.settings.workspace_bytes)
        for name in self.build.set_flags:
            config.set_flag(getattr(trt.BuilderFlag, name))
        for name in self.build.clear_flags:
            config.clear_flag(getattr(trt.BuilderFlag, name))
        if self.build.pin_geometry:
            self.pinned_layers, n_out = pin_geometry_fp32(trt, network)
            log.info("TensorRT: %d geometry layers (%d float outputs) pinned to FP32", self.pinned_layers, n_out)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"{self.onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
        self.build_seconds = time.perf_counter() - t0
        log.warning("TensorRT %s engine (%s) built in %.1f s -> %s", trt.__version__, self.precision,
                    self.build_seconds, self.plan_path)
        return bytes(plan)

    # --- buffers / run -------------------------------------------------------------------------
    def _alloc(self) -> None:
        trt, torch = self.trt, self.torch
        self.buffers: dict = {}
        self.outputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch_dtype_of(trt, torch, self.engine.get_tensor_dtype(name))
            buf = torch.zeros(shape, dtype=dtype, device=self.device)
            self.buffers[name] = buf
            self.context.set_tensor_address(name, buf.data_ptr())
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.outputs.append(name)
        self._eye = torch.eye(4, device=self.device)[None]
        torch.cuda.synchronize(self.device)  # buffers are zeroed on the default stream

    def _feed(self, net, prev_bev, motion) -> dict:
        torch = self.torch
        b = self.buffers
        with torch.cuda.stream(self.stream):
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
        torch = self.torch
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execute_async_v3 failed ({self.plan_path})")
            # bev is copied: the binding buffer is overwritten by the next frame's inputs
            out = {"cls_logits": feeds["cls_logits"].float().cpu().numpy(),
                   "boxes": feeds["boxes"].float().cpu().numpy(), "bev": feeds["bev"].clone()}
        self.stream.synchronize()
        return out
