"""Model size on disk: fp32 safetensors file of the same config, packed low-bit file, ratio.

--model may be a packed file (reported as is), a fake-quant QAT checkpoint (packed to a
temporary file first), or a full-precision file (fp32 size only). Both sizes are safetensors
files as ``checkpoint.save_weights`` writes them (the fp32 one built from the same config: the
teacher's file when the student shares its config), sidecar JSON not counted for either and
reported separately; MB = 10^6 bytes, bytes printed too; the ratio with 3 decimals, so 7.799 does
not read as 7.80.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="manifest name or .safetensors path")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import read_sidecar
    from ..models_manifest import load_model, resolve_model
    from ..quant import model_size_report
    from ..quant.pack import PACK_FORMAT

    path, _, _ = resolve_model(args.model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    side = read_sidecar(path)
    if side.get("format") == PACK_FORMAT:
        rep = model_size_report(path)
        rep["source"] = "packed file"
    elif "quant_spec" in side:
        rep = model_size_report(load_model(args.model))
        rep["source"] = "fake-quant checkpoint, packed to a temporary file"
    else:
        b = path.stat().st_size
        rep = {"fp32_bytes": b, "fp32_mb": b / 1e6, "packed_bytes": None, "packed_mb": None, "ratio": None,
               "precision": side.get("precision", "fp32"), "source": "full-precision file"}
    rep["model"] = str(path)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{path} ({rep['source']}, {rep.get('precision')})")
    print(f"  fp32 safetensors : {rep['fp32_mb']:9.3f} MB ({rep['fp32_bytes']:,} bytes)")
    if rep.get("packed_bytes"):
        print(f"  packed on disk   : {rep['packed_mb']:9.3f} MB ({rep['packed_bytes']:,} bytes; "
              f"+ {rep['sidecar_bytes'] / 1e3:.1f} kB sidecar JSON, not counted)")
        print(f"  ratio            : {rep['ratio']:9.3f}x")
        print("  weights by width : " + ", ".join(f"{k} {v:,}" for k, v in sorted(rep["params_by_bits"].items())))
    return 0
