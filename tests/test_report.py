"""`deepcompress report`: study.json validated with one-line errors naming the file and field; one
self-contained HTML page (every figure embedded, byte for byte) and a markdown twin; no torch needed."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from conftest import LIST_HEAVY, without_torch

from deepcompress.cli import main
from deepcompress.report import StudyError, build_report, load_study
from deepcompress.report.figures import new_figure, save_png
from deepcompress.report.render import fmt_cell


def write_study(folder: Path, name: str, figures=("curve.png",), **changes) -> Path:
    """A valid study folder: two claims, one table, real PNG figures drawn with matplotlib."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, file in enumerate(figures):
        fig, ax = new_figure(2, 1.5)
        ax.plot([0, 1, 2], [i, 2 - i, 1])
        save_png(fig, folder / file)
    study = {"name": name, "title": f"Study {name} <b>", "command": f"deepcompress study {name} --quick",
             "claims": [{"claim": "2-6 bits is sufficient", "talk": "4 bits", "measured": 0.0123, "agrees": True,
                         "why": "error within 0.1 points"},
                        {"claim": "pruning | quantization", "talk": 35, "measured": "31.2x", "agrees": False,
                         "why": "fewer epochs"}],
             "tables": [{"title": "errors", "columns": ["bits", "error (%)", "ok"],
                         "rows": [[2, 1.75, False], [4, 1.5, True], ["8", None, True]]}],
             "figures": [{"file": f, "caption": f"caption of {f}"} for f in figures]}
    study.update(changes)
    path = folder / "study.json"
    path.write_text(json.dumps(study))
    return path


def _mutated(tmp_path: Path, mutate) -> Path:
    path = write_study(tmp_path / "s", "s")
    study = json.loads(path.read_text())
    mutate(study)
    path.write_text(json.dumps(study))
    return path


BAD = {
    "missing title": (lambda s: s.pop("title"), "title is missing"),
    "claims not a list": (lambda s: s.update(claims={}), "claims must be a list, got {}"),
    "agrees a string": (lambda s: s["claims"][1].update(agrees="no"), 'claims[1].agrees must be true or false, got "no"'),
    "measured a list": (lambda s: s["claims"][0].update(measured=[1]),
                        "claims[0].measured must be a string or a number, got [1]"),
    "no why": (lambda s: s["claims"][0].pop("why"), "claims[0].why is missing"),
    "short row": (lambda s: s["tables"][0]["rows"].append([1, 2]),
                  "tables[0].rows[3] must be a list of 3 cells (one per column), got 2"),
    "cell dict": (lambda s: s["tables"][0]["rows"][0].__setitem__(1, {"a": 1}),
                  'tables[0].rows[0][1] must be a string, number, boolean or null, got {"a": 1}'),
    "no png": (lambda s: s["figures"][0].update(file="gone.png"),
               "figures[0].file 'gone.png': no such file beside study.json"),
    "escapes": (lambda s: s["figures"][0].update(file="../x.png"),
                "figures[0].file must be a .png inside the study's folder, got '../x.png'"),
    "nan": (lambda s: s.update(wall_s=float("nan")), "wall_s must be a number, got NaN"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_study_is_one_line_naming_the_file_and_field(tmp_path, case):
    mutate, message = BAD[case]
    path = _mutated(tmp_path, mutate)
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_figure_that_is_not_a_png_is_refused(tmp_path):
    path = write_study(tmp_path / "s", "s")
    (tmp_path / "s" / "curve.png").write_bytes(b"GIF89a not a png")
    with pytest.raises(StudyError, match=r"figures\[0\].file 'curve.png' is not a PNG image$"):
        load_study(path)


def test_unknown_keys_are_warnings_not_errors(tmp_path):
    path = _mutated(tmp_path, lambda s: s["figures"][0].update(dpi=90))
    study, warnings = load_study(path)
    assert study["name"] == "s" and warnings == [f"{path}: figures[0].dpi: not in the schema, ignored"]


def test_the_cli_reports_a_bad_study_in_one_line(tmp_path, capsys):
    path = _mutated(tmp_path, lambda s: s.pop("command"))
    assert main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"deepcompress report: error: {path}: command is missing\n"


def test_an_empty_results_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no NAME/study.json inside" in err


def test_html_embeds_every_figure_byte_for_byte_and_refers_to_nothing_outside(tmp_path):
    write_study(tmp_path / "pruning", "pruning", figures=("a.png", "b.png"))
    write_study(tmp_path / "main", "main")
    html_path, md_path = build_report(tmp_path)
    page = html_path.read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    want = [(tmp_path / "main" / "curve.png").read_bytes(), (tmp_path / "pruning" / "a.png").read_bytes(),
            (tmp_path / "pruning" / "b.png").read_bytes()]
    assert [base64.b64decode(e) for e in embedded] == want  # main first, then the talk's order
    # no outside resource of any kind: every src/href is a data URI or an anchor in the page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_html_shows_claims_commands_and_cells_escaped(tmp_path):
    write_study(tmp_path / "bits", "bits")
    page = build_report(tmp_path)[0].read_text()
    assert "Study bits &lt;b&gt;" in page and "<b>" not in page  # titles are escaped
    assert page.count("deepcompress study bits --quick") == 2  # the section's command and the figure's
    verdicts = re.findall(r'<td class="(agrees|differs)">(agrees|differs)</td>', page)
    assert verdicts == [("agrees", "agrees"), ("differs", "differs")] * 2  # overview and the section
    assert '<td class="num">1.75</td>' in page and "<td>-</td>" in page and "<td>no</td>" in page


def test_the_markdown_twin_has_the_same_tables_and_links_the_pngs(tmp_path):
    write_study(tmp_path / "bits", "bits", figures=("x.png",))
    out = tmp_path / "elsewhere" / "r.html"
    html_path, md_path = build_report(tmp_path, out)
    assert (html_path, md_path) == (out, tmp_path / "elsewhere" / "r.md")
    md = md_path.read_text()
    assert "| bits | pruning \\| quantization | 35 | 31.2x | **differs** |" in md
    assert "| bits | error (%) | ok |\n|---|---|---|\n| 2 | 1.75 | no |\n| 4 | 1.5 | yes |\n| 8 | - | yes |" in md
    link = re.search(r"!\[caption of x.png\]\(([^)]+)\)", md).group(1)
    assert (md_path.parent / link).resolve() == (tmp_path / "bits" / "x.png").resolve()


def test_two_folders_with_one_name_are_refused(tmp_path):
    write_study(tmp_path / "a", "same")
    write_study(tmp_path / "b", "same")
    with pytest.raises(StudyError, match="name 'same' is also the name of"):
        build_report(tmp_path)


@pytest.mark.parametrize("value, text", [(None, "-"), (True, "yes"), (1234567, "1,234,567"), (2.0, "2"),
                                         (1370668.3, "1,370,668"), (44.6123, "44.61"), (0.01234, "0.01234"),
                                         (2.5e-5, "2.500e-05"), (-3.25, "-3.25"), ("1.5%", "1.5%")])
def test_cells_are_formatted_readably(value, text):
    assert fmt_cell(value) == text


def test_report_runs_without_torch(tmp_path):
    write_study(tmp_path / "bits", "bits")
    code = ("import sys\nfrom deepcompress.cli import main\nassert main(['report', sys.argv[1]]) == 0\n"
            + LIST_HEAVY + "print('HEAVY', heavy)\n")
    done = without_torch(code, str(tmp_path))
    assert "HEAVY []" in done.stdout and (tmp_path / "report.html").is_file()


def test_the_report_and_the_new_commands_import_no_training_code():
    from test_layering import PACKAGE, _forbidden, _imports

    report = [p.relative_to(PACKAGE).as_posix() for p in sorted((PACKAGE / "report").rglob("*.py"))]
    anywhere = [f"{rel}: {name}" for rel in [*report, "main_study.py"] for name, _, _ in _imports(PACKAGE / rel)
                if _forbidden(name)]
    at_import = [f"{rel}: {name}" for rel in ("cli_main.py", "cli_report.py")
                 for name, top, _ in _imports(PACKAGE / rel) if top and _forbidden(name)]
    assert len(report) == 5 and anywhere == [] and at_import == []
