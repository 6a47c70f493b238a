"""Causal self-attention (F.scaled_dot_product_attention(..., is_causal=True), as nanoGPT writes it) in the
file: the causal_mask op against PyTorch's own mask, a GPT-style block run by the CPU runtime, decompress
and ONNX at several lengths, and the property that defines it: no position's output depends on later
tokens."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress.compress.export import architecture_ops
from deepcompress.format import graph
from deepcompress.runtime import load
from deepcompress.runtime.ops_attn import build_attn_op

from conftest import assert_runs_like_torch, write_pruned

pytestmark = pytest.mark.usefixtures("one_thread")

REL_TOL = 1e-5
WIDTH, HEADS = 16, 4


def rel_error(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


class CausalBlock(nn.Module):
    """nanoGPT's block without its embeddings: pre-norm causal self-attention with a fused qkv projection
    split by chunk, then a GELU MLP, both residual; per-position logits over 7 classes."""

    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.fc, self.out, self.head = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH), nn.Linear(WIDTH, 7)

    def attend(self, x):
        b, t, c = x.size()
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))

    def forward(self, x):
        x = x + self.attend(self.ln1(x))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return self.head(x)


def written(path, length: int = 6) -> nn.Module:
    """The block pruned and shared (conftest.write_pruned), written with a variable length captured at
    `length`."""
    torch.manual_seed(0)
    return write_pruned(CausalBlock(), path, torch.randn(1, length, WIDTH), variable_axes=(1,))


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 4, 6), (1, 2, 7, 3), (1, 1, 1)])
def test_causal_mask_equals_pytorchs_is_causal_mask(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = build_attn_op(graph.CausalMask(), None, 0, False)(x)
    keep = torch.ones(shape[-2:], dtype=torch.bool).tril()  # scaled_dot_product_attention's own rule
    expected = torch.from_numpy(x).masked_fill(~keep, float("-inf")).numpy()
    assert np.array_equal(got, expected)


def test_causal_mask_needs_two_axes():
    with pytest.raises(graph.GraphError, match="at least 2 axes"):
        graph.CausalMask().out_shape((5,), {}, "op 3")


def test_the_mask_sits_between_the_scale_and_the_softmax():
    ops = [op["op"] for op in architecture_ops(CausalBlock(), torch.zeros(1, 5, WIDTH))]
    at = ops.index("causal_mask")
    assert ops[at - 2:at + 3] == ["matmul", "scalar", "causal_mask", "softmax", "matmul"]


def test_a_gpt_block_runs_from_the_file_like_torch_at_any_length(tmp_path):
    model = written(tmp_path / "gpt.dcz")
    assert_runs_like_torch(model, tmp_path / "gpt.dcz", [torch.randn(2, length, WIDTH) for length in (6, 1, 11)])


def test_no_position_sees_later_tokens(tmp_path):
    written(tmp_path / "gpt.dcz")
    runtime = load(tmp_path / "gpt.dcz")
    x = np.random.default_rng(1).standard_normal((1, 9, WIDTH)).astype(np.float32)
    changed = x.copy()
    changed[:, 5:] += 3.0
    a, b = runtime(x), runtime(changed)
    assert np.array_equal(a[:, :5], b[:, :5]) and not np.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.skipif(any(importlib.util.find_spec(n) is None for n in ("onnx", "onnxscript", "onnxruntime")),
                    reason="onnx, onnxscript and onnxruntime not installed")
def test_onnx_export_keeps_the_mask_at_any_length(tmp_path):
    import onnxruntime as ort

    from deepcompress.onnx_export import export_onnx

    written(tmp_path / "gpt.dcz")
    out = export_onnx(tmp_path / "gpt.dcz", tmp_path / "gpt.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for length in (3, 10):
        x = np.random.default_rng(length).standard_normal((2, length, WIDTH)).astype(np.float32)
        got = session.run(["output"], {"input": x})[0]
        assert rel_error(got, load(tmp_path / "gpt.dcz")(x)) < REL_TOL


class ComputedCausal(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        q = self.q(x)
        return F.scaled_dot_product_attention(q, q, q, is_causal=x.size(1) > 1)


def test_is_causal_computed_in_forward_is_refused_in_one_line():
    from deepcompress.compress.capture import Unsupported

    with pytest.raises(Unsupported, match=r"is_causal computed in forward\(\) \(gt\) is not supported; pass a Python "
                                          r"True or False"):
        architecture_ops(ComputedCausal(), torch.zeros(2, 5, WIDTH))
