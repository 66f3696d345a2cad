#!/usr/bin/env bash
# TensorRT check on a machine with an NVIDIA GPU, in one go (about 4-7 minutes; every step has a
# time limit so the whole stays under 8 minutes). Everything goes into one folder:
#
#   tools/gpu_check.sh [OUT]            (default OUT: out/gpu-check-<UTC time>)
#
#   OUT/env.txt            nvidia-smi, Python package versions
#   OUT/synth/             a small SynthScenes dataset (3 scenes x 20 samples, split synth_val = 2 scenes)
#   OUT/pytest.txt|.xml    the TensorRT tests (GPU tests + the decision unit tests), -rs: skip reasons shown
#   OUT/gpu_check.json|.md export fp32 + Q/DQ ONNX, build fp32 / fp16 / int8 engines, compare with
#                          onnxruntime CPU on the same frames, median-of-50 inference timings
#   OUT/bench.json|.txt    `qdbev bench`: onnxruntime vs tensorrt, fp32 and int8, 50 timed frames, NDS
#   OUT/status.txt         each step's exit status and seconds
#   OUT/cache/             ONNX exports and TensorRT plans (deleted at the end unless KEEP_CACHE=1; sidecars kept)
#
# Needs: the venv of `make setup` (or PYTHON=...), plus a CUDA build of torch and tensorrt 10.x / 11.x
# (requirements-gpu.txt, docs/TENSORRT.md). Models: MODEL (default nano-fp32-yaw) and INT8_MODEL
# (default nano-w4a6-qdbev), manifest names or .safetensors paths. Exit status: 0 when every step passed.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${1:-out/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
MODEL="${MODEL:-nano-fp32-yaw}"
INT8_MODEL="${INT8_MODEL:-nano-w4a6-qdbev}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
THREADS="${THREADS:-$(nproc 2>/dev/null || echo 4)}"
mkdir -p "$OUT"
STATUS="$OUT/status.txt"
: > "$STATUS"
export QDBEV_ENGINE_CACHE="$OUT/cache" PYTHONUNBUFFERED=1
FAILED=0

# step NAME LIMIT_S CMD...: run CMD with a time limit, log to OUT/NAME.log, record status and seconds
step() {
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS rc
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/$name.log"
  timeout --kill-after=10 "$limit" "$@" >> "$OUT/$name.log" 2>&1
  rc=$?
  printf '%-10s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$STATUS"
  [ "$rc" -eq 0 ] || FAILED=1
  return "$rc"
}

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; echo "python: $PYTHON"
  if command -v nvidia-smi >/dev/null; then nvidia-smi 2>&1; else echo "nvidia-smi: not available"; fi
  "$PYTHON" - <<'EOF' 2>&1
import importlib
for name in ("torch", "tensorrt", "onnxruntime", "onnx", "numpy"):
    try:
        m = importlib.import_module(name)
        print(f"{name}: {getattr(m, '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: NOT IMPORTABLE ({exc})")
import torch
print("torch.version.cuda:", torch.version.cuda, "cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0), "capability:", torch.cuda.get_device_capability(0))
EOF
} > "$OUT/env.txt"
cat "$OUT/env.txt"

if ! "$PYTHON" -c "from qdbev_core.engine.tensorrt_engine import require_tensorrt; require_tensorrt()" 2> "$OUT/require.txt"; then
  echo "TensorRT backend unavailable here (tail of $OUT/require.txt):" | tee -a "$STATUS"
  tail -n 1 "$OUT/require.txt" | tee -a "$STATUS"
  echo "install: pip install -r requirements-gpu.txt (after a CUDA build of torch; docs/TENSORRT.md)" | tee -a "$STATUS"
  exit 2
fi

step synth 90 "$PYTHON" -m qdbev_core synth --out "$OUT/synth" --scenes 3 --samples 20 --image-scale 0.22 \
  --seed 2 --val-fraction 0.67 --workers "$(( THREADS < 8 ? THREADS : 8 ))" --no-progress

step pytest 200 "$PYTHON" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/pytest.xml" \
  test/unit/test_tensorrt_gpu.py test/unit/test_tensorrt_decisions.py test/unit/test_engines.py -k "tensorrt or trt"
cp "$OUT/pytest.log" "$OUT/pytest.txt" 2>/dev/null

step parity 200 "$PYTHON" tools/gpu_check.py --out "$OUT" --model "$MODEL" --int8-model "$INT8_MODEL" \
  --dataroot "$OUT/synth" --split synth_val --frames 20 --timing-frames 50 --threads "$THREADS"

step bench 180 "$PYTHON" -m qdbev_core bench --model "$MODEL" --int8-model "$INT8_MODEL" \
  --backends onnxruntime,tensorrt --precisions fp32,int8 --frames 50 --warmup 3 \
  --dataroot "$OUT/synth" --split synth_val --threads "$THREADS" --device cuda \
  --out-dir "$OUT/bench" --json "$OUT/bench.json"
cp "$OUT/bench.log" "$OUT/bench.txt" 2>/dev/null

rm -rf "$OUT/synth/samples" "$OUT/synth/sweeps"  # images: large and reproducible (same seed, same bytes)
if [ -z "${KEEP_CACHE:-}" ]; then  # plans / ONNX are large; their .json sidecars (keys, settings) stay
  find "$OUT/cache" \( -name '*.plan' -o -name '*.onnx' \) -delete 2>/dev/null
fi
echo "== done: $OUT (failed steps: $FAILED)"; cat "$STATUS"
exit "$FAILED"
