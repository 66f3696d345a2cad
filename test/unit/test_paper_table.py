"""`qdbev experiment paper-table` end to end on a tiny teacher: rows trained once per seed with the
same budget, scored from the files they deploy, mean / std per row and paired differences seed by
seed, RESULTS.md / JSON / figure generated from the runs (the markdown's numbers are the JSON's), a
rerun reuses the finished runs, a rerun elsewhere reuses the archived runs, other settings are refused."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.cli.main import main as qdbev_main
from qdbev_core.experiments.paper_table import median_s_per_step, paired_differences, read_curves, summarize_rows


ROWS = "fp32,qdbev-progressive,w8a8"
SEEDS = (3, 4)
RUNS = [("fp32", 3), ("fp32", 4), ("qdbev-progressive", 3), ("qdbev-progressive", 4),
        ("w8a8", 3)]  # w8a8 is a single-seed (sanity) row; standard / progressive rows are the same code path


def _argv(root: Path, teacher: Path, out: Path, docs: Path, steps: int = 2, rows: str = ROWS,
          seeds: str = "3,4") -> list[str]:
    return ["experiment", "paper-table", "--teacher", str(teacher), "--dataroot", str(root), "--split", "synth_train",
            "--val-split", "synth_val", "--steps", str(steps), "--batch-size", "1", "--seeds", seeds, "--out", str(out),
            "--rows", rows, "--eval-every", "1", "--log-every", "1", "--calib-batches", "1",
            "--threads", "2", "--workers", "0", "--results-md", str(docs / "RESULTS.md"),
            "--figure", str(docs / "paper-table.png"), "--archive", str(docs / "rows"), "--no-progress"]


def _md_table(md: str, heading: str) -> list[list[str]]:
    """The first markdown table after ``heading``, as cells."""
    lines = md.split(heading, 1)[1].splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    block = []
    for ln in lines[first:]:
        if not ln.startswith("|"):
            break
        block.append([c.strip() for c in ln.strip("|").split("|")])
    return block


def _fmt(v, nd=4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


@pytest.fixture
def row_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first row trains in the real ``python -m qdbev_core`` child process (``_run_qdbev``), the
    others run the same ``qdbev`` argv through ``qdbev_core.cli.main.main`` in this process, their
    stdout joining stderr as the child's does. Each child paid ~4 CPU-s of interpreter, torch and
    devkit imports before its 2 steps; the child-process path itself stays covered by the first row."""
    from qdbev_core.experiments import paper_table

    real, how = paper_table._run_qdbev, []

    def run(argv: list[str], ddp_procs: int) -> None:
        if not how or ddp_procs > 1:
            how.append("child process")
            return real(argv, ddp_procs)
        how.append("in process")
        with contextlib.redirect_stdout(sys.stderr):
            rc = qdbev_main(list(argv))
        if rc != 0:
            raise RuntimeError(f"`qdbev {' '.join(argv)}` failed with exit code {rc}")

    monkeypatch.setattr(paper_table, "_run_qdbev", run)
    return how


def test_paper_table_end_to_end_seeds_and_reuse(synth_dataroot: Path, confident_tiny_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture, row_runs: list[str]) -> None:
    teacher = confident_tiny_model
    out, docs = tmp_path / "pt", tmp_path / "docs"
    assert qdbev_main(_argv(synth_dataroot, teacher, out, docs)) == 0
    printed = json.loads(capsys.readouterr().out)
    res = json.loads((out / "paper-table.json").read_text())
    assert [(r["row"], r["seed"]) for r in printed["rows"]][:-1] == RUNS and printed["rows"][-1]["row"] == "teacher"
    runs = {(r["row"], r["seed"]): r for r in res["rows"]}
    assert list(runs) == RUNS and all(r["status"] == "trained" for r in runs.values())
    assert row_runs == ["child process"] + ["in process"] * 4  # one training per run, the first as a child
    for (name, seed), r in runs.items():
        c = r["curves"]
        assert c["step"] == [1, 2] and c["eval_step"] == [1, 2], name  # periodic evaluation -> NDS curve
        # scoring the deployed file reproduces the training loop's final evaluation
        assert r["nds"] == pytest.approx(r["train_final_eval_nds"], abs=1e-9), name
        assert r["mate"] is not None, name  # boxes were predicted and the devkit scored them
        assert f"--steps 2 --batch-size 1 --lr 0.0002 --warmup-steps 0 --seed {seed}" in r["command"], name
        assert r["file"].startswith(str(out / name / f"seed{seed}")), r["file"]
    # the seed changes the run (other batches / calibration), not only its label
    assert runs[("qdbev-progressive", 3)]["curves"]["loss"] != runs[("qdbev-progressive", 4)]["curves"]["loss"]
    assert runs[("fp32", 3)]["curves"]["loss"] != runs[("fp32", 4)]["curves"]["loss"]
    assert runs[("fp32", 3)]["file"].endswith("model.safetensors") and "--init-from" in runs[("fp32", 3)]["command"]
    assert runs[("qdbev-progressive", 3)]["file"].endswith("model.packed.safetensors")
    assert runs[("qdbev-progressive", 3)]["ratio"] > 4
    assert runs[("fp32", 4)]["ratio"] == 1.0
    assert runs[("qdbev-progressive", 3)]["curves"]["vgd_bev"] and not runs[("fp32", 3)]["curves"].get("vgd")
    assert "--progressive" in runs[("qdbev-progressive", 4)]["command"]

    # mean / std per row over its seeds; paired differences seed by seed
    summ = {r["row"]: r for r in res["summary"]}
    assert list(summ) == ["fp32", "qdbev-progressive", "w8a8"]
    for name in ("fp32", "qdbev-progressive"):
        a, b = runs[(name, 3)]["nds"], runs[(name, 4)]["nds"]
        assert summ[name]["seeds"] == [3, 4] and summ[name]["nds"] == pytest.approx((a + b) / 2)
        assert summ[name]["nds_std"] == pytest.approx(abs(a - b) / 2 ** 0.5)
    assert summ["w8a8"]["seeds"] == [3] and summ["w8a8"]["nds_std"] is None
    pairs = {(p["a"], p["b"]): p for p in res["paired"]}
    p = pairs[("qdbev-progressive", "fp32")]
    assert p["seeds"] == [3, 4]
    assert p["diffs"] == pytest.approx([runs[("qdbev-progressive", s)]["nds"] - runs[("fp32", s)]["nds"]
                                        for s in SEEDS])
    assert p["verdict"] in ("larger than the noise", "within the noise")
    assert ("qdbev", "standard") not in pairs  # a row that was not run gives no difference
    checks = [c["check"] for c in res["checks"]]
    assert "qdbev-progressive W4A6 NDS >= FP32 NDS - 0.01" in checks
    assert "qdbev-progressive vs the FP32 teacher as-is" in checks
    assert res["teacher"]["status"] == "teacher" and res["teacher"]["mate"] is not None

    md = (docs / "RESULTS.md").read_text()
    assert "synthetic-data numbers" in md and "0.372 (QD-BEV-Tiny)" in md and "paper-table.png" in md
    assert "**Seeds** 3, 4 per row" in md and "w8a8 with seed 3 only" in md
    assert res["command"] in md and "--seeds 3,4" in res["command"]
    table = _md_table(md, "## Results")
    assert table[0][:11] == ["row", "mode", "bits", "seeds", "NDS", "mAP", "mATE", "mAOE", "mAVE", "size MB", "ratio"]
    cells = {c[0]: c for c in table[2:]}
    assert list(cells) == ["fp32", "qdbev-progressive", "w8a8", "teacher"]
    for r in res["summary"]:
        c = cells[r["row"]]
        pm = _fmt(r["nds"]) if r["nds_std"] is None else f"{_fmt(r['nds'])} ± {_fmt(r['nds_std'])}"
        assert c[2:5] == [r["bits"], ",".join(map(str, r["seeds"])), pm], r["row"]
        assert c[9:11] == [_fmt(r["size_mb"], 3), _fmt(r["ratio"], 2)], r["row"]
    paired_md = {c[0]: c for c in _md_table(md, "## Paired differences")[2:] if " - " in c[0]}
    assert paired_md["qdbev-progressive - fp32"][2] == ", ".join(f"{d:+.4f}" for d in p["diffs"])
    assert paired_md["qdbev-progressive - fp32"][5] == p["verdict"]
    for chk in res["checks"]:
        assert chk["text"] in md
    png = (docs / "paper-table.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # rerun: every run is reused (no training), same numbers
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/model*.safetensors")}
    assert len(before) == 5 + 3  # every run's model.safetensors + the quantized runs' packed files
    archive_before = {p: p.read_bytes() for p in (docs / "rows").glob("*.json")}
    assert qdbev_main(_argv(synth_dataroot, teacher, out, docs)) == 0
    # the archive (kept in git) describes the runs, not the invocation: a rerun leaves it byte for byte
    assert {p: p.read_bytes() for p in (docs / "rows").glob("*.json")} == archive_before
    assert len(row_runs) == 5  # nothing trained again
    capsys.readouterr()
    again = json.loads((out / "paper-table.json").read_text())
    assert [r["status"] for r in again["rows"]] == ["reused"] * 5
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/model*.safetensors")} == before
    assert [r["nds"] for r in again["rows"]] == [r["nds"] for r in res["rows"]]
    assert re.search(r"`fp32` seed 3 \(reused a finished run\)", (docs / "RESULTS.md").read_text())

    # another machine: no run directories, only the archive (kept in git) -> every run comes from it, no training
    archived = sorted(p.name.rsplit("-", 1)[0] for p in (docs / "rows").glob("*.json"))
    assert archived == sorted(r for r, _ in RUNS)
    out2 = tmp_path / "pt-elsewhere"
    assert qdbev_main(_argv(synth_dataroot, teacher, out2, docs)) == 0
    capsys.readouterr()
    third = json.loads((out2 / "paper-table.json").read_text())
    assert [r["status"] for r in third["rows"]] == ["archived"] * 5 and len(row_runs) == 5
    assert not list(out2.glob("*/seed*/model*.safetensors")) and not (out2 / "fp32").exists()
    assert len(third["rows"]) == len(res["rows"])
    for a, b in zip(third["rows"], res["rows"]):
        assert (a["row"], a["seed"], a["nds"], a["map"], a["size_bytes"], a["curves"]) == \
            (b["row"], b["seed"], b["nds"], b["map"], b["size_bytes"], b["curves"])
    assert third["paired"] == res["paired"]
    assert "archived result" in (docs / "RESULTS.md").read_text()

    # a table completed over several sittings: asking for one run still reports every archived run of
    # the same experiment (mean / std and paired differences included), not only the one asked for
    out3 = tmp_path / "pt-one-row"
    assert qdbev_main(_argv(synth_dataroot, teacher, out3, docs, rows="w8a8", seeds="3")) == 0
    capsys.readouterr()
    fourth = json.loads((out3 / "paper-table.json").read_text())
    assert [(r["row"], r["seed"], r["status"]) for r in fourth["rows"]] == [(n, s, "archived") for n, s in RUNS]
    assert len(row_runs) == 5 and fourth["summary"] == third["summary"] and fourth["paired"] == third["paired"]
    md4 = (docs / "RESULTS.md").read_text()
    assert "**Seeds** differ between rows" in md4 and "asked for seeds 3 of rows w8a8" in md4

    # other settings in the same directory are refused before anything runs
    assert qdbev_main(_argv(synth_dataroot, teacher, out, docs, steps=3)) == 2
    assert "other settings" in capsys.readouterr().err


def test_paired_differences_call_noise_by_a_paired_t_interval() -> None:
    def runs(row: str, nds: list[float]) -> list[dict]:
        return [{"row": row, "seed": s, "nds": v} for s, v in zip((0, 1, 2), nds)]

    # consistent +0.02 with little spread: beyond the noise; +-0.02 alternating: within it
    rows = runs("standard", [0.40, 0.45, 0.42]) + runs("qdbev", [0.42, 0.471, 0.439]) + runs("progressive", [0.44, 0.43, 0.46])
    p = {(x["a"], x["b"]): x for x in paired_differences(rows)}
    assert p[("qdbev", "standard")]["diffs"] == pytest.approx([0.02, 0.021, 0.019])
    assert p[("qdbev", "standard")]["verdict"] == "larger than the noise"
    assert p[("qdbev", "progressive")]["diffs"] == pytest.approx([-0.02, 0.041, -0.021])
    assert p[("qdbev", "progressive")]["verdict"] == "within the noise"
    assert ("qdbev", "fp32") not in p
    one = paired_differences(runs("standard", [0.4]) + runs("qdbev", [0.5]))
    assert one[0]["std"] is None and one[0]["verdict"] == "one seed: no noise estimate"
    s = {r["row"]: r for r in summarize_rows([{**r, "label": "x", "mode": "m", "bits": "w4a6", "size_mb": 1.0,
                                               "train_time_s": 60.0, "score_wall_s": 0.0} for r in rows])}
    assert s["standard"]["n"] == 3 and s["standard"]["seeds"] == [0, 1, 2]
    assert s["standard"]["nds"] == pytest.approx(sum([0.40, 0.45, 0.42]) / 3)
    assert s["standard"]["nds_std"] == pytest.approx(float(np.std([0.40, 0.45, 0.42], ddof=1)))
    assert s["standard"]["train_time_s"] == pytest.approx(60.0)


def test_curves_of_a_resumed_and_paused_run(tmp_path: Path) -> None:
    """A run resumed from its step-20 checkpoint logs steps 30-40 again: the curve keeps the rows of the
    resumed run, and the time per step is the median, not moved by a SIGSTOP pause (745 s) or an evaluation."""
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,lr,s_per_step,loss,nds,map\n"
                   "10,1e-4,2.0,9.0,,\n20,1e-4,2.1,8.0,,\n30,1e-4,745.0,7.5,,\n40,1e-4,2.2,7.0,,\n"
                   "30,1e-4,1.9,7.4,,\n40,1e-4,15.0,6.9,,\n40,,,,0.41,0.30\n50,1e-4,2.0,6.5,,\n")
    c = read_curves(csv)
    assert c["step"] == [10, 20, 30, 40, 50]
    assert c["loss"] == pytest.approx([9.0, 8.0, 7.4, 6.9, 6.5])
    assert c["eval_step"] == [40] and c["nds"] == pytest.approx([0.41])
    assert median_s_per_step(c) == pytest.approx(2.0)
    assert median_s_per_step(read_curves(tmp_path / "missing.csv")) is None


def test_archive_key_follows_the_data_not_its_path(tmp_path: Path) -> None:
    from qdbev_core.experiments import row_archive

    a, b = tmp_path / "a" / "v1.0-mini", tmp_path / "b" / "v1.0-mini"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "sample.json").write_text('[{"token": "x"}]')
    fa, fb = (row_archive.data_fingerprint(d.parent, "v1.0-mini") for d in (a, b))
    assert fa == fb  # same tables in another folder: the same experiment
    (b / "sample.json").write_text('[{"token": "y"}]')
    assert row_archive.data_fingerprint(b.parent, "v1.0-mini") != fa
    key = row_archive.archive_key({"row": "fp32", "dataroot": str(a.parent), "seed": 0}, {"dataroot": fa})
    assert key["dataroot"] == f"tables-sha256:{fa}"
    row_archive.store_entry(tmp_path / "arch", "fp32", key, {"row": "fp32", "nds": 0.5})
    assert row_archive.load_entry(tmp_path / "arch", "fp32", key)["nds"] == 0.5
    assert row_archive.load_entry(tmp_path / "arch", "fp32", {**key, "seed": 1}) is None  # other settings: not reused
    with pytest.raises(FileNotFoundError, match="make nano-data"):
        row_archive.data_fingerprint(tmp_path / "missing", "v1.0-mini")
    # a truncated entry is reported with its path and the way out, not read as "not archived"
    entry = row_archive.entry_path(tmp_path / "arch", "fp32", key)
    entry.write_text(entry.read_text()[:40])
    with pytest.raises(ValueError, match=f"{entry.name}.*unreadable.*delete it to retrain"):
        row_archive.load_entry(tmp_path / "arch", "fp32", key)
