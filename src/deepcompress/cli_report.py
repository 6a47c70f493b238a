"""`deepcompress report RESULTS_DIR`: one self-contained HTML page (and a markdown twin) from every study
folder under RESULTS_DIR; optionally checked in a headless browser and photographed."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


def _check_in_browser(html: Path, screenshot: str | None) -> None:
    from .report.browser import check_page, screenshot as take

    seen = check_page(html)
    problems = [f"image {img['alt']!r} did not load" for img in seen.broken_images] + seen.errors + seen.console
    if problems:
        raise UserError(f"{html} in the browser: " + "; ".join(problems))
    print(f"browser: {len(seen.images)} images loaded, no console messages")
    if screenshot:
        print(f"screenshot: {take(html, screenshot)}")


def _run(args) -> int:
    from .report import build_report

    html, md = build_report(args.results, args.out)
    print(f"report: {html} (markdown twin {md})")
    if args.check or args.screenshot:
        _check_in_browser(html, args.screenshot)
    return 0


def register(sub) -> None:
    """Add the `report` command."""
    p = sub.add_parser("report", help="render every study under RESULTS_DIR into one HTML page and a markdown twin",
                       description="Read RESULTS_DIR/NAME/study.json for every study (and the main job's "
                                   "RESULTS_DIR/main), check each against the schema in docs/REPORT.md, and write "
                                   "one self-contained HTML page (figures embedded) and a markdown twin.")
    p.add_argument("results", metavar="RESULTS_DIR", help="folder of study folders (./run.sh writes results/)")
    p.add_argument("--out", help="HTML file to write (default RESULTS_DIR/report.html; the twin gets .md)")
    p.add_argument("--check", action="store_true",
                   help="open the page in headless Chromium: fail unless every image loads and the console "
                        "stays silent")
    p.add_argument("--screenshot", metavar="PNG", help="also save what the browser shows (implies --check)")
    p.set_defaults(func=_run)
