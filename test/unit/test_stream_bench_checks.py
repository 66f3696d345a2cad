"""tools/stream_bench.py: issue 20's stream targets computed from a result (no node, no ROS):
latency against the engine's own time in the slower window, the rate target only where cameras
outrun the engine, flat memory; the automatic latency-window rate."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("stream_bench", Path(__file__).resolve().parents[2] / "tools"
                                               / "stream_bench.py")
stream_bench = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("stream_bench", stream_bench)  # its dataclasses look their module up there
_SPEC.loader.exec_module(stream_bench)


def _window(rate_in: float, rate_out: float, latency: float, pre: float = 4.0, inf: float = 100.0,
            post: float = 1.0, rss=(700.0, 705.0)) -> dict:
    return {"input": {"achieved_rate_hz": rate_in, "duration_s": 120.0}, "output_rate_hz": rate_out,
            "node_pipeline_latency_ms": {"p50": latency},
            "node_stage_ms": {"p50": {"queue": 40.0, "engine_preprocess": pre, "inference": inf,
                                      "postprocess": post, "publish": 2.0}},
            "node_rss_mb": {"start": rss[0], "growth": rss[1] - rss[0]}}


def test_latency_is_judged_in_the_slower_window_and_rate_in_the_main_one() -> None:
    main = _window(rate_in=12.0, rate_out=8.7, latency=170.0)  # engine 105 ms -> 9.52 Hz sustained
    main["latency_phase"] = _window(rate_in=4.76, rate_out=4.76, latency=125.0, inf=98.0)
    checks = {c["check"].split(" ")[1]: c for c in stream_bench.acceptance_checks(main)}
    lat, rate, rss = checks["pipeline"], checks["rate"], checks["RSS"]
    assert lat["limit"] == pytest.approx(4.0 + 98.0 + 1.0 + 25.0) and lat["ok"] is True
    assert "latency window" in lat["window"]
    assert rate["limit"] == pytest.approx(0.9 * 1000.0 / 105.0, abs=1e-3) and rate["ok"] is True
    assert rss["ok"] is True
    # the same latency in the main window (no slower window) fails: the queue wait counts there
    del main["latency_phase"]
    assert stream_bench.acceptance_checks(main)[0]["ok"] is False


def test_rate_is_undecided_when_cameras_are_slower_than_the_engine_and_memory_growth_fails() -> None:
    checks = stream_bench.acceptance_checks(_window(rate_in=5.0, rate_out=4.0, latency=110.0, rss=(700.0, 730.0)))
    assert checks[1]["ok"] is None  # 5 Hz in < 9.5 Hz sustained: nothing to drop, no rate target
    assert checks[2]["ok"] is False and checks[2]["limit"] == pytest.approx(14.0)
    low = stream_bench.acceptance_checks(_window(rate_in=12.0, rate_out=7.0, latency=110.0))
    assert low[1]["ok"] is False  # 7 Hz < 0.9 x 9.52 Hz
    table = stream_bench.checks_table(low)
    assert table.count("\n") == 4 and "**no**" in table


def test_latency_window_rate() -> None:
    first = _window(rate_in=12.0, rate_out=8.0, latency=170.0, pre=5.0, inf=190.0, post=5.0)  # engine 200 ms
    args = argparse.Namespace(latency_rate="auto")
    assert stream_bench.latency_rate(args, first) == pytest.approx(2.5)  # half of 5 Hz
    assert stream_bench.latency_rate(argparse.Namespace(latency_rate="off"), first) is None
    assert stream_bench.latency_rate(argparse.Namespace(latency_rate="3"), first) == 3.0
    first["node_stage_ms"]["p50"] = {}
    assert stream_bench.latency_rate(args, first) is None  # no timing from the node: no second window
    with pytest.raises(SystemExit):
        stream_bench.parse_args(["--latency-rate", "fast"])
