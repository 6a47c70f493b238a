"""The set-up from a fresh copy (issue 15), both ways scripts/check_setup.sh knows: a plain environment
(success or the one "setup: error:" line, no .venv left) and an unreachable PyTorch index (torch from
pip's own configuration). Slow: the second way installs torch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("way", ["plain", "fallback"])
def test_setup_succeeds_or_says_what_is_missing_in_one_line(way):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "check_setup.sh"), way], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"check_setup: {way}: ok ")
