"""The TensorRT backend's decisions as plain functions (no ``tensorrt`` import, no GPU needed).

``tensorrt_engine`` asks these functions what to do and only then calls TensorRT, so every
version-dependent choice, the plan-cache key, the geometry-pinning selection and the cache's
rebuild / atomic-write logic are unit-tested on machines without a GPU
(``test/unit/test_tensorrt_decisions.py``).

Supported TensorRT versions (``SUPPORTED_TRT_MAJORS``):

- **10.x: weakly typed networks.** Precision comes from builder flags: ``fp16`` sets
  ``BuilderFlag.FP16``; ``int8`` sets ``BuilderFlag.INT8`` (explicit quantization: the scales come
  from the Q/DQ nodes) and, with ``fp16_fallback``, ``FP16`` too. When FP16 is enabled the camera
  geometry layers are pinned to FP32 (``layer.precision`` / ``set_output_type`` with
  ``PREFER_PRECISION_CONSTRAINTS``).
- **11.x: strongly typed networks** (TensorRT 11 removed ``BuilderFlag.FP16`` / ``INT8`` /
  ``OBEY_`` / ``PREFER_PRECISION_CONSTRAINTS``, ``ILayer.precision`` and ``set_output_type``; every
  tensor's type follows the ONNX graph). ``fp32`` builds the fp32 graph; ``int8`` builds the Q/DQ
  graph, whose quantized layers run in INT8 and every other layer in the graph's FP32 - so
  ``fp16_fallback`` has no effect there (recorded as ``False`` in the cache key and sidecar).
  ``fp16`` would need an FP16 ONNX graph (NVIDIA's route: ModelOpt AutoCast), which qdbev does
  not export: it is refused with a ``TensorRTSupportError`` saying so.
- other majors (8.x, 9.x, 12+) are refused with a ``TensorRTSupportError`` naming the supported
  range: the API differs (8.x) or is untested (12+).

TF32 (TensorRT's default for FP32 layers on Ampere and newer GPUs: matmul / conv inputs rounded to
10-bit mantissas) is cleared for every precision unless ``allow_tf32`` is asked for: the FP32
geometry layers and the FP32 engine must match onnxruntime's FP32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

#: bump whenever the build code changes what a plan contains (flags, pinning, I/O): old plans rebuild
BUILD_CODE_VERSION = "qdbev-trt-build-3"
SUPPORTED_TRT_MAJORS = (10, 11)
TRT_PRECISIONS = ("fp32", "fp16", "int8")
#: ``trt.DataType`` member names of floating-point tensors (``DataType.FLOAT`` is float32)
FLOAT_DTYPES = frozenset({"FLOAT", "HALF", "BF16"})
SUPPORT_TEXT = "qdbev supports TensorRT 10.x (weakly typed builds) and 11.x (strongly typed builds)"


class TensorRTSupportError(RuntimeError):
    """A TensorRT version or a precision that this backend cannot build (what, why, what to do)."""


# --- versions ------------------------------------------------------------------------------------------
def trt_major(version: str) -> int:
    """The major number of a TensorRT version string (``"10.3.0.26"`` -> 10).

    Raises ``TensorRTSupportError`` when ``version`` does not start with digits.
    """
    m = re.match(r"\s*(\d+)", str(version))
    if m is None:
        raise TensorRTSupportError(f"cannot read a TensorRT version from {version!r} (tensorrt.__version__)")
    return int(m.group(1))


def check_trt_version(version: str) -> int:
    """The major number of ``version`` if this backend supports it, else ``TensorRTSupportError``."""
    major = trt_major(version)
    if major not in SUPPORTED_TRT_MAJORS:
        why = ("its Python API predates the named-tensor / strongly typed API used here" if major < 10
               else "it is newer than the versions this code was written against and is untested")
        raise TensorRTSupportError(
            f"tensorrt {version} is installed; {SUPPORT_TEXT}, and {why}. Install a supported wheel, "
            "e.g. `pip install 'tensorrt-cu12>=10,<12'` (see docs/TENSORRT.md), or use backend 'onnxruntime'"
        )
    return major


# --- build plan --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """What to ask TensorRT for, decided from the version and the requested precision.

    Attributes:
        strongly_typed: tensor types follow the ONNX graph (TensorRT 11: always; the
            ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` flag is then deprecated and ignored).
        set_flags: ``trt.BuilderFlag`` member names to set.
        clear_flags: ``trt.BuilderFlag`` member names to clear (``TF32``).
        pin_geometry: pin the camera-geometry layers to FP32 (weak typing with FP16 enabled).
        fp16_fallback: the fallback actually in effect (``False`` when strong typing ignores it).
        notes: human-readable remarks worth logging (e.g. why ``fp16_fallback`` was dropped).
    """

    strongly_typed: bool
    set_flags: tuple[str, ...]
    clear_flags: tuple[str, ...]
    pin_geometry: bool
    fp16_fallback: bool
    notes: tuple[str, ...] = ()


def build_plan(major: int, precision: str, fp16_fallback: bool = True, allow_tf32: bool = False) -> BuildPlan:
    """Builder flags, typing mode and geometry pinning for TensorRT ``major`` and ``precision``.

    Args:
        major: TensorRT major version (10 or 11; others raise ``TensorRTSupportError``).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (``int8`` = a Q/DQ graph, explicit quantization).
        fp16_fallback: ``int8`` on 10.x: layers without an INT8 kernel may run in FP16.
        allow_tf32: keep TensorRT's TF32 default for FP32 layers (off: FP32 means FP32).
    """
    if precision not in TRT_PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {precision!r}")
    if major not in SUPPORTED_TRT_MAJORS:
        raise TensorRTSupportError(f"TensorRT {major}.x: {SUPPORT_TEXT}")
    clear = () if allow_tf32 else ("TF32",)
    if major >= 11:
        if precision == "fp16":
            raise TensorRTSupportError(
                "precision 'fp16' on TensorRT 11: TensorRT 11 removed BuilderFlag.FP16 and builds only strongly "
                "typed networks, so an FP16 engine needs an FP16 ONNX graph (NVIDIA's route: ModelOpt AutoCast), "
                "which qdbev does not export. Use precision 'fp32' or 'int8' (Q/DQ) on TensorRT 11, or install "
                "TensorRT 10.x (`pip install 'tensorrt-cu12>=10,<11'`) for FP16"
            )
        notes = ()
        if precision == "int8" and fp16_fallback:
            notes = ("TensorRT 11 is strongly typed: layers of the Q/DQ graph that are not quantized run in the "
                     "graph's FP32; fp16_fallback has no effect",)
        return BuildPlan(strongly_typed=True, set_flags=(), clear_flags=clear, pin_geometry=False,
                         fp16_fallback=False, notes=notes)
    fp16 = precision == "fp16" or (precision == "int8" and fp16_fallback)
    flags: list[str] = []
    if fp16:
        flags.append("FP16")
    if precision == "int8":
        flags.append("INT8")
    if fp16:
        flags.append("PREFER_PRECISION_CONSTRAINTS")
    return BuildPlan(strongly_typed=False, set_flags=tuple(flags), clear_flags=clear, pin_geometry=fp16,
                     fp16_fallback=bool(precision == "int8" and fp16_fallback))


def network_creation_flags(major: int) -> int:
    """The ``builder.create_network`` bit mask: 0 on both 10.x and 11.x.

    ``EXPLICIT_BATCH`` is ignored by 10.x and removed in 11.x; ``STRONGLY_TYPED`` is not set on 10.x
    (weak typing is what lets the precision flags work) and is always on in 11.x (the flag is
    deprecated and ignored there).
    """
    if major not in SUPPORTED_TRT_MAJORS:
        raise TensorRTSupportError(f"TensorRT {major}.x: {SUPPORT_TEXT}")
    return 0


# --- cache key ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildSettings:
    """Everything a built plan depends on; ``key`` hashes all of it (a pure function).

    Attributes:
        model_sha256 / onnx_sha256: the weights file and the exported graph.
        precision: ``fp32`` / ``fp16`` / ``int8``.
        fp16_fallback: the fallback in effect (``BuildPlan.fp16_fallback``).
        tf32: whether TF32 was allowed for FP32 layers.
        workspace_bytes: builder workspace memory-pool limit, bytes.
        strongly_typed: strongly typed network (TensorRT 11).
        trt_version: ``tensorrt.__version__`` (the full string: a plan only loads on the same version).
        gpu_name / compute_capability: the device (``"8.6"``); plans are device-specific.
        build_code: ``BUILD_CODE_VERSION`` of the code that built it.
    """

    model_sha256: str
    onnx_sha256: str
    precision: str
    fp16_fallback: bool
    tf32: bool
    workspace_bytes: int
    strongly_typed: bool
    trt_version: str
    gpu_name: str
    compute_capability: str = ""
    build_code: str = field(default=BUILD_CODE_VERSION)

    @property
    def key(self) -> str:
        """16 hex digits over every field (see ``engine_cache_key``)."""
        return engine_cache_key(**asdict(self))

    def to_json(self) -> dict:
        """The settings as a JSON-able dict (written to the plan's sidecar)."""
        return asdict(self)


def engine_cache_key(model_sha256: str, trt_version: str, gpu_name: str, precision: str,
                     fp16_fallback: bool = True, onnx_sha256: str = "", *, tf32: bool = False,
                     workspace_bytes: int = 0, strongly_typed: bool = False, compute_capability: str = "",
                     build_code: str = BUILD_CODE_VERSION) -> str:
    """16 hex digits identifying a built engine (pure function: no GPU needed).

    Any change of any argument (weights, graph, precision, fallback, TF32, workspace size in bytes,
    typing mode, TensorRT version, GPU name or compute capability, build-code version) gives
    another key, so a cached plan built under other settings is never reused.
    """
    parts = {
        "build_code": build_code, "model_sha256": model_sha256, "onnx_sha256": onnx_sha256,
        "precision": precision, "fp16_fallback": bool(fp16_fallback), "tf32": bool(tf32),
        "workspace_bytes": int(workspace_bytes), "strongly_typed": bool(strongly_typed),
        "trt_version": str(trt_version), "gpu_name": str(gpu_name).strip(),
        "compute_capability": str(compute_capability),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# --- geometry pinning --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    """What the pinning decision needs from one ``trt.ILayer`` (read by ``tensorrt_engine``).

    Attributes:
        name: layer name (for logs only: the ONNX parser names only the first layer of a node).
        inputs / input_dtypes: names and ``trt.DataType`` member names of its set inputs.
        outputs / output_dtypes: the same for its outputs.
    """

    name: str
    inputs: tuple[str, ...]
    input_dtypes: tuple[str, ...]
    outputs: tuple[str, ...]
    output_dtypes: tuple[str, ...]


@dataclass(frozen=True)
class PinDecision:
    """FP32 pinning of one layer: its index, whether ``layer.precision`` is set, which outputs get
    ``set_output_type(i, float32)``."""

    index: int
    set_precision: bool
    float_outputs: tuple[int, ...]


def geometry_layers(layers: Sequence[LayerInfo], geometry_inputs: Iterable[str],
                    network_inputs: Iterable[str]) -> list[int]:
    """Indices of the layers computed from the geometry inputs only.

    A layer is geometry when some input depends (through any chain of layers) on a tensor in
    ``geometry_inputs`` and none depends on ``network_inputs`` (image, previous BEV, ...); layers
    without inputs (constants) depend on nothing. Working on the TensorRT network's own tensors
    covers every layer the parser made for an ONNX node (helper layers included), whatever their
    names. Layers may come in any order (iterated to a fixed point).
    """
    geo, net = set(geometry_inputs), set(network_inputs)
    deps: dict[str, frozenset[str]] = {t: frozenset({"geo"}) for t in geo}
    deps.update({t: frozenset({"net"}) for t in net})
    empty: frozenset[str] = frozenset()
    changed = True
    while changed:
        changed = False
        for layer in layers:
            d = empty.union(*(deps.get(t, empty) for t in layer.inputs))
            for out in layer.outputs:
                if out in geo or out in net:
                    continue
                old = deps.get(out, empty)
                if old | d != old:
                    deps[out] = old | d
                    changed = True
    picked = []
    for i, layer in enumerate(layers):
        d = empty.union(*(deps.get(t, empty) for t in layer.inputs))
        if "geo" in d and "net" not in d:
            picked.append(i)
    return picked


def pin_decisions(layers: Sequence[LayerInfo], geometry_inputs: Iterable[str],
                  network_inputs: Iterable[str]) -> list[PinDecision]:
    """How to keep the geometry layers FP32: only floating-point tensors are touched.

    ``set_output_type(i, float32)`` for each floating-point output of a geometry layer;
    ``layer.precision = float32`` only when all its inputs and outputs are floating point (a TopK's
    indices, a comparison's BOOL, a Cast to INT64, a Shape layer or a Where's BOOL condition are
    never forced to float). Geometry layers without a float output are left out.
    """
    out = []
    for i in geometry_layers(layers, geometry_inputs, network_inputs):
        layer = layers[i]
        floats = tuple(k for k, dt in enumerate(layer.output_dtypes) if dt in FLOAT_DTYPES)
        if not floats:
            continue
        all_float = len(floats) == len(layer.output_dtypes) and all(dt in FLOAT_DTYPES for dt in layer.input_dtypes)
        out.append(PinDecision(index=i, set_precision=all_float, float_outputs=floats))
    return out


# --- plan cache --------------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a uniquely named temporary file in the same folder + ``os.replace``.

    Two processes building the same plan never write into each other's file, and a reader sees
    either the old complete file or the new complete one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sidecar_of(plan_path: Path) -> Path:
    """``<plan>.json`` beside ``<plan>`` (``x.plan`` -> ``x.plan.json``)."""
    return Path(plan_path).with_suffix(Path(plan_path).suffix + ".json")


def read_cached_plan(plan_path: Path, key: str) -> bytes | None:
    """The cached plan bytes if the plan and a sidecar naming ``key`` exist, else None."""
    plan_path = Path(plan_path)
    side = sidecar_of(plan_path)
    if not (plan_path.is_file() and side.is_file()):
        return None
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        log.warning("%s: unreadable sidecar; rebuilding", side)
        return None
    if meta.get("key") != key:
        log.info("%s: cache key changed (%s -> %s); rebuilding", plan_path, meta.get("key"), key)
        return None
    return plan_path.read_bytes()


T = TypeVar("T")


@dataclass
class LoadResult(Generic[T]):
    """``load_or_build``'s answer: the deserialized engine, and whether it was (re)built."""

    engine: T
    built: bool
    rebuilt_bad_plan: bool = False


def load_or_build(plan_path: Path, key: str, build: Callable[[], bytes], deserialize: Callable[[bytes], T | None],
                  sidecar: Callable[[], dict]) -> LoadResult[T]:
    """Load the cached plan for ``key``, or build one; a cached plan that will not deserialize is rebuilt.

    Args:
        plan_path: where the plan lives (its sidecar is ``sidecar_of(plan_path)``).
        key: the ``BuildSettings.key`` the plan must have been built with.
        build: builds and returns the serialized plan (called at most once).
        deserialize: plan bytes -> engine, or None (or an exception) when it cannot be loaded.
        sidecar: the metadata to write next to a newly built plan (``key`` is added).

    A plan that fails to deserialize (truncated file, another TensorRT build with the same version
    string, a driver change) is logged, replaced by a fresh build and written back atomically; if
    the fresh plan does not deserialize either, ``RuntimeError`` says so.
    """
    plan_path = Path(plan_path)
    cached = read_cached_plan(plan_path, key)
    bad = False
    if cached is not None:
        engine, err = _try_deserialize(deserialize, cached)
        if engine is not None:
            log.info("TensorRT engine from cache %s", plan_path)
            return LoadResult(engine, built=False)
        bad = True
        log.warning("%s: cached TensorRT plan does not deserialize (%s); rebuilding it", plan_path, err)
    plan = build()
    engine, err = _try_deserialize(deserialize, plan)
    if engine is None:
        raise RuntimeError(f"{plan_path}: TensorRT could not deserialize the engine it just built ({err}); "
                           "see the TensorRT log above")
    write_atomic(plan_path, plan)
    write_atomic(sidecar_of(plan_path), (json.dumps({"key": key, **sidecar()}, indent=2) + "\n").encode())
    return LoadResult(engine, built=True, rebuilt_bad_plan=bad)


def _try_deserialize(deserialize: Callable[[bytes], T | None], plan: bytes) -> tuple[T | None, str]:
    try:
        engine = deserialize(plan)
    except Exception as exc:  # noqa: BLE001 - TensorRT raises various types for a corrupt plan
        return None, f"{type(exc).__name__}: {exc}"
    return engine, "" if engine is not None else "deserialize_cuda_engine returned None"
