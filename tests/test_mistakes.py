"""A newcomer's mistakes (issue 15): each is one clear line (or a fixed behaviour), never a traceback or a
silent surprise: reusing a run folder, resuming with other settings, file-system trouble, Ctrl-C, a
diverging loss, absurd option values, unflushed stage lines, leftover stage files, sensitivity's data."""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import write_idx_folder
from deepcompress import atomic
from deepcompress.cli import main
from deepcompress.models import build_model
from deepcompress.train import Diverged, TrainConfig, TrainHook, load_checkpoint, train

ROOT = Path(__file__).resolve().parent.parent
TINY_RECIPE = """
[train]
epochs = 1
batch_size = 64
[prune]
iterations = 2
[prune.layers]
ip1 = 0.9
ip2 = 0.8
ip3 = 0.5
[prune.retrain]
epochs = 1
batch_size = 64
lr = 0.01
[quantize]
fc_bits = 4
[quantize.finetune]
epochs = 1
batch_size = 64
optimizer = "adam"
lr = 1e-4
[encode]
fc_gap_bits = 4
"""


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    """A small MNIST-shaped IDX folder (random images) for whole commands."""
    folder = tmp_path_factory.mktemp("idx")
    write_idx_folder(folder, n_train=256, n_test=64)
    return folder


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path


def _cli(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, command: str) -> str:
    """The stderr of a failed command ends in its one error line, with no traceback; return the message."""
    lines = err.splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert "Traceback" not in err and errors == lines[-1:], err
    assert lines[-1].startswith(f"deepcompress {command}: error: "), err
    return lines[-1].split(": error: ", 1)[1]


def _train(idx, out, *extra) -> list:
    return ["train", "--data-dir", idx, "--epochs", "1", "--out", out, "--quiet", *extra]


def _compress(idx, recipe, out, *extra) -> list:
    return ["compress", "--data-dir", idx, "--recipe", recipe, "--out", out, "--quiet", *extra]


# ---- reusing a folder -----------------------------------------------------------------------------------

def test_train_into_an_existing_run_is_refused_without_resume_or_overwrite(idx, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(_train(idx, out), capsys)[0] == 0
    before = (out / "model.pt").read_bytes()
    code, _, err = _cli(_train(idx, out), capsys)
    assert code == 1
    assert _one_error_line(err, "train") == (f"--out {out} already holds a training run (checkpoint.pt); pass "
                                             f"--resume to continue it or --overwrite to start over")
    assert (out / "model.pt").read_bytes() == before
    code, _, _ = _cli(_train(idx, out, "--overwrite", "--seed", "3"), capsys)
    assert code == 0 and json.loads((out / "train.json").read_text())["config"]["seed"] == 3


def test_compress_into_an_existing_run_is_refused_without_resume_or_overwrite(idx, recipe, tmp_path, capsys):
    out = tmp_path / "c"
    assert _cli(_compress(idx, recipe, out, "--keep-stages"), capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = _cli(_compress(idx, recipe, out), capsys)
    assert code == 1 and _one_error_line(err, "compress") == (
        f"--out {out} already holds a compression run (baseline-train.pt); pass --resume to continue it or "
        f"--overwrite to start over")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    one_round = tmp_path / "one-round.toml"
    one_round.write_text(TINY_RECIPE.replace("iterations = 2", "iterations = 1"))
    code, stdout, _ = _cli(_compress(idx, one_round, out, "--overwrite", "--clean"), capsys)
    assert code == 0 and "[prune 1/1 retrained]" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.dcz", "report.md", "results.json"]  # no old round
    code, _, err = _cli(_compress(idx, recipe, out), capsys)  # a cleaned run's results are a run too
    assert code == 1 and _one_error_line(err, "compress").startswith(f"--out {out} already holds a compression "
                                                                     f"run (model.dcz); pass --resume")


def test_compress_resume_refuses_other_recipe_data_or_model_naming_the_setting(idx, recipe, tmp_path, capsys):
    out = tmp_path / "c"
    assert _cli(_compress(idx, recipe, out, "--keep-stages"), capsys)[0] == 0
    changed = tmp_path / "changed.toml"
    changed.write_text(TINY_RECIPE.replace("ip1 = 0.9", "ip1 = 0.5"))
    code, _, err = _cli(_compress(idx, changed, out, "--resume"), capsys)
    assert code == 1 and _one_error_line(err, "compress") == (
        f"--resume: the stages in {out} were made with recipe [prune.layers] ip1 = 0.9, this run has 0.5; "
        f"resume with the same recipe, objective, model and data, or use another --out")
    other_data = tmp_path / "idx2"
    other_data.mkdir()
    write_idx_folder(other_data, n_train=256, n_test=64, seed=1)
    code, _, err = _cli(_compress(other_data, recipe, out, "--resume"), capsys)
    assert code == 1 and "were made with data fingerprint (sha256) = " in _one_error_line(err, "compress")
    torch.manual_seed(5)
    torch.save(build_model("lenet-300-100").state_dict(), tmp_path / "other.pt")
    code, _, err = _cli(_compress(idx, recipe, out, "--resume", "--checkpoint", tmp_path / "other.pt"), capsys)
    assert code == 1 and "were made with model starting weights (sha256) = " in _one_error_line(err, "compress")


# ---- file-system trouble, found up front and named --------------------------------------------------------

def _read_only_folder(tmp_path) -> Path:
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses it
        return Path("/sys/deepcompress-test/out")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    return folder / "out"


@pytest.mark.parametrize("command", ["train", "compress", "sensitivity"])
def test_unwritable_out_is_refused_before_any_work(idx, recipe, tmp_path, capsys, command):
    out = _read_only_folder(tmp_path)
    argv = {"train": _train(idx, out), "compress": _compress(idx, recipe, out),
            "sensitivity": ["sensitivity", "--data-dir", tmp_path / "no-data", "--checkpoint", "x.pt",
                            "--out", out]}[command]
    code, _, err = _cli(argv, capsys)
    message = _one_error_line(err, command)
    assert code == 1 and message.startswith(f"--out {out}: cannot write there (")  # no data was read either


@pytest.mark.parametrize("command", ["train", "compress"])
def test_out_naming_a_file_is_one_line(idx, recipe, tmp_path, capsys, command):
    out = tmp_path / "a-file"
    out.write_text("mine")
    argv = _train(idx, out) if command == "train" else _compress(idx, recipe, out)
    code, _, err = _cli(argv, capsys)
    assert code == 1 and _one_error_line(err, command) == f"--out {out}: is a file, not a folder (the output " \
                                                          f"goes into a folder)"
    assert out.read_text() == "mine"


def test_recipe_naming_a_folder_is_one_line(idx, tmp_path, capsys):
    code, _, err = _cli(["train", "--recipe", tmp_path, "--data-dir", idx, "--out", tmp_path / "o"], capsys)
    assert code == 1 and _one_error_line(err, "train") == f"{tmp_path}: Is a directory"


def test_corrupt_stage_checkpoint_on_resume_names_the_file(idx, recipe, tmp_path, capsys):
    out = tmp_path / "c"
    assert _cli(_compress(idx, recipe, out, "--keep-stages"), capsys)[0] == 0
    (out / "prune-2.pt").write_bytes(b"not a checkpoint")
    code, _, err = _cli(_compress(idx, recipe, out, "--resume"), capsys)
    message = _one_error_line(err, "compress")
    assert code == 1 and message.startswith(f"checkpoint {out / 'prune-2.pt'} is unreadable or not a "
                                            f"deepcompress checkpoint")


def test_a_full_disk_is_named_not_a_torch_message(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_nearly_full", lambda folder: True)
    path = tmp_path / "model.pt"
    with pytest.raises(OSError) as info:
        with atomic.atomic_path(path) as tmp:
            torch.save({"w": torch.zeros(3)}, tmp)
            raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_a_full_disk_during_training_is_one_line(idx, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(atomic, "_nearly_full", lambda folder: True)
    monkeypatch.setattr(torch, "save", _failing_save)
    code, _, err = _cli(_train(idx, tmp_path / "run"), capsys)
    assert code == 1
    assert _one_error_line(err, "train") == f"{tmp_path / 'run' / 'checkpoint.pt'}: No space left on device"


def _failing_save(obj, f, *args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")


# ---- Ctrl-C ---------------------------------------------------------------------------------------------

def _interrupt_after(argv: list, marker: str, tmp_path) -> tuple[int, str]:
    """Run `deepcompress argv` in a subprocess, send SIGINT once `marker` shows in its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "deepcompress.cli", *map(str, argv)], stderr=fh,
                                stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
        deadline = time.monotonic() + 300
        while marker not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    return code, log.read_text()


def test_ctrl_c_in_train_says_what_was_saved_and_how_to_resume(idx, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--data-dir", idx, "--epochs", "10000", "--out", out]
    code, err = _interrupt_after(argv, "epoch 2/10000", tmp_path)  # epoch 1's checkpoint is written by then
    last = err.strip().splitlines()[-1]
    epoch = load_checkpoint(out / "checkpoint.pt")["epoch"]
    assert code == 130 and "Traceback" not in err and epoch >= 1
    assert last == (f"deepcompress train: interrupted; {out / 'checkpoint.pt'} holds epoch {epoch} of 10000; "
                    f"to continue: deepcompress {shlex.join(map(str, argv))} --resume")


def test_ctrl_c_in_compress_says_what_was_saved_and_how_to_resume(idx, tmp_path):
    long = tmp_path / "long.toml"
    long.write_text(TINY_RECIPE.replace("[prune.retrain]\nepochs = 1", "[prune.retrain]\nepochs = 10000"))
    out = tmp_path / "c"
    argv = ["compress", "--data-dir", idx, "--recipe", long, "--out", out]
    code, err = _interrupt_after(argv, "[prune-1] epoch 2/10000", tmp_path)
    last = err.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in err
    assert last == (f"deepcompress compress: interrupted; finished stages and training checkpoints in {out}: "
                    f"baseline-train.pt, prune-1-train.pt, stages.json; to continue: deepcompress "
                    f"{shlex.join(map(str, argv))} --resume")


# ---- a diverging loss, absurd values ----------------------------------------------------------------------

@pytest.mark.parametrize("lr", ["nan", "inf"])
def test_non_finite_learning_rate_is_refused(idx, tmp_path, capsys, lr):
    code, _, err = _cli(_train(idx, tmp_path / "run", "--lr", lr), capsys)
    assert code == 1 and "lr" in _one_error_line(err, "train") and not (tmp_path / "run" / "model.pt").exists()


def test_diverging_training_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    class BlowUpInEpoch2(TrainHook):
        def on_epoch_end(self, epoch, model, metrics):
            self.epoch = epoch

        def after_backward(self, model):
            if getattr(self, "epoch", -1) == 0:
                for p in model.parameters():
                    p.grad.mul_(1e30)

    torch.manual_seed(0)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Diverged) as info:
        train(build_model("lenet-300-100"), tiny_data, TrainConfig(epochs=3, batch_size=32), checkpoint=path,
              hooks=(BlowUpInEpoch2(),), progress=False, verbose=False)
    assert str(info.value).startswith("the training loss became ")
    assert f"{path} (after epoch 1) is the last good state and was kept" in str(info.value)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_diverging_train_command_exits_non_zero_without_a_model(idx, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(_train(idx, out, "--lr", "1e30"), capsys)
    message = _one_error_line(err, "train")
    assert code == 1 and message.startswith("the training loss became ") and "lower the learning rate" in message
    assert not (out / "model.pt").exists()


def test_absurd_epochs_are_bounded(idx, tmp_path, capsys):
    code, _, err = _cli(_train(idx, tmp_path / "r", "--epochs", "1000000000"), capsys)
    assert code == 1 and _one_error_line(err, "train") == ("epochs = 1000000000: at most 10,000 (the built-in "
                                                           "recipes train 20-30)")
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "1e9"])
    assert info.value.code == 2 and "invalid int value: '1e9'" in capsys.readouterr().err


def test_a_batch_larger_than_the_data_warns_and_trains(idx, tmp_path, capsys):
    code, _, err = _cli(["train", "--data-dir", idx, "--epochs", "1", "--out", tmp_path / "r",
                         "--batch-size", "1000000000"], capsys)
    assert code == 0
    assert ("warning: batch size 1,000,000,000 exceeds the 256 training samples; each epoch is one batch of all "
            "of them") in err


# ---- what a finished compress run leaves, and how it logs ---------------------------------------------------

def test_stage_files_keep_what_resume_needs_and_resume_reencodes_the_same_file(idx, recipe, tmp_path, capsys):
    out = tmp_path / "c"
    code, stdout, _ = _cli(_compress(idx, recipe, out), capsys)
    kept = ["baseline-train.pt", "prune-2.pt", "quantize-train.pt", "stages.json"]
    assert code == 0 and sorted(p.name for p in out.glob("*-train.pt")) == ["baseline-train.pt", "quantize-train.pt"]
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".pt", ".json") and p.name != "results.json") == kept
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith(f"stages: kept {', '.join(kept)} (") and "removed 3 intermediate stage files" in summary
    first = (out / "model.dcz").read_bytes()
    code, stdout, _ = _cli(_compress(idx, recipe, out, "--resume", "--clean"), capsys)
    assert code == 0 and (out / "model.dcz").read_bytes() == first  # re-encoded from the kept stages
    assert "[prune" not in stdout  # no round was redone
    assert not [p.name for p in out.glob("*.pt")] and not (out / "stages.json").exists()


def test_keep_stages_keeps_every_file(idx, recipe, tmp_path, capsys):
    out = tmp_path / "c"
    code, stdout, _ = _cli(_compress(idx, recipe, out, "--keep-stages"), capsys)
    names = sorted(p.name for p in out.glob("*.pt"))
    assert code == 0 and names == ["baseline-train.pt", "prune-1-train.pt", "prune-1.pt", "prune-2-train.pt",
                                   "prune-2.pt", "quantize-train.pt"]
    assert stdout.strip().splitlines()[-1].startswith("stages: kept all (")


def test_compress_log_has_each_stage_line_in_order_with_its_label(idx, recipe, tmp_path):
    """stdout and stderr into one file, as `> log 2>&1` does: each stage's result comes when it ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        subprocess.run([sys.executable, "-m", "deepcompress.cli", *map(str, ["compress", "--data-dir", idx,
                        "--recipe", recipe, "--out", tmp_path / "c"])], stdout=fh, stderr=subprocess.STDOUT,
                       env=env, check=True)
    lines = [line for line in log.read_text().splitlines() if line.startswith("[")]
    order = [line.split("]")[0] + "]" for line in lines]
    assert order == ["[baseline]", "[baseline]", "[prune 1/2 before retraining]", "[prune-1]",
                     "[prune 1/2 retrained]", "[prune 2/2 before retraining]", "[prune-2]", "[prune 2/2 retrained]",
                     "[quantized]", "[quantize]", "[centroids fine-tuned]", "[from file]"]
    assert [line for line in lines if line.startswith("[prune-1]")][0].startswith("[prune-1] epoch 1/1  loss ")


def test_sensitivity_measures_on_the_test_set_and_says_so(idx, tmp_path, capsys):
    from deepcompress.data_torch import load_dataset
    from deepcompress.train import evaluate

    torch.manual_seed(0)
    model = build_model("lenet-300-100")
    torch.save(model.state_dict(), tmp_path / "m.pt")
    code, stdout, _ = _cli(["sensitivity", "--data-dir", idx, "--checkpoint", tmp_path / "m.pt",
                            "--out", tmp_path / "s"], capsys)
    record = json.loads((tmp_path / "s" / "sensitivity.json").read_text())
    data = load_dataset("mnist", folder=idx)
    assert code == 0 and record["split"] == "test"
    assert record["curves"]["ip1"][0] == [0.0, evaluate(model, data.test_x, data.test_y)]
    assert stdout.splitlines()[0] == ("sensitivity of lenet-300-100: error measured on the mnist test set "
                                      "(64 images the baseline was not trained on)")
