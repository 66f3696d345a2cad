"""List the bundled models (models/manifest.yaml) or the named model configs.

`qdbev models` prints name, config, file, size and metrics of each manifest entry and checks each
file's sha256; `qdbev models --configs` prints the model configurations with parameter and
FLOP counts.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", action="store_true", help="list model configs (tiny/small/base/nano) instead")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the sha256 check of each file")


def run(args: argparse.Namespace) -> int:
    if args.configs:
        from ..model.summary import describe

        print(describe())
        return 0
    from ..checkpoint import sha256_file
    from ..models_manifest import default_model, models_dir, read_manifest

    entries = read_manifest()
    if not entries:
        print(f"no models in {models_dir() / 'manifest.yaml'}")
        return 0
    bad = 0
    default = default_model()
    print(f"{'name':<22}{'config':<8}{'file':<34}{'MB':>8}  {'sha256':<10}  metrics")
    for name, e in entries.items():
        path = models_dir() / e["file"]
        size = path.stat().st_size / 1e6 if path.is_file() else float("nan")
        ok = "missing"
        if path.is_file():
            ok = "skipped" if not args.verify else ("ok" if sha256_file(path) == e.get("sha256") else "MISMATCH")
        bad += ok in ("missing", "MISMATCH")
        metrics = " ".join(f"{k}={v}" for k, v in (e.get("metrics") or {}).items())
        shown = f"{name}*" if name == default else name
        print(f"{shown:<22}{e.get('config', '?'):<8}{e['file']:<34}{size:8.2f}  {ok:<10}  {metrics}")
    print(f"* default model: {default} (manifest 'default:'; used by make demo, config/qdbev.yaml, the launch files)")
    return 1 if bad else 0
