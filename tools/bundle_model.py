#!/usr/bin/env python3
"""Copy a trained run's weights into models/ and record them in models/manifest.yaml.

    python tools/bundle_model.py --run runs/nano-fp32 --name nano-fp32 \
        --data-recipe "..." --eval-json out/nano-fp32-eval/metrics_summary.json

    # the packed low-bit file of a QAT run (e.g. the qdbev row of `qdbev experiment paper-table`)
    python tools/bundle_model.py --run runs/paper-table/qdbev --packed --name nano-w4a6-qdbev \
        --data-recipe "..." --eval-json runs/paper-table/qdbev/score/metrics_summary.json

The entry holds name, config, file, sha256, size, precision, the data recipe, the training
command, wall time (from metrics.csv) and the official metrics of the given evaluation. A packed
model (``--packed`` = ``--weights model.packed.safetensors``, or any file whose sidecar has
``format: qdbev-packed-v1``) also records the format, the teacher, the fp32 file size of the same
config and the size ratio; it loads by name like any other entry (``qdbev predict --model NAME``).
The weights file and its sidecar JSON are copied as ``<name>.safetensors`` / ``<name>.json``; the
copy's sha256 must equal the sidecar's. An existing entry of the same name is replaced.
``--history-free-state`` sets the config field of that name in the copied sidecar (an
inference-only choice: which BEV each frame hands to the next; the weights are untouched).
``--models-dir`` (default ``$QDBEV_MODELS_DIR``, else the repository's ``models/``) picks the
folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qdbev_core.checkpoint import read_sidecar, sha256_file, write_sidecar  # noqa: E402


def _wall_s(run: Path, side: dict) -> float:
    metrics_csv = run / "metrics.csv"
    if not metrics_csv.is_file():
        return 0.0
    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("s_per_step")]
    log_every = int(side.get("train", {}).get("log_every", 1))
    return sum(float(r["s_per_step"]) * log_every for r in rows)


def bundle(run: Path, name: str, data_recipe: str, eval_json: Path, weights: str = "model.safetensors",
           eval_command: str = "", notes: str = "", models_dir: Path | None = None,
           make_default: bool = False, history_free_state: bool = False,
           other_evals: dict[str, Path] | None = None) -> dict:
    """Copy ``run/weights`` (+ sidecar) to ``models_dir/<name>.safetensors`` and write its manifest entry."""
    from qdbev_core.quant.pack import PACK_FORMAT

    models_dir = Path(models_dir or os.environ.get("QDBEV_MODELS_DIR") or REPO / "models")
    src = Path(run) / weights
    side = read_sidecar(src)
    if sha256_file(src) != side["sha256"]:
        raise SystemExit(f"{src}: file does not match its sidecar sha256 (modified or half-written?)")
    packed = side.get("format") == PACK_FORMAT
    if not packed and "quant_spec" in side:
        raise SystemExit(f"{src} is a fake-quant QAT checkpoint; bundle its packed file (--packed) instead")
    dst = models_dir / f"{name}.safetensors"
    side_dst, sha = _copy_weights(src, dst, side, history_free_state)
    summary = json.loads(Path(eval_json).read_text())
    entry = {
        "name": name,
        "config": side["config"]["name"],
        "precision": side.get("precision", "fp32"),
        "file": dst.name,
        "sha256": sha,
        "size_mb": round(dst.stat().st_size / 1e6, 3),
    }
    if side_dst["config"].get("history_free_state"):
        entry["history_free_state"] = True
    if packed:
        entry.update(_packed_fields(dst, side))
    entry.update({
        "data_recipe": data_recipe,
        "training_command": side.get("command", ""),
        "training_steps": side.get("step"),
        "training_wall_time_min": round(_wall_s(Path(run), side) / 60, 1),
        "eval_command": eval_command,
        "metrics": {"dataset": "SynthScenes (synthetic)", **_scores(summary)},
        "notes": notes,
    })
    if other_evals:  # the same model scored on other splits (name -> metrics_summary.json)
        entry["metrics_other_splits"] = {split_name: _scores(json.loads(Path(path).read_text()))
                                         for split_name, path in other_evals.items()}
    _write_manifest(models_dir / "manifest.yaml", name, entry, make_default)
    return entry


def _copy_weights(src: Path, dst: Path, side: dict, history_free_state: bool) -> tuple[dict, str]:
    """Copy the weights file, write its sidecar (naming its own file); returns the sidecar and sha256."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    side_dst = dict(side, file=dst.name)  # the sidecar names its own file
    if history_free_state:
        side_dst["config"] = dict(side["config"], history_free_state=True)
    write_sidecar(dst, side_dst)
    sha = sha256_file(dst)
    if sha != side["sha256"]:
        raise SystemExit(f"{dst}: copy does not match the sidecar sha256")
    return side_dst, sha


def _packed_fields(dst: Path, side: dict) -> dict:
    """Manifest fields of a packed low-bit file: sizes (MB) and the QAT run it came from."""
    from qdbev_core.quant import model_size_report
    from qdbev_core.quant.pack import PACK_FORMAT

    rep = model_size_report(dst)
    return {
        "format": PACK_FORMAT,
        "fp32_size_mb": round(rep["fp32_mb"], 3),
        "size_ratio": round(rep["ratio"], 2),
        "teacher": (side.get("qat") or {}).get("teacher"),
        "qat_mode": (side.get("qat") or {}).get("mode"),
        "qat_progressive": bool((side.get("qat") or {}).get("progressive")),
        "qat_seed": (side.get("train") or {}).get("seed"),
    }


def _scores(summary: dict) -> dict:
    """NDS, mAP and the true-positive errors of a devkit ``metrics_summary.json``, 4 decimals."""
    return {"nds": round(summary["nd_score"], 4), "map": round(summary["mean_ap"], 4),
            **{k: round(v, 4) for k, v in summary.get("tp_errors", {}).items()}}


def _write_manifest(manifest: Path, name: str, entry: dict, make_default: bool) -> None:
    """Replace (or append) ``name``'s entry in ``manifest.yaml``; ``make_default`` names it the default."""
    data = yaml.safe_load(manifest.read_text()) if manifest.is_file() else None
    data = data or {"models": []}
    data["models"] = [e for e in data["models"] if e["name"] != name] + [entry]
    if make_default:
        data = {"default": name, **{k: v for k, v in data.items() if k != "default"}}
    header = "# Bundled qdbev models. Written by tools/bundle_model.py; `qdbev models` lists and checks them.\n"
    manifest.write_text(header + yaml.safe_dump(data, sort_keys=False, width=110))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="training run directory (weights file + .json sidecar)")
    ap.add_argument("--weights", default="model.safetensors", help="weights file inside --run")
    ap.add_argument("--packed", action="store_true", help="bundle the run's packed low-bit file (model.packed.safetensors)")
    ap.add_argument("--name", required=True, help="manifest name, e.g. nano-fp32 or nano-w4a6-qdbev")
    ap.add_argument("--data-recipe", required=True, help="commands that generate the training / val data")
    ap.add_argument("--eval-json", type=Path, required=True, help="metrics_summary.json of the official evaluation")
    ap.add_argument("--eval-command", default="", help="command that reproduces the evaluation")
    ap.add_argument("--notes", default="", help="free text shown with the entry")
    ap.add_argument("--other-eval", action="append", default=[], metavar="NAME=PATH",
                    help="metrics_summary.json of the same model on another split, recorded under NAME (repeatable)")
    ap.add_argument("--default", action="store_true",
                    help="make this the manifest's default model (demo, config/qdbev.yaml and launch files name it too)")
    ap.add_argument("--models-dir", type=Path, default=None, help="models folder (default $QDBEV_MODELS_DIR or ./models)")
    ap.add_argument("--history-free-state", action="store_true",
                    help="bundle with config history_free_state=true (each frame hands on its BEV encoded "
                         "without history, as training feeds it; inference only)")
    args = ap.parse_args(argv)
    weights = "model.packed.safetensors" if args.packed else args.weights
    others = {}
    for item in args.other_eval:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            ap.error(f"--other-eval takes NAME=PATH, got {item!r}")
        others[name] = Path(path)
    entry = bundle(args.run, args.name, args.data_recipe, args.eval_json, weights, args.eval_command, args.notes,
                   args.models_dir, args.default, args.history_free_state, others)
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
