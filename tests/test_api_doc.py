"""docs/API.md's complete example runs as written."""

import re
import runpy
from pathlib import Path

API_MD = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", API_MD.read_text(), re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(r"\d+ bytes, [\d.]+x, error [\d.]+% \(from the file\)", out)
    assert (tmp_path / "out" / "net" / "model.dcz").exists() and (tmp_path / "out" / "net" / "report.md").exists()
    assert "frames/J" in out
