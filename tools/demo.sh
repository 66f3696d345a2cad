#!/usr/bin/env bash
# `make demo`: the main job on the bundled defaults, end to end on this machine (CPU only).
#
# 1. generate a small SynthScenes dataset (nuScenes on-disk format, synthetic images)
# 2. validate it with `qdbev data check`
# 3. score the split's ground truth with the official nuScenes evaluator (oracle = 1.0), and the
#    ground truth jittered by 0.5 m (the evaluator really evaluates)
# 4. if a bundled model is in models/manifest.yaml: run it over the val split and score it
# 5. render BEV + camera pictures of one scene
#
# Everything is written under $QDBEV_DEMO_OUT (default out/demo). All numbers are on synthetic
# data. ROS traffic (none yet in this demo) would stay on loopback: see the Makefile exports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"

OUT="${QDBEV_DEMO_OUT:-out/demo}"
DATA="$OUT/synthscenes"
VERSION=v1.0-mini
SPLIT=synth_val
QDBEV=(qdbev)
command -v qdbev >/dev/null 2>&1 || QDBEV=(python -m qdbev_core)
T0=$SECONDS
say() { printf '\n[demo %4ss] %s\n' "$((SECONDS - T0))" "$*"; }

mkdir -p "$OUT"
if [ ! -f "$DATA/$VERSION/splits.json" ]; then
  say "1/5 generating SynthScenes (4 scenes x 10 samples, 400x225 images, seed 2024) -> $DATA"
  "${QDBEV[@]}" synth --out "$DATA" --scenes 4 --samples 10 --image-scale 0.25 --seed 2024
else
  say "1/5 SynthScenes already in $DATA (delete it to regenerate)"
fi

say "2/5 qdbev data check"
"${QDBEV[@]}" data check --dataroot "$DATA" --version "$VERSION" --split "$SPLIT"

say "3/5 official nuScenes evaluation of the ground truth (oracle) and of GT jittered by 0.5 m"
"${QDBEV[@]}" gt-results --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" --out "$OUT/gt_results.json"
"${QDBEV[@]}" eval --results "$OUT/gt_results.json" --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" \
  --output-dir "$OUT/eval_gt" | tee "$OUT/eval_gt.txt"
"${QDBEV[@]}" gt-results --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" --out "$OUT/gt_jitter.json" \
  --jitter-m 0.5 --seed 1
"${QDBEV[@]}" eval --results "$OUT/gt_jitter.json" --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" \
  --output-dir "$OUT/eval_gt_jitter" | tee "$OUT/eval_gt_jitter.txt"

MODEL="${QDBEV_DEMO_MODEL:-}"
if [ -z "$MODEL" ] && [ -f models/manifest.yaml ]; then
  MODEL="$(python -c 'from qdbev_core.models_manifest import read_manifest; m = read_manifest(); print(next(iter(m), ""))')"
fi
SCENE="$(python -c "import json; print(json.load(open('$DATA/$VERSION/splits.json'))['$SPLIT'][0])")"
if [ -n "$MODEL" ]; then
  say "4/5 model '$MODEL' on $SPLIT (torch backend, CPU) + official evaluation"
  "${QDBEV[@]}" predict --model "$MODEL" --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" \
    --out "$OUT/pred_results.json" --eval-dir "$OUT/eval_model" | tee "$OUT/eval_model.txt"
  VIZ_MODEL=(--model "$MODEL")
else
  say "4/5 no bundled model in models/manifest.yaml yet: skipping prediction"
  VIZ_MODEL=()
fi

say "5/5 pictures of scene $SCENE -> $OUT/viz"
"${QDBEV[@]}" viz --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" --scene "$SCENE" "${VIZ_MODEL[@]}" \
  --out-dir "$OUT/viz" >/dev/null

say "done in $((SECONDS - T0)) s. Results: $OUT (eval_*.txt, viz/*.png, viz/$SCENE.mp4). Synthetic data throughout."
