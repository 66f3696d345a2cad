#!/usr/bin/env python3
"""Which moving objects get a velocity: matched moving boxes split by their heading relative to the ego.

A diagnostic for the velocity error (AVE). For each class, the moving ground-truth boxes (>= 0.5
m/s) matched by a prediction (``qdbev_core.eval.heading.match_boxes``: score >= 0.3, same class,
centre within 2 m) are split by the cosine between their velocity and the ego's (from the ego
poses of the sample and the one before it): ``same`` (> 0.5), ``opposite`` (< -0.5), ``crossing``,
plus ``ego still`` (ego slower than 0.5 m/s). A box counts as *got a velocity* when the predicted
speed is at least half the true one.

    .venv/bin/python tools/velocity_by_direction.py --results out/eval/nano-fp32-yaw-torch-synth-val/results.json \\
        --dataroot data/synth-val --split synth_val [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qdbev_core.data.reader import load_nuscenes  # noqa: E402
from qdbev_core.eval.heading import MOVING_SPEED_MPS, match_boxes  # noqa: E402
from qdbev_core.eval.nuscenes_eval import devkit_evaluator  # noqa: E402


def ego_velocity(nusc, sample_token: str) -> np.ndarray | None:
    """Global x/y velocity (m/s) of the ego between the previous key frame and this one."""
    s = nusc.get("sample", sample_token)
    if not s["prev"]:
        return None
    p = nusc.get("sample", s["prev"])

    def pose(sample):
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        return np.asarray(nusc.get("ego_pose", sd["ego_pose_token"])["translation"][:2], dtype=float)

    return (pose(s) - pose(p)) / ((s["timestamp"] - p["timestamp"]) * 1e-6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, type=Path)
    ap.add_argument("--dataroot", required=True, type=Path)
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--split", required=True)
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)

    nusc = load_nuscenes(args.dataroot, args.version)
    with tempfile.TemporaryDirectory() as tmp:
        ev = devkit_evaluator(nusc, args.results, args.split, tmp)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for g, p in match_boxes(ev.gt_boxes, ev.pred_boxes):
        gv = np.nan_to_num(np.asarray(g.velocity, dtype=float))
        speed = float(np.hypot(*gv))
        if speed < MOVING_SPEED_MPS:
            continue
        ego = ego_velocity(nusc, g.sample_token)
        if ego is None:
            continue
        ego_speed = float(np.hypot(*ego))
        if ego_speed < MOVING_SPEED_MPS:
            group = "ego still"
        else:
            cos = float(gv @ ego) / (speed * ego_speed)
            group = "same" if cos > 0.5 else "opposite" if cos < -0.5 else "crossing"
        got = float(np.hypot(*np.nan_to_num(np.asarray(p.velocity, dtype=float)))) >= 0.5 * speed
        row = table.setdefault(g.detection_name, {}).setdefault(group, {"n": 0, "got_velocity": 0})
        row["n"] += 1
        row["got_velocity"] += int(got)
    print(f"{'class':<22}{'direction':<11}{'n':>5}{'got v':>8}")
    for name in sorted(table):
        for group in ("same", "opposite", "crossing", "ego still"):
            if group in table[name]:
                r = table[name][group]
                r["share"] = r["got_velocity"] / r["n"]
                print(f"{name:<22}{group:<11}{r['n']:5d}{r['share']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
