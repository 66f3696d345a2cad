"""``backend="auto"`` (engine.auto_select): its cache key, the cached choice reused without timing, the
one-line log, a damaged cache ignored and rewritten, inaccurate paths never chosen, the factory / CLI
wiring (bench's ``auto`` row, ``--path-nds``). Real onnxruntime on tiny random-weight models; the
frame timer is injected (``FakeTimer``), so no test depends on this machine's speed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from qdbev_core.checkpoint import save_weights, sha256_file  # noqa: E402
from qdbev_core.engine import auto_source, load_detector, load_engine  # noqa: E402
from qdbev_core.engine.auto_select import (  # noqa: E402
    NDS_FORMAT,
    ORT_FP32W,
    ORT_INT8,
    TORCH_INT8,
    AccuracyGate,
    AutoChoice,
    PathResult,
    ProbeCheck,
    cache_file,
    candidate_paths,
    decide,
    dequantized_fp32_model,
    int8_note,
    load_auto_engine,
    make_key,
    probe_frames,
    write_json_atomic,
)
from qdbev_core.engine.onnx_engine import OnnxEngine  # noqa: E402
from qdbev_core.hardware import CpuInfo, cpu_info  # noqa: E402
from qdbev_core.model import BEVDetector  # noqa: E402

torch.set_num_threads(2)
SMALL = dict(image_size=(64, 176), bev_h=16, bev_w=16, num_queries=30, dec_layers=2)


class FakeTimer:
    """A ``FrameTimer`` that returns fixed milliseconds per path and counts its calls (runs nothing)."""

    def __init__(self, ms: dict[str, float]) -> None:
        self.ms = ms
        self.calls = 0

    def __call__(self, path, engine, frame) -> float:
        self.calls += 1
        return self.ms[path.name]


def _packed(seed: int, out: Path) -> Path:
    from qdbev_core.export import example_inputs
    from qdbev_core.quant import QuantSpec, calibrate, pack_model, quantize_model

    torch.manual_seed(seed)
    net = BEVDetector("nano", **SMALL).eval()
    fq = quantize_model(net, QuantSpec(), inplace=False)
    calibrate(fq, [example_inputs(net.cfg, seed=s)[:3] for s in (1, 2)])
    pack_model(fq.eval(), out, {"note": f"test model, random weights, seed {seed}"})
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A packed W4A6 tiny model, another one (other weights, same config) and an fp32 tiny model."""
    d = tmp_path_factory.mktemp("auto-models")
    torch.manual_seed(3)
    fp32 = BEVDetector("nano", **SMALL).eval()
    save_weights(fp32.state_dict(), d / "tiny-fp32.safetensors", {"config": fp32.cfg.to_dict(), "precision": "fp32"})
    return {"packed": _packed(0, d / "tiny-w4a6.safetensors"), "other": _packed(1, d / "other-w4a6.safetensors"),
            "fp32": d / "tiny-fp32.safetensors"}


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("auto-onnx")


def _load(models, onnx_cache, auto_dir: Path, timer: FakeTimer, lines: list | None = None, **kw):
    return load_auto_engine(auto_source(models["packed"], onnx_cache), threads=2, cache_dir=auto_dir, timer=timer,
                            repeats=2, log_fn=(lines.append if lines is not None else None), **kw)


MS = {"torch-int8": 100.0, "onnxruntime-int8": 20.0, "onnxruntime-fp32w": 30.0}


@pytest.fixture(autouse=True)
def private_auto_cache(tmp_path_factory, monkeypatch):
    """No test here reads or writes the user's ~/.cache/qdbev/auto (a load without ``cache_dir`` uses this)."""
    monkeypatch.setenv("QDBEV_AUTO_CACHE", str(tmp_path_factory.mktemp("auto-env")))


# --- cache key ---------------------------------------------------------------------------------------------
def test_cache_key_is_stable_and_changes_with_model_bytes_cpu_flags_versions_and_threads(models, tmp_path):
    cpu = CpuInfo(model="AMD EPYC 7B13", cores=2, arch="x86_64", isa=("avx2", "fma"))
    libs = {"torch": "2.13.0", "onnxruntime": "1.32.0", "numpy": "1.26.4"}
    paths = candidate_paths(True)
    sha = sha256_file(models["packed"])
    key = make_key(sha, 2, paths, None, cpu=cpu, libraries=dict(libs))
    again = make_key(sha, 2, paths, None, cpu=CpuInfo("AMD EPYC 7B13", 2, "x86_64", ("avx2", "fma")), libraries=dict(libs))
    assert key == again and key.digest() == again.digest() and len(key.digest()) == 16
    assert make_key(sha, 2, paths).digest() == make_key(sha, 2, paths).digest()  # this machine: stable too
    assert cache_file(tmp_path, models["packed"], key).name == f"auto-tiny-w4a6-{key.digest()}.json"

    # the model's bytes: same weights file rewritten with one changed value -> another sha256 -> another key
    changed = tmp_path / "changed.safetensors"
    net = load_detector(models["fp32"])[0]
    state = net.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first] + 1e-3
    save_weights(state, changed, {"config": net.cfg.to_dict()})
    variants = {
        "model bytes": make_key(sha256_file(changed), 2, paths, None, cpu=cpu, libraries=libs),
        "VNNI flag": make_key(sha, 2, paths, None, cpu=CpuInfo(cpu.model, 2, "x86_64", ("avx2", "fma", "avx512_vnni")),
                              libraries=libs),
        "CPU model": make_key(sha, 2, paths, None, cpu=CpuInfo("Intel Xeon", 2, "x86_64", cpu.isa), libraries=libs),
        "onnxruntime version": make_key(sha, 2, paths, None, cpu=cpu, libraries={**libs, "onnxruntime": "1.33.0"}),
        "torch version": make_key(sha, 2, paths, None, cpu=cpu, libraries={**libs, "torch": "2.14.0"}),
        "threads": make_key(sha, 4, paths, None, cpu=cpu, libraries=libs),
        "spinning": make_key(sha, 2, paths, False, cpu=cpu, libraries=libs),
        "candidates": make_key(sha, 2, candidate_paths(True, with_onnxruntime=False), None, cpu=cpu, libraries=libs),
    }
    for what, other in variants.items():
        assert other.digest() != key.digest(), what


# --- reuse ----------------------------------------------------------------------------------------------------
def test_choice_is_timed_once_then_read_from_the_cache_without_timing(models, onnx_cache, tmp_path):
    first = FakeTimer(MS)
    e1 = _load(models, onnx_cache, tmp_path, first)
    c1 = e1.auto_choice
    assert first.calls == 3 * 2 * 2  # 3 paths x 2 passes x 2 probe frames
    assert c1.timed_now and c1.path.name == "onnxruntime-int8" and isinstance(e1, OnnxEngine)
    assert [r.path.name for r in c1.results] == ["torch-int8", "onnxruntime-int8", "onnxruntime-fp32w"]
    assert [r.ms for r in c1.results] == [100.0, 20.0, 30.0]
    data = json.loads(c1.cache_file.read_text())
    assert c1.cache_file.parent == tmp_path and data["key"]["threads"] == 2 and len(data["paths"]) == 3
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file

    second = FakeTimer(MS)
    lines: list[str] = []
    e2 = _load(models, onnx_cache, tmp_path, second, lines)
    assert second.calls == 0  # no timing at all
    c2 = e2.auto_choice
    assert not c2.timed_now and c2.path == c1.path and c2.cache_file == c1.cache_file
    assert [r.ms for r in c2.results] == [100.0, 20.0, 30.0]
    assert lines == [c2.log_line] and "cached timing" in lines[0]
    det = e2.detect(probe_frames()[0])
    assert det.boxes.shape[1] == 9

    third = FakeTimer(MS)
    _load(models, onnx_cache, tmp_path / "elsewhere", third)  # another cache dir: timed again
    assert third.calls == 12


# --- log line ---------------------------------------------------------------------------------------------------
def _results(ms: dict[str, float | None], checks: dict[str, ProbeCheck] | None = None) -> list[PathResult]:
    ok = ProbeCheck(0.01, 0.95, 20, True)
    checks = checks or {}
    return [PathResult(p, ms[p.name], checks.get(p.name, ok)) for p in (TORCH_INT8, ORT_INT8, ORT_FP32W)]


def _record(ref: float, **nds: float) -> dict:
    return {"format": NDS_FORMAT, "model_sha256": "x", "reference_nds": ref,
            "paths": {"torch-int8": {"nds": ref}, **{k.replace("_", "-"): {"nds": v} for k, v in nds.items()}}}


def _choice(results: list[PathResult], record: dict | None, vnni: bool) -> AutoChoice:
    best = decide(results, record)
    c = AutoChoice(path=best.path, results=results, cache_file=Path("/c/auto-m-0123456789abcdef.json"), timed_now=True,
                   cpu_summary="AMD EPYC (x86_64, 2 cores; avx2 fma; no AVX-512, no VNNI)", vnni=vnni, threads=2,
                   model="nano-w4a6-qdbev")
    c.int8_note = int8_note(results, best, vnni)
    return c


def test_log_line_names_the_path_every_candidates_ms_the_cache_and_whether_int8_pays_off():
    # int8 no faster than fp32 and the fp32 path passed its NDS check: fp32w chosen, said so
    c = _choice(_results({"torch-int8": 210.0, "onnxruntime-int8": 168.0, "onnxruntime-fp32w": 161.5}),
                _record(0.46, onnxruntime_int8=0.461, onnxruntime_fp32w=0.455), vnni=False)
    line = c.log_line
    assert "\n" not in line and line.startswith("auto backend: using onnxruntime-fp32w (")
    for part in ("torch-int8 210.0 ms", "onnxruntime-int8 168.0 ms", "onnxruntime-fp32w 161.5 ms",
                 "int8 is not faster than fp32 here (no VNNI): using onnxruntime-fp32w",
                 "cache /c/auto-m-0123456789abcdef.json", "timed now", "nano-w4a6-qdbev", "no VNNI)", "2 threads"):
        assert part in line, part
    assert c.to_dict()["log_line"] == line and c.to_dict()["path"] == "onnxruntime-fp32w"

    # same timings, no NDS record: fp32w is not eligible, the line says why int8 runs anyway
    line = _choice(_results({"torch-int8": 210.0, "onnxruntime-int8": 168.0, "onnxruntime-fp32w": 161.5}), None,
                   vnni=False).log_line
    assert "using onnxruntime-int8" in line
    assert "onnxruntime-fp32w 161.5 ms (not eligible: activations not quantized and no NDS record" in line
    assert "int8 is not faster than fp32 here (no VNNI), but onnxruntime-fp32w is not eligible" in line

    # a VNNI CPU where int8 pays off
    line = _choice(_results({"torch-int8": 100.0, "onnxruntime-int8": 40.0, "onnxruntime-fp32w": 70.0}), None,
                   vnni=True).log_line
    assert "using onnxruntime-int8" in line and "int8 is 1.75x faster than fp32 here (VNNI)" in line
    # int8 faster but failing its NDS check: the line says why it is not used
    line = _choice(_results({"torch-int8": 100.0, "onnxruntime-int8": 40.0, "onnxruntime-fp32w": 70.0}),
                   _record(0.46, onnxruntime_int8=0.40, onnxruntime_fp32w=0.46), vnni=True).log_line
    assert "int8 is 1.75x faster than fp32 here (VNNI), but onnxruntime-int8 is not eligible (NDS 0.4000" in line
    assert line.startswith("auto backend: using onnxruntime-fp32w")


def test_load_auto_engine_logs_its_choice_once(models, onnx_cache, tmp_path):
    lines: list[str] = []
    e = _load(models, onnx_cache, tmp_path, FakeTimer({**MS, "onnxruntime-int8": 40.0}), lines)
    assert lines == [e.auto_choice.log_line]
    isa = "VNNI" if cpu_info().vnni else "no VNNI"
    assert f"int8 is not faster than fp32 here ({isa}), but onnxruntime-fp32w is not eligible" in lines[0]
    assert str(e.auto_choice.cache_file) in lines[0] and cpu_info().summary() in lines[0]


def test_a_first_run_says_it_is_timing_then_reports_each_path_and_a_cached_run_says_nothing(models, onnx_cache,
                                                                                          tmp_path):
    progress: list[str] = []
    lines: list[str] = []
    e = _load(models, onnx_cache, tmp_path, FakeTimer(MS), lines, progress_fn=progress.append)
    c = e.auto_choice
    assert lines == [c.log_line] and c.elapsed_s is not None and f"timed now in {c.elapsed_s:.0f} s" in lines[0]
    assert len(progress) == 1 + 3 + 1, progress  # announcement, one line per path, the timing
    first = progress[0]
    assert first.startswith("auto backend: no cached choice for ") and str(models["packed"]) in first
    assert "torch-int8, onnxruntime-int8, onnxruntime-fp32w" in first and str(c.cache_file) in first
    for i, name in enumerate(["torch-int8", "onnxruntime-int8", "onnxruntime-fp32w"], 1):
        assert progress[i].startswith(f"auto backend: [{i}/3] {name} built and probed in ") and "(ok)" in progress[i]
    assert progress[4].startswith("auto backend: timing torch-int8, onnxruntime-int8, onnxruntime-fp32w: 2 ")

    again: list[str] = []
    c2 = _load(models, onnx_cache, tmp_path, FakeTimer(MS), progress_fn=again.append).auto_choice
    assert again == [] and c2.elapsed_s is None and "cached timing" in c2.log_line


def test_announce_logs_where_logging_shows_info_and_writes_stderr_where_it_does_not(monkeypatch, caplog, capsys):
    from qdbev_core.engine import auto_select

    with caplog.at_level(logging.INFO, logger="qdbev.engine.auto"):
        auto_select.announce("auto backend: configured")
    assert [r.getMessage() for r in caplog.records] == ["auto backend: configured"]
    assert "configured" not in capsys.readouterr().err
    bare = logging.Logger("qdbev.engine.auto.bare")  # like qdbev_node / the CLI: no handler anywhere
    monkeypatch.setattr(auto_select, "log", bare)
    auto_select.announce("auto backend: unconfigured")
    assert capsys.readouterr().err == "auto backend: unconfigured\n"


# --- damaged cache ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage", "other key", "directory"])
def test_a_damaged_or_unreadable_cache_is_ignored_with_a_warning_and_rewritten(models, onnx_cache, tmp_path, caplog,
                                                                             damage):
    path = _load(models, onnx_cache, tmp_path, FakeTimer(MS)).auto_choice.cache_file
    good = json.loads(path.read_text())
    path.unlink()
    if damage == "garbage":
        path.write_bytes(b"\xff\x00 not json")
    elif damage == "other key":
        path.write_text(json.dumps({**good, "key": {**good["key"], "threads": 8}}))
    else:
        path.mkdir()
    timer = FakeTimer({**MS, "onnxruntime-fp32w": 5.0})
    with caplog.at_level(logging.WARNING, logger="qdbev.engine.auto"):
        e = _load(models, onnx_cache, tmp_path, timer)
    assert timer.calls == 12 and e.auto_choice.timed_now  # timed again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignoring the cache file" in w and str(path) in w for w in warnings), warnings
    if damage == "directory":  # cannot be rewritten: said so, the engine still loads
        assert any("cannot write the cache" in w for w in warnings)
        return
    rewritten = json.loads(path.read_text())
    assert rewritten["key"] == good["key"] and rewritten["paths"][2]["ms"] == 5.0
    again = FakeTimer(MS)
    _load(models, onnx_cache, tmp_path, again)
    assert again.calls == 0


# --- accuracy gate ---------------------------------------------------------------------------------------------------
def test_decide_never_picks_an_ineligible_path():
    bad = ProbeCheck(1.3, 0.1, 20, False, "BEV differs")
    # the fastest path failed its probe, the next has no NDS record: the reference wins
    r = _results({"torch-int8": 300.0, "onnxruntime-int8": 10.0, "onnxruntime-fp32w": 20.0}, {"onnxruntime-int8": bad})
    assert decide(r, None).path == TORCH_INT8
    assert [x.eligible for x in r] == [True, False, False] and r[1].why_not == "BEV differs"
    # NDS record: int8 0.02 below the reference -> out; fp32w within 0.01 -> in
    r = _results({"torch-int8": 300.0, "onnxruntime-int8": 10.0, "onnxruntime-fp32w": 20.0})
    assert decide(r, _record(0.46, onnxruntime_int8=0.44, onnxruntime_fp32w=0.452)).path == ORT_FP32W
    assert "NDS 0.4400 vs torch 0.4600 (-0.0200, tolerance 0.01)" in r[1].why_not
    # a path that could not be built
    r = _results({"torch-int8": 300.0, "onnxruntime-int8": None, "onnxruntime-fp32w": 20.0})
    assert decide(r, _record(0.46, onnxruntime_fp32w=0.46)).path == ORT_FP32W and r[1].why_not == "could not be built"
    # a tighter gate turns the record against fp32w
    r = _results({"torch-int8": 300.0, "onnxruntime-int8": 50.0, "onnxruntime-fp32w": 20.0})
    assert decide(r, _record(0.46, onnxruntime_fp32w=0.455), AccuracyGate(nds_tolerance=0.001)).path == ORT_INT8


def test_nds_record_decides_between_the_paths(models, onnx_cache, tmp_path):
    sha = sha256_file(models["packed"])
    rec = tmp_path / "nds.json"
    write_json_atomic(rec, {**_record(0.46, onnxruntime_int8=0.43, onnxruntime_fp32w=0.457), "model_sha256": sha})
    timer = FakeTimer({"torch-int8": 100.0, "onnxruntime-int8": 10.0, "onnxruntime-fp32w": 20.0})
    e = _load(models, onnx_cache, tmp_path, timer, nds_record=rec)
    c = e.auto_choice
    assert c.path == ORT_FP32W and "NDS 0.4300" in c.result("onnxruntime-int8").why_not
    # a record for another model is not used: fp32w is then not eligible, int8 is (probe passed)
    write_json_atomic(rec, {**_record(0.46, onnxruntime_int8=0.43, onnxruntime_fp32w=0.457), "model_sha256": "0" * 64})
    c = _load(models, onnx_cache, tmp_path, FakeTimer(MS), nds_record=rec).auto_choice
    assert c.path == ORT_INT8 and not c.result("onnxruntime-fp32w").eligible


def test_a_broken_path_fails_the_probe_and_is_never_chosen(models, tmp_path):
    """The cached Q/DQ graph is replaced by another model's (same config, other weights), as a stale
    or mixed-up export would be: onnxruntime runs it fine, the probe catches it."""
    from qdbev_core.export import export_onnx

    cache = tmp_path / "onnx"
    src = auto_source(models["packed"], cache)
    other = load_detector(models["other"])[0]  # written where cached_onnx keeps the model's own Q/DQ graph
    export_onnx(other, cache / f"tiny-w4a6.{src.sha256[:16]}.qdq-u8.onnx", "qdq", model_sha256=src.sha256)
    assert src.export("int8") == cache / f"tiny-w4a6.{src.sha256[:16]}.qdq-u8.onnx"  # taken as the cached export
    timer = FakeTimer({"torch-int8": 100.0, "onnxruntime-int8": 1.0, "onnxruntime-fp32w": 50.0})
    c = load_auto_engine(auto_source(models["packed"], cache), threads=2, cache_dir=tmp_path / "auto", timer=timer,
                         repeats=1).auto_choice
    bad = c.result("onnxruntime-int8")
    assert not bad.check.passed and bad.check.bev_rel > 0.3 and "BEV differs" in bad.why_not
    assert c.path == TORCH_INT8  # fp32w has no NDS record; the reference is all that is left
    good_fp32w = c.result("onnxruntime-fp32w").check
    assert good_fp32w.passed and good_fp32w.bev_rel < 0.3


# --- paths, factory, CLI ---------------------------------------------------------------------------------------------
def test_dequantized_fp32_model_holds_the_fake_quant_weights_and_no_quantizers(models):
    from qdbev_core.quant.quantize import quant_modules

    fq = load_detector(models["packed"])[0]
    plain = dequantized_fp32_model(fq)
    assert not quant_modules(plain) and not hasattr(plain, "quant_spec")
    name, m = next((n, m) for n, m in quant_modules(fq) if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        np.testing.assert_array_equal(plain.get_submodule(name).weight.numpy(), m.wq(m._parameters["weight"]).numpy())


def test_factory_auto_on_an_fp32_model_and_its_argument_checks(models, tmp_path):
    e = load_engine(str(models["fp32"]), backend="auto", threads=2, cache_dir=tmp_path / "onnx",
                    auto_cache_dir=tmp_path / "auto")
    c = e.auto_choice
    assert [r.path.name for r in c.results] == ["torch-fp32", "onnxruntime-fp32"]
    assert c.result("onnxruntime-fp32").check.passed and c.result("onnxruntime-fp32").check.bev_rel < 1e-3
    assert c.path.name in ("torch-fp32", "onnxruntime-fp32") and c.int8_note == ""
    assert len(list((tmp_path / "auto").glob("auto-tiny-fp32-*.json"))) == 1
    with pytest.raises(ValueError, match="precision"):
        load_engine(str(models["fp32"]), backend="auto", precision="int8")
    with pytest.raises(ValueError, match="CPU paths"):
        load_engine(str(models["fp32"]), backend="auto", device="cuda", cache_dir=tmp_path / "onnx",
                    auto_cache_dir=tmp_path / "auto")


def test_bench_interleaved_shared_cpu_has_an_auto_row(models, synth_dataroot, tmp_path, monkeypatch, capsys):
    from qdbev_core.cli.main import main

    monkeypatch.setenv("QDBEV_ENGINE_CACHE", str(tmp_path / "onnx"))
    monkeypatch.setenv("QDBEV_AUTO_CACHE", str(tmp_path / "auto"))
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(models["fp32"]), "--int8-model", str(models["packed"]),
                 "--dataroot", str(synth_dataroot), "--split", "synth_val", "--backends", "torch,auto",
                 "--precisions", "fp32", "--frames", "2", "--warmup", "1", "--no-nds", "--interleave", "--shared-cpu",
                 "--json", str(out), "--out-dir", str(tmp_path / "o")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["precision"]) for r in rows] == [("torch", "fp32"), ("auto", "auto")]
    auto = rows[1]
    assert auto["model"] == str(models["packed"]) and auto["timed_runs"] == 2
    assert auto["auto_path"] in ("torch-int8", "onnxruntime-int8", "onnxruntime-fp32w")
    assert len(auto["auto_choice"]["candidates"]) == 3
    text = capsys.readouterr().out
    assert "auto backend: using " + auto["auto_path"] in text and "\nauto " in text
    assert len(list((tmp_path / "auto").glob("auto-tiny-w4a6-*.json"))) == 1


def test_bench_path_nds_scores_every_path_and_auto_reads_the_record(models, onnx_cache, synth_dataroot, tmp_path,
                                                                    monkeypatch, capsys):
    from qdbev_core.cli.main import main

    monkeypatch.setenv("QDBEV_ENGINE_CACHE", str(onnx_cache))
    monkeypatch.setenv("QDBEV_AUTO_CACHE", str(tmp_path / "auto"))
    assert main(["bench", "--model", str(models["packed"]), "--path-nds", "--dataroot", str(synth_dataroot),
                 "--split", "synth_val", "--json", str(tmp_path / "nds.json"), "--out-dir", str(tmp_path / "o")]) == 0
    rec = json.loads((tmp_path / "nds.json").read_text())
    assert rec["reference"] == "torch-int8" and set(rec["paths"]) == {"torch-int8", "onnxruntime-int8", "onnxruntime-fp32w"}
    assert rec["model_sha256"] == sha256_file(models["packed"])
    written = Path(rec["file"])
    assert written.parent == tmp_path / "auto" and written.name == f"nds-{rec['model_sha256'][:16]}.json"
    text = capsys.readouterr().out
    assert "onnxruntime-fp32w" in text and "eligible for auto" in text
    # auto finds the record in its cache dir: fp32w's eligibility now follows its NDS
    c = _load(models, onnx_cache, tmp_path / "auto", FakeTimer({**MS, "onnxruntime-fp32w": 1.0})).auto_choice
    fp32w_ok = rec["paths"]["onnxruntime-fp32w"]["within_tolerance"]
    assert c.result("onnxruntime-fp32w").eligible == fp32w_ok
    assert c.path == (ORT_FP32W if fp32w_ok else ORT_INT8)


def test_predict_cli_accepts_auto_and_prints_its_choice(models, synth_dataroot, tmp_path, monkeypatch, capsys):
    """``qdbev predict`` (no logging configured) shows the choice line once, on stderr."""
    from qdbev_core.cli.main import main

    monkeypatch.setenv("QDBEV_ENGINE_CACHE", str(tmp_path / "onnx"))
    monkeypatch.setenv("QDBEV_AUTO_CACHE", str(tmp_path / "auto"))
    monkeypatch.setattr("qdbev_core.engine.auto_select.log", logging.Logger("unconfigured"))  # as the CLI runs
    out = tmp_path / "results.json"
    assert main(["predict", "--model", str(models["fp32"]), "--backend", "auto", "--dataroot", str(synth_dataroot),
                 "--split", "synth_val", "--out", str(out), "--score-threshold", "0"]) == 0
    assert out.is_file() and capsys.readouterr().err.count("auto backend: using ") == 1
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(models["fp32"]), "--backend", "openvino", "--dataroot", str(synth_dataroot),
              "--split", "synth_val", "--out", str(out)])
