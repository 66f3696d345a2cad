"""Write a quantized model as a real low-bit file: integers on disk (two 4-bit weights per byte,
8-bit codes for 8-bit layers, per-channel float16 weight steps, activation steps / zero points).

--model is a fake-quant QAT checkpoint (a `qdbev qat` run's model.safetensors: fp32 master
weights + learned steps). The result loads by path or manifest name like any model and
reproduces the fake-quant model's outputs exactly; with --check (default) that is verified on a
random input. `qdbev qat` already writes model.packed.safetensors at its last step. Note: with
float16 storage (default) the model's own float tensors are rounded to float16 first, so the
check compares against the rounded model (relative change <= 2^-11).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_DROP = ("sha256", "file", "num_tensors", "num_parameters", "format", "layers", "float32_keys", "scale32_layers",
         "float_dtype", "precision")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="fake-quant QAT checkpoint (manifest name or .safetensors path)")
    p.add_argument("--out", type=Path, required=True, help="packed .safetensors file to write (+ .json sidecar)")
    p.add_argument("--float-dtype", choices=("float16", "float32"), default="float16",
                   help="storage of the remaining float tensors and the weight steps")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the unpack-and-compare check")


def random_inputs(cfg, batch: int = 1, seed: int = 0):
    """A random 6-camera input with the nuScenes rig scaled to ``cfg.image_size``."""
    import numpy as np
    import torch

    from ..data.rig import rig_arrays, scaled_intrinsics

    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_size
    img = torch.randn(batch, cfg.num_cams, 3, h, w, generator=g)
    k, t = rig_arrays(1.0)
    k = torch.tensor(np.stack([scaled_intrinsics(ki, w / 1600, h / 900) for ki in k]), dtype=torch.float32)
    return img, k[None].expand(batch, -1, -1, -1), torch.tensor(t, dtype=torch.float32)[None].expand(batch, -1, -1, -1)


def outputs_equal(a, b, inputs) -> bool:
    import torch

    with torch.no_grad():
        oa, ob = a.eval()(*inputs), b.eval()(*inputs)
    return all(torch.equal(oa[k], ob[k]) for k in ("cls_logits", "boxes", "bev"))


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import read_sidecar
    from ..models_manifest import load_model, resolve_model
    from ..quant import model_size_report, pack_model, unpack_model
    from ..quant.pack import PACK_FORMAT

    path, _, _ = resolve_model(args.model)
    side = read_sidecar(path)
    if side.get("format") == PACK_FORMAT:
        raise ValueError(f"{path} is already a packed low-bit file")
    if "quant_spec" not in side:
        raise ValueError(f"{path} is a full-precision model; pack a QAT checkpoint (`qdbev qat` writes one)")
    model = load_model(args.model)
    meta = {k: v for k, v in side.items() if k not in _DROP}
    meta["packed_from"] = {"file": str(path), "sha256": side.get("sha256")}
    pack_model(model, args.out, meta, float_dtype=args.float_dtype)
    rep = model_size_report(args.out)
    if args.check:
        rep["outputs_equal"] = outputs_equal(model, unpack_model(args.out), random_inputs(model.cfg))
        if not rep["outputs_equal"]:
            raise ValueError(f"{args.out}: the unpacked model's outputs differ from the fake-quant model's")
    print(json.dumps({"packed": str(args.out), **rep}, indent=2))
    return 0
