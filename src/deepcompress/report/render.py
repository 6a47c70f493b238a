"""`deepcompress report RESULTS_DIR`: every RESULTS_DIR/NAME/study.json rendered into one self-contained
HTML page (figures embedded as base64 PNG, no outside resources) and its markdown twin."""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..errors import UserError
from .schema import StudyError, load_study

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The main job first, then the talk's experiments in the order of the talk (issue 14); others by name after.
ORDER = ("main", "number-formats", "cost-of-operations", "bits-per-weight", "pruning", "pruning-plus-quantization",
         "weight-distributions", "activation-density", "pruning-lstm", "inference-summary", "frames-per-joule")


@dataclass
class Study:
    """One study as the templates see it: its validated JSON, its folder and its figures' bytes."""

    data: dict
    folder: Path
    images: dict[str, str] = field(default_factory=dict)  # figure file -> base64 PNG

    @property
    def agree_count(self) -> int:
        """How many of its claims agree with the talk."""
        return sum(1 for c in self.data["claims"] if c["agrees"])


def _order_key(folder: Path) -> tuple:
    name = folder.name
    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def find_studies(results: Path) -> list[Study]:
    """The studies under `results` (one folder each, with study.json), validated, in report order."""
    if not results.is_dir():
        raise UserError(f"{results}: no such folder (give the folder the studies and the main job wrote)")
    folders = sorted((p.parent for p in results.glob("*/study.json")), key=_order_key)
    if not folders:
        raise UserError(f"{results}: no NAME/study.json inside; run ./run.sh or `deepcompress study NAME` first")
    studies, names = [], {}
    for folder in folders:
        data, warnings = load_study(folder / "study.json")
        for line in warnings:
            print(f"report: warning: {line}", file=sys.stderr)
        if data["name"] in names:
            raise StudyError(f"{folder / 'study.json'}: name {data['name']!r} is also the name of "
                             f"{names[data['name']] / 'study.json'}")
        names[data["name"]] = folder
        images = {f["file"]: base64.b64encode((folder / f["file"]).read_bytes()).decode("ascii")
                  for f in data["figures"]}
        studies.append(Study(data, folder, images))
    return studies


def fmt_cell(value) -> str:
    """A table cell as text: thousands separators, about four significant digits, yes/no, '-' for null."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        size = abs(value)
        if size == 0 or value.is_integer() and size < 1e15:
            return f"{int(value):,}"
        if size >= 1000:
            return f"{value:,.0f}"
        if size >= 1e-3:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def _md_cell(value) -> str:
    return fmt_cell(value).replace("|", "\\|").replace("\n", " ")


def _environment(autoescape: bool):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["cell"] = fmt_cell
    env.filters["mdcell"] = _md_cell
    return env


def render_html(studies: list[Study], title: str) -> str:
    """The self-contained HTML page."""
    return _environment(True).get_template("report.html.j2").render(studies=studies, title=title)


def render_markdown(studies: list[Study], title: str, md_dir: Path) -> str:
    """The markdown twin; figures are links relative to `md_dir`, where the markdown file will live."""
    links = {(id(s), f["file"]): Path(os.path.relpath(s.folder.resolve() / f["file"], md_dir)).as_posix()
             for s in studies for f in s.data["figures"]}
    return _environment(False).get_template("report.md.j2").render(studies=studies, title=title,
                                                                   link=lambda s, f: links[(id(s), f)])


def build_report(results: str | Path, out: str | Path | None = None,
                 title: str = "deepcompress: the talk's results, measured") -> tuple[Path, Path]:
    """Render every study under `results` into `out` (default RESULTS/report.html) and its markdown twin
    (the same name with .md); returns both paths."""
    results = Path(results)
    html_path = Path(out) if out else results / "report.html"
    if html_path.suffix != ".html":
        raise UserError(f"--out {html_path}: the report's name must end in .html (the markdown twin gets .md)")
    studies = find_studies(results)
    md_path = html_path.with_suffix(".md")
    atomic.write_bytes(html_path, render_html(studies, title).encode())
    atomic.write_bytes(md_path, render_markdown(studies, title, md_path.parent.resolve()).encode())
    return html_path, md_path
