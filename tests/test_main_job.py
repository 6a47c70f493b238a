"""`deepcompress main` (./run.sh's job) end to end on a small MNIST-shaped IDX set with a one-epoch recipe:
the five-line summary, RESULTS/main/study.json in the report's schema, numbers that agree with their
sources (the file's length, PyTorch's error on the decoded file, the hardware models called directly),
and a second run that reuses the baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import write_idx_folder

from deepcompress.cli import main
from deepcompress.hardware.model_sim import simulate_model
from deepcompress.recipes import load_recipe, merge, recipe_path
from deepcompress.report import load_study

TINY = {"train": {"epochs": 1}, "prune": {"iterations": 1, "retrain": {"epochs": 1}},
        "quantize": {"finetune": {"epochs": 1}}}


def _toml(tables: dict, prefix: str = "") -> str:
    """A minimal TOML writer for nested tables of scalars (tomllib only reads)."""
    scalars = [f"{k} = {json.dumps(v)}" for k, v in tables.items() if not isinstance(v, dict)]
    lines = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, value in tables.items():
        if isinstance(value, dict):
            lines.append(_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One main-job run (and the paths it used)."""
    root = tmp_path_factory.mktemp("main")
    data = root / "idx"
    data.mkdir()
    write_idx_folder(data, n_train=256, n_test=64)
    recipe = root / "tiny.toml"
    recipe.write_text(_toml(merge(load_recipe("lenet-300-100", recipe_path("lenet-300-100-quick")), TINY)))
    argv = ["main", "--data-dir", str(data), "--recipe", str(recipe), "--runs", str(root / "runs"),
            "--results", str(root / "results"), "--latency-images", "20", "--quiet"]
    return root, argv


def _run(argv, capsys) -> tuple[list[str], str]:
    assert main(argv) == 0
    out = capsys.readouterr()
    return out.out.splitlines(), out.err


def test_main_job_end_to_end(job, capsys):
    root, argv = job
    lines, err = _run(argv, capsys)
    assert [line.split()[0] for line in lines[-5:]] == ["size", "error", "CPU", "EIE", "report"]
    assert all(f"[{i}/6]" in err for i in range(1, 7)) and "baseline trained 1 epochs" in err

    dcz = root / "runs" / "compress-lenet-300-100-mnist" / "model.dcz"
    record = json.loads((dcz.parent / "results.json").read_text())
    study, warnings = load_study(root / "results" / "main" / "study.json")
    assert warnings == [] and study["name"] == "main" and len(study["claims"]) == 5
    summary = dict(study["tables"][0]["rows"])

    # sizes are the file's own length; the ratio is dense over file
    assert summary["file bytes"] == record["file_bytes"] == dcz.stat().st_size
    assert f"{dcz.stat().st_size:,} bytes, {record['dense_bytes'] / dcz.stat().st_size:.1f}x" in lines[-5]
    # the CPU runtime's error on the file equals PyTorch's on the decoded file (compress_model's "from file")
    assert summary["test error, the file with the CPU runtime (%)"] == round(100 * record["test_error"], 2)
    assert f"-> {100 * record['test_error']:.2f}% from the file" in lines[-4]
    # the EIE figure is the hardware model's own total for this file
    eie = simulate_model(dcz, "eie")[-1]
    assert summary["EIE frames/J (model)"] == round(eie["frames_per_j"])
    assert f"{eie['frames_per_j']:,.0f} frames/J" in lines[-2]
    # the latency speed-up is the ratio of the two medians the table shows
    timing = {row[0]: row[1] for row in study["tables"][3]["rows"]}
    ours, dense = timing["CPU runtime, from the file"], timing["dense PyTorch, same weights"]
    assert summary["CPU speed-up at batch 1"] == pytest.approx(dense / ours, rel=0.01)

    report = Path(lines[-1].split(maxsplit=1)[1])
    page = report.read_text()
    assert report == root / "results" / "report.html" and report.with_suffix(".md").is_file()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(study["figures"]) == 4


def test_a_second_run_reuses_the_baseline(job, capsys):
    root, argv = job
    weights = root / "runs" / "lenet-300-100-mnist" / "model.pt"
    if not weights.is_file():  # run alone, without the test above
        _run(argv, capsys)
    before = torch.load(weights, weights_only=True)
    _, err = _run(argv, capsys)
    assert f"baseline reused {weights} (same [train] settings)" in err
    after = torch.load(weights, weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_quick_needs_a_quick_recipe(capsys):
    assert main(["main", "--quick", "--model", "lenet-5"]) == 1
    assert capsys.readouterr().err == ("deepcompress main: error: --quick: no quick recipe for lenet-5 (built in for "
                                       "lenet-300-100); give --recipe FILE\n")


def test_the_baseline_is_the_one_deepcompress_train_makes(job, capsys):
    root, argv = job
    weights = root / "runs" / "lenet-300-100-mnist" / "model.pt"
    if not weights.is_file():  # run alone, without the tests above
        _run(argv, capsys)
    given = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i] in ("--recipe", "--data-dir")}
    assert main(["train", "--recipe", given["--recipe"], "--data-dir", given["--data-dir"],
                 "--out", str(root / "train"), "--quiet"]) == 0
    ours, theirs = (torch.load(p, weights_only=True) for p in (weights, root / "train" / "model.pt"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
