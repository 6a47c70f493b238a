"""A forward() written as nanoGPT writes it reaches the file: `b, t = idx.size()` then `assert t <= block_size`
(decided at the file's fixed shape), `targets=None` (fixed at its default), positions from torch.arange(t),
the output layer tied to the token embedding, and `x[:, [-1], :]` (a slice). What the fixed shape cannot
decide is refused in one line: an if on the batch size, on a variable length, or on values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_runs_like_torch
from deepcompress.compress import compress_model
from deepcompress.compress.capture import Unsupported, capture
from deepcompress.data import Dataset
from deepcompress.errors import UserError

VOCAB, WIDTH, BLOCK, HEADS = 40, 16, 12, 2


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn, self.c_proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(WIDTH, dim=2)
        q, k, v = (z.view(B, T, HEADS, C // HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class TinyNanoGPT(nn.Module):
    """The constructs of nanoGPT's GPT.forward, one block."""

    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, WIDTH), nn.Embedding(BLOCK, WIDTH)
        self.ln_1, self.attn, self.ln_f = nn.LayerNorm(WIDTH), Attention(), nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        b, t = idx.size()
        assert t <= BLOCK, f"Cannot forward sequence of length {t}, block size is only {BLOCK}"
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long, device=idx.device))
        x = self.ln_f(x + self.attn(self.ln_1(x)))
        if targets is not None:
            logits = self.lm_head(x)
            return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return self.lm_head(x[:, [-1], :]), None


class Logits(nn.Module):
    """What the file holds: the logits alone (nanoGPT returns (logits, loss))."""

    def __init__(self, gpt: nn.Module):
        super().__init__()
        self.gpt = gpt

    def forward(self, idx):
        return self.gpt(idx)[0]


def test_a_nanogpt_forward_is_compressed_and_runs_like_torch_from_the_file(tmp_path):
    torch.manual_seed(0)
    model, x, y = Logits(TinyNanoGPT()), torch.randint(0, VOCAB, (240, 8)), torch.randint(0, VOCAB, (240, 1))
    recipe = {"prune": {"iterations": 1, "layers": {"gpt.wte": 0.5, "gpt.attn.c_attn": 0.5},
                        "retrain": {"epochs": 1, "batch_size": 40}}, "quantize": {"fc_bits": 6}}
    compress_model(model, Dataset("toy", x[:200], y[:200], x[200:], y[200:]), recipe, tmp_path / "run",
                   example_input=x[:1], progress=False,
                   loss=lambda out, target: F.cross_entropy(out.reshape(-1, VOCAB), target.reshape(-1)))
    assert_runs_like_torch(model, tmp_path / "run" / "model.dcz", [x[:1], x[:3]])
    ops = [op.name for op in capture(model, x[:1])]
    assert ops[:3] == ["embedding", "parameter", "add"] and ops[-2:] == ["slice", "fc"]


def test_the_tuple_nanogpt_returns_is_refused_with_the_wrapper_to_write():
    with pytest.raises(Unsupported, match=r"returns tuple; .* one tensor output: wrap the model .*model\(x\)\[0\]"):
        capture(TinyNanoGPT(), torch.randint(0, VOCAB, (1, 8)))


def test_the_shape_assert_is_decided_at_the_examples_shape():
    with pytest.raises(UserError, match=r"the model failed on the example input of shape \(1, 13\) \(AssertionError: "
                                        r"Cannot forward sequence of length 13, block size is only 12\)"):
        capture(Logits(TinyNanoGPT()), torch.randint(0, VOCAB, (1, BLOCK + 1)))


class OnBatch(nn.Module):
    def forward(self, x):
        if x.size(0) > 1:
            return x * 2
        return x


class OnLength(nn.Module):
    def forward(self, x):
        assert x.shape[1] <= 8
        return torch.relu(x)


class OnValues(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class SecondInput(nn.Module):
    def forward(self, x, mask):
        return x * mask


@pytest.mark.parametrize("model, axes, why", [
    (OnBatch(), (), r"forward\(\) gt: an if or assert on the batch size; the file runs at any batch"),
    (OnLength(), (1,), r"forward\(\) le: an if or assert on the length of variable axis 1; .* fix the length"),
    (OnValues(), (), r"symbolically traced variables cannot be used as inputs to control flow"),
    (SecondInput(), (), r"the model takes 2 inputs"),
])
def test_what_the_fixed_shape_cannot_decide_is_refused(model, axes, why):
    with pytest.raises(Unsupported, match=why):
        capture(model, torch.ones(2, 6, 3), variable_axes=axes)


def test_a_branch_on_a_fixed_length_and_a_default_argument_are_kept_as_traced():
    class Fixed(nn.Module):
        def forward(self, x, scale=3.0, shift=None):
            if x.shape[1] > 4:
                x = torch.relu(x)
            return x * scale if shift is None else x + shift

    x = torch.randn(2, 6, 3)
    ops = capture(Fixed(), x)
    assert [op.name for op in ops] == ["relu", "scalar"]
    assert [op.name for op in capture(Fixed(), x[:, :4])] == ["scalar"]


@pytest.mark.parametrize("key, kept", [([-1], slice(-1, None)), ([0, 1], slice(0, 2)), ([2], slice(2, 3))])
def test_a_list_of_consecutive_positions_is_a_slice(key, kept):
    class Take(nn.Module):
        def forward(self, x):
            return x[:, key, :] * 2

    x = torch.randn(2, 5, 3)
    ops = capture(Take(), x)
    assert ops[0].name == "slice" and (ops[0].start, ops[0].stop) == (kept.start or 0, kept.stop)


def test_a_list_of_positions_with_gaps_is_refused():
    class Gather(nn.Module):
        def forward(self, x):
            return x[:, [0, 2], :]

    with pytest.raises(Unsupported, match=r"indexing with .*\[0, 2\].* index with integers and slices"):
        capture(Gather(), torch.randn(2, 5, 3))


def test_lists_on_two_axes_pair_up_and_are_refused():
    class Paired(nn.Module):
        def forward(self, x):
            return x[:, [0, 1], [0, 1]]  # a gather of two elements, not a 2 x 2 block

    with pytest.raises(Unsupported, match=r"indexing with .*\[0, 1\], \[0, 1\]"):
        capture(Paired(), torch.randn(2, 4, 3))


class PositionalOnly(nn.Module):
    def forward(self, x, flag=False, /):
        return torch.relu(x) if flag else x


class TupleDefault(nn.Module):
    def forward(self, x, cache=()):
        return x * 2


class OnLengthAsIndex(nn.Module):
    def forward(self, x):
        if x.size()[x.size(1) - 5] > 2:  # which axis it reads depends on the length
            return torch.relu(x)
        return x


@pytest.mark.parametrize("model, axes, why", [
    (PositionalOnly(), (), r"cannot be used as inputs to control flow"),
    (TupleDefault(), (), r"forward\(\) argument 'cache' has a default of type tuple; .* wrap the model"),
    (OnLengthAsIndex(), (1,), r"on the length of variable axis 1"),
])
def test_arguments_that_are_not_fixed_and_shapes_read_through_the_length_are_refused(model, axes, why):
    with pytest.raises(Unsupported, match=why):
        capture(model, torch.ones(2, 6, 3), variable_axes=axes)


def test_size_with_a_dim_keyword_is_decided_like_a_position():
    class SizeDim(nn.Module):
        def forward(self, x):
            return torch.relu(x) if x.size(dim=1) > 4 else x

    assert [op.name for op in capture(SizeDim(), torch.ones(1, 6, 3))] == ["relu"]
    with pytest.raises(Unsupported, match=r"the model's output \(x\) is not its last operation"):
        capture(SizeDim(), torch.ones(1, 3, 3))  # the identity at that length: the file holds no op


def test_batchnorm_folding_follows_the_branch_forward_runs_at_its_defaults():
    from deepcompress.compress.fold import foldable_pairs

    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x, feats=None):
            y = self.conv(x)
            return self.bn(y) + y if feats is None else self.bn(y)  # y read twice: the conv cannot fold

    assert foldable_pairs(Features().eval(), torch.rand(1, 1, 5, 5)) == []


def test_len_of_the_input_shape_is_its_rank_and_len_of_the_input_is_refused():
    class ByRank(nn.Module):
        def forward(self, x):
            flat = x.flatten(1) if len(x.shape) == 3 else x
            return torch.relu(flat) if len(x.size()) == 3 else torch.sigmoid(flat)

    class ByBatch(nn.Module):
        def forward(self, x):
            return x * len(x)

    class OfAValue(nn.Module):
        def forward(self, x):
            return x * len(x.flatten(1))

    class OfAnAttribute(nn.Module):
        def forward(self, x):
            return x * len(x.mT.shape)

    x = torch.randn(2, 6, 3)
    assert [op.name for op in capture(ByRank(), x)] == ["flatten", "relu"]
    assert [op.name for op in capture(ByRank(), x.flatten(1))] == ["sigmoid"]
    with pytest.raises(Unsupported, match=r"forward\(\) x: len\(\) of the input is the batch size"):
        capture(ByBatch(), x)
    for model in (OfAValue(), OfAnAttribute()):
        with pytest.raises(Unsupported, match=r"forward\(\) \w+: len\(\) of a traced value other than the input's "
                                              r"shape; len\(\) of a tensor is its first axis's size"):
            capture(model, x)
