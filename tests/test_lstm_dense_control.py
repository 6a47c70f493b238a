"""benchmarks/lstm_dense_control.py: the word LSTM's 5% target judged against its dense parent trained as long."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import any_model  # noqa: E402
import lstm_dense_control as control  # noqa: E402


def record(dense: float, file: float) -> dict:
    return {"model": control.NAME, "dense_perplexity": dense, "file_perplexity": file, "met": True}


def control_doc(dense: float, longer: float) -> dict:
    return {"reference": {"dense_perplexity": dense}, "epochs": [{"perplexity": longer + 5}, {"perplexity": longer}]}


@pytest.mark.parametrize("longer, met", [(110.0, True), (91.1, False)])
def test_target_must_hold_against_the_parent_trained_as_long(tmp_path, monkeypatch, longer, met):
    results = tmp_path / "any_model.json"
    results.write_text(json.dumps([{"model": "other"}, record(117.4, 111.6)]))
    monkeypatch.setattr(any_model, "RESULTS", results)
    rec = control.judge(control_doc(117.4, longer))
    assert rec["met_against_its_dense_parent"] and rec["met"] is met
    assert rec["dense_trained_as_long_perplexity"] == longer  # the last epoch's, not the best
    assert json.loads(results.read_text())[1] == rec and json.loads(results.read_text())[0] == {"model": "other"}


def test_a_record_from_another_run_is_left_alone(tmp_path, monkeypatch):
    results = tmp_path / "any_model.json"
    results.write_text(json.dumps([record(120.0, 111.6)]))
    monkeypatch.setattr(any_model, "RESULTS", results)
    assert control.judge(control_doc(117.4, 91.1)) is None
    assert json.loads(results.read_text()) == [record(120.0, 111.6)]


def test_an_unfinished_dense_training_is_refused(tmp_path):
    import torch

    path = tmp_path / "baseline-train.pt"
    torch.save({"model": {}, "epoch": 2}, path)
    with pytest.raises(control.UserError, match="finished 2 of 3 epochs"):
        control.dense_epochs(path, any_model.SPECS[control.NAME])
