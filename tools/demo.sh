#!/usr/bin/env bash
# `make demo`: the main job on the bundled defaults, end to end on this machine (CPU only).
#
# 1. generate a small SynthScenes dataset (nuScenes on-disk format, synthetic images)
# 2. validate it with `qdbev data check`
# 3. score the split's ground truth with the official nuScenes evaluator (oracle = 1.0), and the
#    ground truth jittered by 0.5 m (the evaluator really evaluates)
# 4. with the manifest's default model (models/manifest.yaml `default:`; $QDBEV_DEMO_MODEL overrides):
#    run it over the val split and score it
# 5. render BEV + camera pictures of one scene
# 6. (with a model) the live ROS 2 node on real rclpy: one val scene -> rosbag2 (`qdbev bag
#    from-nuscenes`); `qdbev_node`, a recorder (`qdbev bag record`) and the player (`qdbev play
#    --wait-for-subscribers --pace-topic`) as three processes; the node's detections + velocities
#    scored with the official devkit (`qdbev bag score`): NDS, latency percentiles, dropped
#    frames, BEV pictures of what the node published
# 7. offline `qdbev replay` of the same bag and model, scored the same way; both NDS printed
#    (they must agree within 0.01, else the demo fails)
#
# Everything is written under $QDBEV_DEMO_OUT (default out/demo). All numbers are on synthetic
# data. ROS traffic stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST); the live step
# uses a ROS_DOMAIN_ID of its own ($QDBEV_DEMO_ROS_DOMAIN_ID, default derived from this shell's
# pid). Its processes are stopped (SIGTERM, then SIGKILL after 60 s) on exit, failure included.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$PWD/config/fastdds_shm.xml}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # node, player and recorder share the cores

OUT="${QDBEV_DEMO_OUT:-out/demo}"
DATA="$OUT/synthscenes"
VERSION=v1.0-mini
SPLIT=synth_val
QDBEV=(qdbev)
command -v qdbev >/dev/null 2>&1 || QDBEV=(python -m qdbev_ros)
T0=$SECONDS
say() { printf '\n[demo %4ss] %s\n' "$((SECONDS - T0))" "$*"; }

mkdir -p "$OUT"
if [ ! -f "$DATA/$VERSION/splits.json" ]; then
  say "1/7 generating SynthScenes (4 scenes x 10 samples, 400x225 images, seed 2024) -> $DATA"
  "${QDBEV[@]}" synth --out "$DATA" --scenes 4 --samples 10 --image-scale 0.25 --seed 2024
else
  say "1/7 SynthScenes already in $DATA (delete it to regenerate)"
fi

say "2/7 qdbev data check"
"${QDBEV[@]}" data check --dataroot "$DATA" --version "$VERSION" --split "$SPLIT"

say "3/7 official nuScenes evaluation of the ground truth (oracle) and of GT jittered by 0.5 m"
"${QDBEV[@]}" gt-results --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" --out "$OUT/gt_results.json"
"${QDBEV[@]}" eval --results "$OUT/gt_results.json" --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" \
  --output-dir "$OUT/eval_gt" | tee "$OUT/eval_gt.txt"
"${QDBEV[@]}" gt-results --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" --out "$OUT/gt_jitter.json" \
  --jitter-m 0.5 --seed 1
"${QDBEV[@]}" eval --results "$OUT/gt_jitter.json" --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" \
  --output-dir "$OUT/eval_gt_jitter" | tee "$OUT/eval_gt_jitter.txt"

MODEL="${QDBEV_DEMO_MODEL:-}"
# the node's default backend, auto: the fastest CPU path of the model whose accuracy was checked,
# timed once per machine by the first step that loads it (4/7, logged) and cached in
# $QDBEV_AUTO_CACHE or ~/.cache/qdbev/auto; the node (6/7) and replay (7/7) read that cache, so
# they run the same path (checked below). QDBEV_DEMO_BACKEND=onnxruntime|torch names one instead.
BACKEND="${QDBEV_DEMO_BACKEND:-auto}"
if [ -z "$MODEL" ] && [ -f models/manifest.yaml ]; then
  MODEL="$(python -c 'from qdbev_core.models_manifest import default_model; print(default_model() or "")')"
fi
SCENE="$(python -c "import json; print(json.load(open('$DATA/$VERSION/splits.json'))['$SPLIT'][0])")"
if [ -n "$MODEL" ]; then
  say "4/7 model '$MODEL' on $SPLIT ($BACKEND backend, CPU) + official evaluation"
  "${QDBEV[@]}" predict --model "$MODEL" --backend "$BACKEND" --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" \
    --out "$OUT/pred_results.json" --eval-dir "$OUT/eval_model" | tee "$OUT/eval_model.txt"
  VIZ_MODEL=(--model "$MODEL")
else
  say "4/7 no bundled model in models/manifest.yaml yet: skipping prediction"
  VIZ_MODEL=()
fi

say "5/7 pictures of scene $SCENE -> $OUT/viz"
"${QDBEV[@]}" viz --dataroot "$DATA" --version "$VERSION" --split "$SPLIT" --scene "$SCENE" "${VIZ_MODEL[@]}" \
  --out-dir "$OUT/viz" >/dev/null

if [ -z "$MODEL" ]; then
  say "6/7 and 7/7 skipped: no model"
  say "done in $((SECONDS - T0)) s. Results: $OUT (eval_*.txt, viz/*.png, viz/$SCENE.mp4). Synthetic data throughout."
  exit 0
fi

# ------------------------------------------------------------------ 6. the live node on real rclpy
LIVE="$OUT/live"
BAG="$LIVE/${SCENE}_bag"
PIDS=()
stop_pids() {  # SIGTERM our background processes, SIGKILL what is left after 60 s (a starved CPU exits slowly)
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for i in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_pids EXIT
trap 'exit 130' INT TERM
alive_or_die() {  # NAME PID LOG: fail with the log's tail when the process has exited
  if ! kill -0 "$2" 2>/dev/null; then
    echo "[demo] ERROR: $1 exited early; last lines of $3:" >&2; tail -n 30 "$3" >&2; exit 1
  fi
}

rm -rf "$LIVE"; mkdir -p "$LIVE"
export ROS_DOMAIN_ID="${QDBEV_DEMO_ROS_DOMAIN_ID:-$(( 1 + $$ % 100 ))}"
say "6/7 live node: scene $SCENE -> rosbag2; qdbev_node + recorder + paced player on real rclpy (ROS_DOMAIN_ID $ROS_DOMAIN_ID, LOCALHOST)"
"${QDBEV[@]}" bag from-nuscenes --dataroot "$DATA" --version "$VERSION" --scene "$SCENE" --out "$BAG"
NODE=(qdbev_node)
command -v qdbev_node >/dev/null 2>&1 || NODE=(python -m qdbev_ros.node)
"${NODE[@]}" --ros-args --params-file config/qdbev.yaml -p "model:=$MODEL" -p "backend:=$BACKEND" \
  -p image_transport:=compressed \
  >"$LIVE/node.log" 2>&1 &
NODE_PID=$!; PIDS+=("$NODE_PID")
"${QDBEV[@]}" bag record --out "$LIVE/node_output" --ready-file "$LIVE/recorder.ready" --wait-for-publishers 300 \
  >"$LIVE/record.log" 2>&1 &
REC_PID=$!; PIDS+=("$REC_PID")
# the recorder is ready once it is matched with the node's publishers (the node creates them after loading the model)
END=$((SECONDS + 300))
while [ ! -f "$LIVE/recorder.ready" ]; do
  alive_or_die qdbev_node "$NODE_PID" "$LIVE/node.log"
  alive_or_die "qdbev bag record" "$REC_PID" "$LIVE/record.log"
  [ "$SECONDS" -lt "$END" ] || { echo "[demo] ERROR: recorder not ready after 300 s" >&2; exit 1; }
  sleep 0.2
done
# each camera set only after the node's output of the previous one: nothing is dropped however slow the CPU
"${QDBEV[@]}" play "$BAG" --wait-for-subscribers 300 --pace-topic /qdbev_node/detections --pace-timeout 60 \
  2>&1 | tee "$LIVE/play.log"
alive_or_die qdbev_node "$NODE_PID" "$LIVE/node.log"
stop_pids  # the player saw the node's last output: stop the node and the recorder (it drains, then closes its bag)
cat "$LIVE/record.log"
"${QDBEV[@]}" bag score "$LIVE/node_output" --source "$BAG" --eval-dir "$LIVE/eval_live" --json "$LIVE/live.json" \
  --viz-dir "$LIVE/viz" | tee "$LIVE/score_live.txt"

# ------------------------------------------------------------------ 7. offline replay, same bag and model
say "7/7 offline qdbev replay of the same bag, model and backend, scored the same way"
"${QDBEV[@]}" replay "$BAG" --model "$MODEL" --backend "$BACKEND" --out "$LIVE/replay_output" --no-eval \
  2>&1 | tee "$LIVE/replay.log"
if [ "$BACKEND" = auto ]; then  # both sides must have run the same execution path
  LIVE_PATH="$(sed -n 's/.*auto backend: using \([a-z0-9-]*\) .*/\1/p' "$LIVE/node.log" | tail -n 1)"
  REPLAY_PATH="$(sed -n 's/.*auto backend: using \([a-z0-9-]*\) .*/\1/p' "$LIVE/replay.log" | tail -n 1)"
  echo "backend auto: live node ran ${LIVE_PATH:-?}, offline replay ran ${REPLAY_PATH:-?}"
  if [ -z "$LIVE_PATH" ] || [ "$LIVE_PATH" != "$REPLAY_PATH" ]; then
    echo "[demo] ERROR: backend auto chose different paths for the node and replay (see $LIVE/node.log, $LIVE/replay.log)" >&2
    exit 1
  fi
fi
"${QDBEV[@]}" bag score "$LIVE/replay_output" --source "$BAG" --eval-dir "$LIVE/eval_replay" \
  --json "$LIVE/replay.json" | tee "$LIVE/score_replay.txt"

python - "$LIVE/live.json" "$LIVE/replay.json" <<'PY'
import json, sys
live, off = (json.load(open(p)) for p in sys.argv[1:3])
if "nd_score" not in live or "nd_score" not in off:
    sys.exit(f"[demo] ERROR: not scored: live: {live['eval_note']}; replay: {off['eval_note']}")
lat, cnt = live.get("latency_ms") or {}, live.get("counters") or {}
print(f"\nlive qdbev_node : NDS {live['nd_score']:.4f}  mAP {live['mean_ap']:.4f}  mAVE {live['mave']:.4f}  "
      f"key frames without output (dropped) {live['key_frames_without_output']}/{live['key_frames']}  "
      f"newest-wins drops {cnt.get('dropped_sets_newest_wins', 'n/a')}")
if lat:
    print(f"                  pipeline latency p50 {lat['p50']:.0f} ms  p90 {lat['p90']:.0f} ms  p99 {lat['p99']:.0f} ms "
          f"(max {lat['max']:.0f} ms, {lat['n']} frames)")
print(f"offline replay  : NDS {off['nd_score']:.4f}  mAP {off['mean_ap']:.4f}  mAVE {off['mave']:.4f}")
diff = abs(live["nd_score"] - off["nd_score"])
print(f"|NDS live - offline| = {diff:.4f} (must be <= 0.01)")
if diff > 0.01:
    sys.exit("[demo] ERROR: the live node and offline replay disagree")
PY

say "done in $((SECONDS - T0)) s. Results: $OUT (eval_*.txt, viz/, live/: node log, recorded bag, scores, viz/ BEV of the node's output). Synthetic data throughout."
