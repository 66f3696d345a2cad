"""Experiments that reproduce the paper's claims on our data.

  paper-table   FP32 / standard / progressive / QD-BEV W4A6 (+ W8A8) with identical budgets and
                seeds, scored with the official devkit; writes <out>/paper-table.json,
                docs/RESULTS.md and docs/paper-table.png (rerun to reuse finished rows / resume)
  vgd-balance   size of the two VGD terms (image-view, BEV) of a teacher vs its freshly
                calibrated quantized student, the numbers the VGD default weights come from
  cross-style   models scored on the same val scenes rendered in several SynthScenes styles
                (NDS / mAP / per-class AP per style; JSON, markdown tables, figure)
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="experiment", metavar="<experiment>", required=True)
    _add_paper_table(sub)
    _add_vgd_balance(sub)
    _add_cross_style(sub)


def _add_paper_table(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    t = sub.add_parser("paper-table", formatter_class=fmt, help="the paper's table on our data (trains / reuses runs)",
                       description=_paper_table_doc())
    t.add_argument("--teacher", required=True, help="full-precision model (manifest name or .safetensors path)")
    t.add_argument("--dataroot", type=Path, required=True, help="training dataroot")
    t.add_argument("--split", default="synth_train", help="training split")
    t.add_argument("--val-dataroot", type=Path, default=None, help="dataroot of the val split (default: --dataroot)")
    t.add_argument("--val-split", default="synth_val", help="split every row is scored on")
    t.add_argument("--version", default="v1.0-mini", help="dataset version folder")
    t.add_argument("--steps", type=int, required=True, help="optimizer steps of every trained row")
    t.add_argument("--batch-size", type=int, default=2, help="GLOBAL batch per step (split over --ddp-procs processes)")
    t.add_argument("--seeds", default="0",
                   help="comma-separated training seeds; every row is trained once per seed (data order, "
                        "augmentation, calibration batches), --single-seed-rows only with the first")
    t.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    t.add_argument("--single-seed-rows", default="w8a8", help="rows trained with the first seed only ('' = none)")
    t.add_argument("--score-dataroot", type=Path, default=None,
                   help="dataroot of the split finished rows are scored on (default: --val-dataroot); "
                        "use a larger held-out split than the curves' one")
    t.add_argument("--score-split", default=None, help="split of --score-dataroot (default: --val-split)")
    t.add_argument("--out", type=Path, default=Path("runs/paper-table"), help="experiment directory (one run per row)")
    t.add_argument("--rows", default=",".join(paper_rows()),
                   help=f"rows to run, in this order, from {', '.join(paper_rows())}")
    t.add_argument("--fp32-as-is", action="store_true",
                   help="fp32 row = the teacher as-is instead of the teacher fine-tuned for the same steps")
    t.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of every row")
    t.add_argument("--warmup-steps", type=int, default=None, help="warm-up steps (default: min(100, steps // 10))")
    t.add_argument("--eval-every", type=int, default=None, help="score val every N steps for the curves (default: steps // 5)")
    t.add_argument("--log-every", type=int, default=10, help="metrics.csv row every N steps")
    t.add_argument("--ckpt-every", type=int, default=250, help="checkpoint every N steps")
    t.add_argument("--calib-batches", type=int, default=8, help="calibration batches of the quantized rows")
    t.add_argument("--ddp-procs", type=int, default=1,
                   help="training processes per row (torch.distributed.run, OMP_NUM_THREADS=1; 2 is ~1.5x faster on a 2-core CPU)")
    t.add_argument("--threads", type=int, default=0, help="torch threads per process (0: default; 1 under --ddp-procs)")
    t.add_argument("--workers", type=int, default=1, help="data loader processes per training process")
    t.add_argument("--results-md", default="docs/RESULTS.md", help="markdown report to write ('' = none)")
    t.add_argument("--figure", default="docs/paper-table.png", help="figure to write ('' = none)")
    t.add_argument("--archive", default="docs/paper-table-rows",
                   help="folder where finished rows are archived and reused from on another machine ('' = none)")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    t.set_defaults(_exp=_paper_table)


def _add_vgd_balance(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    b = sub.add_parser("vgd-balance", formatter_class=fmt, help="VGD term sizes at the start of QAT",
                       description="Teacher vs its calibrated quantized student on a few training batches: the VGD "
                       "image-view and BEV terms (KL at several temperatures, MSE), student in train and eval mode, "
                       "and how flat the teacher's per-channel spatial softmax is. JSON on stdout.")
    b.add_argument("--teacher", required=True, help="full-precision model (manifest name or .safetensors path)")
    b.add_argument("--dataroot", type=Path, required=True, help="training dataroot")
    b.add_argument("--split", default="synth_train", help="split the batches come from")
    b.add_argument("--version", default="v1.0-mini", help="dataset version folder")
    b.add_argument("--bits", default="w4a6", help="student bits")
    b.add_argument("--batches", type=int, default=8, help="batches measured")
    b.add_argument("--batch-size", type=int, default=2, help="samples per batch")
    b.add_argument("--calib-batches", type=int, default=8, help="calibration batches")
    b.add_argument("--temperatures", default="1,2,4", help="KL temperatures to evaluate")
    b.add_argument("--seed", type=int, default=0, help="seed of the batch choice")
    b.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    b.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    b.set_defaults(_exp=_vgd_balance)


def _add_cross_style(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    c = sub.add_parser("cross-style", formatter_class=fmt, help="models scored on the same val scenes in several styles",
                       description=_cross_style_doc())
    c.add_argument("--model", action="append", required=True, dest="models",
                   help="manifest name or .safetensors path; repeat to compare models")
    c.add_argument("--styles", default="default,overcast,dusk,harsh,swapped,random",
                   help="comma-separated SynthScenes styles (names or .json style files)")
    c.add_argument("--dataroot-of", action="append", default=[], metavar="STYLE=PATH",
                   help="use an existing dataroot for STYLE instead of generating its split; repeatable")
    c.add_argument("--data-dir", type=Path, default=Path("data/cross-style-val"),
                   help="where generated splits go (one dataroot per style)")
    c.add_argument("--scenes", type=int, default=2, help="val scenes per style")
    c.add_argument("--samples", type=int, default=10, help="key frames per scene")
    c.add_argument("--image-scale", type=float, default=0.22, help="image size relative to 1600x900")
    c.add_argument("--seed", type=int, default=101, help="SynthScenes seed of the generated splits (same in every style)")
    c.add_argument("--version", default="v1.0-mini", help="dataset version folder")
    c.add_argument("--split", default="synth_val", help="split scored")
    c.add_argument("--out", type=Path, default=Path("runs/cross-style"), help="experiment folder")
    c.add_argument("--markdown", default="", help="also write the tables here, e.g. docs/CROSS_STYLE-table.md ('' = no)")
    c.add_argument("--figure", default="", help="also write the figure here ('' = no)")
    c.add_argument("--workers", type=int, default=1, help="processes generating scenes")
    c.add_argument("--threads", type=int, default=0, help="torch threads of the engine (0 = default)")
    c.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    c.set_defaults(_exp=_cross_style)


def paper_rows() -> tuple[str, ...]:
    from ..experiments.paper_table import ROW_ORDER

    return ROW_ORDER


def _paper_table_doc() -> str:
    from ..experiments import paper_table

    return (paper_table.__doc__ or "").split("\n\n")[0].strip() + (
        " Rows: fp32 (teacher fine-tuned for the same steps at the same lr; --fp32-as-is: the teacher itself), "
        "standard / progressive / qdbev (standard + VGD) / qdbev-progressive (progressive + VGD) W4A6, "
        "w8a8 (sanity). A rerun reuses finished rows and resumes "
        "unfinished ones; a row directory with other settings is refused.")


def run(args: argparse.Namespace) -> int:
    return int(args._exp(args) or 0)


def canonical_command(args: argparse.Namespace) -> str:
    """The paper-table command with every setting explicit (what RESULTS.md records)."""
    a = ["qdbev", "experiment", "paper-table", "--teacher", args.teacher, "--dataroot", str(args.dataroot),
         "--split", args.split, "--val-dataroot", str(args.val_dataroot or args.dataroot), "--val-split", args.val_split,
         "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seeds", ",".join(map(str, _seeds(args))),
         "--out", str(args.out), "--rows", args.rows]
    if args.single_seed_rows != "w8a8":
        a += ["--single-seed-rows", args.single_seed_rows]
    if args.score_dataroot is not None:
        a += ["--score-dataroot", str(args.score_dataroot)]
    if args.score_split is not None:
        a += ["--score-split", args.score_split]
    if args.version != "v1.0-mini":
        a += ["--version", args.version]
    if args.fp32_as_is:
        a.append("--fp32-as-is")
    a += ["--lr", f"{args.lr:g}"]
    for flag, v in (("--warmup-steps", args.warmup_steps), ("--eval-every", args.eval_every)):
        if v is not None:
            a += [flag, str(v)]
    a += ["--log-every", str(args.log_every), "--calib-batches", str(args.calib_batches), "--ddp-procs", str(args.ddp_procs)]
    if args.archive != "docs/paper-table-rows":
        a += ["--archive", args.archive]
    return shlex.join(a)


def _seeds(args: argparse.Namespace) -> tuple[int, ...]:
    """``--seed N`` or ``--seeds a,b,c`` (an error names the bad entry)."""
    if args.seed is not None:
        return (args.seed,)
    try:
        return tuple(int(x) for x in args.seeds.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"qdbev experiment paper-table: --seeds must be comma-separated integers, got {args.seeds!r}")


def _path_or_none(text: str) -> Path | None:
    """A path option where '' means "none" (``Path('')`` would be the current directory)."""
    return Path(text) if text else None


def _paper_table(args: argparse.Namespace) -> int:
    from ..experiments.paper_table import PaperTableConfig, run_paper_table

    cfg = PaperTableConfig(
        teacher=args.teacher, dataroot=args.dataroot, split=args.split, val_dataroot=args.val_dataroot or args.dataroot,
        val_split=args.val_split, version=args.version, steps=args.steps, batch_size=args.batch_size, seeds=_seeds(args),
        single_seed_rows=tuple(r.strip() for r in args.single_seed_rows.split(",") if r.strip()),
        score_dataroot=args.score_dataroot, score_split=args.score_split,
        out=args.out, rows=tuple(r.strip() for r in args.rows.split(",") if r.strip()), fp32_as_is=args.fp32_as_is,
        lr=args.lr, warmup_steps=args.warmup_steps, eval_every=args.eval_every, log_every=args.log_every,
        ckpt_every=args.ckpt_every, calib_batches=args.calib_batches, ddp_procs=args.ddp_procs, threads=args.threads,
        workers=args.workers, results_md=_path_or_none(args.results_md), figure=_path_or_none(args.figure),
        archive=_path_or_none(args.archive), command=canonical_command(args), progress=args.progress,
    )
    result = run_paper_table(cfg)
    summary = {k: v for k, v in result.items() if k not in ("rows", "teacher", "paper", "summary")}
    summary["rows"] = [{k: v for k, v in r.items() if k != "curves"} for r in result["rows"] + [result["teacher"]]]
    print(json.dumps(summary, indent=2))
    return 0


def _vgd_balance(args: argparse.Namespace) -> int:
    from ..experiments.vgd_balance import measure_vgd_balance

    res = measure_vgd_balance(args.teacher, args.dataroot, args.split, args.version, args.bits, args.batches,
                              args.batch_size, args.calib_batches, args.seed,
                              tuple(float(t) for t in args.temperatures.split(",") if t), args.threads, args.progress)
    print(json.dumps(res, indent=2))
    return 0


def _cross_style_doc() -> str:
    from ..experiments import cross_style

    return (cross_style.__doc__ or "").strip()


def _cross_style(args: argparse.Namespace) -> int:
    from ..experiments.cross_style import CrossStyleConfig, run_cross_style

    roots = {}
    for item in args.dataroot_of:
        style, sep, path = item.partition("=")
        if not sep or not style or not path:
            raise SystemExit(f"--dataroot-of {item!r}: expected STYLE=PATH")
        roots[style.strip()] = Path(path)
    cmd = ["qdbev", "experiment", "cross-style"]
    for m in args.models:
        cmd += ["--model", m]
    cmd += ["--styles", args.styles, "--scenes", str(args.scenes), "--samples", str(args.samples),
            "--image-scale", f"{args.image_scale:g}", "--seed", str(args.seed)]
    for item in args.dataroot_of:
        cmd += ["--dataroot-of", item]
    cfg = CrossStyleConfig(
        models=tuple(args.models), out=args.out, styles=tuple(s.strip() for s in args.styles.split(",") if s.strip()),
        data_dir=args.data_dir, dataroots=roots, scenes=args.scenes, samples=args.samples,
        image_scale=args.image_scale, seed=args.seed, version=args.version, split=args.split, workers=args.workers,
        threads=args.threads or None, markdown=_path_or_none(args.markdown), figure=_path_or_none(args.figure),
        command=shlex.join(cmd), progress=args.progress,
    )
    result = run_cross_style(cfg)
    print((args.out / "cross-style.md").read_text())
    print(f"wrote {args.out / 'cross-style.json'}, cross-style.md, cross-style.png in {result['wall_s']:.0f} s")
    return 0
