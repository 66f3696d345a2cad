"""A printable table of the named model configs with parameter and FLOP counts.

Kept apart from ``config.py`` because counting builds the model (``flops.py`` imports
``detector.py``, which imports ``config.py``).
"""

from __future__ import annotations

from .config import CONFIGS, REFERENCE_PARAMS_M, get_config
from .flops import count_flops, count_parameters


def describe(names: list[str] | None = None, with_counts: bool = True) -> str:
    """A printable table of the named configs (and, with ``with_counts``, parameters / GFLOPs).

    Counting builds each model on the ``meta`` device, so it needs no memory and no compute.
    """
    names = list(CONFIGS) if names is None else names
    cols = [
        ("backbone", lambda c: f"R{c.depth}" + ("" if c.width == 1.0 else f"x{c.width:g}")),
        ("stages", lambda c: ",".join(f"C{s + 1}" for s in c.out_stages)),
        ("levels", lambda c: str(c.num_levels)),
        ("input HxW", lambda c: f"{c.image_size[0]}x{c.image_size[1]}"),
        ("BEV", lambda c: f"{c.bev_h}x{c.bev_w}"),
        ("cell m", lambda c: f"{c.bev_cell[0]:.2f}"),
        ("C", lambda c: str(c.embed_dims)),
        ("ffn", lambda c: str(c.ffn_dims)),
        ("enc", lambda c: str(c.enc_layers)),
        ("dec", lambda c: str(c.dec_layers)),
        ("queries", lambda c: str(c.num_queries)),
        ("q-init", lambda c: c.query_init),
    ]
    rows = []
    for n in names:
        c = CONFIGS[n] if n in CONFIGS else get_config(n)
        row = [n] + [f(c) for _, f in cols]
        if with_counts:
            p = count_parameters(c)
            ref = REFERENCE_PARAMS_M.get(n)
            row.append(f"{p / 1e6:.2f}")
            row.append(f"{ref:.1f}" if ref else "-")
            row.append(f"{count_flops(c) / 1e9:.1f}")
        rows.append(row)
    header = ["config"] + [h for h, _ in cols] + (["params M", "ref M", "GFLOPs"] if with_counts else [])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in rows]
    lines.append("")
    lines += [f"{n}: {(CONFIGS[n] if n in CONFIGS else get_config(n)).notes}" for n in names]
    return "\n".join(lines)


__all__ = ["describe"]
