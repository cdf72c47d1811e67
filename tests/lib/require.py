"""Skip-or-fail gates for tests that need the real straitd or lbctl.

A tier skips, with the reason, only while the program is still the
placeholder of an unfinished tree. Once its source is real, a binary that
is missing or does not run is a failure, never a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .straitd import REPO, binary_works, build_dir, lbctl_path, straitd_path


def _placeholder(path: Path) -> bool:
    try:
        return "placeholder" in path.read_text(errors="replace")[:400]
    except OSError:
        return True


def require_straitd() -> None:
    exe = straitd_path()
    if binary_works(exe):
        return
    if _placeholder(REPO / "controlplane" / "daemon.cc"):
        pytest.skip("straitd is not implemented yet (controlplane/daemon.cc is a placeholder)")
    pytest.fail(f"{exe} is missing or does not run (`{exe} --help` failed); build it with "
                f"ninja -C {build_dir()}")


def require_lbctl() -> None:
    exe = lbctl_path()
    if binary_works(exe):
        return
    if _placeholder(REPO / "tools" / "lbctl" / "lbctl.cc"):
        pytest.skip("lbctl is not implemented yet (tools/lbctl/lbctl.cc is a placeholder)")
    pytest.fail(f"{exe} is missing or does not run")
