"""``test/ros_domain.py``: the ROS domains tests run in (one per test, per process, per xdist worker)."""

from __future__ import annotations

import pytest
from ros_domain import test_domain_id, xdist_worker

OFFSETS = range(48)  # the offsets the node tests use lie in 0..47


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_workers_get_disjoint_domains_and_offsets_distinct_ones(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    per_worker = []
    for index in range(count):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
        assert xdist_worker() == (index, count)
        ids = [test_domain_id(k) for k in range(100 // count)]
        assert len(set(ids)) == len(ids), "two offsets of one worker share a domain"
        assert all(1 <= d <= 100 for d in ids)
        per_worker.append({test_domain_id(k) for k in OFFSETS if k < 100 // count})
    for i in range(count):
        for j in range(i + 1, count):
            assert not per_worker[i] & per_worker[j], f"workers {i} and {j} share domains"


def test_outside_xdist_one_slice_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert xdist_worker() == (0, 1)
    assert len({test_domain_id(k) for k in range(100)}) == 100
