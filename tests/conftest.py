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


def pytest_report_header(config) -> list[str]:
    return [f"strait build dir: {build_dir()}"]
