"""Real low-bit model files: integers on disk, and a loader that reproduces the fake-quant model.

File = safetensors (written by ``checkpoint.save_weights``, so it has the usual JSON sidecar
with the sha256) holding a handful of *blobs*, not one tensor per layer (a per-layer header
would cost ~50 kB, more than all the float tensors of ``nano``):

==========  =======  ==========================================================================
blob        dtype    content, in ``model.named_modules()`` / ``state_dict()`` order
==========  =======  ==========================================================================
``w4``      uint8    weights of layers with <= 4 bits: offset-binary codes ``q - qmin`` (0..15),
                     all such layers concatenated, two per byte (element ``2i`` in the low
                     nibble, ``2i+1`` in the high nibble; zero-padded to even length)
``w8``      int8     weights of 5..8-bit layers: the signed codes ``q``, concatenated
``w_scale`` float16  per-output-channel weight steps (Conv2d/Linear: one per output channel;
            (default) Embedding: one per embedding dimension), concatenated; float32 with
                     ``float_dtype="float32"``
``w_scale32`` float32 steps of layers whose steps are outside float16's normal range
                     (``[6.1e-5, 65504]``; listed in the sidecar as ``scale32_layers``)
``act``     float32  ``(A,)``: the step of every enabled activation quantizer: the layers'
                     input quantizers in layer order, then the enabled output quantizers
                     (``quant.outputs``) in the order of the sidecar's ``outputs``
``act_zp``  float16  ``(A,)``: their zero points, same order (integers, ``round(z)``, so float16
                     holds them exactly, the sign of ``-0.0`` included; float32 if any does not
                     survive the float16 round trip bit for bit)
``floats``  float16  every other float tensor of the state dict (biases, BatchNorm weights and
            (default) running statistics, LayerNorm, ``cams_embeds`` / ``level_embeds``, weights of
                     skipped or not-yet-enabled layers) concatenated; ``float_dtype="float32"``
                     stores them in float32
``floats32`` float32 float tensors that do not fit float16 (listed in the sidecar)
``ints``    int8..   non-float buffers (BatchNorm ``num_batches_tracked``) in the narrowest of
            int64    int8 / int16 / int32 / int64 that holds every value (read back as int64)
==========  =======  ==========================================================================

Layouts (sidecar ``pack_layout``, same ``format``): **2** (written since 2026-12-07) is the table
above. **1** (files without ``pack_layout``) differs only in ``act`` = float32 ``(A, 2)`` rows
``[step, zero_point]`` (no ``act_zp``) and ``ints`` always int64; it still loads, to the same
model bit for bit. Layout 2 drops only redundant bytes (zero points are integers, the counters fit
32 bits): the nano default shrank by 244 bytes and unpacks to the identical state dict. A file
with a newer layout is refused with a ``CheckpointError`` that says so.

Quantizer bookkeeping (``.wq.*`` / ``.aq.*`` / output quantizers' ``.oq.*`` of the state dict) is
not stored; the layout is rebuilt from the sidecar's ``config`` + ``quant_spec`` and checked
against its ``layers`` (``[[name, "w4a6" | "w8a8" | "w4" (embedding, or a layer reading an output
quantizer's grid) | "fp"], ...]`` in module order), its ``outputs`` (``[[point, "a6" | "off"],
...]``; absent in files written before output quantizers existed, whose spec rebuilds without
them) and the blob lengths, so a file that does not fit is refused with ``CheckpointError``.

Exactness: the fake-quant forward computes ``(clamp(round(x/s)+zi) - zi) * s`` in float32, so
storing ``q`` and ``s`` (float32) and rebuilding the float weight as ``q * s`` reproduces its
weights bit for bit; activation steps are stored in float32 and zero points exactly (above). With the default
``float_dtype="float16"``, ``pack_model`` first *rounds the model's own float tensors to
float16-representable values in place* (documented side effect; relative change <= 2^-11), so
the model you keep and the file agree exactly; ``float32`` never modifies the model.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import SAFETENSORS_METADATA, CheckpointError, load_weights, read_sidecar, save_weights
from .modules import master_weight
from .outputs import OUT_ATTR
from .quantize import out_quantizers, quant_modules, quantize_model
from .spec import QuantSpec

PACK_FORMAT = "qdbev-packed-v1"
"""Sidecar ``format`` of a packed low-bit model (every layout)."""

PACK_LAYOUT = 2
"""Blob layout ``pack_model`` writes (sidecar ``pack_layout``; absent = 1); ``unpack_model`` reads
layouts 1 and 2 (module doc)."""

_FP16_MAX = 65504.0
_FP16_TINY = 2.0**-14


def _nibble_pack(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 ``(N,)`` -> ``(ceil(N/2),)`` bytes, low nibble first."""
    c = codes.to(torch.uint8).reshape(-1)
    if c.numel() % 2:
        c = torch.cat([c, c.new_zeros(1)])
    c = c.view(-1, 2)
    return c[:, 0] | (c[:, 1] << 4)


def _nibble_unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of ``_nibble_pack``: the first ``n`` codes (uint8)."""
    p = packed.to(torch.uint8).reshape(-1)
    out = torch.stack([p & 0xF, p >> 4], dim=1).reshape(-1)
    return out[:n]


def _fits_fp16(v: torch.Tensor, normal: bool = False) -> bool:
    """All finite and within float16's range (``normal``: also no magnitude below 2^-14)."""
    if v.numel() == 0:
        return True
    a = v.abs()
    ok = bool(torch.isfinite(v).all()) and float(a.max()) <= _FP16_MAX
    return ok and (not normal or float(a.min()) >= _FP16_TINY)


def _layer_tag(m: nn.Module) -> str:
    w = m.wq.bits if m.wq.is_enabled else None
    a = m.aq.bits if m.aq is not None and m.aq.is_enabled else None
    if w is None:
        return "fp"
    return f"w{w}" + (f"a{a}" if a is not None else "")


def _parse_tag(tag: str) -> tuple[int | None, int | None]:
    if tag == "fp":
        return None, None
    w, _, a = tag[1:].partition("a")
    return int(w), (int(a) if a else None)


def _skip_key(key: str, qnames: set[str], pnames: set[str] = frozenset()) -> bool:
    """Quantizer bookkeeping keys (``<layer>.wq.*`` / ``<layer>.aq.*`` / ``<point>.oq.*``)."""
    for part, names in ((".wq.", qnames), (".aq.", qnames), (f".{OUT_ATTR}.", pnames)):
        i = key.find(part)
        if i > 0 and key[:i] in names:
            return True
    return False


def _model_config_dict(model: nn.Module) -> dict | None:
    cfg = getattr(model, "cfg", None)
    return cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else None


def _narrowest_int(v: torch.Tensor) -> torch.Tensor:
    """``v`` (integers) in the narrowest of int8 / int16 / int32 / int64 that holds every value."""
    if v.numel() == 0:
        return v.to(torch.int64)
    lo, hi = int(v.min()), int(v.max())
    for dt in (torch.int8, torch.int16, torch.int32):
        info = torch.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return v.to(dt)
    return v.to(torch.int64)


def _exact_fp16_or_fp32(v: torch.Tensor) -> torch.Tensor:
    """``v`` (float32) as float16 when the round trip keeps every bit (the sign of ``-0.0`` too),
    else unchanged."""
    h = v.half()
    return h if torch.equal(h.float().view(torch.int32), v.view(torch.int32)) else v


@dataclass
class _Blobs:
    """What ``pack_model`` collects, blob by blob (module doc), plus the sidecar's layout lists."""

    w4: list[torch.Tensor] = field(default_factory=list)
    w8: list[torch.Tensor] = field(default_factory=list)
    w_scale: list[torch.Tensor] = field(default_factory=list)
    w_scale32: list[torch.Tensor] = field(default_factory=list)
    act: list[torch.Tensor] = field(default_factory=list)
    act_zp: list[torch.Tensor] = field(default_factory=list)
    floats: list[torch.Tensor] = field(default_factory=list)
    floats32: list[torch.Tensor] = field(default_factory=list)
    ints: list[torch.Tensor] = field(default_factory=list)
    layers: dict[str, str] = field(default_factory=dict)
    outputs: list[list[str]] = field(default_factory=list)
    scale32_layers: list[str] = field(default_factory=list)
    float32_keys: list[str] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)

    def add_act(self, q) -> None:
        self.act.append(q.effective_step().detach().float().reshape(-1))
        self.act_zp.append(q.effective_zero_point().detach().float().reshape(-1))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The safetensors dict: one tensor per non-empty blob."""
        out: dict[str, torch.Tensor] = {}
        if self.w4:
            out["w4"] = _nibble_pack(torch.cat(self.w4))
        for name in ("w8", "w_scale", "w_scale32", "act", "floats", "floats32"):
            if getattr(self, name):
                out[name] = torch.cat(getattr(self, name))
        if self.act_zp:
            out["act_zp"] = _exact_fp16_or_fp32(torch.cat(self.act_zp))
        if self.ints:
            out["ints"] = _narrowest_int(torch.cat(self.ints))
        return out


def _check_packable(qmodel: nn.Module, float_dtype: str) -> tuple[QuantSpec, dict, list, list]:
    """``(spec, config dict, quant_modules, out_quantizers)``; ``ValueError`` if it cannot be packed."""
    if float_dtype not in ("float16", "float32"):
        raise ValueError(f"float_dtype must be 'float16' or 'float32', got {float_dtype!r}")
    spec: QuantSpec | None = getattr(qmodel, "quant_spec", None)
    if spec is None:
        raise ValueError("model has no quant_spec: run quantize_model (and calibrate) before pack_model")
    cfg = _model_config_dict(qmodel)
    if cfg is None:
        raise ValueError("model has no .cfg with to_dict(); pack_model rebuilds BEVDetector models only")
    mods = quant_modules(qmodel)
    outs = out_quantizers(qmodel)
    for n, m in mods:
        for q in (m.wq, m.aq):
            if q is not None and q.is_enabled and not q.is_initialized:
                raise ValueError(f"{n}: quantizer enabled but never initialised; run calibrate() first")
    for n, q in outs:
        if q.is_enabled and not q.is_initialized:
            raise ValueError(f"{n}: output quantizer enabled but never initialised; run calibrate() first")
    return spec, cfg, mods, outs


def _pack_layers(mods: list, b: _Blobs, float_dtype: str) -> None:
    """Weight codes and steps of every quantized layer, then its input quantizer's step / zero point.

    float16 storage rounds the layer's own steps in place when they fit (module doc)."""
    for n, m in mods:
        tag = _layer_tag(m)
        b.layers[n] = tag
        w_bits, a_bits = _parse_tag(tag)
        if w_bits is not None:
            wt = master_weight(m)
            step = m.wq.effective_step().detach().float().reshape(-1)
            if float_dtype == "float16" and _fits_fp16(step, normal=True):
                step = step.half()
                m.wq.step.copy_(step.float())  # round the model's steps first (see module doc)
                b.w_scale.append(step)
            elif float_dtype == "float16":
                b.scale32_layers.append(n)
                b.w_scale32.append(step)
            else:
                b.w_scale.append(step)
            q = m.wq.integers(wt).reshape(-1)
            if w_bits <= 4:
                b.w4.append((q - m.wq.qmin).to(torch.uint8))
            else:
                b.w8.append(q.to(torch.int8))
            b.handled.add(n + ".weight")
        if a_bits is not None:
            b.add_act(m.aq)


def _pack_output_quantizers(outs: list, b: _Blobs) -> None:
    """The sidecar's ``outputs`` list and the enabled output quantizers' steps / zero points."""
    for n, q in outs:
        b.outputs.append([n, f"a{q.bits}" if q.is_enabled else "off"])
        if q.is_enabled:
            b.add_act(q)


def _pack_other_tensors(qmodel: nn.Module, mods: list, outs: list, b: _Blobs, float_dtype: str) -> None:
    """Every state-dict tensor not stored yet and not quantizer bookkeeping: floats (rounded to
    float16 in place when they fit, see module doc) and integer buffers."""
    qnames, pnames = {n for n, _ in mods}, {n for n, _ in outs}
    for k, v in qmodel.state_dict().items():
        if k in b.handled or _skip_key(k, qnames, pnames):
            continue
        if not v.is_floating_point():
            b.ints.append(v.detach().to(torch.int64).reshape(-1))
            continue
        v32 = v.detach().float().reshape(-1)
        if float_dtype == "float32":
            b.floats.append(v32)
        elif _fits_fp16(v32):
            h = v32.half()
            v.copy_(h.to(v.dtype).view_as(v))  # round the model itself (see module doc)
            b.floats.append(h)
        else:
            b.float32_keys.append(k)
            b.floats32.append(v32)


def pack_model(
    qmodel: nn.Module, path: str | Path, meta: dict[str, Any] | None = None, float_dtype: str = "float16"
) -> dict[str, Any]:
    """Write ``qmodel`` (after ``quantize_model`` + calibration/QAT) as a packed low-bit file.

    ``meta`` is merged into the sidecar (with ``format``, ``pack_layout``, ``config``,
    ``quant_spec``, ``precision``, ``float_dtype``, ``layers``, ``outputs``, ``float32_keys``,
    ``scale32_layers``); returns the sidecar dict. Raises ``ValueError`` when an enabled quantizer
    was never initialised (calibrate first) or the model was not quantized. See the module doc
    for the float16 in-place rounding.
    """
    spec, cfg, mods, outs = _check_packable(qmodel, float_dtype)
    b = _Blobs()
    with torch.no_grad():
        _pack_layers(mods, b, float_dtype)
        _pack_output_quantizers(outs, b)
        _pack_other_tensors(qmodel, mods, outs, b, float_dtype)

    from ..classes import CLASS_NAMES

    side = {"classes": list(CLASS_NAMES)}
    side.update(meta or {})
    side.update({
        "format": PACK_FORMAT,
        "pack_layout": PACK_LAYOUT,
        "config": cfg,
        "quant_spec": spec.to_dict(),
        "precision": spec.name,
        "float_dtype": float_dtype,
        "layers": [[n, t] for n, t in b.layers.items()],
        "outputs": b.outputs,
        "float32_keys": b.float32_keys,
        "scale32_layers": b.scale32_layers,
    })
    return save_weights(b.tensors(), path, side)


class _Reader:
    def __init__(self, name: str, t: torch.Tensor | None, path: Path):
        self.name, self.t, self.pos, self.path = name, t, 0, path

    def take(self, n: int) -> torch.Tensor:
        have = 0 if self.t is None else self.t.shape[0]
        if self.pos + n > have:
            raise CheckpointError(
                f"{self.path}: blob '{self.name}' too short ({have} entries, layout needs more): "
                "the file does not fit the model config / quant spec in its sidecar"
            )
        out = self.t[self.pos : self.pos + n]
        self.pos += n
        return out

    def check_done(self) -> None:
        have = 0 if self.t is None else self.t.shape[0]
        if self.pos != have:
            raise CheckpointError(f"{self.path}: blob '{self.name}' has {have - self.pos} unused entries; layout mismatch")


def _as_act_rows(state: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The blobs with ``act`` as float32 ``(A, 2)`` rows ``[step, zero_point]`` (layout 1's form)
    whatever the file's ``pack_layout``; ``CheckpointError`` for an unknown layout or misshapen blobs."""
    layout = meta.get("pack_layout", 1)
    if layout not in (1, 2):
        raise CheckpointError(f"{path}: packed layout {layout!r} is newer than this qdbev reads (1, {PACK_LAYOUT}); "
                              "update qdbev to load it")
    state = dict(state)
    act, zp = state.get("act"), state.pop("act_zp", None)
    if layout == 1:
        if zp is not None or (act is not None and (act.dim() != 2 or act.shape[1] != 2)):
            raise CheckpointError(f"{path}: blob 'act' is not layout 1's (A, 2) [step, zero_point] rows "
                                  "(sidecar without pack_layout)")
        return state
    if act is None and zp is None:
        return state
    if act is None or zp is None or act.dim() != 1 or zp.shape != act.shape:
        raise CheckpointError(f"{path}: blobs 'act' / 'act_zp' missing or of different lengths (layout 2)")
    state["act"] = torch.stack([act.float(), zp.float()], dim=1)
    return state


def unpack_model(path: str | Path, expected_sha256: str | None = None) -> nn.Module:
    """Rebuild the fake-quant ``BEVDetector`` from a packed file (eval mode, CPU).

    Its outputs equal those of the model that was packed (bitwise, in eval mode). The file is
    verified first (``checkpoint.load_weights``: sha256 against the sidecar and
    ``expected_sha256``); any mismatch, truncation or layout error raises ``CheckpointError``.
    """
    path = Path(path)
    state, meta = load_weights(path, expected_sha256)
    if meta.get("format") != PACK_FORMAT:
        raise CheckpointError(f"{path}: not a packed low-bit model (sidecar format {meta.get('format')!r}, want {PACK_FORMAT!r})")
    model, mods, outs = _rebuild_fake_quant_model(meta, path)
    layers = {n: t for n, t in meta["layers"]}
    rd = _blob_readers(_as_act_rows(state, meta, path), mods, layers, path)
    qnames, pnames = {n for n, _ in mods}, {n for n, _ in outs}
    with torch.no_grad():
        handled = _unpack_layers(mods, layers, rd, set(meta.get("scale32_layers", [])))
        _unpack_output_quantizers(outs, meta.get("outputs", []), rd)
        _unpack_other_tensors(model, rd, handled, qnames, pnames, set(meta.get("float32_keys", [])))
    for r in rd.values():
        r.check_done()
    return model.eval()


def _rebuild_fake_quant_model(meta: dict, path: Path) -> tuple[nn.Module, list, list]:
    """The sidecar's config and quant spec as a fake-quant model; its layers and output quantizers
    must be the ones the sidecar lists, in order."""
    from ..model import BEVDetector
    from ..model.config import ModelConfig

    model = BEVDetector(ModelConfig.from_dict(meta["config"]))
    quantize_model(model, QuantSpec.from_dict(meta["quant_spec"]))
    mods = quant_modules(model)
    if [n for n, _ in mods] != [n for n, _ in meta["layers"]]:
        raise CheckpointError(f"{path}: quantized layers of the rebuilt model do not match the sidecar's 'layers'")
    outs = out_quantizers(model)
    if [n for n, _ in outs] != [n for n, _ in meta.get("outputs", [])]:
        raise CheckpointError(f"{path}: output quantizers of the rebuilt model do not match the sidecar's 'outputs'")
    return model, mods, outs


def _blob_readers(state: dict, mods: list, layers: dict, path: Path) -> dict[str, "_Reader"]:
    """One sequential reader per blob; the 4-bit nibble stream is expanded once."""
    rd = {k: _Reader(k, state.get(k), path) for k in ("w4", "w8", "w_scale", "w_scale32", "act", "floats", "floats32", "ints")}
    if "w4" in state:
        n4 = sum(master_weight(m).numel() for n, m in mods if (_parse_tag(layers[n])[0] or 99) <= 4)
        if state["w4"].numel() != (n4 + 1) // 2:
            raise CheckpointError(f"{path}: blob 'w4' has {state['w4'].numel()} bytes, layout needs {(n4 + 1) // 2}")
        rd["w4"] = _Reader("w4", _nibble_unpack(state["w4"], n4), path)
    return rd


def _unpack_layers(mods: list, layers: dict, rd: dict, s32: set[str]) -> set[str]:
    """Weights (integer codes x per-channel steps) and input quantizers of every quantized layer;
    returns the state-dict keys written."""
    handled: set[str] = set()
    for n, m in mods:
        w_bits, a_bits = _parse_tag(layers[n])
        wt = master_weight(m)
        if w_bits is None:
            m.wq.set_enabled(False)
            if m.aq is not None:
                m.aq.set_enabled(False)
            continue
        m.wq.bits = w_bits
        m.wq.set_enabled(True)
        if w_bits <= 4:
            q = rd["w4"].take(wt.numel()).to(torch.float32) + m.wq.qmin
        else:
            q = rd["w8"].take(wt.numel()).to(torch.float32)
        c = wt.shape[m.wq.ch_axis]
        s = rd["w_scale32" if n in s32 else "w_scale"].take(c).to(torch.float32)
        shape = [1] * wt.dim()
        shape[m.wq.ch_axis] = -1
        wt.copy_(q.view(wt.shape) * s.view(shape))
        m.wq.step.copy_(s)
        m.wq.set_initialized(True)
        handled.add(n + ".weight")
        if m.aq is not None:
            if a_bits is None:
                m.aq.set_enabled(False)
            else:
                _set_act_quantizer(m.aq, a_bits, rd["act"].take(1)[0])
    return handled


def _set_act_quantizer(q: nn.Module, bits: int, step_zp: torch.Tensor) -> None:
    """Enable an activation quantizer with its stored (step, zero point)."""
    q.bits = bits
    q.step.copy_(step_zp[0])
    q.zero_point.copy_(step_zp[1])
    q.set_enabled(True)
    q.set_initialized(True)


def _unpack_output_quantizers(outs: list, tags: list, rd: dict) -> None:
    """The output quantizers in the sidecar's order ("off" or "a<bits>")."""
    for (_, q), (_, tag) in zip(outs, tags, strict=True):
        if tag == "off":
            q.set_enabled(False)
            continue
        _set_act_quantizer(q, int(tag[1:]), rd["act"].take(1)[0])


def _unpack_other_tensors(model: nn.Module, rd: dict, handled: set[str], qnames: set[str], pnames: set[str],
                          f32_keys: set[str]) -> None:
    """Every other state-dict tensor (biases, norms, embeddings, counters) in state-dict order."""
    for k, v in model.state_dict().items():
        if k in handled or _skip_key(k, qnames, pnames):
            continue
        if v.is_floating_point():
            src = rd["floats32"] if k in f32_keys else rd["floats"]
            v.copy_(src.take(v.numel()).to(v.dtype).view_as(v))
        else:
            v.copy_(rd["ints"].take(v.numel()).to(v.dtype).view_as(v))


def _fp32_file_bytes(cfg_dict: dict) -> int:
    """Size of the fp32 safetensors file ``checkpoint.save_weights`` writes for this config."""
    from safetensors.torch import save

    from ..model import BEVDetector
    from ..model.config import ModelConfig

    state = {k: v.contiguous() for k, v in BEVDetector(ModelConfig.from_dict(cfg_dict)).state_dict().items()}
    return len(save(state, metadata=SAFETENSORS_METADATA))


def model_size_report(model_or_path: nn.Module | str | Path, float_dtype: str = "float16") -> dict[str, Any]:
    """fp32 vs packed size of a quantized model (packed to a temporary file) or a packed file.

    Returns ``fp32_bytes`` (the fp32 safetensors file of the same config, as ``save_weights``
    writes it), ``packed_bytes`` (packed safetensors file on disk), ``sidecar_bytes``,
    ``ratio = fp32_bytes / packed_bytes``, ``fp32_mb`` / ``packed_mb`` (10^6 bytes), and
    ``params_by_bits`` (``{"w4": n, "w8": n, "fp": n}`` weight elements per width).
    """
    if isinstance(model_or_path, nn.Module):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "packed.safetensors"
            pack_model(copy.deepcopy(model_or_path), p, float_dtype=float_dtype)
            return model_size_report(p)
    p = Path(model_or_path)
    side = read_sidecar(p)
    if side.get("format") != PACK_FORMAT:
        raise CheckpointError(f"{p}: not a packed low-bit model")
    packed = p.stat().st_size
    fp32 = _fp32_file_bytes(side["config"])
    state, _ = load_weights(p)
    del state
    by_bits: dict[str, int] = {}
    # weight elements per width, from the rebuilt layout
    from ..model import BEVDetector
    from ..model.config import ModelConfig

    with torch.device("meta"):
        ref = BEVDetector(ModelConfig.from_dict(side["config"]))
    mods = dict(ref.named_modules())
    for n, tag in side["layers"]:
        w, _ = _parse_tag(tag)
        key = "fp" if w is None else f"w{w}"
        by_bits[key] = by_bits.get(key, 0) + int(mods[n].weight.numel())
    return {
        "fp32_bytes": fp32,
        "packed_bytes": packed,
        "sidecar_bytes": p.with_suffix(".json").stat().st_size,
        "ratio": fp32 / packed,
        "fp32_mb": fp32 / 1e6,
        "packed_mb": packed / 1e6,
        "float_dtype": side.get("float_dtype"),
        "precision": side.get("precision"),
        "params_by_bits": by_bits,
    }
