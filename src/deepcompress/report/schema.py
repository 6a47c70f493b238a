"""study.json: what one experiment (or the main job) hands the report, and its validation.

The schema (docs/REPORT.md):

    {"name": str, "title": str, "command": str,
     "claims":  [{"claim": str, "talk": str|number, "measured": str|number, "agrees": bool, "why": str}],
     "tables":  [{"title": str, "columns": [str, ...], "rows": [[cell, ...], ...]}],
     "figures": [{"file": "x.png", "caption": str}]}

Optional: top-level "summary" (str, a paragraph under the title), "wall_s" (number) and "data" (an object
of raw measurements, kept but not rendered); a figure's or a table's "command" (str) when it differs from
the study's. A cell is a string, a number, a boolean or null.
Figures are PNG files in the study's folder. A key the schema does not know is reported as a warning,
not an error, so a newer writer still renders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

from ..errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TOP = {"name": str, "title": str, "command": str, "claims": list, "tables": list, "figures": list}
TOP_OPTIONAL = {"summary": str, "wall_s": (int, float), "data": dict}  # data: raw measurements, not rendered
CLAIM = {"claim": str, "talk": (str, int, float), "measured": (str, int, float), "agrees": bool, "why": str}
TABLE = {"title": str, "columns": list, "rows": list}
TABLE_OPTIONAL = {"command": str}
FIGURE = {"file": str, "caption": str}
FIGURE_OPTIONAL = {"command": str}
TYPE_NAMES = {str: "a string", list: "a list", bool: "true or false", (int, float): "a number",
              (str, int, float): "a string or a number"}


class StudyError(UserError):
    """A study.json that does not follow the schema: the message names the file and the field."""


def _type_ok(value, expected) -> bool:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in allowed:
        return False  # JSON true/false is not a number or a string here
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, expected)


def _check_fields(path: Path, where: str, obj, required: dict, optional: dict, warnings: list[str]) -> None:
    if not isinstance(obj, dict):
        raise StudyError(f"{path}: {where or 'the file'} must be a JSON object, got {type(obj).__name__}")
    prefix = f"{where}." if where else ""
    for key, expected in required.items():
        if key not in obj:
            raise StudyError(f"{path}: {prefix}{key} is missing")
    for key, value in obj.items():
        expected = required.get(key, optional.get(key))
        if expected is None:
            warnings.append(f"{path}: {prefix}{key}: not in the schema, ignored")
        elif not _type_ok(value, expected):
            raise StudyError(f"{path}: {prefix}{key} must be {TYPE_NAMES[expected]}, got {json.dumps(value)[:60]}")


def _check_table(path: Path, i: int, table: dict, warnings: list[str]) -> None:
    where = f"tables[{i}]"
    _check_fields(path, where, table, TABLE, TABLE_OPTIONAL, warnings)
    columns = table["columns"]
    if not columns or not all(isinstance(c, str) for c in columns):
        raise StudyError(f"{path}: {where}.columns must be a non-empty list of strings")
    for r, row in enumerate(table["rows"]):
        if not isinstance(row, list) or len(row) != len(columns):
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise StudyError(f"{path}: {where}.rows[{r}] must be a list of {len(columns)} cells "
                             f"(one per column), got {got}")
        for c, cell in enumerate(row):
            if cell is not None and not _type_ok(cell, (str, int, float, bool)):
                raise StudyError(f"{path}: {where}.rows[{r}][{c}] must be a string, number, boolean or null, "
                                 f"got {json.dumps(cell)[:60]}")


def _check_figure(path: Path, i: int, figure: dict, warnings: list[str]) -> None:
    where = f"figures[{i}]"
    _check_fields(path, where, figure, FIGURE, FIGURE_OPTIONAL, warnings)
    name = PurePosixPath(figure["file"])
    if name.is_absolute() or ".." in name.parts or name.suffix.lower() != ".png":
        raise StudyError(f"{path}: {where}.file must be a .png inside the study's folder, got {figure['file']!r}")
    png = path.parent / name
    try:
        head = png.open("rb").read(len(PNG_SIGNATURE))
    except OSError:
        raise StudyError(f"{path}: {where}.file {figure['file']!r}: no such file beside study.json") from None
    if head != PNG_SIGNATURE:
        raise StudyError(f"{path}: {where}.file {figure['file']!r} is not a PNG image")


def validate_study(path: Path, study) -> list[str]:
    """Check a study's content against the schema (figures must exist beside `path`); StudyError names the
    first problem. Returns warnings (keys the schema does not know)."""
    warnings: list[str] = []
    _check_fields(path, "", study, TOP, TOP_OPTIONAL, warnings)
    for i, claim in enumerate(study["claims"]):
        _check_fields(path, f"claims[{i}]", claim, CLAIM, {}, warnings)
    for i, table in enumerate(study["tables"]):
        _check_table(path, i, table, warnings)
    for i, figure in enumerate(study["figures"]):
        _check_figure(path, i, figure, warnings)
    return warnings


def load_study(path: str | Path) -> tuple[dict, list[str]]:
    """Read and validate the study.json at `path`; returns (study, warnings)."""
    path = Path(path)
    try:
        study = json.loads(path.read_text())
    except OSError as exc:
        raise StudyError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise StudyError(f"{path}: not valid JSON ({exc})") from None
    return study, validate_study(path, study)
