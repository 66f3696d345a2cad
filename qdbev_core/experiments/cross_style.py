"""Cross-style benchmark: one or more models scored on the same val scenes rendered in several
SynthScenes appearance styles, with the official nuScenes devkit.

For each style a small dataset is generated with ``qdbev synth --style`` (same seed, so the same
scenes, objects, tables and lidar in every style: only the pixels differ) or taken from a given
dataroot; each model is run over its ``synth_val`` split by ``predict.predict_and_evaluate``
(the path ``qdbev eval`` and the paper table use). Writes ``<out>/cross-style.json`` (every
number, per-class AP included), ``<out>/cross-style.md`` (tables) and ``<out>/cross-style.png``
(NDS per style and model; per-class AP heat map per model). Scores are cached per (model file
sha256, dataset tables); generated splits are reused when their config matches.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..classes import CLASS_NAMES

DEFAULT_STYLES = ("default", "overcast", "dusk", "harsh", "swapped", "random")


@dataclass
class CrossStyleConfig:
    """One cross-style benchmark.

    Attributes:
        models: manifest names or ``.safetensors`` paths, scored in this order.
        out: experiment folder (per style and model: ``results.json`` and devkit metrics).
        styles: style names (``data.synth.style.STYLE_NAMES``) or ``.json`` style files.
        data_dir: where generated splits go (``<data_dir>/<style>``).
        dataroots: style -> an existing dataroot to use instead of generating one.
        scenes / samples / image_scale / seed: the generated val split (``scenes`` val scenes of
            ``samples`` key frames; one extra training scene is generated and not scored).
        version / split: table folder and the split scored.
        threads: torch CPU threads of the engine (None = default).
        markdown / figure: extra copies of the tables / figure (e.g. in ``docs/``), or None.
    """

    models: tuple[str, ...]
    out: Path = Path("runs/cross-style")
    styles: tuple[str, ...] = DEFAULT_STYLES
    data_dir: Path = Path("data/cross-style-val")
    dataroots: dict[str, Path] = field(default_factory=dict)
    scenes: int = 2
    samples: int = 10
    image_scale: float = 0.22
    seed: int = 101
    version: str = "v1.0-mini"
    split: str = "synth_val"
    workers: int = 1
    threads: int | None = None
    markdown: Path | None = None
    figure: Path | None = None
    command: str = ""
    progress: bool = True

    def __post_init__(self) -> None:
        from ..data.synth.style import resolve_style

        if not self.models:
            raise ValueError("cross-style: give at least one model")
        if not self.styles:
            raise ValueError("cross-style: give at least one style")
        if len(set(self.styles)) != len(self.styles):
            raise ValueError(f"cross-style: styles listed twice in {self.styles}")
        for s in self.styles:
            if s not in self.dataroots:
                resolve_style(s)  # unknown names fail here, before any work
        unknown = sorted(set(self.dataroots) - set(self.styles))
        if unknown:
            raise ValueError(f"cross-style: dataroots given for styles not benchmarked: {unknown}")
        if self.scenes < 1 or self.samples < 1:
            raise ValueError("cross-style: need scenes >= 1 and samples >= 1")


def score_dir_name(name: str | None, path: Path, sha: str) -> str:
    """Folder of a model's cached scores under ``--out``: the manifest name, else the file's stem
    and the first 8 hex digits of its sha256 (two runs' ``model.safetensors`` must not share one)."""
    return _safe(name) if name else _safe(f"{path.stem}-{sha[:8]}")


def style_label(style: str) -> str:
    """Short name of a style (a ``.json`` file's stem)."""
    return Path(style).stem if style.endswith(".json") else style


def synth_config_for(cfg: CrossStyleConfig, style: str):
    """The ``SynthConfig`` of a style's generated split: ``cfg.scenes`` val scenes + 1 unused."""
    from ..data.synth import SynthConfig

    n = cfg.scenes + 1
    return SynthConfig(out=cfg.data_dir / style_label(style), scenes=n, samples=cfg.samples,
                       image_scale=cfg.image_scale, seed=cfg.seed, version=cfg.version,
                       val_fraction=(cfg.scenes + 0.1) / n, workers=cfg.workers, progress=cfg.progress, style=style)


def ensure_split(cfg: CrossStyleConfig, style: str) -> tuple[Path, dict]:
    """Dataroot of ``style`` (generated unless given or already there with the same config) and
    a note on it: ``{"dataroot", "generated", "val_classes_missing", "seconds"}``."""
    from ..data.synth import SynthCoverageError, generate_dataset

    if style in cfg.dataroots:
        return Path(cfg.dataroots[style]), {"dataroot": str(cfg.dataroots[style]), "generated": False}
    scfg = synth_config_for(cfg, style)
    meta_path = scfg.out / scfg.version / "synth_meta.json"
    want = json.loads(json.dumps(scfg.content_dict()))
    t0 = time.perf_counter()
    generated = False
    if not (meta_path.is_file() and json.loads(meta_path.read_text()).get("config") == want):
        try:
            generate_dataset(scfg)
        except SynthCoverageError:
            pass  # tiny splits may miss a class in the unused training scene; checked below for val
        generated = True
    meta = json.loads(meta_path.read_text())
    missing = [c for c in CLASS_NAMES if meta["counts"]["synth_val"][c]["with_points_in_eval_range"] == 0]
    return scfg.out, {"dataroot": str(scfg.out), "generated": generated, "val_classes_missing": missing,
                      "seconds": round(time.perf_counter() - t0, 1)}


def _tables_fingerprint(dataroot: Path, version: str) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted((Path(dataroot) / version).glob("*.json")):
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def score_style(engine, model_sha: str, dataroot: Path, cfg: CrossStyleConfig, out_dir: Path) -> dict:
    """Official metrics of one model on one style's split (cached in ``out_dir/score.json``)."""
    from ..predict import predict_and_evaluate

    key = {"model_sha256": model_sha, "tables": _tables_fingerprint(dataroot, cfg.version), "split": cfg.split}
    cache = out_dir / "score.json"
    if cache.is_file():
        old = json.loads(cache.read_text())
        if old.get("key") == key:
            return {**old, "cached": True}
    t0 = time.perf_counter()
    summary = predict_and_evaluate(engine, dataroot, cfg.version, cfg.split, out_dir, progress=cfg.progress)
    res = {
        "key": key, "dataroot": str(dataroot), "nds": float(summary["nd_score"]), "map": float(summary["mean_ap"]),
        "class_ap": {c: float(v) for c, v in summary.get("mean_dist_aps", {}).items()},
        "tp_errors": {k: float(v) for k, v in summary.get("tp_errors", {}).items()},
        "note": summary.get("note", ""), "wall_s": round(time.perf_counter() - t0, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res, indent=2) + "\n")
    return {**res, "cached": False}


def run_cross_style(cfg: CrossStyleConfig) -> dict:
    """Generate / reuse the splits, score every model on every style, write JSON, tables, figure."""
    from ..checkpoint import sha256_file
    from ..engine import load_engine
    from ..models_manifest import resolve_model

    t_start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for style in cfg.styles:
        root, note = ensure_split(cfg, style)
        splits[style_label(style)] = note
    models = []
    for model in cfg.models:
        path, _, entry = resolve_model(model)
        name = str(model) if entry is not None else None
        sha = sha256_file(path)
        engine = load_engine(model, threads=cfg.threads)
        scores = {}
        for style in cfg.styles:
            label = style_label(style)
            scores[label] = score_style(engine, sha, Path(splits[label]["dataroot"]), cfg,
                                        cfg.out / score_dir_name(name, path, sha) / label)
        models.append({"model": name or str(path), "file": str(path), "sha256": sha, "scores": scores})
    result = {
        "settings": {"styles": [style_label(s) for s in cfg.styles], "scenes": cfg.scenes, "samples": cfg.samples,
                     "image_scale": cfg.image_scale, "seed": cfg.seed, "split": cfg.split, "version": cfg.version},
        "splits": splits, "models": models, "command": cfg.command,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "note": "SynthScenes (synthetic data): the same scenes in every style, only the images differ",
    }
    (cfg.out / "cross-style.json").write_text(json.dumps(result, indent=2) + "\n")
    md = format_markdown(result)
    (cfg.out / "cross-style.md").write_text(md)
    plot_cross_style(result, cfg.out / "cross-style.png")
    if cfg.markdown is not None:
        cfg.markdown.parent.mkdir(parents=True, exist_ok=True)
        cfg.markdown.write_text(md)
    if cfg.figure is not None:
        plot_cross_style(result, cfg.figure)
    return result


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def format_markdown(result: dict) -> str:
    """NDS / mAP per style and model, then per-class AP per model (markdown)."""
    styles = result["settings"]["styles"]
    s = result["settings"]
    lines = [
        f"Cross-style benchmark on SynthScenes (synthetic data): {s['scenes']} val scenes x {s['samples']} key "
        f"frames per style, image scale {s['image_scale']}, seed {s['seed']}; the same scenes in every style, only "
        "the images differ. Official nuScenes devkit (detection_cvpr_2019).", "",
        "| model | " + " | ".join(styles) + " |",
        "|---|" + "---|" * len(styles),
    ]
    for m in result["models"]:
        cells = [f"{m['scores'][st]['nds']:.3f} / {m['scores'][st]['map']:.3f}" for st in styles]
        lines.append(f"| `{m['model']}` NDS / mAP | " + " | ".join(cells) + " |")
    if len(styles) > 1 and styles[0] == "default":
        lines += ["", "NDS relative to the default style:", "",
                  "| model | " + " | ".join(styles[1:]) + " |", "|---|" + "---|" * (len(styles) - 1)]
        for m in result["models"]:
            base = m["scores"]["default"]["nds"]
            cells = [f"{m['scores'][st]['nds'] / base:.2f}" if base > 0 else "n/a" for st in styles[1:]]
            lines.append(f"| `{m['model']}` | " + " | ".join(cells) + " |")
    if len(result["models"]) > 1:
        ref = result["models"][0]
        lines += ["", f"NDS relative to `{ref['model']}` (the first model) on the same split (2.00 = doubled):", "",
                  "| model | " + " | ".join(styles) + " |", "|---|" + "---|" * len(styles)]
        for m in result["models"][1:]:
            cells = [f"{m['scores'][st]['nds'] / ref['scores'][st]['nds']:.2f}" if ref["scores"][st]["nds"] > 0
                     else "n/a" for st in styles]
            lines.append(f"| `{m['model']}` | " + " | ".join(cells) + " |")
    for m in result["models"]:
        lines += ["", f"Per-class AP of `{m['model']}`:", "", "| class | " + " | ".join(styles) + " |",
                  "|---|" + "---|" * len(styles)]
        for c in CLASS_NAMES:
            cells = [f"{m['scores'][st]['class_ap'].get(c, float('nan')):.3f}" for st in styles]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    missing = {st: n.get("val_classes_missing") for st, n in result["splits"].items() if n.get("val_classes_missing")}
    if missing:
        lines += ["", f"Classes without a lidar-visible annotation in range in a val split (AP undefined): {missing}"]
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def plot_cross_style(result: dict, png: Path) -> None:
    """Grouped NDS bars per style (one bar per model) and a per-class AP heat map per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    styles = result["settings"]["styles"]
    models = result["models"]
    fig, axs = plt.subplots(1, 1 + len(models), figsize=(5.5 + 4.5 * len(models), 4.2), squeeze=False)
    ax = axs[0, 0]
    x = np.arange(len(styles))
    wbar = 0.8 / len(models)
    for i, m in enumerate(models):
        nds = [m["scores"][st]["nds"] for st in styles]
        ax.bar(x + (i - (len(models) - 1) / 2) * wbar, nds, wbar, label=m["model"])
    ax.set_xticks(x, styles, rotation=30)
    ax.set(ylabel="NDS", title="NDS per style (official devkit)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    for i, m in enumerate(models):
        a = axs[0, 1 + i]
        ap = np.array([[m["scores"][st]["class_ap"].get(c, np.nan) for st in styles] for c in CLASS_NAMES])
        im = a.imshow(ap, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        a.set_xticks(np.arange(len(styles)), styles, rotation=30)
        a.set_yticks(np.arange(len(CLASS_NAMES)), CLASS_NAMES, fontsize=7)
        for (r, c), v in np.ndenumerate(ap):
            if np.isfinite(v):
                a.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.5 else "k")
        a.set_title(f"per-class AP: {m['model']}", fontsize=9)
        fig.colorbar(im, ax=a, fraction=0.046)
    s = result["settings"]
    fig.suptitle(f"Cross-style benchmark, SynthScenes (synthetic data): {s['scenes']} scenes x {s['samples']} "
                 f"samples per style, seed {s['seed']}", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
