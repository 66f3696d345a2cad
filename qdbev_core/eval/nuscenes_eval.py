"""Score a results JSON with the official nuScenes detection evaluator (devkit 1.2.0).

``evaluate`` runs ``nuscenes.eval.detection.evaluate.DetectionEval`` with the
``detection_cvpr_2019`` config unchanged, so the numbers are the nuScenes leaderboard's. Before
handing over it checks the things the devkit only reports as a bare ``AssertionError`` or a crash:

- ``eval_set`` resolution (devkit 1.2.0): a built-in split name (``mini_val``, ``val``, ...) uses
  the hard-coded scene list and must match the version (``mini_*`` needs ``v1.0-mini``, ``train``
  / ``val`` need ``v1.0-trainval``); any other name is looked up in
  ``<dataroot>/<version>/splits.json`` (a built-in name shadows a custom entry of the same name).
- Built-in split: the results must hold exactly the split's samples (the devkit asserts set
  equality). Custom split: every sample of the split must be present; other tokens are ignored.
- A submission with no box at all, or a split whose ground truth has no box, crashes the devkit
  (``filter_eval_boxes`` cannot infer the box class): rejected with ``ValueError``.
- ``DetectionEval.main`` prints its summary to stdout unconditionally (and ``load_gt`` shows a
  tqdm bar on stderr even when not verbose); we route both to stderr (``verbose=True``) or
  swallow them, so callers own stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

from ..classes import CLASS_NAMES
from ..data.reader import load_nuscenes, predefined_splits, resolve_split, split_matches_version
from .results import validate_submission

CONFIG_NAME = "detection_cvpr_2019"

TP_ERROR_NAMES: dict[str, str] = {
    "trans_err": "mATE",
    "scale_err": "mASE",
    "orient_err": "mAOE",
    "vel_err": "mAVE",
    "attr_err": "mAAE",
}
"""Devkit TP metric key -> the name papers print."""



def split_sample_tokens(nusc, dataroot: str | os.PathLike, version: str, split: str) -> list[str]:
    """Sample tokens the evaluator will score for ``split`` (the same set the reader yields)."""
    scenes = set(resolve_split(dataroot, version, split, {s["name"] for s in nusc.scene}))
    return [s["token"] for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in scenes]


def evaluate(
    results_json: str | os.PathLike,
    dataroot: str | os.PathLike,
    version: str,
    split: str,
    output_dir: str | os.PathLike,
    verbose: bool = False,
    render_curves: bool = False,
    nusc=None,
    heading: bool = False,
) -> dict:
    """Run the official nuScenes detection evaluation; returns the ``metrics_summary`` dict.

    The devkit writes ``metrics_summary.json`` and ``metrics_details.json`` to ``output_dir``
    (and PR/TP curve PDFs to ``output_dir/plots`` when ``render_curves``). Keys of interest:
    ``mean_ap``, ``nd_score``, ``tp_errors`` (``trans_err`` ...), ``mean_dist_aps`` (per class).
    With ``heading`` the summary also holds ``heading_breakdown`` (``eval/heading.py``: per class,
    the shares of matched boxes whose yaw is aligned / across / flipped, and their speeds), also
    written to ``heading_breakdown.json``.

    Raises ``FileNotFoundError`` for a missing results file / dataroot pieces and ``ValueError``
    for a submission or split the devkit cannot score (with the reason).
    """
    results_path = Path(results_json)
    if not results_path.is_file():
        raise FileNotFoundError(f"results file {results_path} not found")
    try:
        submission = json.loads(results_path.read_text())
    except ValueError as exc:
        raise ValueError(f"results file {results_path} is not valid JSON ({exc})") from exc

    if not split_matches_version(split, version):  # fail before the (slow on trainval) table load
        resolve_split(dataroot, version, split, set())
    if nusc is None:
        nusc = load_nuscenes(dataroot, version)
    tokens = split_sample_tokens(nusc, dataroot, version, split)
    validate_submission(submission, tokens)
    if split in predefined_splits():
        extra = set(submission["results"]) - set(tokens)
        if extra:
            raise ValueError(f"results hold {len(extra)} samples outside split '{split}' (e.g. {next(iter(extra))}); "
                             "for a built-in split the devkit requires exactly the split's samples")
    if sum(len(submission["results"][t]) for t in tokens) == 0:
        raise ValueError(f"the submission has no boxes for the samples of split '{split}'; "
                         "the nuScenes evaluator cannot score that")
    if sum(len(nusc.get("sample", t)["anns"]) for t in tokens) == 0:
        raise ValueError(f"split '{split}' has no ground-truth annotations; nothing to evaluate")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _devkit_output(verbose):
        ev = devkit_evaluator(nusc, results_path, split, out, verbose)
        summary = ev.main(plot_examples=0, render_curves=render_curves)
    if heading:
        from .heading import breakdown_to_dict, heading_breakdown

        summary["heading_breakdown"] = breakdown_to_dict(heading_breakdown(ev.gt_boxes, ev.pred_boxes))
        (out / "heading_breakdown.json").write_text(json.dumps(summary["heading_breakdown"], indent=2) + "\n")
    return summary


def _devkit_output(verbose: bool):
    """The devkit prints its summary to stdout unconditionally and tqdm bars to stderr: route both
    to stderr when verbose, swallow them otherwise (callers own stdout)."""
    sink = sys.stderr if verbose else io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(sink))
    stack.enter_context(contextlib.redirect_stderr(sys.stderr if verbose else sink))
    return stack


def devkit_evaluator(nusc, results_json: str | os.PathLike, split: str, output_dir: str | os.PathLike, verbose: bool = False):
    """The devkit's ``DetectionEval`` (detection_cvpr_2019) for a results file and split, boxes
    loaded and range-filtered (``.gt_boxes`` / ``.pred_boxes``, global frame), nothing scored yet.
    ``evaluate`` checks the submission first; this does not."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    with _devkit_output(verbose):
        return DetectionEval(nusc, config=config_factory(CONFIG_NAME), result_path=str(results_json),
                             eval_set=split, output_dir=str(output_dir), verbose=verbose)


def format_summary(summary: dict) -> str:
    """mAP, NDS, the five TP errors and a per-class table, aligned, as printed by ``qdbev eval``."""
    lines = [
        f"{'mAP':<6}{summary['mean_ap']:8.4f}",
        f"{'NDS':<6}{summary['nd_score']:8.4f}",
    ]
    for key, name in TP_ERROR_NAMES.items():
        lines.append(f"{name:<6}{summary['tp_errors'][key]:8.4f}")
    lines.append("")
    header = f"{'class':<22}{'AP':>7}" + "".join(f"{n[1:]:>7}" for n in TP_ERROR_NAMES.values())
    lines.append(header)
    lines.append("-" * len(header))
    aps = summary["mean_dist_aps"]
    tps = summary["label_tp_errors"]
    for cls in [c for c in CLASS_NAMES if c in aps] + [c for c in aps if c not in CLASS_NAMES]:
        row = f"{cls:<22}{aps[cls]:7.3f}"
        for key in TP_ERROR_NAMES:
            v = tps[cls][key]
            row += f"{'nan':>7}" if v is None or v != v else f"{v:7.3f}"
        lines.append(row)
    return "\n".join(lines)
