"""nn.MultiheadAttention, nn.TransformerEncoderLayer and nn.TransformerEncoder as the file's ops.

Self-attention on a batch-first (N, T, E) tensor, without masks, becomes what a hand-written encoder
captures to: the packed input projection (the layer NAME.in_proj_weight, 3E x E with in_proj_bias), three
slices into query, key and value, each reshaped to (T, H, D) and permuted to (H, T, D),
softmax(q k^T / sqrt(D)) v, the heads put back to (T, E), and NAME.out_proj. An encoder layer adds its
residual adds, LayerNorms (post- or pre-norm) and feed-forward Linears around it; an encoder repeats its
layers and its final norm. What the file cannot describe (cross-attention, masks, the returned attention
weights, add_bias_kv, add_zero_attn, batch_first=False, other activations) is refused naming
the module.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..format import graph
from .capture_base import node_shape, refuse
from .capture_layers import layernorm_op

MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
            "is_causal")


class Chain:
    """A node's ops as (op, inputs) pairs, an input being an earlier pair's position or None for the
    node's own input (what capture._expand appends)."""

    def __init__(self):
        self.ops: list = []

    def add(self, op: graph.Op, *refs) -> int:
        """Append op reading `refs`; its position."""
        self.ops.append((op, refs))
        return len(self.ops) - 1

    def heads(self, source, start: int, length: int, heads: int, dim: int) -> int:
        """Features start .. start + heads * dim of `source` as (heads, T, dim)."""
        part = self.add(graph.Slice(-1, start, start + heads * dim), source)
        return self.add(graph.Permute((1, 0, 2)), self.add(graph.Reshape((length, heads, dim)), part))


def self_attention(chain: Chain, source, m: nn.MultiheadAttention, in_shape: tuple, name_of) -> int:
    """Append self-attention of `source` (per-sample (T, E)) with module `m`; the output's position.
    `name_of(module)` is a module's name in the model (its first, for a module used under several)."""
    length, width = in_shape
    heads, dim = m.num_heads, m.head_dim
    packed = chain.add(graph.Fc(layer=f"{name_of(m)}.in_proj_weight"), source)
    q, k, v = (chain.heads(packed, i * width, length, heads, dim) for i in range(3))
    scores = chain.add(graph.MatMul(), q, chain.add(graph.Permute((0, 2, 1)), k))
    weights = chain.add(graph.Softmax(-1), chain.add(graph.Scalar("mul", 1.0 / math.sqrt(dim)), scores))
    context = chain.add(graph.Permute((1, 0, 2)), chain.add(graph.MatMul(), weights, v))
    return chain.add(graph.Fc(layer=name_of(m.out_proj)), chain.add(graph.Reshape((length, width)), context))


RELU = (F.relu, torch.relu)
FAST_PATH_ACTIVATION = {"relu": 1, "gelu": 2}  # TransformerEncoderLayer.activation_relu_or_gelu


def _activation(name: str, m: nn.TransformerEncoderLayer) -> graph.Op:
    """The encoder layer's activation as an op: ReLU or exact GELU, as both of PyTorch's paths compute it."""
    act = m.activation
    if act in RELU or isinstance(act, nn.ReLU):
        kind, op = "relu", graph.Relu()
    elif act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        kind, op = "gelu", graph.Gelu("none")
    else:  # GELU(approximate="tanh"): PyTorch's inference fast path computes exact GELU, its training path not
        refuse(name, f"TransformerEncoderLayer(activation={act!r})", "use activation='relu' or 'gelu'")
    fast = getattr(m, "activation_relu_or_gelu", 0)  # 0: the fast path is off and the activation itself runs
    if fast and fast != FAST_PATH_ACTIVATION[kind]:
        refuse(name, f"TransformerEncoderLayer whose activation was replaced by {act!r} after it was built",
               "PyTorch's inference fast path still computes the one it was built with: pass activation= "
               "when constructing it")
    return op


def _norm(name: str, m: nn.Module | None) -> graph.Op | None:
    """An encoder's norm module as a layernorm op (None for none or Identity); others refused."""
    if m is None or isinstance(m, nn.Identity):
        return None
    if not isinstance(m, nn.LayerNorm):
        refuse(name, f"{type(m).__name__} as a transformer's norm", "use nn.LayerNorm (or no norm)")
    return layernorm_op(name, m)


def encoder_layer(chain: Chain, source, m: nn.TransformerEncoderLayer, in_shape: tuple, name_of) -> int:
    """Append an nn.TransformerEncoderLayer (post- or pre-norm) reading `source`; the output's position."""
    name = name_of(m)
    activation = _activation(name, m)

    def feed_forward(x):
        hidden = chain.add(activation, chain.add(graph.Fc(layer=name_of(m.linear1)), x))
        return chain.add(graph.Fc(layer=name_of(m.linear2)), hidden)

    def norm(module, x):
        op = _norm(name_of(module), module)
        return x if op is None else chain.add(op, x)

    def attend(x):
        return self_attention(chain, x, m.self_attn, in_shape, name_of)

    if m.norm_first:
        mid = chain.add(graph.Add(), source, attend(norm(m.norm1, source)))
        return chain.add(graph.Add(), mid, feed_forward(norm(m.norm2, mid)))
    mid = norm(m.norm1, chain.add(graph.Add(), source, attend(source)))
    return norm(m.norm2, chain.add(graph.Add(), mid, feed_forward(mid)))


ENCODERS = (nn.TransformerEncoderLayer, nn.TransformerEncoder)
ENCODER_ARGS = ("src", "mask", "src_key_padding_mask", "is_causal")


class AttentionCapture:
    """The nn.MultiheadAttention, TransformerEncoderLayer and TransformerEncoder calls of one capture: an
    encoder's chain is emitted where it is called, an attention call's where its output's first element is
    read."""

    def __init__(self, modules: dict):
        self.modules = modules
        self.names = {}  # a module's first name (named_modules lists a shared module once)
        for name, module in modules.items():
            self.names.setdefault(id(module), name)
        self.calls: dict[torch.fx.Node, tuple[list, torch.fx.Node]] = {}  # attention call -> (chain, query)

    def name_of(self, module: nn.Module) -> str:
        """The module's name in the model."""
        return self.names[id(module)]

    def take(self, node: torch.fx.Node, expand) -> bool:
        """Handle the node if it is one of those calls or reads one's output; False leaves it to the caller.
        `expand(node, chain, source)` appends a chain of (op, inputs) as the node's value."""
        module = self.modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.MultiheadAttention):
            self.calls[node] = self._attention_call(node, module)
            return True
        if isinstance(module, ENCODERS):
            expand(node, *self._encoder_call(node, module))
            return True
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in self.calls:
            key = node.args[1]
            if key in (0, -2):
                if node.users:
                    expand(node, *self.calls[node.args[0]])
            elif node.users:
                refuse(node.args[0].target, "using nn.MultiheadAttention's attention weights",
                       "the file computes the attention output only: out, _ = attn(x, x, x)")
            return True
        owned = [a for a in node.all_input_nodes if a in self.calls]
        if owned:
            refuse(owned[0].target, "using nn.MultiheadAttention's output tuple directly",
                   "unpack it: out, _ = attn(x, x, x)")
        return False

    def _attention_call(self, node: torch.fx.Node, m: nn.MultiheadAttention) -> tuple[list, torch.fx.Node]:
        name = node.target
        args = {**dict(zip(MHA_ARGS, node.args)), **node.kwargs}
        query, key, value = (args.get(k) for k in MHA_ARGS[:3])
        if not (query is key is value):
            refuse(name, "nn.MultiheadAttention with different query, key and value (cross-attention)",
                   "only self-attention, attn(x, x, x), is supported")
        _no_mask(name, "nn.MultiheadAttention", args, ("key_padding_mask", "attn_mask", "is_causal"))
        chain = Chain()
        self_attention(chain, None, m, _sequence_shape(name, "nn.MultiheadAttention", m, query), self.name_of)
        return chain.ops, query

    def _encoder_call(self, node: torch.fx.Node, m: nn.Module) -> tuple[list, torch.fx.Node]:
        name, what = node.target, type(m).__name__
        args = {**dict(zip(ENCODER_ARGS, node.args)), **node.kwargs}
        _no_mask(name, what, args, ("mask", "src_mask", "src_key_padding_mask", "is_causal"))
        source = args.get("src")
        layers = m.layers if isinstance(m, nn.TransformerEncoder) else [m]
        chain, out = Chain(), None
        for layer in layers:
            shape = _sequence_shape(self.name_of(layer), type(layer).__name__, layer.self_attn, source)
            out = encoder_layer(chain, out, layer, shape, self.name_of)
        if isinstance(m, nn.TransformerEncoder):
            op = _norm(f"{name}.norm", m.norm)
            if op is not None:
                chain.add(op, out)
        return chain.ops, source


def _no_mask(name: str, what: str, args: dict, keys: tuple) -> None:
    if any(args.get(k) is not None and args.get(k) is not False for k in keys):
        refuse(name, f"{what} with a mask or is_causal", "the file's attention takes no mask (models of one input)")


def _sequence_shape(name: str, what: str, m: nn.MultiheadAttention, source) -> tuple:
    """The per-sample (T, E) shape of the batch-first sequence attention `m` (in module `what`) reads;
    refused otherwise."""
    if not m.batch_first:
        refuse(name, f"{what}(batch_first=False)",
               f"the file's tensors keep the batch first: construct the {what} with batch_first=True")
    if m.bias_k is not None or m.add_zero_attn:
        refuse(name, "nn.MultiheadAttention(add_bias_kv=True or add_zero_attn=True)", "construct it without them")
    shape = node_shape(source)
    if len(shape) != 3:  # PyTorch reads (L, E) as one unbatched sequence: the batch would be attended over
        refuse(name, f"{what} on a {len(shape)}-d input", "give it a batch of sequences (N, T, E)")
    return shape[1:]
