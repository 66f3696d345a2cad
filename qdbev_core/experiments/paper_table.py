"""The paper's comparison on our data: FP32 vs standard / progressive / QD-BEV W4A6 QAT (+ W8A8).

``run_paper_table(PaperTableConfig(...))`` (``qdbev experiment paper-table``) trains every row
with the same budget (steps, global batch, learning rate, warm-up, seed, data order), scores
each row's deployable file with the official nuScenes evaluator on the val split, and writes

- ``<out>/paper-table.json``: settings, machine, and per row the run, status, metrics, sizes,
  wall times and curves (loss per logged step, NDS / mAP per evaluation);
- ``docs/RESULTS.md`` (``results_md``): the table (mode, bits, NDS, mAP, mATE, mAOE, size MB,
  ratio, wall time), the paper's nuScenes numbers beside it, clearly labelled, the acceptance
  checks of issue 4 computed from the rows, the exact command and the machine;
- ``docs/paper-table.png`` (``figure``): NDS vs step and training loss vs step for all rows
  (the analogue of the paper's Figure 1).

Rows (``--rows``, in this order by default):

=============  =========================================================================
``fp32``       the teacher fine-tuned in full precision for the same steps at the QAT
               learning rate (``qdbev train --init-from TEACHER``), so that every row gets
               the same extra training on the same batches and a QAT gain cannot be extra
               training in disguise. ``fp32_as_is=True`` scores the teacher itself instead.
``standard``   ``qdbev qat --mode standard --bits w4a6``: everything quantized from step 0
``progressive`` ``qdbev qat --mode progressive --bits w4a6``: backbone -> neck -> BEV encoder ->
               decoder, equal shares of the steps (the paper's baseline)
``qdbev``      ``qdbev qat --mode qdbev --bits w4a6 --distill img,bev``: standard + VGD
``qdbev-progressive`` ``qdbev qat --mode qdbev --progressive --bits w4a6 --distill img,bev``:
               progressive + VGD, the combination the paper trains
``w8a8``       ``qdbev qat --mode standard --bits w8a8``: sanity row (should be ~FP32)
=============  =========================================================================

The teacher as-is is always scored too (a reference line in the table and the figure).

Reuse / resume: each row runs in ``<out>/<row>/`` and records its settings in ``row.json``.
A rerun reuses a row whose run finished (weights at the last step, the packed file for
quantized rows, the final evaluation) with the same settings, resumes an unfinished one from
its checkpoint (exactly, like ``qdbev train``), and refuses a directory whose settings differ
(delete it or pick another ``--out``). ``--batch-size`` is the *global* batch, split over
``ddp_procs`` processes, and the trainer draws the same samples for a global batch whatever the
split; the process count is still not neutral, because nano's BatchNorm layers normalise with each
process's own samples (no SyncBatchNorm on CPU), so train every row of one table with the same
``--ddp-procs`` (``make paper-table``: 2). It is not part of the settings key, so that rows trained
before this was noticed stay reusable.

Archive: a row that finished is also written to ``archive`` (``docs/paper-table-rows/``, kept in git;
see ``row_archive``), so a table too long for one sitting can be completed on another machine: a row
with no finished run directory but an archived result for the same settings and data is reused from
the archive (status ``archived``; RESULTS.md names the commit and date it was trained at).

Scoring: the file a row deploys (``model.packed.safetensors`` for quantized rows,
``model.safetensors`` for fp32) is loaded like any model (``engine.load_engine``) and run over
the val split through ``predict.predict_and_evaluate``; the packed file reproduces the
fake-quant model exactly, so this equals the training loop's final evaluation. Sizes are file
sizes on disk (10^6 bytes, sidecar JSON not included); the ratio is the fp32 row's file size
over the row's.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import row_archive

ROW_ORDER = ("fp32", "standard", "progressive", "qdbev", "qdbev-progressive", "w8a8")
QDBEV_ROWS = ("qdbev", "qdbev-progressive")


@dataclass(frozen=True)
class RowSpec:
    name: str
    label: str
    verb: str  # "train" (fp32 fine-tune) or "qat"
    bits: str
    mode: str
    distill: str = ""
    progressive: bool = False
    """QD-BEV rows: switch the quantization stages on progressively (``qdbev qat --progressive``)."""

    @property
    def quantized(self) -> bool:
        return self.verb == "qat"


ROWS: dict[str, RowSpec] = {
    "fp32": RowSpec("fp32", "FP32 (teacher fine-tuned, same budget)", "train", "fp32", "fp32"),
    "standard": RowSpec("standard", "standard QAT", "qat", "w4a6", "standard"),
    "progressive": RowSpec("progressive", "progressive QAT", "qat", "w4a6", "progressive"),
    "qdbev": RowSpec("qdbev", "QD-BEV (QAT + VGD img+bev)", "qat", "w4a6", "qdbev", "img,bev"),
    "qdbev-progressive": RowSpec("qdbev-progressive", "QD-BEV (progressive QAT + VGD img+bev)", "qat", "w4a6",
                                 "qdbev", "img,bev", progressive=True),
    "w8a8": RowSpec("w8a8", "standard QAT (sanity)", "qat", "w8a8", "standard"),
}
TEACHER_ROW = RowSpec("teacher", "FP32 teacher as-is (no extra training)", "none", "fp32", "fp32")
FP32_AS_IS_ROW = RowSpec("fp32", "FP32 (teacher as-is)", "none", "fp32", "fp32")

PAPER = {
    "source": "QD-BEV, ICCV 2023 (arXiv 2308.10515), abstract; docs/DESIGN.md §2",
    "dataset": "nuScenes val (real data)",
    "rows": [
        {"model": "BEVFormer-Tiny (FP32)", "bits": "fp32", "nds": 0.354, "size_mb": 126.0, "ratio": 1.0, "ours": "fp32"},
        {"model": "QD-BEV-Tiny", "bits": "w4a6", "nds": 0.372, "size_mb": 15.8, "ratio": 126.0 / 15.8, "ours": "qdbev"},
        {"model": "BEVFormer-Small (FP32)", "bits": "fp32", "nds": 0.479, "size_mb": None, "ratio": None, "ours": None},
        {"model": "QD-BEV-Small", "bits": "w4a6", "nds": 0.479, "size_mb": 28.2, "ratio": None, "ours": None},
        {"model": "BEVFormer-Base (FP32)", "bits": "fp32", "nds": 0.517, "size_mb": None, "ratio": None, "ours": None},
        {"model": "QD-BEV-Base", "bits": "w4a6", "nds": 0.509, "size_mb": 32.9, "ratio": None, "ours": None},
    ],
    "note": "The paper's progressive-QAT, standard-QAT and W8A8 numbers are not in the sources we could read.",
}


@dataclass
class PaperTableConfig:
    """Settings of one paper-table experiment (see the module doc)."""

    teacher: str
    dataroot: Path
    split: str
    val_dataroot: Path
    val_split: str
    steps: int
    batch_size: int = 2
    """Global batch (samples per optimizer step over all processes)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds (data order, augmentation, calibration batches): every row is trained once per
    seed, except ``single_seed_rows``, which get the first seed only."""
    single_seed_rows: tuple[str, ...] = ("w8a8",)
    """Rows trained with ``seeds[0]`` only (the W8A8 sanity row)."""
    score_dataroot: Path | None = None
    """Dataroot of the split the finished rows are scored on (default: ``val_dataroot``): a larger
    held-out split than the one the training curves use, to shrink the scoring noise."""
    score_split: str | None = None
    """Split of ``score_dataroot`` (default: ``val_split``)."""
    out: Path = Path("runs/paper-table")
    rows: tuple[str, ...] = ROW_ORDER
    version: str = "v1.0-mini"
    lr: float = 2e-4
    """Peak AdamW learning rate of every row (the QAT default of ``qdbev qat``)."""
    warmup_steps: int | None = None
    """Linear warm-up steps of every row; None = ``min(100, steps // 10)``."""
    eval_every: int | None = None
    """Score the val split every N steps during training (the NDS curves); None = ``steps // 5``."""
    log_every: int = 10
    ckpt_every: int = 250
    calib_batches: int = 8
    fp32_as_is: bool = False
    ddp_procs: int = 1
    threads: int = 0
    """torch threads per process (0 = default; DDP processes get 1 unless set)."""
    workers: int = 1
    archive: Path | None = Path("docs/paper-table-rows")
    """Where finished rows are archived / reused from (``row_archive``); None = no archive."""
    results_md: Path | None = Path("docs/RESULTS.md")
    figure: Path | None = Path("docs/paper-table.png")
    command: str = ""
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = tuple(self.rows)
        self.seeds = tuple(int(x) for x in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(self.seeds)}")
        self.single_seed_rows = tuple(self.single_seed_rows)
        if self.score_dataroot is None:
            self.score_dataroot = self.val_dataroot
        if self.score_split is None:
            self.score_split = self.val_split
        bad = [r for r in self.rows if r not in ROWS]
        if bad or not self.rows:
            raise ValueError(f"unknown rows {bad}; choose from {', '.join(ROW_ORDER)}")
        if len(set(self.rows)) != len(self.rows):
            raise ValueError(f"rows repeated: {', '.join(self.rows)}")
        if self.steps < 1 or self.batch_size < 1 or self.ddp_procs < 1:
            raise ValueError("steps, batch size and process count must be >= 1")
        if self.batch_size % self.ddp_procs:
            raise ValueError(f"--batch-size {self.batch_size} (global) is not divisible by --ddp-procs {self.ddp_procs}")
        for k in ("dataroot", "val_dataroot", "score_dataroot", "out"):
            setattr(self, k, Path(getattr(self, k)))

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(100, self.steps // 10)

    @property
    def eval_interval(self) -> int:
        return self.eval_every if self.eval_every is not None else max(1, self.steps // 5)

    def seeds_of(self, row: str) -> tuple[int, ...]:
        """The seeds ``row`` is trained with (all of them, or the first for ``single_seed_rows``)."""
        return self.seeds[:1] if row in self.single_seed_rows else self.seeds

    def run_dir(self, row: str, seed: int) -> Path:
        """``<out>/<row>/seed<seed>``: one training run."""
        return self.out / row / f"seed{seed}"


# --- helpers --------------------------------------------------------------------------------------------
def _data_fingerprints(cfg: PaperTableConfig) -> dict[str, str]:
    return {"dataroot": row_archive.data_fingerprint(cfg.dataroot, cfg.version),
            "val_dataroot": row_archive.data_fingerprint(cfg.val_dataroot, cfg.version),
            "score_dataroot": row_archive.data_fingerprint(cfg.score_dataroot, cfg.version)}


def _teacher_info(teacher: str) -> dict:
    from ..checkpoint import sha256_file
    from ..models_manifest import full_precision_file

    path, sha, side = full_precision_file(teacher, "teacher")
    return {"name": teacher, "path": str(path), "sha256": sha or sha256_file(path), "config": side["config"],
            "bytes": path.stat().st_size}


def _model_sets(cfg_dict: dict) -> list[str]:
    """``--model-set`` arguments that turn the named config into exactly ``cfg_dict``."""
    from ..model.config import get_config

    base = get_config(cfg_dict["name"]).to_dict()
    out = []
    for k, v in cfg_dict.items():
        if k in ("name", "notes"):
            continue
        if json.loads(json.dumps(base.get(k))) != v:
            out.append(f"{k}={json.dumps(v, separators=(',', ':'))}")
    return out


def row_argv(cfg: PaperTableConfig, spec: RowSpec, teacher: dict, seed: int) -> list[str]:
    """The ``qdbev`` arguments (verb first) that train ``spec`` with ``seed`` in ``cfg.run_dir``."""
    per_proc = cfg.batch_size // cfg.ddp_procs
    threads = cfg.threads or (1 if cfg.ddp_procs > 1 else 0)
    a = [spec.verb, "--dataroot", str(cfg.dataroot), "--version", cfg.version, "--split", cfg.split,
         "--val-dataroot", str(cfg.val_dataroot), "--val-split", cfg.val_split, "--out", str(cfg.run_dir(spec.name, seed)),
         "--steps", str(cfg.steps), "--batch-size", str(per_proc), "--lr", f"{cfg.lr:g}",
         "--warmup-steps", str(cfg.warmup), "--seed", str(seed), "--eval-every", str(cfg.eval_interval),
         "--ckpt-every", str(cfg.ckpt_every), "--log-every", str(cfg.log_every), "--workers", str(cfg.workers),
         "--threads", str(threads), "--no-progress" if not cfg.progress else None]
    a = [x for x in a if x is not None]
    if spec.verb == "train":
        a += ["--config", teacher["config"]["name"], "--init-from", cfg.teacher]
        for s in _model_sets(teacher["config"]):
            a += ["--model-set", s]
    else:
        a += ["--teacher", cfg.teacher, "--bits", spec.bits, "--mode", spec.mode,
              "--calib-batches", str(cfg.calib_batches)]
        if spec.distill:
            a += ["--distill", spec.distill]
        if spec.progressive:
            a += ["--progressive"]
    return a


def row_settings(cfg: PaperTableConfig, spec: RowSpec, teacher: dict, seed: int) -> dict:
    """What makes two runs of a row the same experiment (not: process count, threads, logging).

    Besides the command line: the split the result is scored on, the VGD weights of distilling rows
    and the learning-rate schedule of staged rows (one warm-up + cosine per stage since it replaced
    one cosine over the run), so that an archived result is never reused for other code defaults."""
    from ..distill import VGDConfig

    staged = spec.mode == "progressive" or spec.progressive
    vgd = None
    if spec.distill:
        v = VGDConfig(terms=tuple(spec.distill.split(",")))
        vgd = {"img_weight": v.img_weight, "bev_weight": v.bev_weight, "divergence": v.divergence,
               "temperature": v.temperature, "fg_weight": v.fg_weight, "bev_fg_weight": v.bev_fg_weight}
    return {
        "row": spec.name, "verb": spec.verb, "mode": spec.mode, "bits": spec.bits, "distill": spec.distill,
        "progressive": spec.progressive, "teacher_sha256": teacher["sha256"], "dataroot": str(cfg.dataroot.resolve()), "version": cfg.version,
        "split": cfg.split, "val_dataroot": str(cfg.val_dataroot.resolve()), "val_split": cfg.val_split,
        "steps": cfg.steps, "global_batch": cfg.batch_size, "lr": cfg.lr, "warmup_steps": cfg.warmup,
        "seed": seed, "eval_every": cfg.eval_interval,
        "calib_batches": cfg.calib_batches if spec.quantized else None,
        "score_dataroot": str(cfg.score_dataroot.resolve()), "score_split": cfg.score_split,
        "lr_schedule": "per-stage warmup+cosine" if staged else "warmup+cosine", "vgd": vgd,
    }


def _deploy_file(cfg: PaperTableConfig, spec: RowSpec, teacher: dict, seed: int) -> Path:
    if spec.verb == "none":
        return Path(teacher["path"])
    return cfg.run_dir(spec.name, seed) / ("model.packed.safetensors" if spec.quantized else "model.safetensors")


def _finished(cfg: PaperTableConfig, spec: RowSpec, seed: int) -> bool:
    from ..checkpoint import CheckpointError, read_sidecar

    d = cfg.run_dir(spec.name, seed)
    try:
        if int(read_sidecar(d / "model.safetensors").get("step", -1)) != cfg.steps:
            return False
        if spec.quantized and int(read_sidecar(d / "model.packed.safetensors").get("step", -1)) != cfg.steps:
            return False
    except CheckpointError:
        return False
    return (d / "eval" / f"step_{cfg.steps:06d}").is_dir()


def _run_qdbev(argv: list[str], ddp_procs: int) -> None:
    """``qdbev <argv>`` in a child process (``python -m qdbev_core``), under ``torch.distributed.run``
    with ``ddp_procs`` > 1; the child's stdout (its metrics line) joins our stderr."""
    if ddp_procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ddp_procs}", "--rdzv-backend=c10d",
               "--rdzv-endpoint=127.0.0.1:0", "-m", "qdbev_core", *argv]
        env = dict(os.environ, OMP_NUM_THREADS="1")
    else:
        cmd, env = [sys.executable, "-m", "qdbev_core", *argv], dict(os.environ)
    try:
        out = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        out = None
    rc = subprocess.run(cmd, env=env, stdout=out).returncode
    if rc != 0:
        raise RuntimeError(f"`qdbev {shlex.join(argv)}` failed with exit code {rc}")


def _opt_float(row: dict, key: str) -> float | None:
    """A metrics.csv cell as a float (None where the row leaves it empty)."""
    return float(row[key]) if row.get(key) else None


def read_curves(metrics_csv: Path) -> dict[str, list]:
    """Loss per logged step (total, detection = total - VGD, VGD terms), seconds per step, and NDS / mAP per
    evaluation. A step logged twice (a run resumed from an older checkpoint) keeps its last row: the one on
    the path to the final model."""
    from ..train.trainer import read_metrics

    c: dict[str, list] = {"step": [], "loss": [], "det_loss": [], "vgd": [], "vgd_img": [], "vgd_bev": [],
                          "lr": [], "s_per_step": [], "eval_step": [], "nds": [], "map": []}
    if not metrics_csv.is_file():
        return c
    logged: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for r in read_metrics(metrics_csv):
        if r.get("loss"):
            logged[int(r["step"])] = r
        if r.get("nds"):
            evals[int(r["step"])] = r
    for step in sorted(logged):
        r = logged[step]
        loss, vgd = float(r["loss"]), _opt_float(r, "vgd")
        c["step"].append(step)
        c["loss"].append(loss)
        c["det_loss"].append(loss - (vgd or 0.0))
        c["vgd"].append(vgd)
        c["vgd_img"].append(_opt_float(r, "vgd_img"))
        c["vgd_bev"].append(_opt_float(r, "vgd_bev"))
        c["lr"].append(_opt_float(r, "lr"))
        c["s_per_step"].append(_opt_float(r, "s_per_step"))
    for step in sorted(evals):
        c["eval_step"].append(step)
        c["nds"].append(float(evals[step]["nds"]))
        c["map"].append(float(evals[step]["map"]))
    if not any(v is not None for v in c["vgd"]):
        for k in ("vgd", "vgd_img", "vgd_bev"):
            c[k] = []
    return c


def median_s_per_step(curves: dict[str, list]) -> float | None:
    """Median seconds per training step over the logged steps (None if none were timed). Unlike the sum it
    is not moved by a paused process, a resume or the few steps that include an evaluation."""
    xs = [x for x in curves.get("s_per_step", []) if x is not None]
    return float(statistics.median(xs)) if xs else None


def score_file(path: Path, cfg: PaperTableConfig, out_dir: Path) -> dict:
    """Official metrics of the model file ``path`` on the val split (cached by the file's sha256)."""
    from ..checkpoint import sha256_file
    from ..engine import load_engine
    from ..predict import predict_and_evaluate

    sha = sha256_file(path)
    cache = out_dir / "score.json"
    if cache.is_file():
        old = json.loads(cache.read_text())
        if old.get("model_sha256") == sha and old.get("split") == cfg.score_split \
                and old.get("dataroot") == str(cfg.score_dataroot.resolve()):
            return {**old, "cached": True}
    t0 = time.perf_counter()
    engine = load_engine(path)
    summary = predict_and_evaluate(engine, cfg.score_dataroot, cfg.version, cfg.score_split, out_dir,
                                   progress=cfg.progress)
    res = {"model": str(path), "model_sha256": sha, "dataroot": str(cfg.score_dataroot.resolve()),
           "split": cfg.score_split,
           "nds": float(summary["nd_score"]), "map": float(summary["mean_ap"]),
           "tp_errors": {k: float(v) for k, v in summary.get("tp_errors", {}).items()},
           "note": summary.get("note", ""), "wall_s": time.perf_counter() - t0}
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res, indent=2) + "\n")
    return {**res, "cached": False}


def machine_info() -> dict:
    """Where the table was made (``hardware.machine_info``: CPU, ISA, libraries, GPU)."""
    from ..hardware import machine_info as info

    return info()


# --- the experiment ----------------------------------------------------------------------------------------
def _refuse_other_settings(cfg: PaperTableConfig, runs: list[tuple[RowSpec, int]], teacher: dict) -> None:
    """Raise ValueError before any training when a run directory holds a run with other settings."""
    for spec, seed in runs:
        f = cfg.run_dir(spec.name, seed) / "row.json"
        if not f.is_file():
            continue
        want = row_settings(cfg, spec, teacher, seed)
        have = json.loads(f.read_text()).get("settings", {})
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            raise ValueError(
                f"{f.parent} holds a run of row {spec.name!r} with other settings "
                f"({', '.join(f'{k}: {have.get(k)!r} -> {want.get(k)!r}' for k in diff)}); "
                "delete that directory or use another --out")


def _run_row(cfg: PaperTableConfig, spec: RowSpec, seed: int, teacher: dict, fingerprints: dict) -> dict:
    """Train (or resume / reuse / take from the archive) one row with one seed and score it."""
    d = cfg.run_dir(spec.name, seed)
    t0 = time.perf_counter()
    argv = row_argv(cfg, spec, teacher, seed)
    settings = row_settings(cfg, spec, teacher, seed)
    key = row_archive.archive_key(settings, fingerprints) if fingerprints else None
    if _finished(cfg, spec, seed):
        status = "reused"
    elif key is not None and (archived := row_archive.load_entry(cfg.archive, spec.name, key)) is not None:
        print(f"paper-table: row {spec.name} seed {seed}: reusing {archived['archived']['file']} (trained at commit "
              f"{archived['archived']['commit']}, {archived['archived']['date']})", file=sys.stderr)
        return {**archived, "status": "archived", "this_invocation_s": time.perf_counter() - t0}
    else:
        status = "resumed" if (d / "checkpoints" / "last.pt").is_file() else "trained"
        d.mkdir(parents=True, exist_ok=True)
        if status == "trained" or not (d / "row.json").is_file():
            (d / "row.json").write_text(json.dumps({"settings": settings, "command": "qdbev " + shlex.join(argv),
                                                    "trained_at": row_archive.provenance()}, indent=2) + "\n")
        print(f"paper-table: row {spec.name} seed {seed}: {status} `qdbev {shlex.join(argv)}`", file=sys.stderr)
        _run_qdbev(argv, cfg.ddp_procs)
        if not _finished(cfg, spec, seed):
            raise RuntimeError(f"row {spec.name} seed {seed}: the run in {d} did not finish")
    run_s = time.perf_counter() - t0
    score = score_file(_deploy_file(cfg, spec, teacher, seed), cfg, d / "score")
    result = _row_result(cfg, spec, teacher, argv, status, run_s, score, seed)
    if key is not None:
        trained_at = json.loads((d / "row.json").read_text()).get("trained_at") if (d / "row.json").is_file() else None
        row_archive.store_entry(cfg.archive, spec.name, key, result, trained_at)
    return result


def _other_archived_rows(cfg: PaperTableConfig, teacher: dict, fingerprints: dict,
                         have: set[tuple[str, int]]) -> list[dict]:
    """Archived results of this experiment (same settings key as ``_run_row`` would use) for the
    (row, seed) pairs not in ``have``, so that ``--rows standard --seeds 1`` trains one run and
    still reports every finished one. Rows outside ``ROWS`` (and ``fp32`` with ``fp32_as_is``) are
    skipped; so is every entry whose key differs from what this configuration would store."""
    if cfg.archive is None or not fingerprints or not Path(cfg.archive).is_dir():
        return []
    found: list[dict] = []
    for f in sorted(Path(cfg.archive).glob("*.json")):
        try:
            entry = json.loads(f.read_text())
            name, seed = entry["row"], entry["result"]["seed"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an entry of this table; load_entry reports a broken one when its run is asked for
        if name not in ROWS or (name == "fp32" and cfg.fp32_as_is) or not isinstance(seed, int) \
                or (name, seed) in have:
            continue
        key = row_archive.archive_key(row_settings(cfg, ROWS[name], teacher, seed), fingerprints)
        archived = row_archive.load_entry(cfg.archive, name, key)
        if archived is not None and archived["archived"]["file"] == str(f):  # f is this experiment's entry
            found.append({**archived, "status": "archived", "this_invocation_s": 0.0})
    return found


def run_paper_table(cfg: PaperTableConfig) -> dict:
    """Train / reuse every row and seed, score them, write the JSON, RESULTS.md and the figure; returns the JSON."""
    from tqdm import tqdm

    t_start = time.perf_counter()
    teacher = _teacher_info(cfg.teacher)
    cfg.out.mkdir(parents=True, exist_ok=True)
    specs = [FP32_AS_IS_ROW if (r == "fp32" and cfg.fp32_as_is) else ROWS[r] for r in cfg.rows]
    # seed-major order: a table stopped half-way has every row at the first seeds, not some rows at all seeds
    runs = [(spec, seed) for i, seed in enumerate(cfg.seeds) for spec in specs
            if spec.verb != "none" and seed in cfg.seeds_of(spec.name)]
    _refuse_other_settings(cfg, runs, teacher)
    fingerprints = _data_fingerprints(cfg) if cfg.archive is not None else {}
    rows: list[dict] = []
    bar = tqdm(runs, desc="paper-table", unit="run", disable=not cfg.progress, dynamic_ncols=True)
    for spec, seed in bar:
        bar.set_postfix(row=spec.name, seed=seed)
        rows.append(_run_row(cfg, spec, seed, teacher, fingerprints))
    bar.close()
    # the table spans sittings: archived runs of this experiment that were not asked for join it
    rows += _other_archived_rows(cfg, teacher, fingerprints, {(r["row"], r["seed"]) for r in rows})
    # trained seed-major in --rows order, reported in the table's order
    rows.sort(key=lambda r: (ROW_ORDER.index(r["row"]), r.get("seed", 0)))
    score = score_file(Path(teacher["path"]), cfg, cfg.out / "teacher" / "score")
    teacher_row = _row_result(cfg, TEACHER_ROW, teacher, [], "teacher", 0.0, score, None)
    if cfg.fp32_as_is:
        rows = [teacher_row | {"row": "fp32", "label": FP32_AS_IS_ROW.label}] + rows
    ref_bytes = next((r["size_bytes"] for r in rows if r["row"] == "fp32"), teacher_row["size_bytes"])
    for r in rows + [teacher_row]:
        r["ratio"] = ref_bytes / r["size_bytes"]
    summary = summarize_rows(rows)
    paired = paired_differences(rows)
    result = {
        "experiment": "paper-table",
        "dataset": "SynthScenes (synthetic data, nuScenes format) - not comparable with nuScenes numbers",
        "command": cfg.command,
        "settings": {
            "teacher": {k: v for k, v in teacher.items() if k != "config"}, "teacher_config": teacher["config"],
            "dataroot": str(cfg.dataroot), "split": cfg.split, "val_dataroot": str(cfg.val_dataroot),
            "val_split": cfg.val_split, "score_dataroot": str(cfg.score_dataroot), "score_split": cfg.score_split,
            "score_samples": _split_samples(cfg.score_dataroot, cfg.version, cfg.score_split),
            "val_samples": _split_samples(cfg.val_dataroot, cfg.version, cfg.val_split),
            "version": cfg.version, "steps": cfg.steps, "global_batch": cfg.batch_size,
            "lr": cfg.lr, "warmup_steps": cfg.warmup, "seeds": list(cfg.seeds),
            "single_seed_rows": list(cfg.single_seed_rows), "eval_every": cfg.eval_interval,
            "calib_batches": cfg.calib_batches, "fp32_as_is": cfg.fp32_as_is, "ddp_procs": cfg.ddp_procs,
            "rows": list(cfg.rows), "archive": str(cfg.archive) if cfg.archive is not None else None,
        },
        "size_reference": "fp32 row file" if any(r["row"] == "fp32" for r in rows) else "teacher file",
        "machine": machine_info(),
        "rows": rows,
        "summary": summary,
        "paired": paired,
        "teacher": teacher_row,
        "paper": PAPER,
        "checks": acceptance_checks(summary, teacher_row, paired),
        "wall_s": time.perf_counter() - t_start,
        "files": {},
    }
    js = cfg.out / "paper-table.json"
    result["files"]["json"] = str(js)
    if cfg.figure is not None:
        plot_paper_figure(result, Path(cfg.figure))
        result["files"]["figure"] = str(cfg.figure)
    if cfg.results_md is not None:
        result["files"]["results_md"] = str(cfg.results_md)
        md = render_markdown(result, figure=cfg.figure)
        Path(cfg.results_md).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.results_md).write_text(md)
    js.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _split_samples(dataroot: Path, version: str, split: str) -> int | None:
    """Number of samples in ``split`` (from the reader), or None when it cannot be read."""
    from ..data.reader import NuScenesReader

    try:
        return len(NuScenesReader(dataroot, version, split=split))
    except (OSError, ValueError, KeyError):  # only a label in the report
        return None


def _row_result(cfg: PaperTableConfig, spec: RowSpec, teacher: dict, argv: list[str], status: str, run_s: float,
                score: dict, seed: int | None) -> dict:
    path = _deploy_file(cfg, spec, teacher, seed if seed is not None else 0)
    d = cfg.run_dir(spec.name, seed) if seed is not None else None
    tp = score.get("tp_errors", {})
    curves = read_curves(d / "metrics.csv") if d is not None else read_curves(Path("/nonexistent"))
    pace = median_s_per_step(curves)
    train_eval = None
    if curves["eval_step"] and curves["eval_step"][-1] == cfg.steps:
        train_eval = curves["nds"][-1]
    return {
        "row": spec.name, "label": spec.label, "mode": spec.mode, "bits": spec.bits, "seed": seed, "status": status,
        "run_dir": str(d) if d is not None else None,
        "command": ("qdbev " + shlex.join(argv)) if argv else None,
        "file": str(path), "size_bytes": path.stat().st_size, "size_mb": path.stat().st_size / 1e6,
        "nds": score["nds"], "map": score["map"],
        "mate": tp.get("trans_err"), "mase": tp.get("scale_err"), "maoe": tp.get("orient_err"),
        "mave": tp.get("vel_err"), "maae": tp.get("attr_err"), "score_note": score.get("note", ""),
        "train_final_eval_nds": train_eval,
        "train_s_per_step": pace,
        "train_time_s": 0.0 if d is None else (pace * cfg.steps if pace is not None else None),
        "score_wall_s": score.get("wall_s", 0.0),
        "this_invocation_s": run_s,
        "curves": curves,
    }


METRICS = ("nds", "map", "mate", "mase", "maoe", "mave", "maae")
PAIRS = (("qdbev", "standard"), ("qdbev", "progressive"), ("qdbev", "fp32"), ("qdbev-progressive", "standard"),
         ("qdbev-progressive", "progressive"), ("qdbev-progressive", "fp32"), ("progressive", "standard"))
"""Paired differences the report shows (first minus second, seed by seed)."""


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; None for one value)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _mean_known(xs: list[float | None]) -> float | None:
    """Mean of the values that are not None (None if there are none)."""
    known = [x for x in xs if x is not None]
    return sum(known) / len(known) if known else None


def summarize_rows(rows: list[dict]) -> list[dict]:
    """Per row (table order): seeds, mean and std over seeds of every metric, size and ratio."""
    out = []
    for name in [n for n in ROW_ORDER if any(r["row"] == n for r in rows)]:
        rs = [r for r in rows if r["row"] == name]
        agg: dict[str, Any] = {"row": name, "label": rs[0]["label"], "mode": rs[0]["mode"], "bits": rs[0]["bits"],
                               "seeds": [r.get("seed") for r in rs], "n": len(rs),
                               "size_mb": rs[0]["size_mb"], "ratio": rs[0].get("ratio"),
                               "train_time_s": _mean_known([r.get("train_time_s") for r in rs]),
                               "score_wall_s": sum(r["score_wall_s"] for r in rs) / len(rs)}
        for k in METRICS:
            vals = [r[k] for r in rs if r.get(k) is not None]
            m, sd = _mean_std(vals) if vals else (None, None)
            agg[k], agg[f"{k}_std"] = m, sd
            agg[f"{k}_per_seed"] = [r.get(k) for r in rs]
        out.append(agg)
    return out


def paired_differences(rows: list[dict], metric: str = "nds") -> list[dict]:
    """``PAIRS`` seed by seed on ``metric``: per-seed differences, mean, std, and whether the mean is
    larger than the seed-to-seed noise (two-sided paired t-test at 95 %: |mean| > t(n-1) * std / sqrt(n);
    undecidable with fewer than two seeds)."""
    from scipy import stats

    by = {(r["row"], r.get("seed")): r[metric] for r in rows}
    out = []
    for a, b in PAIRS:
        seeds = sorted(s for (row, s) in by if row == a and (b, s) in by)
        if not seeds:
            continue
        diffs = [by[(a, s)] - by[(b, s)] for s in seeds]
        m, sd = _mean_std(diffs)
        if sd is None:
            half, verdict = None, "one seed: no noise estimate"
        else:
            half = float(stats.t.ppf(0.975, len(diffs) - 1)) * sd / math.sqrt(len(diffs))
            verdict = ("larger than the noise" if abs(m) > half else "within the noise")
        out.append({"a": a, "b": b, "metric": metric, "seeds": seeds, "diffs": diffs, "mean": m, "std": sd,
                    "ci95_half": half, "verdict": verdict})
    return out


def acceptance_checks(summary: list[dict], teacher: dict | None = None, paired: list[dict] | None = None) -> list[dict]:
    """The QD-BEV issue's checks on the per-row means (each QD-BEV row on its own)."""
    by = {r["row"]: r for r in summary}
    pairs = {(p["a"], p["b"]): p for p in paired or []}
    out = []
    for q in (q for q in QDBEV_ROWS if q in by):
        if "fp32" in by:
            d = by[q]["nds"] - by["fp32"]["nds"]
            out.append({"check": f"{q} W4A6 NDS >= FP32 NDS - 0.01", "value": d, "pass": d >= -0.01,
                        "text": f"{q} W4A6 mean NDS - FP32 row mean NDS = {d:+.4f} (needs >= -0.0100)"})
        if teacher is not None:
            d = by[q]["nds"] - teacher["nds"]
            out.append({"check": f"{q} vs the FP32 teacher as-is", "value": d, "pass": d >= -0.01,
                        "text": f"{q} W4A6 mean NDS - FP32 teacher as-is NDS = {d:+.4f} (needs >= -0.0100)"})
        for b in ("standard", "progressive"):
            p = pairs.get((q, b))
            if p is not None:
                out.append({"check": f"{q} vs {b} QAT (reported, not tuned)", "value": p["mean"], "pass": None,
                            "text": f"{q} - {b} = {p['mean']:+.4f} NDS over seeds {p['seeds']}: {p['verdict']}"})
    for r in summary:
        if r["bits"] == "w4a6":
            out.append({"check": f"{r['row']}: packed file >= 7.8x smaller than fp32", "value": r["ratio"],
                        "pass": r["ratio"] >= 7.8, "text": f"{r['row']} packed file is {r['ratio']:.3f}x smaller (needs >= 7.8)"})
    return out


# --- outputs -----------------------------------------------------------------------------------------------
def _f(v: Any, nd: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _dur(s: float) -> str:
    s = float(s)
    return f"{s / 3600:.2f} h" if s >= 5400 else (f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s")


def _dur_or_na(s: float | None) -> str:
    return "n/a" if s is None else _dur(s)


TABLE_HEADER = ("| row | mode | bits | seeds | NDS | mAP | mATE | mAOE | mAVE | size MB | ratio "
                "| paper NDS (nuScenes, Tiny) | time per seed (train + score) |")


def _pm(m: float | None, sd: float | None, nd: int = 4) -> str:
    """``mean ± std`` (just the mean for one seed)."""
    return _f(m, nd) if sd is None else f"{_f(m, nd)} ± {_f(sd, nd)}"


def table_lines(result: dict) -> list[str]:
    """The main table (also what the tests parse): one line per row (mean ± std over its seeds) plus the teacher."""
    paper = {p["ours"]: p for p in result["paper"]["rows"] if p.get("ours")}
    lines = [TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    t = result["teacher"]
    teacher = {**t, "seeds": ["-"], **{f"{k}_std": None for k in METRICS}}
    for r in result["summary"] + [teacher]:
        p = paper.get("qdbev" if r["row"] in QDBEV_ROWS else r["row"]) if r["row"] in ("fp32", *QDBEV_ROWS) else None
        pp = f"{p['nds']:.3f} ({p['model']})" if p else "-"
        seeds = ",".join(str(x) for x in r["seeds"])
        lines.append(
            f"| {r['row']} | {r['label']} | {r['bits']} | {seeds} | {_pm(r['nds'], r['nds_std'])} "
            f"| {_pm(r['map'], r['map_std'])} | {_f(r['mate'])} | {_f(r['maoe'])} | {_f(r['mave'])} "
            f"| {_f(r['size_mb'], 3)} | {_f(r['ratio'], 2)} | {pp} "
            f"| {_dur_or_na(r.get('train_time_s', 0.0))} + {_dur(r['score_wall_s'])} |")
    return lines


def seed_lines(result: dict) -> list[str]:
    """One line per trained run: row, seed, metrics, how it got here."""
    lines = ["| row | seed | NDS | mAP | mATE | mAOE | mAVE | status |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['row']} | {r.get('seed')} | {_f(r['nds'])} | {_f(r['map'])} | {_f(r['mate'])} "
                     f"| {_f(r['maoe'])} | {_f(r['mave'])} | {r['status']} |")
    return lines


def paired_lines(result: dict) -> list[str]:
    """Paired NDS differences seed by seed, with the 95 % t interval and the verdict."""
    lines = ["| difference (NDS) | seeds | per seed | mean ± std | 95 % CI | verdict |", "|---|---|---|---|---|---|"]
    for p in result["paired"]:
        per = ", ".join(f"{d:+.4f}" for d in p["diffs"])
        ci = "n/a" if p["ci95_half"] is None else f"{p['mean'] - p['ci95_half']:+.4f} .. {p['mean'] + p['ci95_half']:+.4f}"
        lines.append(f"| {p['a']} - {p['b']} | {','.join(map(str, p['seeds']))} | {per} "
                     f"| {_pm(p['mean'], p['std'])} | {ci} | {p['verdict']} |")
    return lines


def _seeds_line(result: dict, single: list[str]) -> str:
    """The seeds every row shares, or (a table still being completed) a pointer to the per-row column."""
    s = result["settings"]
    why = "(data order, augmentation, calibration batches; each seed gives every row the same batches)"
    per_row = {r["row"]: r["seeds"] for r in result["summary"] if r["row"] not in s["single_seed_rows"]}
    if all(list(v) == list(s["seeds"]) for v in per_row.values()):
        return (f"- **Seeds** {', '.join(map(str, s['seeds']))} per row {why}"
                + (f"; {', '.join(single)} with seed {s['seeds'][0]} only (sanity row)." if single else "."))
    return (f"- **Seeds** differ between rows (the table is being completed over several sittings; see the "
            f"`seeds` column) {why}; this invocation asked for seeds {', '.join(map(str, s['seeds']))} of rows "
            f"{', '.join(s['rows'])}.")


def _intro_lines(result: dict) -> list[str]:
    """Title, the synthetic-data warning and what every row shares (teacher, budget, seeds, scoring)."""
    s = result["settings"]
    tc = s["teacher_config"]
    single = [r for r in s["single_seed_rows"] if r in s["rows"]]
    return [
        "# QD-BEV on SynthScenes: the paper's table on our data",
        "",
        "<!-- Generated by `qdbev experiment paper-table` (qdbev_core/experiments/paper_table.py). Do not edit:"
        " rerun the command. -->",
        "",
        "**These are synthetic-data numbers.** Every row below was trained and scored on SynthScenes, the "
        "procedurally rendered dataset in nuScenes format that this repository generates; they are not "
        "comparable with the paper's nuScenes numbers, which are listed beside them only for orientation.",
        "",
        f"- **Teacher** `{s['teacher']['name']}` (sha256 `{s['teacher']['sha256'][:12]}`), config `{tc['name']}` "
        f"({tc['image_size'][0]}x{tc['image_size'][1]} input, {tc['bev_h']}x{tc['bev_w']} BEV, "
        f"{tc.get('enc_layers', '?')} encoder layer(s)).",
        f"- **Budget** of every trained row: {s['steps']} steps x global batch {s['global_batch']}, AdamW lr "
        f"{s['lr']:g}, warm-up {s['warmup_steps']}, cosine (progressive rows: a warm-up and cosine per stage), "
        f"training split `{s['split']}` of `{s['dataroot']}`.",
        _seeds_line(result, single),
        f"- **Scored** on `{s['score_split']}` of `{s['score_dataroot']}` ({s.get('score_samples') or '?'} samples, "
        "a seed no training set used) with the official nuScenes evaluator (detection_cvpr_2019), loading the "
        f"file each row deploys. Curves during training: `{s['val_split']}` of `{s['val_dataroot']}` "
        f"({s.get('val_samples') or '?'} samples), every {s['eval_every']} steps.",
        "",
    ]


def _results_lines(result: dict) -> list[str]:
    """The main table (mean ± std over seeds), its legend and what each row is."""
    s = result["settings"]
    return [
        "## Results (synthetic data): mean ± std over seeds",
        "",
        *table_lines(result),
        "",
        "NDS / mAP / mATE / mAOE / mAVE: official devkit metrics (mATE in metres, mAOE in radians, mAVE in m/s); "
        "± is the sample standard deviation over seeds. Size: the model file on disk in 10^6 bytes (packed low-bit "
        "`model.packed.safetensors` for quantized rows: 4-bit weights two per byte, per-channel scales; fp32 "
        f"`safetensors` otherwise; sidecar JSON not counted). Ratio: {result['size_reference']} size / this row's "
        "size. Time: median seconds per logged training step (metrics.csv) x steps + final scoring, mean per seed; "
        "the median is not moved by the pauses and resumes of a table completed over several sittings, and the "
        "periodic evaluations are not in it. 2-core CPU, shared machine.",
        "",
        "Rows: "
        + ("**fp32** = the teacher fine-tuned in full precision for the same steps at the same learning rate "
           "(`qdbev train --init-from`), so every row gets the same extra training; "
           if not s["fp32_as_is"] else "**fp32** = the teacher as-is (`--fp32-as-is`); ")
        + "**standard** = all layers W4A6 from step 0; **progressive** = backbone -> neck -> BEV encoder -> "
          "decoder, equal shares of the steps, each stage with its own warm-up and cosine (the paper's baseline); "
          "**qdbev** = standard + view-guided distillation of image-view (masked by the projected BEV pillars) and "
          "BEV features from the frozen teacher; **qdbev-progressive** = progressive + the same distillation (the "
          "paper's combination); **w8a8** = standard QAT at 8 bit (sanity); **teacher** = the starting model "
          "without any extra training. First convolution and final prediction layers are 8 bit in every "
          "quantized row.",
        "",
    ]


def _paired_and_checks_lines(result: dict) -> list[str]:
    """Paired differences seed by seed, then the checks with pass / FAIL, then every run."""
    L = [
        "## Paired differences, seed by seed",
        "",
        "Each seed gives every row the same batches, so row differences are compared seed by seed. A difference "
        "is called larger than the noise when its 95 % paired t interval excludes zero.",
        "",
        *(paired_lines(result) if result["paired"] else ["(needs two rows trained with the same seed)"]),
        "",
        "## Checks",
        "",
    ]
    for c in result["checks"]:
        mark = "" if c["pass"] is None else (" - **pass**" if c["pass"] else " - **FAIL**")
        L.append(f"- {c['text']}{mark}")
    if not result["checks"]:
        L.append("- (needs the fp32 / qdbev / progressive rows)")
    L += ["", "## Every run", "", *seed_lines(result), ""]
    return L


def _paper_lines(result: dict) -> list[str]:
    """The paper's own numbers (nuScenes, real data; not comparable)."""
    L = ["## The paper's numbers (nuScenes val, real data; not comparable)", "",
          f"From {result['paper']['source']}. {result['paper']['dataset']}.", "",
          "| model | bits | NDS | size MB | ratio |", "|---|---|---|---|---|"]
    for p in result["paper"]["rows"]:
        L.append(f"| {p['model']} | {p['bits']} | {p['nds']:.3f} | {_f(p['size_mb'], 1)} | {_f(p['ratio'], 1)} |")
    L += ["", result["paper"]["note"], ""]
    return L


def _figure_lines(result: dict, figure: Path | None) -> list[str]:
    """The curves figure, linked relative to RESULTS.md (nothing without a figure or a markdown path)."""
    if figure is None or not result.get("files", {}).get("results_md"):
        return []
    rel = os.path.relpath(Path(figure).resolve(), Path(result["files"]["results_md"]).resolve().parent)
    return ["## Curves (analogue of the paper's Figure 1)", "", f"![NDS, loss and learning rate vs step]({rel})", "",
            "Top left: val NDS at every evaluation during training, one line per seed (teacher as-is dashed). "
            "Top right: detection loss (total minus VGD) per logged step, moving average. Bottom left: the QD-BEV "
            "rows' VGD terms. Bottom right: learning rate per step (progressive rows restart at every stage).", ""]


def _provenance_lines(result: dict) -> list[str]:
    """The command, every run's command and status, the machine and the wall time."""
    s = result["settings"]
    m = result["machine"]
    L: list[str] = []
    L += ["## How this was made", "", "```bash", result["command"] or "(called from Python)", "```", "",
          "Per-run commands (run in-process, or under `torch.distributed.run` with `--ddp-procs`):", ""]
    for r in result["rows"]:
        status = {"reused": "reused a finished run", "resumed": "resumed", "trained": "trained",
                  "teacher": "no training"}.get(r["status"])
        if r["status"] == "archived":
            a = r.get("archived", {})
            status = f"archived result `{a.get('file')}`, trained at commit {str(a.get('commit'))[:12]} on {a.get('date')}"
        L.append(f"- `{r['row']}` seed {r.get('seed')} ({status}): `{r['command'] or 'the teacher file, scored as-is'}`")
    L += ["", f"Machine: {m.get('cpu_summary') or m['cpu']}, {m['platform']}, Python {m['python']}, torch {m['torch']}"
          + (f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU") + f"; {s['ddp_procs']} training process(es).",
          f"Total wall time of the last invocation: {_dur(result['wall_s'])} (reused runs cost only their scoring, "
          "archived runs nothing).",
          ""]
    return L




def render_markdown(result: dict, figure: Path | None = None) -> str:
    """``docs/RESULTS.md``: generated from the JSON only."""
    return "\n".join([*_intro_lines(result), *_results_lines(result), *_paired_and_checks_lines(result),
                      *_paper_lines(result), *_figure_lines(result, figure), *_provenance_lines(result)])


def _smooth(ys: list[float], k: int) -> list[float]:
    if k <= 1 or len(ys) < 2:
        return ys
    out, acc = [], []
    for y in ys:
        acc.append(y)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_paper_figure(result: dict, png: Path) -> None:
    """NDS vs step, detection loss, VGD terms and learning rate vs step for every run, from the JSON's curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axs.ravel()
    colors = {"fp32": "k", "standard": "tab:red", "progressive": "tab:orange", "qdbev": "tab:blue",
              "qdbev-progressive": "tab:purple", "w8a8": "tab:green"}
    labelled: set[tuple[int, str]] = set()

    def label(i: int, text: str) -> str | None:  # one legend entry per row and panel, not per seed
        if (i, text) in labelled:
            return None
        labelled.add((i, text))
        return text

    for r in result["rows"]:
        c = r["curves"]
        col = colors.get(r["row"])
        k = max(1, len(c["step"]) // 25)
        if c["eval_step"]:
            ax[0].plot(c["eval_step"], c["nds"], "o-", color=col, lw=1.0, ms=3,
                       label=label(0, f"{r['row']} ({r['bits']})"))
        if c["step"]:
            ax[1].plot(c["step"], _smooth(c["det_loss"], k), color=col, lw=0.8, label=label(1, r["row"]))
        if c.get("vgd"):
            ax[2].plot(c["step"], _smooth([v or 0.0 for v in c["vgd"]], k), color=col, lw=1.0,
                       label=label(2, f"{r['row']}: vgd (weighted sum)"))
            if c.get("vgd_bev"):
                ax[2].plot(c["step"], _smooth([v or 0.0 for v in c["vgd_bev"]], k), color=col, lw=0.7, ls=":",
                           label=label(2, f"{r['row']}: vgd_bev (unweighted)"))
        if c.get("lr") and any(v is not None for v in c["lr"]):
            ax[3].plot(c["step"], [v if v is not None else float("nan") for v in c["lr"]], color=col, lw=1.0,
                       label=label(3, r["row"]))
    t = result["teacher"]
    ax[0].axhline(t["nds"], color="gray", ls="--", lw=1, label="teacher as-is (score split)")
    ax[0].set(xlabel="step", ylabel="NDS", title="val NDS during training (official devkit, SynthScenes)")
    ax[1].set(xlabel="step", ylabel="loss", title="training detection loss (moving average)")
    if any(r["curves"]["step"] for r in result["rows"]):
        ax[1].set_yscale("log")
    ax[2].set(xlabel="step", title="QD-BEV distillation terms")
    ax[3].set(xlabel="step", ylabel="learning rate", title="learning rate (progressive: one warm-up + cosine per stage)")
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
        a.grid(alpha=0.3)
    s = result["settings"]
    plotted = sorted({r["seed"] for r in result["rows"]})  # archived rows included, not only this invocation's
    fig.suptitle(f"QAT modes on SynthScenes (synthetic data): teacher {s['teacher']['name']}, {s['steps']} steps x "
                 f"batch {s['global_batch']}, seeds {', '.join(map(str, plotted))}", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
