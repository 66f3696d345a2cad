"""Rebuild the fake-quant model from a packed low-bit file and save it as a QAT checkpoint
(fp32 master weights = integer codes x steps, plus the quantizer steps): loadable by path,
and `qdbev pack` of it gives the same integers again. Its outputs equal the packed model's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="packed low-bit model (manifest name or .safetensors path)")
    p.add_argument("--out", type=Path, required=True, help="fake-quant .safetensors file to write (+ .json sidecar)")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import read_sidecar, save_weights
    from ..models_manifest import load_model, resolve_model
    from ..quant.pack import PACK_FORMAT

    path, _, _ = resolve_model(args.model)
    side = read_sidecar(path)
    if side.get("format") != PACK_FORMAT:
        raise ValueError(f"{path} is not a packed low-bit file (sidecar format {side.get('format')!r})")
    model = load_model(args.model)  # verified against the manifest / sidecar sha256
    keep = {k: v for k, v in side.items() if k not in ("sha256", "file", "num_tensors", "num_parameters", "format",
                                                       "layers", "float32_keys", "scale32_layers", "float_dtype")}
    keep["precision"] = f"{side.get('precision', 'quant')}-fakequant"
    keep["unpacked_from"] = {"file": str(path), "sha256": side.get("sha256")}
    out = save_weights(model.state_dict(), args.out, keep)
    print(json.dumps({"fake_quant": str(args.out), "sha256": out["sha256"], "bytes": Path(args.out).stat().st_size}))
    return 0
