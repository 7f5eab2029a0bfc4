"""Transformer sequence classifiers: one encoder, three variants as config switches.

baseline  learned absolute position embeddings + standard multi-head attention.
research  no position embeddings; directional ALiBi attention (below).
no_pe     the baseline without position embeddings (an ablation).

Research variant: directional ALiBi. ALiBi (Press et al., ICLR 2022) adds a
per-head linear distance penalty -m_h * |i - j| to the attention scores instead
of adding position vectors to the inputs. It has no position parameters that a
longer input could run past, which is why it extrapolates to unseen lengths,
and its penalty does not depend on where in the sequence a pattern sits. In a
bidirectional encoder a symmetric |i - j| penalty would make the whole model
invariant to reversing the sequence, and so blind to "mark_a before mark_b".
We therefore split the heads: half attend backwards (keys j <= i), half
forwards (keys j >= i), each with the ALiBi slopes of a half-size model. The
encoder keeps its order information without any absolute position.

Attention is written out by hand for torch (no fused or nested-tensor fast paths).
Under ONNX export each layer's attention becomes one onnxruntime
`com.microsoft.MultiHeadAttention` node (one tuned kernel instead of ~14 small
ops), with the same padding mask and ALiBi bias. Padding is masked in attention
and pooling, so a sequence's logits do not depend on its padding or its batch-mates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

# Added to the attention score of a key a query may not see: finite (no NaN, even in a row
# with no visible key, which padding never makes) and far below any real score, so its
# softmax weight is exactly 0 in float32.
MASKED = -1e9


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder and which variant it is."""

    vocab_size: int  # including <pad> and <unk>
    num_classes: int
    d_model: int = 64  # embedding and residual width
    n_heads: int = 4  # attention heads; even, for directional ALiBi
    n_layers: int = 2  # encoder blocks
    d_ff: int = 128  # hidden width of each block's MLP
    dropout: float = 0.1
    max_positions: int = 512  # hard positional limit: longest sequence the model accepts
    positional: Literal["learned", "none"] = "learned"  # absolute position embeddings or none
    attention: Literal["standard", "directional_alibi"] = "standard"

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        if self.attention == "directional_alibi" and self.n_heads % 2:
            raise ValueError("directional_alibi needs an even number of heads")
        if self.positional not in ("learned", "none"):
            raise ValueError(f"unknown positional {self.positional!r}")
        if self.attention not in ("standard", "directional_alibi"):
            raise ValueError(f"unknown attention {self.attention!r}")
        if min(self.vocab_size, self.num_classes, self.max_positions) < 2:
            raise ValueError("vocab_size, num_classes and max_positions must be >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, dict] = {
    "baseline": {"positional": "learned", "attention": "standard"},
    "research": {"positional": "none", "attention": "directional_alibi"},
    "no_pe": {"positional": "none", "attention": "standard"},
}


def variant_config(variant: str, **fields) -> ModelConfig:
    """The ModelConfig of a named variant, with other fields given."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    return ModelConfig(**{**fields, **VARIANTS[variant]})


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The geometric slopes of ALiBi: 2^(-8/n), 2^(-16/n), ..."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.directional = config.attention == "directional_alibi"
        if self.directional:
            half = config.n_heads // 2
            self.register_buffer("slopes", alibi_slopes(half).repeat(2), persistent=False)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`attention_mask` (B, T): 1 for real keys, 0 for padding."""
        if torch.onnx.is_in_onnx_export():
            return self.proj(self._exported_attention(x, attention_mask))
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, C/H)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        key_bias = (1 - attention_mask[:, None, None, :].to(x.dtype)) * MASKED  # (B, 1, 1, T)
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1)) + key_bias  # (B, H, T, T)
        if self.directional:
            scores = scores + self._position_bias(T, x.device)
        weights = self.dropout(F.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(out)

    def _position_bias(self, T: int, device: torch.device) -> torch.Tensor:
        """Directional ALiBi (H, T, T): -slope * distance, and MASKED for keys on a head's
        hidden side."""
        pos = torch.arange(T, device=device)
        offset = pos[None, :] - pos[:, None]  # (T, T): key j minus query i
        half = self.n_heads // 2
        backward = (offset <= 0).expand(half, T, T)
        forward = (offset >= 0).expand(half, T, T)
        hidden = torch.where(torch.cat([backward, forward]), 0.0, MASKED)  # (H, T, T)
        return hidden - self.slopes[:, None, None] * offset.abs()

    def _exported_attention(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The same attention as one onnxruntime MultiHeadAttention node (B, T, C).

        Its CPU kernel adds `mask_filter_value` to the scores of keys whose
        key_padding_mask is 0, as the eager path adds MASKED; the default scale is
        1/sqrt(head size). Export only: the node has no torch implementation.
        """
        C = x.size(-1)
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        key_padding_mask = attention_mask.to(torch.int32)  # (B, T)
        inputs = [q, k, v, None, key_padding_mask]  # None: no separate Q/K/V bias input
        if self.directional:
            inputs.append(self._position_bias(x.size(1), x.device)[None])  # (1, H, T, T)
        return torch.onnx.ops.symbolic(
            "com.microsoft::MultiHeadAttention",
            inputs,
            {"num_heads": self.n_heads, "mask_filter_value": MASKED},
            dtype=x.dtype,
            shape=x.shape,
            version=1,
        )


class Block(nn.Module):
    """Pre-norm encoder block: attention then MLP, each with a residual."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.d_model),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), attention_mask)
        return x + self.mlp(self.ln2(x))


class SequenceClassifier(nn.Module):
    """Encoder + masked mean pooling + linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = (
            nn.Embedding(config.max_positions, config.d_model)
            if config.positional == "learned"
            else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify a padded batch.

        Args:
            input_ids: (B, T) int64 token ids, padded with 0 on the right.
            attention_mask: (B, T) int64, 1 for real tokens and 0 for padding.

        Returns:
            logits (B, num_classes) and the pooled sequence vector (B, d_model).
        """
        B, T = input_ids.shape
        torch._check(
            T <= self.config.max_positions,
            lambda: f"sequence length {T} exceeds the positional limit {self.config.max_positions}",
        )
        x = self.token_embedding(input_ids)  # (B, T, C)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(T, device=input_ids.device))
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, attention_mask)
        x = self.ln_f(x)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, C)
        return self.head(pooled), pooled
