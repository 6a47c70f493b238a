"""ONNX export of a .dcz file's model: ONNX Runtime computes what the CPU runtime computes (float32
tolerance), at a batch size other than the one exported with (the batch dimension is dynamic)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from deepcompress.cli import main
from deepcompress.runtime import load
from test_any_model import Gates, Residual, Separable, rel_error, round_trip

MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed (pip install "
                                                     f"onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.31.1)")
REL_TOL = 1e-5


def onnx_outputs(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


@pytest.mark.parametrize("model, shape", [(Residual, (1, 12, 12)), (Separable, (1, 28, 28)), (Gates, (3, 9, 9))])
def test_onnx_runtime_matches_the_cpu_runtime(tmp_path, model, shape):
    from deepcompress.onnx_export import export_onnx

    torch.manual_seed(2)
    x = torch.rand(3, *shape)
    _, _, path = round_trip(model(), x, tmp_path)
    out = export_onnx(path, tmp_path / "model.onnx")
    expected = load(path)(x.numpy())
    got = onnx_outputs(out, x.numpy())
    assert got.shape == expected.shape and rel_error(got, expected) < REL_TOL


def test_export_command(tmp_path, capsys):
    from pathlib import Path

    dcz = Path(__file__).parent / "data" / "lenet-5-mnist.dcz"
    assert main(["export", str(dcz), "--onnx", str(tmp_path / "l5.onnx")]) == 0
    assert "dynamic batch" in capsys.readouterr().out
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    assert rel_error(onnx_outputs(tmp_path / "l5.onnx", x), load(dcz)(x)) < REL_TOL


def test_a_file_without_forward_pass_is_refused_on_one_line(tmp_path, capsys):
    from deepcompress import format as dcz

    layer = dcz.QuantizedLayer.from_labels("fc", "fc", np.array([[0, -1], [1, 0]]), np.array([0.5, -1.0], np.float32))
    dcz.write(tmp_path / "w.dcz", [layer], {})
    assert main(["export", str(tmp_path / "w.dcz"), "--onnx", str(tmp_path / "w.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert "error:" in err and "\n" not in err and not (tmp_path / "w.onnx").exists()


def test_a_variable_length_file_exports_with_a_dynamic_length(tmp_path):
    from deepcompress.onnx_export import export_onnx
    from test_variable_length import TinyEncoder, ids, written

    path = tmp_path / "enc.dcz"
    written(TinyEncoder(), path)  # captured at 6 tokens
    out = export_onnx(path, tmp_path / "enc.onnx")
    for length in (3, 10):
        x = ids(2, length).numpy()
        assert rel_error(onnx_outputs(out, x), load(path)(x)) < REL_TOL
