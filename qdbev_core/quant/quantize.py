"""Turn a float model into a fake-quantized one, stage it, and calibrate its step sizes.

Typical use (standard QAT)::

    model = BEVDetector("nano"); load fp32 weights
    quantize_model(model, QuantSpec())                 # in place; returns model
    calibrate(model, batches)                          # a few batches -> initial steps
    ... train as usual (quantizer steps / zero points are Parameters; no weight decay on them:
        see ``quantizer_parameters``)

With ``spec.quantize_outputs`` (the default) ``quantize_model`` also attaches the output
quantizers of ``quant.outputs`` (block / branch / shortcut / stem / FPN outputs) and drops the
input quantizers of the layers that read those outputs; every function here treats an output
quantizer like the quantizers of the layer it sits on (stage by name prefix, calibrated on the
same pass, enabled and disabled together).

Progressive QAT (the paper's baseline): ``quantize_model(model, spec, only_prefixes=spec.stages[0])``
swaps every layer but enables only the first stage's quantizers (the others pass through in
full precision); after training a stage, ``calibrate(model, batches, only_prefixes=next_stage)``
then ``enable_stage(model, next_stage)``. Swapping everything up front keeps the parameter set
(and so the optimizer) fixed for the whole run.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .lsq import LsqQuantizer
from .modules import QUANT_TYPES, QuantConv2d, QuantEmbedding, QuantLinear, master_weight
from .outputs import OUT_ATTR, attach, output_points, plan
from .spec import QuantSpec, _is_target

_CLASSES = {"conv": QuantConv2d, "linear": QuantLinear, "embedding": QuantEmbedding}


def _match(name: str, prefixes: Sequence[str] | str | None) -> bool:
    if prefixes is None:
        return True
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    return any(name.startswith(p) for p in prefixes)


def quant_modules(model: nn.Module, prefixes: Sequence[str] | str | None = None) -> list[tuple[str, nn.Module]]:
    """``[(name, layer)]`` of the quantized layers (``named_modules`` order), optionally by prefix."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QUANT_TYPES) and _match(n, prefixes)]


def out_quantizers(model: nn.Module, prefixes: Sequence[str] | str | None = None) -> list[tuple[str, LsqQuantizer]]:
    """``[(point name, quantizer)]`` of the output quantizers (``quant.outputs``), optionally by prefix."""
    return [(n, q) for n, q in output_points(model) if _match(n, prefixes)]


def quantizers(model: nn.Module, prefixes: Sequence[str] | str | None = None) -> list[tuple[str, LsqQuantizer]]:
    """``[(name, quantizer)]``: ``<layer>.wq`` and ``<layer>.aq`` of every quantized layer, then
    ``<point>.oq`` of every output quantizer."""
    out = []
    for n, m in quant_modules(model, prefixes):
        out.append((n + ".wq", m.wq))
        if m.aq is not None:
            out.append((n + ".aq", m.aq))
    out += [(f"{n}.{OUT_ATTR}", q) for n, q in out_quantizers(model, prefixes)]
    return out


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Steps and zero points (put them in an optimizer group without weight decay)."""
    return [p for _, q in quantizers(model) for p in q.parameters()]


def quantize_model(
    model: nn.Module,
    spec: QuantSpec | None = None,
    only_prefixes: Sequence[str] | str | None = None,
    inplace: bool = True,
) -> nn.Module:
    """Swap every Conv2d / Linear (and Embedding, per ``spec``) for its fake-quant version.

    Covers attention projections, sampling-offset and attention-weight layers (all
    ``nn.Linear`` in this model). Layers matching ``spec.skip`` stay float. Modifies ``model``
    in place and returns it (``inplace=False`` works on a deep copy and returns that). The spec
    is kept as ``model.quant_spec`` (pack writes it to the sidecar).

    ``only_prefixes``: enable only the quantizers of layers whose name starts with one of these
    (progressive QAT); the rest are swapped but pass through until ``enable_stage``. ``None``
    enables all.

    With ``spec.quantize_outputs``: output quantizers at the points of ``quant.outputs.plan``
    (minus ``spec.skip``), and no input quantizer on the layers that read a point's output.

    Quantizers start uninitialised: call ``calibrate`` (otherwise each initialises itself from
    the first tensor it sees).
    """
    spec = spec or QuantSpec()
    if not inplace:
        model = copy.deepcopy(model)
    todo = []
    for name, m in model.named_modules():
        if isinstance(m, QUANT_TYPES) or not name:
            continue
        kind = _is_target(m, spec.quantize_embeddings)
        if kind is None:
            continue
        bits = spec.bits_for(name)
        if bits is not None:
            todo.append((name, m, kind, bits))
    for name, m, kind, (wb, ab) in todo:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _CLASSES[kind].from_float(m, wb, ab))
    if spec.quantize_outputs:
        points, shared = plan(model)
        dev = next(iter(model.parameters())).device
        done = {n for n, _ in output_points(model)}
        for p in points:
            bits = spec.output_bits(p)
            if bits is not None and p not in done:
                attach(model, p, LsqQuantizer(bits, "act").to(dev))
                done.add(p)
        for consumer, producer in shared.items():
            m = model.get_submodule(consumer)
            if producer in done and isinstance(m, (QuantConv2d, QuantLinear)):
                m.aq = None
                m.shared_input_from = producer
    model.quant_spec = spec
    if only_prefixes is not None:
        set_quant_enabled(model, False)
        enable_stage(model, only_prefixes)
    return model


def set_quant_enabled(model: nn.Module, enabled: bool, prefixes: Sequence[str] | str | None = None) -> list[str]:
    """Enable / disable the quantizers of the layers and output points under ``prefixes`` (all when None).

    Returns the names whose state changed: layers, then output quantizers as ``<point>.oq``.
    """
    changed = []
    for n, m in quant_modules(model, prefixes):
        if m.wq.is_enabled != enabled:
            changed.append(n)
        m.wq.set_enabled(enabled)
        if m.aq is not None:
            m.aq.set_enabled(enabled)
    for n, q in out_quantizers(model, prefixes):
        if q.is_enabled != enabled:
            changed.append(f"{n}.{OUT_ATTR}")
        q.set_enabled(enabled)
    return changed


def enable_stage(model: nn.Module, prefixes: Sequence[str] | str) -> list[str]:
    """Turn on the quantizers of the layers (and output points) whose names start with ``prefixes``
    (progressive QAT). Others are left as they are. Returns the names that were switched on.
    """
    return set_quant_enabled(model, True, prefixes)


def enabled_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose weight quantizer is on."""
    return [n for n, m in quant_modules(model) if m.wq.is_enabled]


def _default_forward(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[Any],
    forward_fn: Callable[[nn.Module, Any], Any] | None = None,
    only_prefixes: Sequence[str] | str | None = None,
    spec: QuantSpec | None = None,
) -> dict[str, Any]:
    """Initialise step sizes from data (a short pass, no gradients, model in eval mode).

    Weight steps come from the current weights (``spec.weight_init``); activation steps and
    zero points from the inputs each quantized layer sees (and the tensors each output quantizer
    sees) over ``batches`` (``spec.act_init``:
    MSE-optimal clipping of the observed range on a random subsample). While observing, the
    calibrated layers' quantizers pass through; other *enabled* quantizers quantize, so a
    later progressive stage is calibrated on the already-quantized earlier stages.

    ``batches``: iterable of model inputs: dict (``model(**b)``), tuple (``model(*b)``), or
    anything ``forward_fn(model, b)`` accepts. Returns ``{"weights": n, "acts": n (input and
    output quantizers), "outputs": n (output quantizers), "unseen": [layer / point names whose
    tensor was never seen]}``.
    """
    spec = spec or getattr(model, "quant_spec", None) or QuantSpec()
    forward_fn = forward_fn or _default_forward
    mods = quant_modules(model, only_prefixes)
    acts_q = [(n, m.aq) for n, m in mods if m.aq is not None] + out_quantizers(model, only_prefixes)
    for _, m in mods:
        m.wq.init_weight(master_weight(m), spec.weight_init)
    for _, q in acts_q:
        q.start_observing()
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            forward_fn(model, batch)
    finally:
        for _, q in acts_q:
            q.stop_observing()
        model.train(was_training)
    unseen = []
    acts = 0
    for n, q in acts_q:
        if q.init_from_observations(spec.act_init):
            acts += 1
        else:
            unseen.append(n)
    n_out = len(acts_q) - sum(1 for _, m in mods if m.aq is not None)
    return {"weights": len(mods), "acts": acts, "outputs": n_out, "unseen": unseen}


def weights_changed(before: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Names of state-dict tensors of ``model`` that differ from the ``before`` snapshot."""
    now = model.state_dict()
    return [k for k, v in now.items() if k in before and not torch.equal(before[k], v)]
