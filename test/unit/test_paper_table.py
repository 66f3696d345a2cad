"""`qdbev experiment paper-table` end to end on a tiny teacher: rows trained with the same budget,
scored from the files they deploy, RESULTS.md / JSON / figure generated from the runs (the
markdown's numbers are the JSON's), a rerun reuses the finished rows, a rerun elsewhere reuses the
archived rows, other settings are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from qdbev_core.checkpoint import save_weights
from qdbev_core.cli.main import main as qdbev_main
from qdbev_core.model import BEVDetector

TINY = {"num_queries": 30, "image_size": (64, 176), "bev_h": 16, "bev_w": 16}


def _tiny_teacher(path: Path) -> Path:
    torch.manual_seed(0)
    model = BEVDetector("nano", **TINY)
    with torch.no_grad():  # confident class logits, so that the untrained teacher predicts boxes to score
        for n, p in model.named_parameters():
            if n.startswith("heads.cls_branches.") and n.endswith("out.bias"):
                p.fill_(-1.0)
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict(), "precision": "fp32"})
    return path


ROWS = "fp32,standard,qdbev,qdbev-progressive"


def _argv(root: Path, teacher: Path, out: Path, docs: Path, steps: int = 2) -> list[str]:
    return ["experiment", "paper-table", "--teacher", str(teacher), "--dataroot", str(root), "--split", "synth_train",
            "--val-split", "synth_val", "--steps", str(steps), "--batch-size", "1", "--seed", "3", "--out", str(out),
            "--rows", ROWS, "--eval-every", "1", "--log-every", "1", "--calib-batches", "1",
            "--threads", "2", "--workers", "0", "--results-md", str(docs / "RESULTS.md"),
            "--figure", str(docs / "paper-table.png"), "--archive", str(docs / "rows"), "--no-progress"]


def _md_rows(md: str) -> dict[str, list[str]]:
    lines = md.split("## Results", 1)[1].split("\n\n", 2)[1].splitlines()
    assert lines[0].startswith("| row | mode | bits | NDS | mAP | mATE | mAOE | size MB | ratio |")
    return {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])}


def _fmt(v, nd=4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def test_paper_table_end_to_end_and_reuse(synth_dataroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    teacher = _tiny_teacher(tmp_path / "teacher.safetensors")
    out, docs = tmp_path / "pt", tmp_path / "docs"
    assert qdbev_main(_argv(synth_dataroot, teacher, out, docs)) == 0
    printed = json.loads(capsys.readouterr().out)
    res = json.loads((out / "paper-table.json").read_text())
    assert [r["row"] for r in printed["rows"]] == ["fp32", "standard", "qdbev", "qdbev-progressive", "teacher"]
    rows = {r["row"]: r for r in res["rows"]}
    assert list(rows) == ROWS.split(",") and all(r["status"] == "trained" for r in rows.values())
    for name, r in rows.items():
        c = r["curves"]
        assert c["step"] == [1, 2] and c["eval_step"] == [1, 2], name  # periodic evaluation -> NDS curve
        # scoring the deployed file reproduces the training loop's final evaluation
        assert r["nds"] == pytest.approx(r["train_final_eval_nds"], abs=1e-9), name
        assert r["mate"] is not None, name  # boxes were predicted and the devkit scored them
        assert f"--steps 2 --batch-size 1 --lr 0.0002 --warmup-steps 0 --seed 3" in r["command"], name
    assert rows["fp32"]["file"].endswith("fp32/model.safetensors") and "--init-from" in rows["fp32"]["command"]
    assert rows["standard"]["file"].endswith("model.packed.safetensors") and rows["standard"]["ratio"] > 4
    assert rows["fp32"]["ratio"] == 1.0
    assert rows["qdbev"]["curves"]["vgd_bev"] and not rows["standard"]["curves"]["vgd"]
    assert "--progressive" in rows["qdbev-progressive"]["command"] and "--progressive" not in rows["qdbev"]["command"]
    assert rows["qdbev-progressive"]["curves"]["vgd_img"]
    checks = [c["check"] for c in res["checks"]]  # each QD-BEV row is checked on its own, against fp32 and the teacher
    for q in ("qdbev", "qdbev-progressive"):
        assert f"{q} W4A6 NDS >= FP32 NDS - 0.01" in checks and f"{q} vs the FP32 teacher as-is (reported)" in checks
    assert res["teacher"]["status"] == "teacher" and res["teacher"]["mate"] is not None

    md = (docs / "RESULTS.md").read_text()
    assert "synthetic-data numbers" in md and "0.372 (QD-BEV-Tiny)" in md and "paper-table.png" in md
    assert res["command"] in md and "qdbev experiment paper-table" in res["command"]
    table = _md_rows(md)
    assert list(table) == ["fp32", "standard", "qdbev", "qdbev-progressive", "teacher"]
    for r in res["rows"] + [res["teacher"]]:
        cells = table[r["row"]]
        assert cells[2] == r["bits"]
        assert cells[3:9] == [_fmt(r["nds"]), _fmt(r["map"]), _fmt(r["mate"]), _fmt(r["maoe"]), _fmt(r["size_mb"], 3),
                              _fmt(r["ratio"], 2)], r["row"]
    for chk in res["checks"]:
        assert chk["text"] in md
    png = (docs / "paper-table.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # rerun: every row is reused (no training), same numbers
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/model*.safetensors")}
    assert qdbev_main(_argv(synth_dataroot, teacher, out, docs)) == 0
    capsys.readouterr()
    again = json.loads((out / "paper-table.json").read_text())
    assert [r["status"] for r in again["rows"]] == ["reused"] * 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/model*.safetensors")} == before
    assert [r["nds"] for r in again["rows"]] == [r["nds"] for r in res["rows"]]
    assert re.search(r"`fp32` \(reused a finished run\)", (docs / "RESULTS.md").read_text())

    # another machine: no run directories, only the archive (kept in git) -> every row comes from it, no training
    archived = sorted(p.name for p in (docs / "rows").glob("*.json"))
    assert [a.rsplit("-", 1)[0] for a in archived] == sorted(ROWS.split(","))
    out2 = tmp_path / "pt-elsewhere"
    assert qdbev_main(_argv(synth_dataroot, teacher, out2, docs)) == 0
    capsys.readouterr()
    third = json.loads((out2 / "paper-table.json").read_text())
    assert [r["status"] for r in third["rows"]] == ["archived"] * 4
    assert not list(out2.glob("*/model*.safetensors")) and not (out2 / "fp32").exists()
    for a, b in zip(third["rows"], res["rows"]):
        assert (a["nds"], a["map"], a["size_bytes"], a["curves"]) == (b["nds"], b["map"], b["size_bytes"], b["curves"])
    assert "archived result" in (docs / "RESULTS.md").read_text()

    # other settings in the same directory are refused before anything runs
    assert qdbev_main(_argv(synth_dataroot, teacher, out, docs, steps=3)) == 2
    assert "other settings" in capsys.readouterr().err


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
