"""Output quantization points: where the recipe quantizes a tensor that no Conv/Linear reads first.

``quantize_model`` quantizes the *inputs* of every Conv2d / Linear. That alone leaves the
outputs of the residual additions, of the shortcut (downsample) branches and of the last
convolution of each residual branch in float: an integer runtime then has to leave the integer
domain after those convolutions (``... Conv -> DequantizeLinear -> float Add / ReLU ->
QuantizeLinear -> ...``) and cannot run them as int8 kernels (onnxruntime keeps them as float
``Conv``; measured on nano: ~50 % of the int8 graph's time). With ``QuantSpec.quantize_outputs``
(default for new specs) the recipe adds one LSQ activation quantizer (kind ``"act"``, per-tensor
affine, learned step and zero point, calibrated like the others) at each of these *points*:

==========================  ====================================================================
point (module name)         tensor quantized (the module's forward output)
==========================  ====================================================================
``<resnet>.stem.relu``      stem conv + BN + ReLU, *before* the max-pool (max-pool of grid values
                            stays on the grid, so the first block reads integer values)
``<block>.bn2`` / ``bn3``   the residual branch's last conv + BN (BasicBlock / Bottleneck),
                            before the addition
``<block>.downsample.1``    the projection shortcut's conv + BN
``<block>``                 the block output ``relu(branch + shortcut)``
``<fpn>.fpn_convs.<i>``     the FPN output convolutions (the image-view features)
``<fpn>.extra_convs.<j>``   the FPN's extra stride-2 levels
==========================  ====================================================================

The quantizer is a child module ``oq`` of the point module (state-dict keys ``<point>.oq.step``
/ ``.zero_point`` / ``.enabled`` / ``.initialized``) applied by a forward hook on that module, so
the model code stays as it is and a float checkpoint still loads into the quantized model
(``strict=False``, the new keys are the quantizers'). The bits are the activation bits
``QuantSpec.bits_for(point)`` gives (6 in W4A6); a point matching ``QuantSpec.skip`` is left out.
A point belongs to the progressive-QAT stage of its name (``backbone.`` points to the backbone
stage, ``neck.`` points to the neck stage).

Shared inputs: a layer whose input *is* a point's output (each block's ``conv1`` and
``downsample.0`` read the previous block's output, or the stem's max-pooled output; the FPN's
``lateral_convs`` read the backbone's stage outputs) would only re-quantize an already quantized
tensor with a second step size. Those layers get no input quantizer of their own (``aq = None``):
they read the producer's grid, and the exported graph has exactly one ``QuantizeLinear`` per
tensor (``DQ -> Conv`` and ``DQ -> Add`` on the same DQ). ``shared_inputs`` lists them with their
producer. (Progressive QAT turns stages on in the order backbone -> neck, so a producer is always
enabled before its consumers.)
"""

from __future__ import annotations

from torch import nn

OUT_ATTR = "oq"
"""Name of the output quantizer child module of a point."""


def _apply_output_quantizer(module: nn.Module, inputs, output):
    """Forward hook of a point: ``output -> module.oq(output)`` (a module-level function, so
    deep copies and pickles of the model keep working)."""
    oq = module._modules.get(OUT_ATTR)
    return output if oq is None else oq(output)


def _resnet_plan(resnet: nn.Module, prefix: str) -> tuple[list[str], dict[str, str], dict[int, str]]:
    """Points of one ``ResNet``, its shared-input layers and the point producing each stage output."""
    from ..model.backbone import BasicBlock, Bottleneck

    points = [f"{prefix}stem.relu"]
    shared: dict[str, str] = {}
    stage_out: dict[int, str] = {}
    prev = points[0]
    for s in range(1, 5):
        layer = getattr(resnet, f"layer{s}", None)
        if layer is None:
            break
        for j, blk in enumerate(layer):
            name = f"{prefix}layer{s}.{j}"
            if not isinstance(blk, (BasicBlock, Bottleneck)):
                raise TypeError(f"{name}: unknown residual block type {type(blk).__name__}")
            shared[f"{name}.conv1"] = prev
            if blk.downsample is not None:
                shared[f"{name}.downsample.0"] = prev
                points.append(f"{name}.downsample.1")
            last_bn = "bn3" if isinstance(blk, Bottleneck) else "bn2"
            points += [f"{name}.{last_bn}", name]
            prev = name
        stage_out[s] = prev
    return points, shared, stage_out


def plan(model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """``(points, shared)`` for ``model`` before any ``skip`` is applied.

    ``points``: module names in ``named_modules`` order; ``shared``: ``{consumer layer: producer
    point}``. Recognises every ``model.backbone.ResNet`` and ``model.neck.FPN`` submodule; the
    FPN's lateral convolutions share the backbone's stage outputs only in a model whose
    ``backbone`` (a ResNet) feeds its ``neck`` (an FPN) directly, as ``BEVDetector`` does.
    """
    from ..model.backbone import ResNet
    from ..model.neck import FPN

    points: list[str] = []
    shared: dict[str, str] = {}
    stage_outs: dict[str, dict[int, str]] = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, ResNet):
            p, s, outs = _resnet_plan(m, prefix)
            points += p
            shared.update(s)
            stage_outs[name] = outs
        elif isinstance(m, FPN):
            points += [f"{prefix}fpn_convs.{i}" for i in range(len(m.fpn_convs))]
            points += [f"{prefix}extra_convs.{j}" for j in range(len(m.extra_convs))]
    backbone, neck = getattr(model, "backbone", None), getattr(model, "neck", None)
    if isinstance(backbone, ResNet) and isinstance(neck, FPN) and "backbone" in stage_outs:
        for i, s in enumerate(backbone.out_stages):
            if i < len(neck.lateral_convs):
                shared[f"neck.lateral_convs.{i}"] = stage_outs["backbone"][s]
    order = {n: k for k, (n, _) in enumerate(model.named_modules())}
    return sorted(points, key=order.__getitem__), shared


def output_points(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(point name, quantizer)]`` of the output quantizers ``quantize_model`` attached."""
    out = []
    for n, m in model.named_modules():
        q = m._modules.get(OUT_ATTR)
        if q is not None and has_hook(m):
            out.append((n, q))
    return out


def has_hook(m: nn.Module) -> bool:
    return any(h is _apply_output_quantizer for h in m._forward_hooks.values())


def attach(model: nn.Module, name: str, quantizer: nn.Module) -> None:
    """Make ``quantizer`` the output quantizer of the module called ``name`` (idempotent)."""
    m = model.get_submodule(name)
    if isinstance(m, nn.Sequential):  # a child of a Sequential would run inside it
        raise TypeError(f"{name}: output quantizers cannot sit on an nn.Sequential")
    m.add_module(OUT_ATTR, quantizer)
    if not has_hook(m):
        m.register_forward_hook(_apply_output_quantizer)
