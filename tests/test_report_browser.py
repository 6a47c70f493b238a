"""The report in a real browser (headless Chromium's --dump-dom and --screenshot): every image loads at its
PNG's own size, nothing reaches the console, and a screenshot is saved. Skips where no Chromium is found;
.ci/run installs Debian's chromium where it can."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from test_report import write_study

from deepcompress.report import build_report
from deepcompress.report.browser import check_page, find_browser, screenshot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "report-example.html"

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="no Chromium found: `apt-get install -y chromium` (Debian; .ci/run does) or set DEEPCOMPRESS_BROWSER")


def png_size(blob: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and blob[12:16] == b"IHDR"
    return struct.unpack(">II", blob[16:24])


def test_every_image_loads_at_its_size_and_the_console_stays_silent(tmp_path):
    write_study(tmp_path / "main", "main", figures=("a.png",))
    write_study(tmp_path / "pruning", "pruning", figures=("b.png", "c.png"))
    html, _ = build_report(tmp_path)
    seen = check_page(html)
    want = [png_size(p.read_bytes()) for p in (tmp_path / "main" / "a.png", tmp_path / "pruning" / "b.png",
                                               tmp_path / "pruning" / "c.png")]
    assert [(img["width"], img["height"]) for img in seen.images] == want
    assert seen.broken_images == [] and seen.errors == [] and seen.console == []


def test_the_check_sees_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><head></head><body><img alt="gone" src="missing.png">'
                    '<img alt="bad" src="data:image/png;base64,AAAA"><script>console.error("boom")</script>'
                    "</body></html>")
    seen = check_page(page)
    assert [img["alt"] for img in seen.broken_images] == ["gone", "bad"]
    assert "console.error: boom" in seen.errors
    assert any(e.startswith("failed to load IMG") and e.endswith("missing.png") for e in seen.errors)


def test_a_screenshot_is_saved(tmp_path):
    write_study(tmp_path / "main", "main")
    html, _ = build_report(tmp_path)
    folder = Path(os.environ.get("DEEPCOMPRESS_SCREENSHOT_DIR", tmp_path))
    shot = screenshot(html, folder / "report-screenshot.png", width=800, height=600)
    assert png_size(shot.read_bytes()) == (800, 600)


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="docs/report-example.html not committed")
def test_the_committed_example_report_loads_whole():
    seen = check_page(EXAMPLE)
    assert len(seen.images) >= 4 and seen.broken_images == [] and seen.errors == [] and seen.console == []
