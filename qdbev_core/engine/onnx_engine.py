"""onnxruntime backend: an exported ``.onnx`` (fp32 or Q/DQ INT8) on the CPU execution provider.

The graph and its sidecar come from ``qdbev_core.export.export_onnx`` (``load_engine`` exports
and caches them on demand). Temporal state works as in ``TorchEngine``: the ``bev`` output is
kept and fed back as ``prev_bev`` with the ego motion; on the first frame of a sequence (or after
a reset / time jump) the engine feeds zeros with ``prev_valid = 0``, which the graph treats
exactly like "no previous BEV".

Q/DQ graphs: before the session is created, ``export.graph.fold_unfusable_weight_dq`` replaces
the weight ``DequantizeLinear`` of convolutions onnxruntime cannot run in int8 (their output is
not quantized in the fake-quant model) by the equal float constant, and the ``MatMulAddFusion``
optimizer is disabled so ``DQ -> MatMul`` pairs become ``MatMulIntegerToFloat`` (int8 kernel)
instead of a float ``Gemm``. Neither changes the arithmetic the graph describes. (onnxruntime
itself rounds a fused ``QLinearConv``'s float bias to int32 at scale ``s_x * s_w``: at most half
of that product per output, far below one activation step of the next layer.)

Speed on this CPU (2 threads, nano 6 x 128 x 352): int8 ``QLinearConv`` runs ~3x faster than
the float conv, but onnxruntime can use it only for a convolution whose output feeds a
``QuantizeLinear``. A model made with the default recipe (``QuantSpec.quantize_outputs``: output
quantizers on residual branches, shortcuts, block outputs, the stem and the FPN convolutions, see
``quant.outputs``) exports every backbone convolution as ``DQ -> Conv -> Q`` and every residual
addition as ``DQ, DQ -> Add -> Relu -> Q``: onnxruntime runs the whole backbone as
``QLinearConv`` / ``QLinearAdd`` / uint8 max-pool (``test_export_onnx`` checks the optimized
graph), and only the FPN's lateral 1x1 convolutions stay float. A model of the older recipe
(``quantize_outputs=False``: Conv/Linear inputs only) still runs, but its residual-branch,
shortcut and stem convolutions have float outputs and stay float convolutions (measured: about
half of the INT8 graph's time); ``fold_unfusable_weight_dq`` keeps those on the fast float path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Engine


class OnnxEngine(Engine):
    """Run an exported detector with onnxruntime.

    Args:
        onnx_path: the ``.onnx`` file (its export sidecar ``.json`` must sit beside it).
        threads: ``intra_op_num_threads`` (inter-op parallelism is 1).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        score_threshold, topk: post-processing (see ``decode_detections``).
        use_temporal: feed the previous BEV (False: every frame on its own).
        optimize_qdq: apply the onnxruntime-specific Q/DQ preparation (see module doc).
        allow_spinning: onnxruntime's thread-pool busy-waiting (None: its default, on). Turn it
            off on a CPU shared with other work: spinning threads that get preempted made every
            run ~1.7x slower here next to a training job.
        profile_prefix: turn on onnxruntime's profiler, writing ``<prefix>_<date>.json`` when
            ``session.end_profiling()`` is called (``engine.profiling.profile_engine``).
        optimization_level: onnxruntime graph optimizations, ``"all"`` (default: includes the
            NCHWc blocked layout for float convolutions), ``"extended"`` or ``"basic"``
            (for measuring what each level gives, ``tools/int8_study.py``).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int = 2, providers: list[str] | None = None,
                 score_threshold: float = 0.05, topk: int = 300, use_temporal: bool = True,
                 optimize_qdq: bool = True, allow_spinning: bool | None = None,
                 profile_prefix: str | None = None, optimization_level: str = "all") -> None:
        super().__init__()
        import onnx
        import onnxruntime as ort

        from ..export import read_onnx_sidecar
        from ..model.config import ModelConfig

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        self.meta = read_onnx_sidecar(self.path)
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.precision = self.meta.get("precision", "fp32")
        self.input_names = [i["name"] for i in self.meta["inputs"]]
        if "prev_valid" not in self.input_names:
            raise ValueError(f"{self.path}: exported without the prev_valid input; re-export with with_prev_valid=True")
        self.score_threshold = score_threshold
        self.topk = topk
        self.use_temporal = use_temporal
        self.threads = threads

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
        if optimization_level not in levels:
            raise ValueError(f"optimization_level must be one of {', '.join(levels)}, got {optimization_level!r}")
        so.graph_optimization_level = levels[optimization_level]
        so.log_severity_level = 3
        if allow_spinning is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        if profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        self._init_args = {"threads": threads, "providers": providers, "score_threshold": score_threshold, "topk": topk,
                           "use_temporal": use_temporal, "optimize_qdq": optimize_qdq, "allow_spinning": allow_spinning,
                           "optimization_level": optimization_level}
        disabled: list[str] = []
        source: str | bytes = str(self.path)
        self.folded_convs: list[str] = []
        if self.precision == "qdq" and optimize_qdq:
            from ..export.graph import fold_unfusable_weight_dq

            model = onnx.load(str(self.path))
            self.folded_convs = fold_unfusable_weight_dq(model)
            source = model.SerializeToString()
            disabled = ["MatMulAddFusion"]
        self.session = ort.InferenceSession(
            source, so, providers=providers or ["CPUExecutionProvider"], disabled_optimizers=disabled
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        hw, c = self.cfg.bev_h * self.cfg.bev_w, self.cfg.embed_dims
        self._no_prev = np.zeros((1, hw, c), dtype=np.float32)
        self._eye = np.eye(4, dtype=np.float32)[None]
        self._valid = np.ones(1, dtype=np.float32)
        self._invalid = np.zeros(1, dtype=np.float32)

    def run_arrays(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One raw inference: ``{input name: array}`` -> ``{output name: array}``."""
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def _feed(self, net, prev_bev, motion) -> dict[str, np.ndarray]:
        return {
            "img": net.img[None],
            "intrinsics": net.intrinsics[None],
            "cam2ego": net.cam2ego[None],
            "prev_bev": self._no_prev if motion is None else prev_bev,
            "ego_motion": self._eye if motion is None else motion.astype(np.float32)[None],
            "prev_valid": self._invalid if motion is None else self._valid,
        }

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_arrays(feeds)
