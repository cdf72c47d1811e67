"""Shared pytest setup for the tiers that need network namespaces (packet,
e2e): they run as root, build their own topologies under unique names, and
clear namespaces that test runs which died left behind.
"""

from __future__ import annotations

import os

import pytest

from tests.lib import netns
from tests.lib.straitd import build_dir


def pytest_configure(config) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("the packet and e2e tiers need root (network namespaces)")
    removed = netns.remove_stale_namespaces()
    if removed:
        print(f"removed {len(removed)} namespaces left by dead test runs")


def pytest_collection_modifyitems(config, items) -> None:
    """`@pytest.mark.io("xdp")` cases exist only where the shared fixture
    (`lb` or `e2e`, parametrised as (workers, io)) runs in that I/O mode:
    the other combinations are deselected, not skipped, because there is
    nothing there to test."""
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("io")
        params = getattr(getattr(item, "callspec", None), "params", {})
        combo = params.get("lb", params.get("e2e"))
        if mark is not None and isinstance(combo, tuple) and combo[1] not in mark.args:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config) -> list[str]:
    return [f"strait build dir: {build_dir()}"]
