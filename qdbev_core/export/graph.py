"""ONNX graph passes and queries used by the exporter and its tests (``onnx`` helpers only)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _maps(graph):
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            if i:
                consumers[i].append(n)
    return producers, consumers


def _attr(node, name, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def fold_batchnorm_into_qdq_conv(model) -> list[str]:
    """Fold ``BatchNormalization`` into a preceding ``DequantizeLinear(int8 W, axis 0) -> Conv``.

    Conv output = ``sum q * s_c * x``; BN = ``(y - mean) * f + beta`` with ``f = gamma /
    sqrt(var + eps)``. So the codes ``q`` stay, the scale becomes ``|s_c f_c|`` (codes of
    channels with ``f_c < 0`` change sign; a channel holding -128 cannot, and its conv keeps
    the BN), and the bias becomes ``(b - mean) f + beta``. Only folds when the conv output
    feeds nothing but the BN and every BN / DQ operand is an initializer. Modifies ``model``
    in place; returns the names of the BN nodes folded.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers, consumers = _maps(g)
    outputs = {o.name for o in g.output}
    folded, remove = [], []
    for k, bn in enumerate(list(g.node)):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 and any(bn.output[1:]):
            continue
        conv = producers.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(consumers[conv.output[0]]) != 1 or conv.output[0] in outputs:
            continue
        dq = producers.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or len(consumers[dq.output[0]]) != 1:
            continue
        if int(_attr(dq, "axis", 1)) != 0 or not all(i in inits for i in dq.input):
            continue
        if not all(i in inits for i in bn.input[1:5]):
            continue
        q = numpy_helper.to_array(inits[dq.input[0]]).copy()
        if q.dtype != np.int8:
            continue
        s = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        eps = float(_attr(bn, "epsilon", 1e-5))
        f = gamma / np.sqrt(var + eps)
        neg = f < 0
        flat = q.reshape(q.shape[0], -1)
        if np.any(flat[neg] == -128):
            continue
        flat[neg] = -flat[neg]
        zero = f == 0
        flat[zero] = 0
        new_s = np.where(zero, s, np.abs(s * f)).astype(np.float32)
        has_bias = len(conv.input) > 2 and conv.input[2]
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros_like(mean)
        new_b = ((b - mean) * f + beta).astype(np.float32)
        base = conv.name or f"conv{k}"
        names = (f"{base}.w_q_bnfold", f"{base}.w_scale_bnfold", f"{base}.bias_bnfold")
        g.initializer.extend([
            numpy_helper.from_array(flat.reshape(q.shape), names[0]),
            numpy_helper.from_array(new_s, names[1]),
            numpy_helper.from_array(new_b, names[2]),
        ])
        dq.input[0], dq.input[1] = names[0], names[1]
        if has_bias:
            conv.input[2] = names[2]
        else:
            conv.input.append(names[2])
        conv.output[0] = bn.output[0]
        remove.append(bn)
        folded.append(bn.name)
    for n in remove:
        g.node.remove(n)
    drop_unused_initializers(model)
    return folded


def inline_initializer_identities(model) -> int:
    """Bypass ``Identity`` nodes that copy an initializer (the exporter's de-duplication of equal
    constants): their consumers read the initializer itself. Returns how many were removed."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    outputs = {o.name for o in g.output}
    alias = {}
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs:
            alias[n.output[0]] = n.input[0]
    if not alias:
        return 0
    keep = [n for n in g.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        for k, i in enumerate(n.input):
            if i in alias:
                n.input[k] = alias[i]
    del g.node[:]
    g.node.extend(keep)
    return len(alias)


def drop_unused_initializers(model) -> int:
    """Remove initializers no node (or graph output) reads; returns how many."""
    g = model.graph
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    n = len(g.initializer) - len(keep)
    if n:
        del g.initializer[:]
        g.initializer.extend(keep)
    return n


def op_counts(model) -> dict[str, int]:
    """``{op_type: count}`` of the graph's nodes."""
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def descendants(model, start: set[str]) -> set[str]:
    """Names of the nodes reachable from the tensors ``start`` (node name or first output)."""
    _, consumers = _maps(model.graph)
    seen_t, seen_n, todo = set(start), set(), list(start)
    while todo:
        t = todo.pop()
        for n in consumers.get(t, []):
            key = n.name or n.output[0]
            if key in seen_n:
                continue
            seen_n.add(key)
            for o in n.output:
                if o not in seen_t:
                    seen_t.add(o)
                    todo.append(o)
    return seen_n


def quantized_layers(model) -> list[dict]:
    """Conv / MatMul / Gemm nodes and where their inputs come from.

    One row per node: ``{"name", "op", "weight": "dq" | "init" | "other", "act": "dq" | "other",
    "weight_dq"}`` (``dq``: the operand is a ``DequantizeLinear`` output; ``weight_dq``: that DQ
    node's name, which carries the exporting module's scope, e.g. ``/model/neck/fpn_convs.0/wx/...``).
    """
    g = model.graph
    producers, _ = _maps(g)
    inits = {i.name for i in g.initializer}
    rows = []
    for n in g.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm"):
            continue

        def kind(t):
            p = producers.get(t)
            if p is not None and p.op_type == "DequantizeLinear":
                return "dq"
            return "init" if t in inits else "other"

        wp = producers.get(n.input[1])
        src = (wp.name or wp.output[0]) if wp is not None and wp.op_type == "DequantizeLinear" else None
        rows.append({"name": n.name or n.output[0], "op": n.op_type, "act": kind(n.input[0]),
                     "weight": kind(n.input[1]), "weight_dq": src})
    return rows


def _feeds_quantize(node, consumers, outputs) -> bool:
    """True when ``node``'s only consumer is a QuantizeLinear, directly or through one Relu/Clip."""
    out = node.output[0]
    if out in outputs:
        return False
    cons = consumers.get(out, [])
    if len(cons) != 1:
        return False
    nxt = cons[0]
    if nxt.op_type == "QuantizeLinear":
        return True
    if nxt.op_type in ("Relu", "Clip") and nxt.output[0] not in outputs:
        c2 = consumers.get(nxt.output[0], [])
        return len(c2) == 1 and c2[0].op_type == "QuantizeLinear"
    return False


def fold_unfusable_weight_dq(model) -> list[str]:
    """onnxruntime-specific: turn ``DQ(int8 W)`` into a float initializer where no int8 kernel can use it.

    onnxruntime runs ``DQ -> Conv -> [Relu] -> Q`` as one int8 ``QLinearConv`` and ``DQ -> MatMul``
    (no Q) as ``MatMulIntegerToFloat``; a Q/DQ conv whose output is *not* quantized (a residual
    branch, the stem before its max-pool) stays a float conv, and then the runtime ``DQ`` on its
    weight both costs time every run and hides the constant weight from the NCHWc layout
    optimizer (measured here: those convs ran ~1.6x slower than in the fp32 graph). Replacing that
    DQ by its value ``q * s`` (float32, bit-identical to what DQ computes) keeps the arithmetic
    and restores the fast float path. Modifies ``model`` in place; returns the conv names.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers, consumers = _maps(g)
    outputs = {o.name for o in g.output}
    done, remove = [], []
    for n in list(g.node):
        if n.op_type != "Conv" or _feeds_quantize(n, consumers, outputs):
            continue
        dq = producers.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or len(consumers[dq.output[0]]) != 1:
            continue
        if not all(i in inits for i in dq.input if i):
            continue
        q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
        s = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else 0.0
        axis = int(_attr(dq, "axis", 1))
        shape = [1] * q.ndim
        if s.ndim:
            shape[axis] = -1
        w = ((q - np.reshape(zp, shape)) * np.reshape(s, shape)).astype(np.float32)
        name = (n.name or n.output[0]) + ".w_dequantized"
        g.initializer.append(numpy_helper.from_array(w, name))
        n.input[1] = name
        remove.append(dq)
        done.append(n.name or n.output[0])
    for d in remove:
        g.node.remove(d)
    drop_unused_initializers(model)
    return done
