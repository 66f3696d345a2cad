#!/usr/bin/env python3
"""Copy a trained run's weights into models/ and record them in models/manifest.yaml.

    python tools/bundle_model.py --run runs/nano-fp32 --name nano-fp32 \
        --data-recipe "..." --eval-json out/nano-fp32-eval/metrics_summary.json

The entry holds name, config, file, sha256, size, precision, the data recipe, the training
command, wall time (from metrics.csv) and the official metrics of the given evaluation. An
existing entry of the same name is replaced.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import yaml

from qdbev_core.checkpoint import read_sidecar, sha256_file

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="training run directory (model.safetensors + .json)")
    ap.add_argument("--weights", default="model.safetensors", help="weights file inside --run")
    ap.add_argument("--name", required=True, help="manifest name, e.g. nano-fp32")
    ap.add_argument("--data-recipe", required=True, help="commands that generate the training / val data")
    ap.add_argument("--eval-json", type=Path, required=True, help="metrics_summary.json of the official evaluation")
    ap.add_argument("--eval-command", default="", help="command that reproduces the evaluation")
    ap.add_argument("--notes", default="", help="free text shown with the entry")
    args = ap.parse_args()

    src = args.run / args.weights
    side = read_sidecar(src)
    dst = REPO / "models" / f"{args.name}.safetensors"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
    sha = sha256_file(dst)
    if sha != side["sha256"]:
        raise SystemExit(f"{dst}: copy does not match the sidecar sha256")
    wall_s = 0.0
    metrics_csv = args.run / "metrics.csv"
    if metrics_csv.is_file():
        with open(metrics_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("s_per_step")]
        log_every = int(side.get("train", {}).get("log_every", 1))
        wall_s = sum(float(r["s_per_step"]) * log_every for r in rows)
    summary = json.loads(args.eval_json.read_text())
    tp = summary.get("tp_errors", {})
    entry = {
        "name": args.name,
        "config": side["config"]["name"],
        "precision": side.get("precision", "fp32"),
        "file": dst.name,
        "sha256": sha,
        "size_mb": round(dst.stat().st_size / 1e6, 3),
        "data_recipe": args.data_recipe,
        "training_command": side.get("command", ""),
        "training_steps": side.get("step"),
        "training_wall_time_min": round(wall_s / 60, 1),
        "eval_command": args.eval_command,
        "metrics": {
            "dataset": "SynthScenes (synthetic)",
            "nds": round(summary["nd_score"], 4),
            "map": round(summary["mean_ap"], 4),
            **{k: round(v, 4) for k, v in tp.items()},
        },
        "notes": args.notes,
    }
    manifest = REPO / "models" / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text()) if manifest.is_file() else None
    data = data or {"models": []}
    data["models"] = [e for e in data["models"] if e["name"] != args.name] + [entry]
    header = "# Bundled qdbev models. Written by tools/bundle_model.py; `qdbev models` lists and checks them.\n"
    manifest.write_text(header + yaml.safe_dump(data, sort_keys=False, width=110))
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
