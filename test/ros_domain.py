"""ROS domain IDs for tests: one per test, per pytest process and per pytest-xdist worker.

Every ROS test runs with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a domain from
``test_domain_id(offset)``. Under ``pytest -n N`` the workers take disjoint slices of 1..100, so
two tests running at the same time in different workers never share a domain; within a slice the
domain also depends on the process id, so two pytest runs on one machine rarely meet.
"""

from __future__ import annotations

import os

DOMAIN_COUNT = 100
"""Domains 1..100 (Linux: 0..101 are the IDs whose DDS ports do not collide)."""


def xdist_worker() -> tuple[int, int]:
    """``(index, count)`` of this pytest-xdist worker; ``(0, 1)`` outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if name.startswith("gw") and name[2:].isdigit():
        return int(name[2:]) % max(1, count), max(1, count)
    return 0, 1


def test_domain_id(offset: int) -> int:
    """A ROS domain for one test: distinct per ``offset`` (0..span-1) within this process, in this
    worker's slice of 1..100."""
    index, count = xdist_worker()
    span = DOMAIN_COUNT // count
    step = 13 if span % 13 else 11  # coprime with span: distinct offsets give distinct domains
    return 1 + index * span + (os.getpid() * 7 + offset * step) % span


test_domain_id.__test__ = False  # a helper, not a test
