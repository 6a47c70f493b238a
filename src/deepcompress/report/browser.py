"""Open a report in a real headless browser (Chromium's own --dump-dom and --screenshot): did every image
load, did anything reach the console, and what does the page look like.

The page is copied, alone, into an empty temporary folder with a probe script as the first thing in its
<head>: the probe records console.error calls, uncaught errors and resources that failed to load, and after
the load event writes them and each image's natural size into the DOM, which --dump-dom returns. A page
that is not self-contained fails here, because nothing it refers to is beside the copy. Console messages
the browser itself logs (its CONSOLE lines on stderr) are collected too.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import UserError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE_ID = "dc-browser-check"
PROBE = """<script>(function () {
  var log = [];
  var original = console.error;
  console.error = function () { log.push("console.error: " + Array.prototype.join.call(arguments, " "));
                                return original.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    var t = e.target;
    log.push(t && t !== window && t.tagName ? "failed to load " + t.tagName + " " + (t.src || t.href || "")
                                             : "uncaught error: " + e.message);
  }, true);
  window.addEventListener("unhandledrejection", function (e) { log.push("unhandled rejection: " + e.reason); });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}; });
    var out = document.createElement("pre");
    out.id = "%s";
    out.textContent = JSON.stringify({images: images, errors: log});
    document.body.appendChild(out);
  });
})();</script>""" % PROBE_ID
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)$")
TIMEOUT_S = 120


class BrowserError(UserError):
    """The browser could not be found or did not produce what was asked."""


@dataclass
class PageCheck:
    """What the browser saw: each image's {alt, complete, width, height}, errors the probe caught, and
    console messages the browser logged."""

    images: list[dict]
    errors: list[str]
    console: list[str]

    @property
    def broken_images(self) -> list[dict]:
        """Images that did not load (no natural width)."""
        return [img for img in self.images if not img["complete"] or img["width"] == 0]


def find_browser() -> str | None:
    """Path of a Chromium-family browser: $DEEPCOMPRESS_BROWSER, else the first of CANDIDATES on PATH."""
    given = os.environ.get("DEEPCOMPRESS_BROWSER")
    if given:
        return shutil.which(given)
    return next(filter(None, map(shutil.which, CANDIDATES)), None)


def _run(browser: str, args: list[str], profile: Path) -> subprocess.CompletedProcess:
    # --no-sandbox: the sandbox refuses to start as root (CI runs as root); the page is our own file
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BrowserError(f"{browser} did not finish within {TIMEOUT_S} s") from None


def with_probe(page: str) -> str:
    """`page` with the probe script first in its <head> (or first of all when it has none)."""
    match = re.search(r"<head[^>]*>", page, re.IGNORECASE)
    at = match.end() if match else 0
    return page[:at] + PROBE + page[at:]


def check_page(path: str | Path, browser: str | None = None) -> PageCheck:
    """Load the HTML file at `path` alone in a headless browser and report what it saw (see the module
    docstring)."""
    browser = browser or find_browser()
    if browser is None:
        raise BrowserError("no Chromium found (install Debian's chromium, or set DEEPCOMPRESS_BROWSER)")
    page = Path(path).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="dc-browser-") as tmp:
        copy = Path(tmp) / "page" / "index.html"
        copy.parent.mkdir()
        copy.write_text(with_probe(page), encoding="utf-8")
        done = _run(browser, ["--dump-dom", copy.as_uri()], Path(tmp) / "profile")
    found = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', done.stdout, re.DOTALL)
    if found is None:
        tail = done.stderr.strip().splitlines()[-3:]
        raise BrowserError(f"{browser} returned no probe result for {path} (exit {done.returncode}): "
                           + " / ".join(tail))
    seen = json.loads(html.unescape(found.group(1)))
    console = [m.group(1) for m in map(CONSOLE_LINE.search, done.stderr.splitlines()) if m]
    return PageCheck(seen["images"], seen["errors"], console)


def screenshot(path: str | Path, png: str | Path, width: int = 1200, height: int = 1500,
               browser: str | None = None) -> Path:
    """A PNG of the first `width` x `height` pixels of the HTML file at `path`, as the browser draws it."""
    browser = browser or find_browser()
    if browser is None:
        raise BrowserError("no Chromium found (install Debian's chromium, or set DEEPCOMPRESS_BROWSER)")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dc-browser-") as tmp:
        shot = Path(tmp) / "shot.png"
        done = _run(browser, [f"--screenshot={shot}", f"--window-size={width},{height}", "--hide-scrollbars",
                              Path(path).resolve().as_uri()], Path(tmp) / "profile")
        if not shot.is_file():
            raise BrowserError(f"{browser} wrote no screenshot of {path} (exit {done.returncode})")
        atomic.write_bytes(png, shot.read_bytes())
    return png
