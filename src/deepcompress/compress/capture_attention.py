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

import torch.fx
import torch.nn.functional as F
from torch import nn

from ..format import graph
from .capture_ops import layernorm_op, node_shape, refuse

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


def self_attention(chain: Chain, source, name: str, m: nn.MultiheadAttention, in_shape: tuple) -> int:
    """Append self-attention of `source` (per-sample (T, E)) with module `m` called `name`; the output's
    position."""
    length, width = in_shape
    heads, dim = m.num_heads, m.head_dim
    packed = chain.add(graph.Fc(layer=f"{name}.in_proj_weight"), source)
    q, k, v = (chain.heads(packed, i * width, length, heads, dim) for i in range(3))
    scores = chain.add(graph.MatMul(), q, chain.add(graph.Permute((0, 2, 1)), k))
    weights = chain.add(graph.Softmax(-1), chain.add(graph.Scalar("mul", 1.0 / math.sqrt(dim)), scores))
    context = chain.add(graph.Permute((1, 0, 2)), chain.add(graph.MatMul(), weights, v))
    return chain.add(graph.Fc(layer=f"{name}.out_proj"), chain.add(graph.Reshape((length, width)), context))


def encoder_layer(chain: Chain, source, name: str, m: nn.TransformerEncoderLayer, in_shape: tuple) -> int:
    """Append an nn.TransformerEncoderLayer (post- or pre-norm) reading `source`; the output's position."""
    def attend(x):
        return self_attention(chain, x, f"{name}.self_attn", m.self_attn, in_shape)

    def feed_forward(x):
        hidden = activation_op(chain.add(graph.Fc(layer=f"{name}.linear1"), x))
        return chain.add(graph.Fc(layer=f"{name}.linear2"), hidden)

    def activation_op(x):
        act = m.activation
        if act is F.relu or isinstance(act, nn.ReLU):
            return chain.add(graph.Relu(), x)
        if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
            return chain.add(graph.Gelu("none"), x)
        # PyTorch's inference fast path computes exact GELU even for GELU(approximate="tanh"), its training
        # path the tanh form: which one the model means is not clear, so neither is written
        refuse(name, f"TransformerEncoderLayer(activation={act!r})", "use activation='relu' or 'gelu'")

    def norm(module_name, x):
        return chain.add(layernorm_op(f"{name}.{module_name}", getattr(m, module_name)), x)

    if m.norm_first:
        mid = chain.add(graph.Add(), source, attend(norm("norm1", source)))
        return chain.add(graph.Add(), mid, feed_forward(norm("norm2", mid)))
    mid = norm("norm1", chain.add(graph.Add(), source, attend(source)))
    return norm("norm2", chain.add(graph.Add(), mid, feed_forward(mid)))


ENCODERS = (nn.TransformerEncoderLayer, nn.TransformerEncoder)


class AttentionCapture:
    """The nn.MultiheadAttention, TransformerEncoderLayer and TransformerEncoder calls of one capture: an
    encoder's chain is emitted where it is called, an attention call's where its output's first element is
    read."""

    def __init__(self, modules: dict):
        self.modules = modules
        self.calls: dict[torch.fx.Node, tuple[list, torch.fx.Node]] = {}  # attention call -> (chain, query)

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
            if node.args[1] == 0:
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
        self_attention(chain, None, name, m, _sequence_shape(name, m, query))
        return chain.ops, query

    def _encoder_call(self, node: torch.fx.Node, m: nn.Module) -> tuple[list, torch.fx.Node]:
        name, source = node.target, node.args[0]
        _no_mask(name, type(m).__name__, {**dict(zip(("src", "mask", "src_key_padding_mask", "is_causal"), node.args)),
                        **node.kwargs}, ("mask", "src_mask", "src_key_padding_mask", "is_causal"))
        layers = m.layers if isinstance(m, nn.TransformerEncoder) else [m]
        prefix = f"{name}.layers." if isinstance(m, nn.TransformerEncoder) else ""
        chain, out = Chain(), None
        for i, layer in enumerate(layers):
            layer_name = f"{prefix}{i}" if prefix else name
            shape = _sequence_shape(f"{layer_name}.self_attn", layer.self_attn, source)
            out = encoder_layer(chain, out, layer_name, layer, shape)
        if getattr(m, "norm", None) is not None:
            chain.add(layernorm_op(f"{name}.norm", m.norm), out)
        return chain.ops, source


def _no_mask(name: str, what: str, args: dict, keys: tuple) -> None:
    if any(args.get(k) is not None and args.get(k) is not False for k in keys):
        refuse(name, f"{what} with a mask or is_causal", "the file's attention takes no mask (models of one input)")


def _sequence_shape(name: str, m: nn.MultiheadAttention, source) -> tuple:
    """The per-sample (T, E) shape of the batch-first sequence attention `m` reads; refused otherwise."""
    if not m.batch_first:
        refuse(name, "nn.MultiheadAttention(batch_first=False)",
               "the file's tensors keep the batch first: construct it with batch_first=True")
    if m.bias_k is not None or m.add_zero_attn:
        refuse(name, "nn.MultiheadAttention(add_bias_kv=True or add_zero_attn=True)", "construct it without them")
    shape = node_shape(source)
    if len(shape) != 3:  # PyTorch reads (L, E) as one unbatched sequence: the batch would be attended over
        refuse(name, f"nn.MultiheadAttention on a {len(shape)}-d input", "give it a batch of sequences (N, T, E)")
    return shape[1:]
