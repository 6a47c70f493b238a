"""Two hosts for real: scripts/netns_two_hosts.sh (network namespaces, veth pair, torchrun, link cut)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "netns_two_hosts.sh"


def _netns_works() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"dcprobe{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10).returncode == 0
    if added:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return added


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


@pytest.mark.slow
def test_two_namespaces_match_one_process_and_recover_from_a_cut_link():
    if not _netns_works():
        pytest.skip("needs root and `ip netns`")
    before = _namespaces()
    env = {**os.environ, "PYTHON": sys.executable, "TORCHRUN": str(Path(sys.executable).with_name("torchrun"))}
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert out.count("max |difference| over all weights") == 2  # clean two-host run and recovered run
    assert "Timed out" in out and "host A exit 1, host B exit 1" in out  # the cut was detected on both hosts
    assert "== OK:" in out
    assert _namespaces() <= before  # the script removed its namespaces
