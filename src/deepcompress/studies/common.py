"""What every study writes: RESULTS_DIR/NAME/study.json and its PNG figures beside it.

study.json = {"name", "title", "command", "claims": [{"claim", "talk", "measured", "agrees", "why"}],
"tables": [{"title", "columns", "rows"}], "figures": [{"file", "caption"}]}; `deepcompress report`
reads it. Files are written atomically (deepcompress.atomic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic

STUDY_FILE = "study.json"
KEYS = ("name", "title", "command", "claims", "tables", "figures")
CLAIM_KEYS = ("claim", "talk", "measured", "agrees", "why")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain(value):
    """`value` with numpy scalars as Python numbers and non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Study:
    """One study's results being collected; `write()` puts them in OUT/NAME/."""

    name: str
    title: str
    command: str
    folder: Path
    claims: list[dict] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def claim(self, claim: str, talk: str, measured: str, agrees: bool, why: str) -> None:
        """Record the talk's `claim` (its value `talk`), our `measured` value, whether they agree and why."""
        self.claims.append({"claim": claim, "talk": talk, "measured": measured, "agrees": bool(agrees), "why": why})

    def table(self, title: str, columns: list[str], rows: list[list]) -> None:
        """Record a table; every row has one cell per column."""
        if any(len(r) != len(columns) for r in rows):
            raise ValueError(f"table {title!r}: a row does not have {len(columns)} cells")
        self.tables.append({"title": title, "columns": list(columns), "rows": [list(r) for r in rows]})

    def figure(self, fig, file: str, caption: str) -> None:
        """Save matplotlib figure `fig` as OUT/NAME/FILE (PNG), close it, and record it with `caption`."""
        path = self.folder / file
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        pyplot().close(fig)
        self.figures.append({"file": file, "caption": caption})

    def to_dict(self) -> dict:
        """The study.json document (raw measurements, if any, under "data")."""
        doc = {"name": self.name, "title": self.title, "command": self.command, "claims": self.claims,
               "tables": self.tables, "figures": self.figures}
        if self.data:
            doc["data"] = self.data
        return _plain(doc)

    def write(self) -> Path:
        """Write OUT/NAME/study.json atomically; returns its path."""
        path = self.folder / STUDY_FILE
        atomic.write_json(path, self.to_dict())
        return path


def problems(doc: dict, folder: Path | None = None) -> list[str]:
    """What is wrong with a study.json document (empty when it follows the contract); with `folder`,
    also figures whose PNG is missing there."""
    out = [f"missing key {k!r}" for k in KEYS if k not in doc]
    for i, c in enumerate(doc.get("claims", [])):
        out += [f"claim {i}: missing {k!r}" for k in CLAIM_KEYS if k not in c]
        if not isinstance(c.get("agrees"), bool):
            out.append(f"claim {i}: 'agrees' is not true/false")
    for t in doc.get("tables", []):
        if any(len(r) != len(t.get("columns", [])) for r in t.get("rows", [])):
            out.append(f"table {t.get('title')!r}: row width differs from its columns")
    for f in doc.get("figures", []):
        if not str(f.get("file", "")).endswith(".png") or "caption" not in f:
            out.append(f"figure {f!r}: needs a .png file and a caption")
        elif folder is not None and not (folder / f["file"]).is_file():
            out.append(f"figure {f['file']} is not in {folder}")
    return out


def pct(fraction: float, digits: int = 2) -> str:
    """A fraction as a percentage string, e.g. 0.0149 -> '1.49%'."""
    return f"{100 * fraction:.{digits}f}%"
