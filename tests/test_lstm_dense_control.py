"""benchmarks/lstm_dense_control.py: the word LSTM's 5% target judged against its dense parent trained as long."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import any_model  # noqa: E402
import lstm_dense_control as control  # noqa: E402


def record(dense: float, file: float, kept: float = 0.1) -> dict:
    return {"model": control.NAME, "metric": "loss", "dense": math.log(dense), "file": math.log(file),
            "dense_perplexity": dense, "file_perplexity": file, "kept": kept, "met": True}


def control_doc(dense: float, longer: float) -> dict:
    return {"checkpoint_perplexity": dense, "epochs": [{"perplexity": longer + 5}, {"perplexity": longer}]}


@pytest.mark.parametrize("longer, met", [(110.0, True), (91.1, False)])
def test_target_must_hold_against_the_parent_trained_as_long(tmp_path, monkeypatch, longer, met):
    results = tmp_path / "any_model.json"
    results.write_text(json.dumps([{"model": "other"}, record(117.4, 111.6)]))
    monkeypatch.setattr(any_model, "RESULTS", results)
    [rec] = control.judge(control_doc(117.4, longer))
    assert rec["met_against_its_dense_parent"] and rec["met"] is met
    assert rec["dense_trained_as_long_perplexity"] == longer  # the last epoch's, not the best
    assert json.loads(results.read_text())[1] == rec and json.loads(results.read_text())[0] == {"model": "other"}


def test_a_record_keeping_more_than_a_tenth_of_its_weights_is_not_met(tmp_path, monkeypatch):
    results = tmp_path / "any_model.json"
    results.write_text(json.dumps([record(117.4, 111.6, kept=0.2)]))
    monkeypatch.setattr(any_model, "RESULTS", results)
    [rec] = control.judge(control_doc(117.4, 110.0))
    assert not rec["met_against_its_dense_parent"] and not rec["met"]


def test_no_results_file_is_no_judgement(tmp_path, monkeypatch):
    monkeypatch.setattr(any_model, "RESULTS", tmp_path / "missing.json")
    assert control.judge(control_doc(117.4, 91.1)) == []


def test_a_record_from_another_run_is_left_alone(tmp_path, monkeypatch):
    results = tmp_path / "any_model.json"
    results.write_text(json.dumps([record(120.0, 111.6)]))
    monkeypatch.setattr(any_model, "RESULTS", results)
    assert control.judge(control_doc(117.4, 91.1)) == []
    assert json.loads(results.read_text()) == [record(120.0, 111.6)]


def test_an_unfinished_dense_training_is_refused(tmp_path):
    import torch

    path = tmp_path / "baseline-train.pt"
    spec = any_model.SPECS[control.NAME]
    epochs = spec.train["epochs"]
    torch.save({"model": {}, "epoch": epochs - 1}, path)
    with pytest.raises(control.UserError, match=f"finished {epochs - 1} of {epochs} epochs"):
        control.dense_epochs(path, spec)


def test_both_word_records_of_the_same_parent_are_judged_each_by_its_own_rule(tmp_path, monkeypatch):
    results = tmp_path / "any_model.json"
    cells = {**record(89.6, 89.3, kept=0.78), "model": "austen-words-lstm-cells", "kept_lstm": 0.1,
             "pruned": list(any_model.LSTM_MATRICES)}
    results.write_text(json.dumps([record(89.6, 129.2), cells]))
    monkeypatch.setattr(any_model, "RESULTS", results)
    every, gates = control.judge(control_doc(89.6, 87.8))
    assert not every["met"] and gates["met"]  # 129.2 > 1.05 x 87.8; 89.3 <= 1.05 x 87.8 with the gates at 10%
    assert "four LSTM matrices" in gates["target"] and "four LSTM matrices" not in every["target"]


def test_a_control_judges_only_the_records_of_the_parent_it_names(tmp_path, monkeypatch):
    results = tmp_path / "any_model.json"
    large = {**record(80.0, 83.0), "model": "austen-words-lstm-650"}
    results.write_text(json.dumps([record(80.0, 83.0), large]))  # the same dense perplexity, another model
    monkeypatch.setattr(any_model, "RESULTS", results)
    [rec] = control.judge({**control_doc(80.0, 79.5), "model": "austen-words-lstm-650"})
    assert rec["model"] == "austen-words-lstm-650" and rec["met"]  # 83.0 <= 1.05 x 79.5
    assert "dense_trained_as_long_perplexity" not in json.loads(results.read_text())[0]
    assert control.PARENTS["austen-words-lstm-650"][1] != control.RESULTS  # its own results file
